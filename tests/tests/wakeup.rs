//! Waiters are woken by the release itself (PUBLISH from the release script), through one
//! shared subscriber connection per client, and never miss a release that races their
//! subscription. Each waiter here polls only every 30 s and may wait 30 s, so a waiter that
//! has the lock within a few seconds of the release can only have been woken by it (a wake-up
//! takes about a millisecond; the margin is for noisy machines).

mod common;

use std::time::Duration;

use common::Fixture;
use lock_runtime::{Backoff, LockClient, LockError};

const NO_POLLING: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(30);
/// Far below the polling step: only a wake-up gets the lock this soon.
const WOKEN_WITHIN: Duration = Duration::from_secs(5);

async fn wait_for(client: &LockClient, key: &str) -> Result<lock_runtime::LockGuard, LockError> {
    let waiting = client
        .lock(key)
        .wait(WAIT)
        .backoff(Backoff::constant(NO_POLLING))
        .acquire();
    match tokio::time::timeout(WOKEN_WITHIN, waiting).await {
        Ok(result) => result,
        Err(_) => panic!("`{key}`: no wake-up within {WOKEN_WITHIN:?} of the release"),
    }
}

on_both_backends!(
    a_release_wakes_the_waiter,
    no_wakeup_is_lost_when_release_races_the_subscription,
    waiters_of_one_client_are_woken_one_per_release_in_fifo_order,
    a_waiter_that_gives_up_after_its_wake_passes_it_on,
);

async fn a_release_wakes_the_waiter(fx: Fixture) {
    let a = fx.client().await;
    let b = fx.client().await;
    let held = a.lock("wake:1").acquire().await.unwrap();
    let waiter = tokio::spawn(async move { wait_for(&b, "wake:1").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.release().await.unwrap();
    let guard = waiter
        .await
        .unwrap()
        .expect("the waiter was woken and took the lock");
    guard.release().await.unwrap();
}

async fn no_wakeup_is_lost_when_release_races_the_subscription(fx: Fixture) {
    let a = fx.client().await;
    let b = fx.client().await;
    for round in 0..60u64 {
        let key = format!("race:{round}");
        let held = a.lock(&key).acquire().await.unwrap();
        let waiter = {
            let b = b.clone();
            let key = key.clone();
            tokio::spawn(async move { wait_for(&b, &key).await })
        };
        // Release somewhere in the waiter's first attempt / subscribe / retry sequence.
        let spin = round % 6;
        for _ in 0..spin {
            tokio::task::yield_now().await;
        }
        if round % 3 == 0 {
            tokio::time::sleep(Duration::from_micros(200 * (round % 7))).await;
        }
        held.release().await.unwrap();
        match waiter.await.unwrap() {
            Ok(guard) => guard.release().await.unwrap(),
            Err(e) => panic!("round {round}: the waiter missed the release: {e}"),
        }
    }
}

/// Starts `n` waiters on `client` for `key`, one after the other, each given time to make its
/// first attempt and subscribe; each records its index when it gets the lock, then releases.
async fn queue_waiters(
    client: &LockClient,
    key: &str,
    n: usize,
    order: &std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let (client, key, order) = (client.clone(), key.to_owned(), order.clone());
        tasks.push(tokio::spawn(async move {
            let guard = client
                .lock(&key)
                .wait(WAIT)
                .backoff(Backoff::constant(NO_POLLING))
                .acquire()
                .await
                .unwrap_or_else(|e| panic!("waiter {i}: {e}"));
            order.lock().unwrap().push(i);
            guard.release().await.unwrap();
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tasks
}

async fn waiters_of_one_client_are_woken_one_per_release_in_fifo_order(fx: Fixture) {
    let a = fx.client().await;
    let b = fx.client().await;
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let held = a.lock("fifo:1").acquire().await.unwrap();
    let tasks = queue_waiters(&b, "fifo:1", 6, &order).await;
    held.release().await.unwrap();
    // Each waiter releases as soon as it has the lock; only wake-ups hand it on (polling is
    // every 30 s), one waiter per release, the longest-waiting first.
    tokio::time::timeout(WOKEN_WITHIN, async {
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await
    .expect("every hand-off came from a wake-up");
    let mut order = order.lock().unwrap().clone();
    if fx.nodes().count() > 1 {
        // On a quorum every node announces the release: an announcement that arrives
        // before the first woken waiter has started its attempt wakes the next one too, so
        // the order is first come, first served only nearly.
        order.sort_unstable();
    }
    assert_eq!(order, [0, 1, 2, 3, 4, 5]);
}

async fn a_waiter_that_gives_up_after_its_wake_passes_it_on(fx: Fixture) {
    let a = fx.client().await;
    let b = fx.client().await;
    for round in 0..20u64 {
        let key = format!("give-up:{round}");
        let held = a.lock(&key).acquire().await.unwrap();
        // The first in line: its future is dropped right around the release, either just
        // after its wake or while its attempt is in flight.
        let first = {
            let (b, key) = (b.clone(), key.clone());
            tokio::spawn(async move {
                b.lock(&key)
                    .wait(WAIT)
                    .backoff(Backoff::constant(NO_POLLING))
                    .acquire()
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = {
            let (b, key) = (b.clone(), key.clone());
            tokio::spawn(async move { wait_for(&b, &key).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        held.release().await.unwrap();
        for _ in 0..round % 5 {
            tokio::task::yield_now().await;
        }
        if round % 2 == 0 {
            tokio::time::sleep(Duration::from_micros(100 * (round % 7))).await;
        }
        first.abort();
        if let Ok(Ok(guard)) = first.await {
            // It got the lock before the abort landed: hand it on the ordinary way.
            guard.release().await.unwrap();
        }
        match second.await.unwrap() {
            Ok(guard) => guard.release().await.unwrap(),
            Err(e) => panic!("round {round}: the wake given up by the first waiter was lost: {e}"),
        }
    }
}

/// One release costs one acquire attempt from a client with many waiters, not one per
/// waiter (the herd): counted by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_release_costs_one_attempt_per_waiting_client() {
    let fx = Fixture::redis();
    let a = fx.client().await;
    let b = fx.client().await;
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let held = a.lock("herd:1").acquire().await.unwrap();
    let tasks = queue_waiters(&b, "herd:1", 8, &order).await;
    let mut raw = fx.raw();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut raw)
        .unwrap();
    held.release().await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut raw)
        .unwrap();
    let calls = |command: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    // A waiter's retries are scripts, as are releases: 9 releases (the holder's and each
    // waiter's) and 8 winning attempts. Waking every waiter on each release would cost
    // 8 + 7 + ... + 1 = 36 attempts. (The SETs the scripts run are counted apart.)
    let requests = calls("evalsha") + calls("eval");
    assert_eq!(order.lock().unwrap().len(), 8);
    assert!(
        requests <= 9 + 8 + 4,
        "{requests} lock commands for 8 hand-offs:\n{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_waiters_of_a_client_share_one_subscriber_connection() {
    let fx = Fixture::redis();
    let holder = fx.client().await;
    let waiters = fx.client().await;
    let mut held = Vec::new();
    for i in 0..40 {
        held.push(
            holder
                .lock(format!("many-waiters:{i}"))
                .acquire()
                .await
                .unwrap(),
        );
    }
    let mut tasks = Vec::new();
    for i in 0..40 {
        let waiters = waiters.clone();
        tasks.push(tokio::spawn(async move {
            wait_for(&waiters, &format!("many-waiters:{i}")).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut raw = fx.raw();
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut raw).unwrap();
    let subscribers = clients
        .lines()
        .filter(|l| l.contains("sub=") && !l.contains(" sub=0 "))
        .count();
    // Two lock clients (one connection each), one subscriber, and this raw connection.
    assert_eq!(clients.lines().count(), 4, "{clients}");
    assert_eq!(subscribers, 1, "{clients}");
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query(&mut raw)
        .unwrap();
    assert_eq!(
        channels.len(),
        40,
        "one channel per key waited on: {channels:?}"
    );

    for guard in held {
        guard.release().await.unwrap();
    }
    for task in tasks {
        task.await.unwrap().unwrap().release().await.unwrap();
    }
    // Waiters that are done leave their channels.
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query(&mut raw)
        .unwrap();
    assert!(channels.is_empty(), "{channels:?}");
}
