//! What an operator needs at 3 a.m., on every backend: who holds a lock (`inspect` and the
//! holder label), every lock matching a pattern (`list`), and freeing a stuck one
//! (`force_release`), whose holder must then be cancelled with `Lost`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use common::{Fixture, assert_lost_within_a_period, run_until_lost};
use lock_runtime::{LockError, LostReason};
use tokio::time::Instant;

on_both_backends!(with_cluster:
    inspect_reports_holder_ttl_acquisition_and_fencing_counter,
    inspect_of_a_free_key_reports_nothing_held,
    bad_holder_labels_and_keys_are_clear_errors,
    force_release_frees_the_key_wakes_waiters_and_the_holder_loses_it,
    force_release_of_a_free_key_is_none_and_fencing_counters_are_refused,
    list_pages_through_held_locks_and_skips_fencing_counters,
);

async fn inspect_reports_holder_ttl_acquisition_and_fencing_counter(fx: Fixture) {
    let holder = fx.client().await.with_holder("billing@host-3").unwrap();
    let operator = fx.client().await;
    let before = SystemTime::now() - Duration::from_millis(5);
    let guard = holder
        .lock("invoice:42")
        .ttl(Duration::from_secs(20))
        .fencing(true)
        .acquire()
        .await
        .unwrap();
    let after = SystemTime::now() + Duration::from_millis(5);

    let info = operator.inspect("invoice:42").await.unwrap();
    assert!(info.locked, "{info:?}");
    assert_eq!(info.key, "invoice:42");
    assert_eq!(info.full_key, "invoice:42");
    assert_eq!(info.holder.as_deref(), Some("billing@host-3"));
    let at = info.acquired_at.expect("a labelled token carries its time");
    assert!(
        before <= at && at <= after,
        "{at:?} not in {before:?}..{after:?}"
    );
    let ttl = info.ttl.expect("a lock has a TTL");
    assert!(
        ttl > Duration::from_secs(15) && ttl <= Duration::from_secs(20),
        "{ttl:?}"
    );
    assert_eq!(info.fencing_counter, guard.fencing_token());
    // The token is still one string compared whole: the guard still owns it.
    assert!(
        guard.token().starts_with("billing@host-3;"),
        "{}",
        guard.token()
    );
    assert!(guard.is_held().await.unwrap());
    guard.release().await.unwrap();

    // Free again, but the fencing counter stays: it only goes up.
    let info = operator.inspect("invoice:42").await.unwrap();
    assert!(!info.locked);
    assert_eq!((&info.holder, info.ttl), (&None, None));
    assert!(info.fencing_counter.is_some_and(|c| c >= 1), "{info:?}");

    // An unlabelled client's lock is held, with no label or time to show.
    let plain = operator.lock("invoice:43").acquire().await.unwrap();
    let info = holder.inspect("invoice:43").await.unwrap();
    assert!(info.locked);
    assert_eq!(
        (&info.holder, info.acquired_at, info.fencing_counter),
        (&None, None, None)
    );
    plain.release().await.unwrap();

    // Namespaces: the key is reported as the client names it.
    let ns = holder.with_namespace("billing");
    assert_eq!(ns.holder(), Some("billing@host-3"));
    let g = ns.lock("invoice:44").acquire().await.unwrap();
    let info = ns.inspect("invoice:44").await.unwrap();
    assert_eq!(
        (info.key.as_str(), info.full_key.as_str()),
        ("invoice:44", "billing:invoice:44")
    );
    assert_eq!(info.holder.as_deref(), Some("billing@host-3"));
    assert!(operator.inspect("billing:invoice:44").await.unwrap().locked);
    g.release().await.unwrap();
}

async fn inspect_of_a_free_key_reports_nothing_held(fx: Fixture) {
    let client = fx.client().await;
    let info = client.inspect("never:locked").await.unwrap();
    assert!(!info.locked);
    assert_eq!(info.ttl, None);
    assert_eq!(info.holder, None);
    assert_eq!(info.acquired_at, None);
    assert_eq!(info.fencing_counter, None);
}

async fn bad_holder_labels_and_keys_are_clear_errors(fx: Fixture) {
    let client = fx.client().await;
    for bad in ["", "svc;host", "svc host", &"x".repeat(65)] {
        let err = client.with_holder(bad).unwrap_err();
        assert!(
            matches!(
                err,
                LockError::InvalidConfig {
                    option: "holder",
                    ..
                }
            ),
            "{bad:?}: {err:?}"
        );
        assert!(err.to_string().contains("holder label"), "{err}");
    }
    assert!(matches!(
        client.inspect("").await,
        Err(LockError::InvalidKey { .. })
    ));
    assert!(matches!(
        client.force_release("").await,
        Err(LockError::InvalidKey { .. })
    ));
}

async fn force_release_frees_the_key_wakes_waiters_and_the_holder_loses_it(fx: Fixture) {
    // A long TTL: a waiter that got in only at the holder's expiry, or a holder that learnt
    // only then, would take seconds; renewal is every ttl/3.
    let ttl = Duration::from_secs(6);
    let holder = fx.client().await.with_holder("wedged@host-1").unwrap();
    let waiter = fx.client().await;
    let operator = fx.client().await;

    let run = tokio::spawn(run_until_lost(holder.clone(), "stuck", ttl));
    common::eventually(Duration::from_secs(5), || async {
        operator.inspect("stuck").await.unwrap().locked
    })
    .await
    .expect("the holder takes the lock");
    let wait = tokio::spawn(async move {
        let guard = waiter
            .lock("stuck")
            .wait(Duration::from_secs(30))
            .acquire()
            .await
            .unwrap();
        let got_at = Instant::now();
        (guard, got_at)
    });
    // Let the waiter find the lock busy and start waiting on the holder's TTL.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let released_at = Instant::now();
    let released = operator.force_release("stuck").await.unwrap();
    let info = released.expect("a held lock is released");
    assert!(info.locked);
    assert_eq!(info.holder.as_deref(), Some("wedged@host-1"));
    assert!(info.ttl.is_some_and(|t| t <= ttl), "{info:?}");

    // The waiter is woken by the announcement, long before the holder's TTL would end.
    let (guard, got_at) = wait.await.unwrap();
    assert!(
        got_at - released_at < ttl / 2,
        "the waiter got in {:?} after the force release",
        got_at - released_at
    );

    // The holder learns at its next renewal, and its work is cancelled.
    let (out, returned_at) = run.await.unwrap();
    assert_lost_within_a_period(&out, released_at, returned_at, ttl);
    assert!(matches!(
        out,
        Err(LockError::Lost {
            reason: LostReason::Taken,
            ..
        })
    ));
    // The new holder is untouched by all that.
    assert!(guard.is_held().await.unwrap());
    guard.release().await.unwrap();
}

async fn force_release_of_a_free_key_is_none_and_fencing_counters_are_refused(fx: Fixture) {
    let client = fx.client().await;
    assert_eq!(client.force_release("free").await.unwrap(), None);

    let guard = client.lock("fenced").fencing(true).acquire().await.unwrap();
    let token = guard.fencing_token().unwrap();
    guard.release().await.unwrap();
    let ns = client.with_namespace("ns");
    for (client, counter) in [(&client, "{fenced}:fence"), (&ns, "{fenced}:fence")] {
        let err = client.force_release(counter).await.unwrap_err();
        assert!(matches!(err, LockError::InvalidKey { .. }), "{err:?}");
        assert!(err.to_string().contains("fencing"), "{err}");
    }
    // The counter survived: the next token is still higher.
    let next = client.lock("fenced").fencing(true).acquire().await.unwrap();
    assert!(next.fencing_token().unwrap() > token);
    next.release().await.unwrap();

    if fx.is_redis() {
        // Someone else's data at the key is never deleted.
        let mut raw = fx.raw();
        let _: () = redis::cmd("SET")
            .arg("plain")
            .arg("data")
            .query(&mut raw)
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg("hash")
            .arg("f")
            .arg("v")
            .query(&mut raw)
            .unwrap();
        // On a quorum the data is on one node only: the majority has no such key, so
        // there is no lock to release; the one node refuses to delete it all the same.
        let quorum = !fx.others.is_empty();
        for key in ["plain", "hash"] {
            let out = client.force_release(key).await;
            if quorum {
                assert_eq!(out.unwrap(), None, "{key}");
            } else {
                let err = out.unwrap_err();
                assert!(matches!(err, LockError::WrongType { .. }), "{key}: {err:?}");
                assert!(err.to_string().contains("not a lock"), "{err}");
            }
            let exists: bool = redis::cmd("EXISTS").arg(key).query(&mut raw).unwrap();
            assert!(exists, "{key} was deleted");
        }
        if !quorum {
            let err = client.inspect("hash").await.unwrap_err();
            assert!(matches!(err, LockError::WrongType { .. }), "{err:?}");
        }
    }
}

async fn list_pages_through_held_locks_and_skips_fencing_counters(fx: Fixture) {
    // Enough keys for several SCAN steps on every server, and (on a cluster) spread over
    // every master.
    const N: usize = 700;
    let client = fx.client().await.with_holder("lister@host-2").unwrap();
    let ops = client.with_namespace("ops");
    let mut guards = Vec::with_capacity(N);
    for i in 0..N {
        let g = ops
            .lock(format!("job:{i}"))
            .fencing(i % 3 == 0)
            .acquire()
            .await
            .unwrap();
        guards.push(g);
    }
    // Around them: another namespace's lock, a released lock's counter, and on Redis data
    // that is not a lock.
    let other = client
        .with_namespace("other")
        .lock("job:1")
        .acquire()
        .await
        .unwrap();
    let freed = ops.lock("freed").fencing(true).acquire().await.unwrap();
    freed.release().await.unwrap();
    if fx.is_redis() {
        let mut raw = fx.raw();
        let _: () = redis::cmd("HSET")
            .arg("ops:job:hash")
            .arg("f")
            .arg("v")
            .query(&mut raw)
            .unwrap();
    }

    let mut listing = ops.list("job:*");
    let mut seen = BTreeSet::new();
    let mut pages = 0;
    while let Some(page) = listing.next_page().await.unwrap() {
        assert!(!page.is_empty(), "pages are never empty");
        pages += 1;
        for info in page {
            assert!(info.locked, "{info:?}");
            assert_eq!(info.holder.as_deref(), Some("lister@host-2"));
            assert!(info.ttl.is_some(), "{info:?}");
            assert_eq!(info.full_key, format!("ops:{}", info.key));
            assert!(seen.insert(info.key.clone()), "{} listed twice", info.key);
        }
    }
    let want: BTreeSet<String> = (0..N).map(|i| format!("job:{i}")).collect();
    assert_eq!(seen, want);
    if fx.is_redis() {
        assert!(pages >= 2, "{pages} page(s) for {N} locks");
    }

    // `all()` sorts; a narrower pattern narrows; fencing counters are reported on the lock.
    let all = ops.list("job:1?").all().await.unwrap();
    let keys: Vec<&str> = all.iter().map(|i| i.key.as_str()).collect();
    let want: Vec<String> = (10..20).map(|i| format!("job:{i}")).collect();
    assert_eq!(keys, want);
    let fenced = all.iter().find(|i| i.key == "job:12").unwrap();
    assert_eq!(fenced.fencing_counter, guards[12].fencing_token());
    // Without a namespace, the whole keyspace: our locks and the other namespace's, and
    // never a fencing counter.
    let everything = client.list("*").all().await.unwrap();
    assert_eq!(
        everything.len(),
        N + 1,
        "{:?}",
        &everything[..3.min(everything.len())]
    );
    assert!(everything.iter().all(|i| !i.key.ends_with(":fence")));
    assert!(everything.iter().any(|i| i.key == "other:job:1"));

    other.release().await.unwrap();
    client.close().await.unwrap();
    drop(guards);
    let left = fx.client().await.list("ops:*").all().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// The holder label must not change the protocol other languages rely on (see
/// PROTOCOL.md): the value is one string, set with `SET NX PX` and compared whole by
/// compare-and-delete, the way redis-py's `Lock` and Go's bsm/redislock work. This plays
/// such a client with raw commands against our labelled locks, both ways round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_locks_keep_the_plain_string_protocol_of_other_libraries() {
    let fx = Fixture::redis();
    let ours = fx.client().await.with_holder("orders@host-9").unwrap();
    let mut raw = fx.raw();
    // A foreign client's compare-and-delete, as those libraries release.
    let foreign_release = redis::Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
          return 0",
    );

    // Ours holds it: a foreign SET NX is refused, and a foreign release with its own token
    // does nothing.
    let guard = ours.lock("shared:1").acquire().await.unwrap();
    let taken: Option<String> = redis::cmd("SET")
        .arg("shared:1")
        .arg("b2a0f1c6a4a211ee9d2a0242ac120002")
        .arg("NX")
        .arg("PX")
        .arg(10_000)
        .query(&mut raw)
        .unwrap();
    assert_eq!(taken, None);
    let deleted: i64 = foreign_release
        .key("shared:1")
        .arg("b2a0f1c6a4a211ee9d2a0242ac120002")
        .invoke(&mut raw)
        .unwrap();
    assert_eq!(deleted, 0);
    // The stored value is exactly our token, one plain string with a TTL.
    let value: String = redis::cmd("GET").arg("shared:1").query(&mut raw).unwrap();
    assert_eq!(value, guard.token());
    let kind: String = redis::cmd("TYPE").arg("shared:1").query(&mut raw).unwrap();
    assert_eq!(kind, "string");
    let pttl: i64 = redis::cmd("PTTL").arg("shared:1").query(&mut raw).unwrap();
    assert!(pttl > 0);
    // Compared whole: the label alone, or the token with a suffix, releases nothing.
    for near in ["orders@host-9", &format!("{value}x")] {
        let deleted: i64 = foreign_release
            .key("shared:1")
            .arg(near)
            .invoke(&mut raw)
            .unwrap();
        assert_eq!(deleted, 0, "{near}");
    }
    guard.release().await.unwrap();

    // A foreign holder: ours is Busy, inspect shows it held with no label, and our
    // release path never touches it.
    let _: () = redis::cmd("SET")
        .arg("shared:2")
        .arg("qT9dZk1w3b0tK6Fh8yV1Rw==")
        .arg("PX")
        .arg(10_000)
        .query(&mut raw)
        .unwrap();
    assert!(ours.lock("shared:2").acquire().await.unwrap_err().is_busy());
    let info = ours.inspect("shared:2").await.unwrap();
    assert!(
        info.locked && info.holder.is_none() && info.acquired_at.is_none(),
        "{info:?}"
    );
    let still: String = redis::cmd("GET").arg("shared:2").query(&mut raw).unwrap();
    assert_eq!(still, "qT9dZk1w3b0tK6Fh8yV1Rw==");
}

// Single-threaded, so everything runs where the thread-local subscriber is set.
#[tokio::test]
async fn force_release_logs_a_warning_naming_the_key_and_the_former_holder() {
    let (logs, _default) = common::capture_logs(tracing::Level::WARN);

    let fx = Fixture::redis();
    let holder = fx.client().await.with_holder("nightly@host-7").unwrap();
    let guard = holder.lock("report:daily").acquire().await.unwrap();
    let token = guard.token().to_owned();
    fx.client()
        .await
        .force_release("report:daily")
        .await
        .unwrap();

    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("force-released"))
        .unwrap_or_else(|| panic!("no force-release warning in:\n{text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("report:daily"), "{line}");
    assert!(line.contains("nightly@host-7"), "{line}");
    // The label is shown; the token, which could release the lock, never is.
    assert!(
        !text.contains(&token),
        "the token leaked into the logs:\n{text}"
    );
    drop(guard);
}
