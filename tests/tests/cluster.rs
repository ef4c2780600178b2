//! Redis Cluster: batched renewal of many locks, wake-ups across nodes, fencing, and a
//! master failover with locks held.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lock_runtime::{LockClient, LockError};
use lock_tests::RedisCluster;
use tokio::time::Instant;

async fn client(cluster: &RedisCluster) -> LockClient {
    LockClient::cluster(cluster.urls())
        .connect()
        .await
        .expect("connect to the test cluster")
}

fn exists(cluster: &RedisCluster, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query(&mut cluster.connection().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_locks_across_slots_are_renewed_in_few_round_trips() {
    let cluster = RedisCluster::start().unwrap();
    let client = client(&cluster).await;
    let ttl = Duration::from_millis(1_500);
    let mut guards = Vec::new();
    for i in 0..1_000 {
        guards.push(
            client
                .lock(format!("bulk:{i}"))
                .ttl(ttl)
                .acquire()
                .await
                .unwrap(),
        );
    }
    // After one period the renewer sends full batches; count over 3 TTLs from then on.
    tokio::time::sleep(ttl / 3).await;
    let before = lock_runtime::__private::cluster_renewal_round_trips();
    let flushes_before = lock_runtime::__private::cluster_renewal_flushes();
    tokio::time::sleep(ttl * 3).await;
    let trips = lock_runtime::__private::cluster_renewal_round_trips() - before;
    let flushes = lock_runtime::__private::cluster_renewal_flushes() - flushes_before;
    let ticks = 9; // 3 TTLs at one renewal every ttl/3
    let masters = cluster.primaries().len() as u64;
    let bound = 1_000 / 100 + masters;
    println!(
        "cluster renewal: {trips} round trips in 3 TTLs ({ticks} renewal periods, {flushes} \
         flushes) for 1000 locks on {masters} masters: {:.1} per period, {:.1} per flush; \
         bound {bound} per tick",
        trips as f64 / ticks as f64,
        trips as f64 / flushes.max(1) as f64
    );
    assert!(
        trips <= (ticks + 1) * bound,
        "{trips} round trips in {ticks} ticks, bound {bound} per tick"
    );
    for guard in &guards {
        assert!(!guard.is_lost(), "{} was lost", guard.key());
    }
    let mut con = cluster.connection().unwrap();
    for i in (0..1_000).step_by(97) {
        let left: i64 = redis::cmd("PTTL")
            .arg(format!("bulk:{i}"))
            .query(&mut con)
            .unwrap();
        assert!(left > 0, "bulk:{i} has PTTL {left} after 3 TTLs");
    }
    for guard in guards {
        guard.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_woken_by_a_release_on_another_node() {
    let cluster = RedisCluster::start().unwrap();
    let holder = client(&cluster).await;
    let waiter = client(&cluster).await;
    // Keys served by two different primaries.
    let first = "wake:a".to_owned();
    let home = cluster.primary_for(&first).unwrap();
    let second = (0..)
        .map(|i| format!("wake:{i}"))
        .find(|k| cluster.primary_for(k).unwrap() != home)
        .unwrap();
    for key in [first, second] {
        let guard = holder.lock(key.clone()).acquire().await.unwrap();
        let task = tokio::spawn({
            let waiter = waiter.clone();
            let key = key.clone();
            async move {
                let got = waiter
                    .lock(key)
                    .wait(Duration::from_secs(10))
                    .acquire()
                    .await;
                (got, Instant::now())
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        guard.release().await.unwrap();
        let released = Instant::now();
        let (got, at) = task.await.unwrap();
        got.unwrap().release().await.unwrap();
        assert!(
            at - released < Duration::from_millis(250),
            "`{key}` woke its waiter {:?} after the release",
            at - released
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_increase_and_live_in_the_locks_slot() {
    let cluster = RedisCluster::start().unwrap();
    let a = client(&cluster).await.with_namespace("svc");
    let b = client(&cluster).await.with_namespace("svc");
    let mut con = cluster.connection().unwrap();
    for key in ["order:1", "{tenant}:order:2", "order:3"] {
        let mut last = 0;
        for client in [&a, &b, &a] {
            let guard = client.lock(key).fencing(true).acquire().await.unwrap();
            let token = guard.fencing_token().unwrap();
            assert!(token > last, "{key}: {token} after {last}");
            last = token;
            guard.release().await.unwrap();
        }
        let full = format!("svc:{key}");
        let fence = if full.contains("{tenant}") {
            format!("{full}:fence")
        } else {
            format!("{{{full}}}:fence")
        };
        let slot = |con: &mut redis::cluster::ClusterConnection, k: &str| -> u16 {
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(k)
                .query(con)
                .unwrap()
        };
        assert_eq!(slot(&mut con, &fence), slot(&mut con, &full));
        let counter: u64 = redis::cmd("GET").arg(&fence).query(&mut con).unwrap();
        assert_eq!(counter, last);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failover_with_locks_held_never_gives_two_holders() {
    let mut cluster = RedisCluster::start().unwrap();
    let holder = client(&cluster).await;
    let competitor = client(&cluster).await;
    let ttl = Duration::from_secs(6);
    let keys: Vec<String> = (0..60).map(|i| format!("fo:{i}")).collect();
    let mut guards = Vec::new();
    for key in &keys {
        guards.push(holder.lock(key.clone()).ttl(ttl).acquire().await.unwrap());
    }
    // Let the writes reach the replicas, then kill the primary of the first key.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = cluster.primary_for(&keys[0]).unwrap();
    let heir = cluster.replica_of(victim).unwrap();
    let on_victim: Vec<usize> = (0..keys.len())
        .filter(|&i| cluster.primary_for(&keys[i]).unwrap() == victim)
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn({
        let stop = Arc::clone(&stop);
        let keys = keys.clone();
        async move {
            let mut won = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for key in &keys {
                    match competitor.lock(key.clone()).acquire().await {
                        Ok(guard) => won.push((key.clone(), Instant::now(), guard)),
                        Err(LockError::Busy { .. }) => {}
                        Err(_) => {} // the failover in progress
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            won
        }
    });
    cluster.nodes[victim].kill();
    let started = Instant::now();
    if let Err(e) = cluster.wait_until_primary(heir, Duration::from_secs(20)) {
        panic!("{e}\n{}", cluster.nodes[heir].log_tail(40));
    }
    println!("failover took {:?}", started.elapsed());
    assert_eq!(cluster.primary_for(&keys[0]).unwrap(), heir);
    // Two renewal periods on the new primary.
    tokio::time::sleep(ttl * 2 / 3).await;
    stop.store(true, Ordering::Relaxed);
    let won = probe.await.unwrap();

    // Each lock was kept, or its holder was told it was lost; never both held.
    for (key, at, _) in &won {
        let i = keys.iter().position(|k| k == key).unwrap();
        assert!(
            guards[i].is_lost(),
            "`{key}` was taken by the competitor at {at:?} while its holder still held it"
        );
    }
    for (i, guard) in guards.iter().enumerate() {
        if !guard.is_lost() {
            assert!(
                guard.is_held().await.unwrap(),
                "{} neither held nor lost",
                guard.key()
            );
        }
        if !on_victim.contains(&i) {
            assert!(
                !guard.is_lost(),
                "{} on an untouched primary was lost",
                guard.key()
            );
        }
    }
    println!(
        "{} locks on the failed primary; {} kept, {} declared lost; competitor won {}",
        on_victim.len(),
        on_victim.iter().filter(|&&i| !guards[i].is_lost()).count(),
        on_victim.iter().filter(|&&i| guards[i].is_lost()).count(),
        won.len()
    );
    let _ = exists(&cluster, &keys[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_lock_only_user_works_on_a_cluster() {
    // The README's lock-only rule plus its cluster additions.
    let rule = [
        "--user",
        "locker",
        "on",
        ">s3cret-pw",
        "resetkeys",
        "~orders:*",
        "~{orders:*",
        "resetchannels",
        "&lock-released:orders:*",
        "&lock-released:{orders:*",
        "-@all",
        "+get",
        "+set",
        "+del",
        "+pttl",
        "+type",
        "+pexpire",
        "+incr",
        "+publish",
        "+evalsha",
        "+script|load",
        "+subscribe",
        "+unsubscribe",
        "+ping",
        "+spublish",
        "+ssubscribe",
        "+sunsubscribe",
        "+cluster|slots",
    ];
    let cluster = RedisCluster::start_with_args(&rule).unwrap();
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("redis://locker:s3cret-pw@127.0.0.1:{}/", n.port()))
        .collect();
    let connect = || async {
        LockClient::cluster(urls.clone())
            .connect()
            .await
            .expect("connect as the lock-only user")
            .with_namespace("orders")
    };
    let (a, b) = (connect().await, connect().await);
    let ttl = Duration::from_millis(300);
    let first = a
        .lock("order:1")
        .ttl(ttl)
        .fencing(true)
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(ttl * 3).await;
    assert!(first.is_held().await.unwrap(), "renewed past its TTL");
    let waiter = tokio::spawn(async move {
        let got = b
            .lock("order:1")
            .fencing(true)
            .wait(Duration::from_secs(5))
            .acquire()
            .await;
        (got, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let token = first.fencing_token().unwrap();
    first.release().await.unwrap();
    let released = Instant::now();
    let (got, at) = waiter.await.unwrap();
    let second = got.unwrap();
    assert!(
        at - released < Duration::from_millis(250),
        "woken after {:?}",
        at - released
    );
    assert!(second.fencing_token().unwrap() > token);
    second.release().await.unwrap();
    let billing = LockClient::cluster(urls.clone())
        .connect()
        .await
        .unwrap()
        .with_namespace("billing");
    let err = billing.lock("invoice:1").acquire().await.unwrap_err();
    assert!(matches!(err, LockError::NoPermission { .. }), "{err}");
}

/// A service that already holds a cluster connection locks over it; waiters are still woken
/// through the lock client's own sharded subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_go_over_the_services_own_cluster_connection() {
    let cluster = RedisCluster::start().unwrap();
    let app = redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let own = LockClient::cluster(cluster.urls())
        .cluster_connection(app.clone())
        .connect()
        .await
        .unwrap();
    let guard = own.lock("own:1").fencing(true).acquire().await.unwrap();
    assert_eq!(guard.fencing_token(), Some(1));
    assert!(exists(&cluster, "own:1"));
    let other = client(&cluster).await;
    let busy = other.lock("own:1").acquire().await;
    assert!(matches!(busy, Err(LockError::Busy { .. })), "{busy:?}");
    // The service's connection keeps working for its own commands meanwhile.
    let mut app = app;
    let _: () = redis::cmd("SET")
        .arg("own:data")
        .arg("x")
        .query_async(&mut app)
        .await
        .unwrap();
    let held = other.lock("own:2").acquire().await.unwrap();
    let waiter = tokio::spawn({
        let own = own.clone();
        async move {
            let got = own
                .lock("own:2")
                .wait(Duration::from_secs(10))
                .backoff(lock_runtime::Backoff::constant(Duration::from_secs(5)))
                .acquire()
                .await;
            (got, Instant::now())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.release().await.unwrap();
    let released = Instant::now();
    let (got, at) = waiter.await.unwrap();
    got.unwrap().release().await.unwrap();
    assert!(
        at - released < Duration::from_secs(2),
        "woken {:?} after the release (polling steps are 5 s)",
        at - released
    );
    guard.release().await.unwrap();
    assert!(!exists(&cluster, "own:1"));
}
