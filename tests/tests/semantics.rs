//! Lock semantics that hold for every backend: each test runs against a private
//! `redis-server` and against `LockClient::in_memory()`.

mod common;

use std::time::Duration;

use common::Fixture;
use lock_runtime::{Backoff, LockError};
use tokio::time::Instant;

on_both_backends!(with_cluster:
    acquire_busy_release_reacquire,
    another_client_cannot_release_or_extend_our_lock,
    namespaces_prefix_keys_and_separate_locks,
    without_watchdog_the_ttl_expires_and_release_is_not_held,
    watchdog_keeps_a_300ms_lock_for_2s_with_our_token,
    extend_moves_the_ttl_and_is_owner_checked,
    run_releases_on_ok,
    run_releases_on_err,
    run_releases_on_panic,
    run_releases_when_cancelled_by_timeout,
    run_releases_when_its_future_is_dropped,
    guard_release_frees_at_once,
    guard_dropped_on_early_error_return_frees_promptly,
    guard_dropped_by_panic_frees_promptly,
    guard_in_cancelled_task_frees_promptly,
    waiter_gets_the_lock_shortly_after_release,
    zero_wait_is_busy_at_once,
    wait_never_exceeds_its_bound_by_much,
    waiter_never_sleeps_past_the_holders_ttl,
    fencing_tokens_strictly_increase_across_holders_and_clients,
    no_fencing_token_unless_asked,
    empty_key_and_zero_ttl_are_rejected_and_lock_nothing,
    reentry_on_the_same_key_runs_inside_the_outer_lock,
    current_reports_the_innermost_lock,
    lost_token_is_cancelled_on_loss_and_on_release,
    remaining_ttl_reports_the_servers_ttl_while_held,
    run_or_skip_skips_a_busy_lock_without_running_the_work,
    min_hold_keeps_the_key_after_a_quick_body,
    max_hold_cancels_the_work_and_frees_the_key,
    inconsistent_hold_bounds_are_refused_and_lock_nothing,
    close_releases_every_held_lock_and_refuses_new_ones,
);

async fn acquire_busy_release_reacquire(fx: Fixture) {
    let a = fx.client().await;
    let b = fx.client().await;
    let guard = a.lock("order:1").acquire().await.unwrap();
    assert_eq!(guard.key(), "order:1");
    assert!(guard.is_held().await.unwrap());

    match b.lock("order:1").acquire().await {
        Err(LockError::Busy { key, holder_ttl }) => {
            assert_eq!(key, "order:1");
            let ttl = holder_ttl.expect("the lock has a TTL");
            assert!(
                ttl > Duration::from_secs(25) && ttl <= Duration::from_secs(30),
                "{ttl:?}"
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }

    guard.release().await.unwrap();
    let again = b.lock("order:1").acquire().await.unwrap();
    assert!(again.is_held().await.unwrap());
    again.release().await.unwrap();
}

async fn another_client_cannot_release_or_extend_our_lock(fx: Fixture) {
    // The API only releases or extends through a guard, so "another client" is an owner
    // whose guard went stale: A's lock expires (watchdog off), B takes the key, and A's
    // release and extend must leave B's lock alone.
    let a = fx.client().await;
    let b = fx.client().await;
    let stale = a
        .lock("order:2")
        .ttl(Duration::from_millis(100))
        .watchdog(false)
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let current = b.lock("order:2").acquire().await.unwrap();
    assert_ne!(stale.token(), current.token());

    let err = stale.extend(Duration::from_secs(10)).await.unwrap_err();
    assert!(
        matches!(err, LockError::NotHeld { ref key } if key == "order:2"),
        "{err:?}"
    );
    assert!(!stale.is_held().await.unwrap());
    assert!(matches!(
        stale.release().await,
        Err(LockError::NotHeld { .. })
    ));

    assert!(current.is_held().await.unwrap(), "B's lock is untouched");
    current.release().await.unwrap();
}

async fn namespaces_prefix_keys_and_separate_locks(fx: Fixture) {
    let client = fx.client().await;
    let billing = client.with_namespace("billing");
    let shipping = client.with_namespace("shipping");
    let a = billing.lock("order:3").acquire().await.unwrap();
    assert_eq!(a.key(), "billing:order:3");
    assert!(fx.is_locked("billing:order:3").await);
    let b = shipping.lock("order:3").acquire().await.unwrap();
    assert_eq!(b.key(), "shipping:order:3");
    assert!(
        billing
            .lock("order:3")
            .acquire()
            .await
            .unwrap_err()
            .is_busy()
    );
    a.release().await.unwrap();
    b.release().await.unwrap();
}

async fn without_watchdog_the_ttl_expires_and_release_is_not_held(fx: Fixture) {
    let client = fx.client().await;
    let guard = client
        .lock("order:4")
        .ttl(Duration::from_millis(150))
        .watchdog(false)
        .acquire()
        .await
        .unwrap();
    // The guard reports the loss on its own, at its local deadline...
    tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("lost() resolves when the lease runs out");
    // ...and the server let the key go.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(!fx.is_locked("order:4").await);
    assert!(matches!(
        guard.release().await,
        Err(LockError::NotHeld { .. })
    ));
}

async fn watchdog_keeps_a_300ms_lock_for_2s_with_our_token(fx: Fixture) {
    let client = fx.client().await;
    let guard = client
        .lock("order:5")
        .ttl(Duration::from_millis(300))
        .acquire()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!guard.is_lost());
    assert!(
        guard.is_held().await.unwrap(),
        "still held with our token after 2 s"
    );
    if fx.is_redis() {
        let value: String = redis::cmd("GET")
            .arg("order:5")
            .query(&mut fx.raw())
            .unwrap();
        assert_eq!(
            value,
            guard.token(),
            "the value is the token as a plain string"
        );
    }
    guard.release().await.unwrap();
}

async fn extend_moves_the_ttl_and_is_owner_checked(fx: Fixture) {
    let client = fx.client().await;
    let guard = client
        .lock("order:6")
        .ttl(Duration::from_millis(200))
        .watchdog(false)
        .acquire()
        .await
        .unwrap();
    let before = guard.deadline();
    guard.extend(Duration::from_secs(5)).await.unwrap();
    assert!(guard.deadline() > before + Duration::from_secs(4));
    // Past the original TTL it is still ours, and not reported lost.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(guard.is_held().await.unwrap());
    assert!(!guard.is_lost());
    assert!(matches!(
        guard.extend(Duration::ZERO).await,
        Err(LockError::InvalidTtl { .. })
    ));
    guard.release().await.unwrap();
}

async fn run_releases_on_ok(fx: Fixture) {
    let client = fx.client().await;
    let out = client.lock("exit:ok").run(async { 7 }).await.unwrap();
    assert_eq!(out, 7);
    fx.assert_freed_promptly("exit:ok", "run, Ok").await;
}

async fn run_releases_on_err(fx: Fixture) {
    let client = fx.client().await;
    let out: Result<Result<(), &str>, _> = client.lock("exit:err").run(async { Err("no") }).await;
    assert_eq!(out.unwrap(), Err("no"));
    fx.assert_freed_promptly("exit:err", "run, Err").await;
}

async fn run_releases_on_panic(fx: Fixture) {
    let client = fx.client().await;
    let task = tokio::spawn(async move {
        client
            .lock("exit:panic")
            .run(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                panic!("boom");
            })
            .await
    });
    let joined = task.await;
    assert!(joined.unwrap_err().is_panic());
    fx.assert_freed_promptly("exit:panic", "run, panic").await;
}

async fn run_releases_when_cancelled_by_timeout(fx: Fixture) {
    let client = fx.client().await;
    let work = client
        .lock("exit:timeout")
        .run(tokio::time::sleep(Duration::from_secs(60)));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), work)
            .await
            .is_err()
    );
    fx.assert_freed_promptly("exit:timeout", "run, cancelled by timeout")
        .await;
}

async fn run_releases_when_its_future_is_dropped(fx: Fixture) {
    let client = fx.client().await;
    let mut work = Box::pin(
        client
            .lock("exit:drop")
            .run(tokio::time::sleep(Duration::from_secs(60))),
    );
    // Poll until the lock is taken, then drop the future mid-work.
    tokio::select! {
        _ = &mut work => unreachable!(),
        () = tokio::time::sleep(Duration::from_millis(50)) => {}
    }
    assert!(fx.is_locked("exit:drop").await);
    drop(work);
    fx.assert_freed_promptly("exit:drop", "run, future dropped")
        .await;
}

async fn guard_release_frees_at_once(fx: Fixture) {
    let client = fx.client().await;
    let guard = client.lock("exit:guard").acquire().await.unwrap();
    guard.release().await.unwrap();
    if fx.others.is_empty() {
        assert!(!fx.is_locked("exit:guard").await);
    } else {
        // A quorum's release answers once a majority has released, so the lock is free at
        // once; its last nodes are cleared in the background, which `close` waits for.
        let other = fx.client().await;
        let taken = other.lock("exit:guard").acquire().await.unwrap();
        taken.release().await.unwrap();
        client.close().await.unwrap();
        other.close().await.unwrap();
        assert!(!fx.is_locked("exit:guard").await);
    }
}

async fn guard_dropped_on_early_error_return_frees_promptly(fx: Fixture) {
    async fn work(client: &lock_runtime::LockClient) -> Result<(), String> {
        let _guard = client
            .lock("exit:guard-err")
            .acquire()
            .await
            .map_err(|e| e.to_string())?;
        Err("validation failed".to_owned())?;
        Ok(())
    }
    let client = fx.client().await;
    assert!(work(&client).await.is_err());
    fx.assert_freed_promptly("exit:guard-err", "guard, `?` return")
        .await;
}

async fn guard_dropped_by_panic_frees_promptly(fx: Fixture) {
    let client = fx.client().await;
    let task = tokio::spawn(async move {
        let _guard = client.lock("exit:guard-panic").acquire().await.unwrap();
        panic!("boom");
    });
    assert!(task.await.unwrap_err().is_panic());
    fx.assert_freed_promptly("exit:guard-panic", "guard, panic")
        .await;
}

async fn guard_in_cancelled_task_frees_promptly(fx: Fixture) {
    let client = fx.client().await;
    let (taken_tx, taken_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let _guard = client.lock("exit:guard-abort").acquire().await.unwrap();
        taken_tx.send(()).unwrap();
        std::future::pending::<()>().await;
    });
    taken_rx.await.unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    fx.assert_freed_promptly("exit:guard-abort", "guard, task aborted")
        .await;
}

async fn waiter_gets_the_lock_shortly_after_release(fx: Fixture) {
    let a = fx.client().await;
    let b = fx.client().await;
    let guard = a.lock("wait:1").acquire().await.unwrap();
    let waiter = tokio::spawn(async move {
        let guard = b
            .lock("wait:1")
            .wait(Duration::from_secs(5))
            .acquire()
            .await
            .unwrap();
        let got_it = Instant::now();
        guard.release().await.unwrap();
        got_it
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = Instant::now();
    guard.release().await.unwrap();
    let got_it = waiter.await.unwrap();
    let gap = got_it.duration_since(released);
    // The waiter polls with a backoff capped at 200 ms.
    assert!(
        gap < Duration::from_millis(400),
        "waiter took {gap:?} after the release"
    );
}

async fn zero_wait_is_busy_at_once(fx: Fixture) {
    let a = fx.client().await;
    let guard = a.lock("wait:2").acquire().await.unwrap();
    let started = Instant::now();
    let err = a
        .lock("wait:2")
        .wait(Duration::ZERO)
        .acquire()
        .await
        .unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    guard.release().await.unwrap();
}

async fn wait_never_exceeds_its_bound_by_much(fx: Fixture) {
    let a = fx.client().await;
    let guard = a.lock("wait:3").acquire().await.unwrap();
    for bound in [Duration::from_millis(50), Duration::from_millis(300)] {
        let started = Instant::now();
        let err = a.lock("wait:3").wait(bound).acquire().await.unwrap_err();
        let took = started.elapsed();
        assert!(err.is_busy(), "{err}");
        assert!(took >= bound, "gave up early: {took:?} < {bound:?}");
        assert!(
            took < bound + Duration::from_millis(80),
            "overshot: {took:?} for {bound:?}"
        );
    }
    guard.release().await.unwrap();
}

async fn waiter_never_sleeps_past_the_holders_ttl(fx: Fixture) {
    let a = fx.client().await;
    let b = fx.client().await;
    let _held = a
        .lock("wait:4")
        .ttl(Duration::from_millis(200))
        .watchdog(false)
        .acquire()
        .await
        .unwrap();
    let started = Instant::now();
    // A one-second step would overshoot the holder's expiry by far; the PTTL cap prevents it.
    let guard = b
        .lock("wait:4")
        .wait(Duration::from_secs(5))
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .acquire()
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(450),
        "waited {took:?} for a 200 ms holder"
    );
    guard.release().await.unwrap();
}

async fn fencing_tokens_strictly_increase_across_holders_and_clients(fx: Fixture) {
    let clients = [fx.client().await, fx.client().await, fx.client().await];
    let mut last = 0;
    for round in 0..12 {
        let client = &clients[round % clients.len()];
        let guard = client.lock("fenced").fencing(true).acquire().await.unwrap();
        let token = guard.fencing_token().expect("fencing on");
        assert!(token > last, "round {round}: {token} after {last}");
        last = token;
        if round % 2 == 0 {
            guard.release().await.unwrap();
        } else {
            drop(guard);
            fx.assert_freed_promptly("fenced", "fenced guard drop")
                .await;
        }
    }
    // Busy attempts do not consume tokens, and a namespace gets its own counter.
    let holder = clients[0]
        .lock("fenced")
        .fencing(true)
        .acquire()
        .await
        .unwrap();
    assert!(
        clients[1]
            .lock("fenced")
            .fencing(true)
            .acquire()
            .await
            .is_err()
    );
    holder.release().await.unwrap();
    let next = clients[1]
        .lock("fenced")
        .fencing(true)
        .acquire()
        .await
        .unwrap();
    assert_eq!(next.fencing_token(), Some(last + 2));
    next.release().await.unwrap();
    let ns = clients[0].with_namespace("other");
    let first = ns.lock("fenced").fencing(true).acquire().await.unwrap();
    assert_eq!(first.fencing_token(), Some(1));
    first.release().await.unwrap();
}

async fn no_fencing_token_unless_asked(fx: Fixture) {
    let client = fx.client().await;
    let guard = client.lock("unfenced").acquire().await.unwrap();
    assert_eq!(guard.fencing_token(), None);
    guard.release().await.unwrap();
    if fx.is_redis() {
        let exists: bool = redis::cmd("EXISTS")
            .arg("{unfenced}:fence")
            .query(&mut fx.raw())
            .unwrap();
        assert!(!exists, "no counter key without fencing");
    }
}

async fn empty_key_and_zero_ttl_are_rejected_and_lock_nothing(fx: Fixture) {
    let client = fx.client().await;
    let err = client.lock("").acquire().await.unwrap_err();
    assert!(matches!(err, LockError::InvalidKey { .. }), "{err:?}");
    assert!(err.to_string().contains("empty"), "{err}");

    let err = client
        .lock("k")
        .ttl(Duration::ZERO)
        .acquire()
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::InvalidTtl { .. }), "{err:?}");
    assert!(
        err.to_string().contains("`k`") && err.to_string().contains("100 ms"),
        "{err}"
    );
    assert!(!fx.is_locked("k").await);

    let err = client.lock("").run(async {}).await.unwrap_err();
    assert!(matches!(err, LockError::InvalidKey { .. }));
    if fx.is_redis() {
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut fx.raw()).unwrap();
        assert!(keys.is_empty(), "{keys:?}");
    }
}

async fn reentry_on_the_same_key_runs_inside_the_outer_lock(fx: Fixture) {
    let client = fx.client().await;
    let inner_client = client.clone();
    let out = client
        .lock("reentry")
        .run(async move {
            let outer = lock_runtime::current().unwrap();
            let (same_token, other_key) = inner_client
                .lock("reentry")
                .run(async {
                    let inner = lock_runtime::current().unwrap();
                    (
                        inner.token() == outer.token(),
                        inner_client
                            .lock("reentry:other")
                            .run(async { lock_runtime::current().unwrap().key().to_owned() })
                            .await
                            .unwrap(),
                    )
                })
                .await
                .unwrap();
            // A guard (not `run`) is a separate acquisition and sees the lock as taken.
            let busy = inner_client
                .lock("reentry")
                .acquire()
                .await
                .unwrap_err()
                .is_busy();
            (same_token, other_key, busy)
        })
        .await
        .unwrap();
    assert_eq!(out, (true, "reentry:other".to_owned(), true));
    fx.assert_freed_promptly("reentry", "after re-entry").await;
    fx.assert_freed_promptly("reentry:other", "nested other key")
        .await;
}

async fn current_reports_the_innermost_lock(fx: Fixture) {
    let client = fx.client().await;
    assert!(lock_runtime::current().is_none());
    let (outer_key, inner_key, inner_fence, after_inner) = client
        .with_namespace("ns")
        .lock("outer")
        .run(async {
            let outer_key = lock_runtime::current().unwrap().key().to_owned();
            let (inner_key, inner_fence) = client
                .lock("inner")
                .fencing(true)
                .run(async {
                    let c = lock_runtime::current().unwrap();
                    (c.key().to_owned(), c.fencing_token())
                })
                .await
                .unwrap();
            let after = lock_runtime::current().unwrap().key().to_owned();
            (outer_key, inner_key, inner_fence, after)
        })
        .await
        .unwrap();
    assert_eq!(outer_key, "ns:outer");
    assert_eq!(inner_key, "inner");
    assert_eq!(inner_fence, Some(1));
    assert_eq!(after_inner, "ns:outer");
}

async fn lost_token_is_cancelled_on_loss_and_on_release(fx: Fixture) {
    let client = fx.client().await;
    let guard = client
        .lock("signal")
        .ttl(Duration::from_millis(200))
        .watchdog(false)
        .acquire()
        .await
        .unwrap();
    let token = guard.lost_token();
    let watcher = tokio::spawn({
        let token = token.clone();
        async move { token.cancelled().await }
    });
    tokio::time::timeout(Duration::from_secs(2), watcher)
        .await
        .expect("cancelled when the lease ran out")
        .unwrap();
    assert!(guard.is_lost());
    drop(guard);

    // The server frees the key two drift allowances after the local loss.
    let guard = client
        .lock("signal")
        .wait(Duration::from_secs(1))
        .acquire()
        .await
        .unwrap();
    let token = guard.lost_token();
    assert!(!token.is_cancelled());
    guard.release().await.unwrap();
    assert!(
        token.is_cancelled(),
        "a released lock's token is cancelled too"
    );
}

async fn remaining_ttl_reports_the_servers_ttl_while_held(fx: Fixture) {
    let client = fx.client().await;
    let guard = client
        .lock("ttl")
        .ttl(Duration::from_secs(10))
        .acquire()
        .await
        .unwrap();
    let left = guard.remaining_ttl().await.unwrap();
    assert!(
        left > Duration::from_secs(9) && left <= Duration::from_secs(10),
        "{left:?}"
    );
    guard.extend(Duration::from_secs(60)).await.unwrap();
    let left = guard.remaining_ttl().await.unwrap();
    assert!(left > Duration::from_secs(59), "{left:?}");
    let other = fx.client().await;
    let taken = other.lock("ttl").acquire().await;
    assert!(matches!(taken, Err(LockError::Busy { .. })), "{taken:?}");
    drop(guard);
    fx.assert_freed_promptly("ttl", "drop").await;
}

async fn run_or_skip_skips_a_busy_lock_without_running_the_work(fx: Fixture) {
    let client = fx.client().await;
    let holder = fx.client().await.lock("job").acquire().await.unwrap();
    let started = Instant::now();
    let ran = std::sync::atomic::AtomicBool::new(false);
    let out = client
        .lock("job")
        .run_or_skip(async { ran.store(true, std::sync::atomic::Ordering::SeqCst) })
        .await
        .unwrap();
    assert_eq!(out, None);
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    assert!(started.elapsed() < Duration::from_millis(500));
    holder.release().await.unwrap();
    let out = client.lock("job").run_or_skip(async { 7 }).await.unwrap();
    assert_eq!(out, Some(7));
}

async fn min_hold_keeps_the_key_after_a_quick_body(fx: Fixture) {
    let client = fx.client().await;
    let min_hold = Duration::from_millis(800);
    let started = Instant::now();
    client
        .lock("nightly")
        .min_hold(min_hold)
        .run(async {})
        .await
        .unwrap();
    // Still held, by nobody: another replica sees it busy until acquisition + min_hold.
    let other = fx.client().await;
    match other.lock("nightly").acquire().await {
        Err(LockError::Busy { holder_ttl, .. }) => {
            let left = holder_ttl.expect("kept with a TTL");
            let expected = min_hold.saturating_sub(started.elapsed());
            assert!(
                left <= min_hold && left + Duration::from_millis(150) >= expected,
                "left {left:?}, expected about {expected:?}"
            );
        }
        other => panic!("expected Busy after a quick body with min_hold, got {other:?}"),
    }
    let freed = common::eventually(Duration::from_secs(2), || async {
        !fx.is_locked("nightly").await
    })
    .await
    .expect("the key frees itself");
    assert!(
        started.elapsed() >= min_hold - Duration::from_millis(20),
        "{freed:?}"
    );
}

async fn max_hold_cancels_the_work_and_frees_the_key(fx: Fixture) {
    let client = fx.client().await;
    let max_hold = Duration::from_millis(600);
    let started = Instant::now();
    let out = client
        .lock("runaway")
        .ttl(Duration::from_millis(300))
        .max_hold(max_hold)
        .run(std::future::pending::<()>())
        .await;
    let took = started.elapsed();
    assert!(
        matches!(
            out,
            Err(LockError::Lost {
                reason: lock_runtime::LostReason::MaxHold,
                ..
            })
        ),
        "{out:?}"
    );
    assert!(took < max_hold, "cancelled after {took:?}, past max_hold");
    assert!(took > max_hold / 2, "cancelled too early: {took:?}");
    fx.assert_freed_promptly("runaway", "max_hold").await;
}

async fn inconsistent_hold_bounds_are_refused_and_lock_nothing(fx: Fixture) {
    let client = fx.client().await;
    let err = client
        .lock("bounds")
        .min_hold(Duration::from_secs(10))
        .max_hold(Duration::from_secs(5))
        .acquire()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LockError::InvalidOption {
                option: "min_hold",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_hold"), "{err}");
    let err = client
        .lock("bounds")
        .max_hold(Duration::from_millis(5))
        .run(async {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LockError::InvalidOption {
                option: "max_hold",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!fx.is_locked("bounds").await);
}

async fn close_releases_every_held_lock_and_refuses_new_ones(fx: Fixture) {
    let client = fx.client().await;
    let ns = client.with_namespace("svc");
    // A guard alive, a guard on a namespace, and work running under a lock.
    let guard = client.lock("a").acquire().await.unwrap();
    let other = ns.lock("b").acquire().await.unwrap();
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let running = tokio::spawn({
        let client = client.clone();
        async move {
            let work = async {
                let _ = started_tx.send(());
                std::future::pending::<()>().await
            };
            client.lock("c").run(work).await
        }
    });
    // The work itself says it started: the key can be on the server before `run` has
    // handed out its guard.
    tokio::time::timeout(Duration::from_secs(5), started)
        .await
        .expect("the work started")
        .unwrap();
    client.close().await.unwrap();
    assert!(!guard.is_held().await.unwrap() && !other.is_held().await.unwrap());
    if fx.is_redis() {
        // (The in-memory store is shared by every handle of the fixture, so closed too.)
        for key in ["a", "svc:b", "c"] {
            assert!(!fx.is_locked(key).await, "`{key}` still locked after close");
        }
    }
    let out = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the work was cancelled")
        .unwrap();
    assert!(
        matches!(
            out,
            Err(LockError::Lost {
                reason: lock_runtime::LostReason::Closed,
                ..
            })
        ),
        "{out:?}"
    );
    assert!(guard.is_lost() && other.is_lost());
    let err = ns.lock("d").acquire().await.unwrap_err();
    assert!(matches!(err, LockError::Closed { .. }), "{err:?}");
    assert!(err.to_string().contains("closed"), "{err}");
}
