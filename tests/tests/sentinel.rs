//! Sentinel: discovery, failover, replica acknowledgement, and a failover that loses a lock.

mod common;

use std::time::Duration;

use lock_runtime::{LockClient, LockError, LostReason};
use lock_tests::{RedisServer, SENTINEL_SERVICE, SentinelGroup};
use tokio::time::Instant;

async fn client(group: &SentinelGroup, replicas: bool) -> LockClient {
    let builder = LockClient::sentinel(SENTINEL_SERVICE, group.sentinel_urls());
    let builder = match replicas {
        true => builder.wait_for_replicas(1, Duration::from_millis(100)),
        false => builder,
    };
    builder
        .connect()
        .await
        .expect("connect through the sentinels")
}

fn exists(server: &RedisServer, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query(&mut server.connection().unwrap())
        .unwrap()
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query(&mut server.connection().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_replicated_while_the_replica_is_stopped_leaves_nothing_locked() {
    let mut group = SentinelGroup::start_for_discovery().unwrap();
    let client = client(&group, true).await;
    // Healthy: acknowledged (retried: on a loaded machine one WAIT of 100 ms can miss).
    let healthy = common::eventually(Duration::from_secs(3), || async {
        match client.lock("order:1").acquire().await {
            Ok(guard) => guard.release().await.is_ok(),
            Err(LockError::NotReplicated { .. }) => false,
            Err(e) => panic!("{e}"),
        }
    })
    .await;
    assert!(healthy.is_some(), "a healthy replica never acknowledged");

    group.replica.pause().unwrap();
    let started = Instant::now();
    let err = client
        .lock("order:1")
        .fencing(true)
        .acquire()
        .await
        .unwrap_err();
    let took = started.elapsed();
    match &err {
        LockError::NotReplicated {
            key,
            wanted,
            acknowledged,
        } => {
            assert_eq!((key.as_str(), *wanted, *acknowledged), ("order:1", 1, 0));
        }
        other => panic!("expected NotReplicated, got {other:?}"),
    }
    assert!(
        took < Duration::from_millis(400),
        "took {took:?} for a 100 ms WAIT"
    );
    let message = err.to_string();
    assert!(message.contains("0 of 1 replica"), "{message}");
    assert!(
        !exists(&group.primary, "order:1"),
        "the unreplicated lock was left behind"
    );
    group.replica.resume().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_lock_survives_a_failover_and_its_renewals_reach_the_new_primary() {
    let group = SentinelGroup::start().unwrap();
    let holder = client(&group, true).await;
    // Long enough for the client to notice the switch (renewal period plus one check).
    let ttl = Duration::from_secs(3);
    let guard = holder.lock("order:2").ttl(ttl).acquire().await.unwrap();

    group.failover().unwrap();
    assert_eq!(group.primary_port().unwrap(), group.replica.port());
    // Several renewal periods later the watchdog has renewed it on the new primary.
    tokio::time::sleep(ttl + ttl / 2).await;
    assert!(
        !guard.is_lost(),
        "the lock was declared lost across a clean failover: {:?}",
        guard.is_held().await
    );
    assert!(guard.is_held().await.unwrap());
    let left = pttl(&group.replica, "order:2");
    assert!(
        left > (ttl / 2).as_millis() as i64,
        "PTTL {left}: not renewed on the new primary"
    );

    let other = client(&group, true).await;
    assert!(matches!(
        other.lock("order:2").acquire().await,
        Err(LockError::Busy { .. })
    ));
    guard.release().await.unwrap();
    assert!(!exists(&group.replica, "order:2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_lost_the_key_cancels_the_body_with_lost() {
    let mut group = SentinelGroup::start().unwrap();
    let holder = client(&group, false).await;

    // The replica misses the write: frozen, and cut off so that nothing is buffered for it.
    group.replica.pause().unwrap();
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .exec(&mut group.primary.connection().unwrap())
        .unwrap();
    let ttl = Duration::from_secs(9);
    let body = tokio::spawn({
        let holder = holder.clone();
        async move { common::run_until_lost(holder, "order:3", ttl).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(exists(&group.primary, "order:3"));

    // The primary dies; the replica, which never saw the lock, is promoted.
    group.primary.kill();
    group.replica.resume().unwrap();
    group.wait_for_promotion(Duration::from_secs(20)).unwrap();
    let promoted_at = Instant::now();
    assert!(
        !exists(&group.replica, "order:3"),
        "the replica saw the write after all"
    );

    // Another client can take the lock now: exactly the window the README describes.
    let (out, returned_at) = tokio::time::timeout(ttl, body).await.unwrap().unwrap();
    assert!(
        matches!(
            out,
            Err(LockError::Lost {
                reason: LostReason::Taken,
                ..
            })
        ),
        "{out:?}"
    );
    assert!(
        returned_at - promoted_at <= ttl / 3 + Duration::from_secs(2),
        "noticed {:?} after the promotion",
        returned_at - promoted_at
    );
}
