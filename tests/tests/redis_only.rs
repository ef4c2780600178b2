//! Behaviour that needs a real server process: losing the lock to other clients or to a dead
//! server, bad input from the network side, and mutual exclusion across OS processes.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Fixture, assert_lost_within_a_period, run_until_lost};
use lock_runtime::{LockClient, LockError, LostReason};
use tokio::time::Instant;

const TTL: Duration = Duration::from_millis(600);

fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_cancelled_when_another_client_deletes_the_key() {
    let fx = Fixture::redis();
    let task = tokio::spawn(run_until_lost(fx.client().await, "loss:del", TTL));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _: () = redis::cmd("DEL")
        .arg("loss:del")
        .query(&mut fx.raw())
        .unwrap();
    let deleted_at = Instant::now();
    let (out, returned_at) = task.await.unwrap();
    assert_lost_within_a_period(&out, deleted_at, returned_at, TTL);
    assert_eq!(out.unwrap_err().key(), Some("loss:del"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_cancelled_when_another_client_overwrites_the_token() {
    let fx = Fixture::redis();
    let task = tokio::spawn(run_until_lost(fx.client().await, "loss:set", TTL));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _: () = redis::cmd("SET")
        .arg("loss:set")
        .arg("someone-else")
        .arg("PX")
        .arg(60_000)
        .query(&mut fx.raw())
        .unwrap();
    let overwritten_at = Instant::now();
    let (out, returned_at) = task.await.unwrap();
    assert_lost_within_a_period(&out, overwritten_at, returned_at, TTL);
    // The other owner's value is left alone by our background release.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let value: String = redis::cmd("GET")
        .arg("loss:set")
        .query(&mut fx.raw())
        .unwrap();
    assert_eq!(value, "someone-else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_cancelled_before_the_lease_deadline_when_the_server_dies() {
    let mut fx = Fixture::redis();
    let client = fx.client().await;
    let task = tokio::spawn(run_until_lost(client, "loss:kill", TTL));
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Every successful renewal was sent before this instant, so the lease deadline is at
    // most kill + ttl - drift.
    let killed_at = Instant::now();
    fx.server.as_mut().unwrap().kill();
    let (out, returned_at) = tokio::time::timeout(TTL * 3, task)
        .await
        .expect("run returned")
        .unwrap();
    assert!(
        matches!(
            out,
            Err(LockError::Lost {
                reason: LostReason::Expired,
                ..
            })
        ),
        "{out:?}"
    );
    let latest_deadline = killed_at + TTL - drift(TTL);
    assert!(
        returned_at < latest_deadline,
        "returned {:?} after the kill; the deadline was at most {:?} after it",
        returned_at - killed_at,
        latest_deadline - killed_at
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_cancelled_before_the_lease_deadline_when_the_server_hangs() {
    // A paused server keeps its sockets open but answers nothing: a partition, not a crash.
    let mut fx = Fixture::redis();
    let client = LockClient::builder(fx.server.as_ref().unwrap().url())
        .response_timeout(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let task = tokio::spawn(run_until_lost(client, "loss:pause", TTL));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let paused_at = Instant::now();
    fx.server.as_mut().unwrap().pause().unwrap();
    let result = tokio::time::timeout(TTL * 3, task).await;
    fx.server.as_mut().unwrap().resume().unwrap();
    let (out, returned_at) = result.expect("run returned").unwrap();
    assert!(
        matches!(
            out,
            Err(LockError::Lost {
                reason: LostReason::Expired,
                ..
            })
        ),
        "{out:?}"
    );
    assert!(
        returned_at < paused_at + TTL - drift(TTL),
        "{:?}",
        returned_at - paused_at
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_rides_out_a_short_outage() {
    // A restart shorter than the lease: renewals fail, are retried, and get through.
    let mut fx = Fixture::redis();
    let client = fx.client().await;
    let guard = client
        .lock("outage")
        .ttl(Duration::from_secs(3))
        .acquire()
        .await
        .unwrap();
    let server = fx.server.as_mut().unwrap();
    server.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().unwrap();
    // The restarted server is empty (no persistence): the first renewal after it finds the
    // key gone and the lock is rightly declared lost, not silently re-created.
    let reason = tokio::time::timeout(Duration::from_secs(3), guard.lost())
        .await
        .expect("lost");
    assert_eq!(reason, LostReason::Taken);
}

#[tokio::test]
async fn unparsable_url_is_a_clear_error() {
    let err = LockClient::connect("http://user:hunter2@127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::InvalidUrl { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("invalid Redis URL"), "{text}");

    let err = LockClient::connect("not a url").await.unwrap_err();
    assert!(matches!(err, LockError::InvalidUrl { .. }), "{err:?}");
}

#[tokio::test]
async fn a_server_that_is_not_listening_fails_within_the_timeout() {
    // A port we just had bound and released: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = LockClient::builder(format!("redis://:hunter2@127.0.0.1:{port}/"))
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(
        matches!(err, LockError::Backend { .. } | LockError::Timeout { .. }),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains(&port.to_string()),
        "the error names the server: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_gives_errors_not_hangs() {
    let mut fx = Fixture::redis();
    let client = fx.client().await;
    fx.server.as_mut().unwrap().kill();
    let started = Instant::now();
    let err = client.lock("dead").acquire().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, LockError::Backend { .. } | LockError::Timeout { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("`dead`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holding_a_hash_is_wrongtype_not_busy() {
    let fx = Fixture::redis();
    let _: () = redis::cmd("HSET")
        .arg("orders")
        .arg("f")
        .arg("v")
        .query(&mut fx.raw())
        .unwrap();
    let client = fx.client().await;
    let err = client
        .lock("orders")
        .wait(Duration::from_millis(200))
        .acquire()
        .await
        .unwrap_err();
    match &err {
        LockError::WrongType { key, found } => {
            assert_eq!(key, "orders");
            assert_eq!(found, "hash");
        }
        other => panic!("expected WrongType, got {other:?}"),
    }
    assert!(
        err.to_string().contains("namespace"),
        "says what to do: {err}"
    );
    // The hash is untouched.
    let v: String = redis::cmd("HGET")
        .arg("orders")
        .arg("f")
        .query(&mut fx.raw())
        .unwrap();
    assert_eq!(v, "v");
    // A fencing counter that is not a number is an error too, and the lock is not left held.
    let _: () = redis::cmd("SET")
        .arg("{fenced}:fence")
        .arg("x")
        .query(&mut fx.raw())
        .unwrap();
    let err = client
        .lock("fenced")
        .fencing(true)
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Backend { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_never_shows_the_password() {
    let fx = Fixture::redis();
    let url = fx
        .server
        .as_ref()
        .unwrap()
        .url()
        .replace("redis://", "redis://:hunter2@");
    // The server has no password, so AUTH fails: the error must not echo it either.
    let err = LockClient::connect(&url).await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
    let builder = LockClient::builder(url);
    assert!(!format!("{builder:?}").contains("hunter2"));
    let client = fx.client().await;
    let guard = client.lock("dbg").acquire().await.unwrap();
    let shown = format!("{client:?} {guard:?}");
    assert!(
        !shown.contains(guard.token()),
        "the token stays out of Debug: {shown}"
    );
    guard.release().await.unwrap();
}

#[test]
fn a_guard_dropped_outside_a_runtime_leaves_the_key_to_its_ttl() {
    let fx = Fixture::redis();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let guard = runtime.block_on(async {
        let client = fx.client().await;
        client
            .lock("no-rt")
            .ttl(Duration::from_millis(300))
            .watchdog(false)
            .acquire()
            .await
            .unwrap()
    });
    drop(runtime);
    drop(guard); // no runtime here: must neither panic nor block
    let exists: bool = redis::cmd("EXISTS")
        .arg("no-rt")
        .query(&mut fx.raw())
        .unwrap();
    assert!(exists, "nothing could release it");
    std::thread::sleep(Duration::from_millis(400));
    let exists: bool = redis::cmd("EXISTS")
        .arg("no-rt")
        .query(&mut fx.raw())
        .unwrap();
    assert!(!exists, "the TTL freed it");
}

// Single-threaded, so the watchdog task runs where the thread-local subscriber is set.
#[tokio::test]
async fn tracing_events_carry_the_key_and_never_the_token() {
    let (logs, _default) = common::capture_logs(tracing::Level::TRACE);

    let fx = Fixture::redis();
    let client = fx.client().await;
    let guard = client
        .lock("traced")
        .ttl(Duration::from_millis(150))
        .acquire()
        .await
        .unwrap();
    let token = guard.token().to_owned();
    tokio::time::sleep(Duration::from_millis(250)).await; // a few renewals
    guard.release().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut fx.raw()).unwrap();

    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    for event in ["lock acquired", "lock renewed", "lock released"] {
        assert!(text.contains(event), "missing `{event}` in:\n{text}");
    }
    assert!(text.contains("traced"));
    assert!(
        !text.contains(&token),
        "the token leaked into the logs:\n{text}"
    );
}

/// Two OS processes, 16 tasks each, on four locks guarding four counters, with a deliberate
/// read-yield-write race inside each critical section. Any overlap loses an update.
#[test]
fn two_processes_never_lose_an_update() {
    const KEYS: usize = 4;
    const TASKS: usize = 16;
    const PER_TASK: usize = 160; // 2 × 16 × 160 = 5,120 critical sections
    let fx = Fixture::redis();
    let url = fx.server.as_ref().unwrap().url();
    let worker = env!("CARGO_BIN_EXE_mutex-worker");
    let spawn = || {
        Command::new(worker)
            .args([
                &url,
                &KEYS.to_string(),
                &TASKS.to_string(),
                &PER_TASK.to_string(),
            ])
            .spawn()
            .expect("start the worker")
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().unwrap().success(), "worker A failed");
    assert!(b.wait().unwrap().success(), "worker B failed");

    let mut con = fx.raw();
    let mut total = 0;
    for k in 0..KEYS {
        let n: usize = redis::cmd("GET")
            .arg(format!("counter:{k}"))
            .query(&mut con)
            .unwrap();
        total += n;
    }
    assert_eq!(
        total,
        2 * TASKS * PER_TASK,
        "lost updates: {}",
        2 * TASKS * PER_TASK - total
    );
}
