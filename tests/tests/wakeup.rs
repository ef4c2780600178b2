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
    no_wakeup_is_lost_when_release_races_the_subscription
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
