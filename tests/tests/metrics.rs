//! The `metrics` feature against a real `redis-server`: what each lock event emits, read
//! back through metrics-util's `DebuggingRecorder`.
//!
//! Each test has a recorder of its own, installed with `metrics::with_local_recorder` around
//! a current-thread runtime: the recorder is thread-local, and on a current-thread runtime
//! every task (the watchdog's, the background releases) runs on the test's thread. Tests
//! that run in parallel therefore never see each other's metrics, and no global recorder is
//! needed.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use lock_runtime::metrics::{
    ACQUIRE_ATTEMPTS, ACQUIRE_RETRIES, ACQUIRED, BUSY, HANDOFF_SECONDS, HELD, HOLD_SECONDS, LOST,
    NAMESPACE_LABEL, NO_NAMESPACE, REASON_LABEL, RENEWAL_FAILURES, WAIT_SECONDS,
};
use lock_runtime::{Backoff, LockClient, LockError, LostReason};
use lock_tests::RedisServer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// A bound for things that take milliseconds, generous for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// The metrics seen so far. The recorder's snapshots reset what they read (counters and
/// gauges to 0, histograms emptied), and every lock event only adds to a metric, so summing
/// the snapshots gives the totals.
struct Seen {
    snapshotter: Snapshotter,
    values: HashMap<(String, Vec<(String, String)>), Value>,
}

enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

impl Seen {
    fn new(recorder: &DebuggingRecorder) -> Seen {
        Seen {
            snapshotter: recorder.snapshotter(),
            values: HashMap::new(),
        }
    }

    fn refresh(&mut self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let entry = (key.name().to_owned(), labels);
            match (self.values.get_mut(&entry), value) {
                (Some(Value::Counter(n)), DebugValue::Counter(m)) => *n += m,
                (Some(Value::Gauge(g)), DebugValue::Gauge(h)) => *g += h.into_inner(),
                (Some(Value::Histogram(xs)), DebugValue::Histogram(ys)) => {
                    xs.extend(ys.into_iter().map(|y| y.into_inner()));
                }
                (_, DebugValue::Counter(m)) => {
                    self.values.insert(entry, Value::Counter(m));
                }
                (_, DebugValue::Gauge(h)) => {
                    self.values.insert(entry, Value::Gauge(h.into_inner()));
                }
                (_, DebugValue::Histogram(ys)) => {
                    let xs = ys.into_iter().map(|y| y.into_inner()).collect();
                    self.values.insert(entry, Value::Histogram(xs));
                }
            }
        }
    }

    fn get(&mut self, name: &str, labels: &[(&str, &str)]) -> Option<&Value> {
        self.refresh();
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.values.get(&(name.to_owned(), labels))
    }

    fn counter(&mut self, name: &str, namespace: &str) -> u64 {
        self.counter_with(name, &[(NAMESPACE_LABEL, namespace)])
    }

    fn counter_with(&mut self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(name, labels) {
            Some(Value::Counter(n)) => *n,
            None => 0,
            Some(_) => panic!("{name} is not a counter"),
        }
    }

    fn lost(&mut self, namespace: &str, reason: &str) -> u64 {
        self.counter_with(
            LOST,
            &[(NAMESPACE_LABEL, namespace), (REASON_LABEL, reason)],
        )
    }

    fn gauge(&mut self, name: &str, namespace: &str) -> f64 {
        match self.get(name, &[(NAMESPACE_LABEL, namespace)]) {
            Some(Value::Gauge(g)) => *g,
            None => 0.0,
            Some(_) => panic!("{name} is not a gauge"),
        }
    }

    fn samples(&mut self, name: &str, namespace: &str) -> Vec<f64> {
        match self.get(name, &[(NAMESPACE_LABEL, namespace)]) {
            Some(Value::Histogram(xs)) => xs.clone(),
            None => Vec::new(),
            Some(_) => panic!("{name} is not a histogram"),
        }
    }
}

/// Runs `test` on a current-thread runtime with a fresh recorder of its own.
fn with_recorder<F, Fut>(test: F)
where
    F: FnOnce(Seen) -> Fut,
    Fut: Future<Output = ()>,
{
    let recorder = DebuggingRecorder::new();
    let seen = Seen::new(&recorder);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(test(seen)));
}

/// A private redis-server, or `None` (and a message) when none is installed.
fn server() -> Option<RedisServer> {
    if !lock_tests::redis_server_available() {
        eprintln!("skipping: redis-server is not installed (scripts/test installs it)");
        return None;
    }
    Some(RedisServer::start().unwrap())
}

async fn connect(server: &RedisServer) -> LockClient {
    LockClient::connect(&server.url()).await.unwrap()
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took over {PATIENCE:?}"))
}

/// Polls `done` (after a short pause each time) until it holds, for up to [`PATIENCE`].
async fn eventually(what: &str, seen: &mut Seen, mut done: impl FnMut(&mut Seen) -> bool) {
    within(what, async {
        while !done(seen) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[test]
fn acquire_busy_release_and_drop_are_counted_and_the_held_gauge_returns_to_zero() {
    let Some(server) = server() else { return };
    with_recorder(|mut seen| async move {
        let base = connect(&server).await;
        let a = base.with_namespace("billing");
        let b = connect(&server).await.with_namespace("billing");
        let ns = "billing";

        let guard = a.lock("order:1").acquire().await.unwrap();
        assert_eq!(seen.counter(ACQUIRE_ATTEMPTS, ns), 1);
        assert_eq!(seen.counter(ACQUIRED, ns), 1);
        assert_eq!(seen.gauge(HELD, ns), 1.0);
        assert_eq!(seen.samples(WAIT_SECONDS, ns).len(), 1);

        // Busy: one error returned, one attempt, no retry (no wait).
        let busy = b.lock("order:1").acquire().await;
        assert!(matches!(busy, Err(LockError::Busy { .. })), "{busy:?}");
        assert_eq!(seen.counter(BUSY, ns), 1);
        assert_eq!(seen.counter(ACQUIRE_ATTEMPTS, ns), 2);
        assert_eq!(seen.counter(ACQUIRE_RETRIES, ns), 0);
        assert_eq!(seen.counter(ACQUIRED, ns), 1);

        // A busy call that waits retries, and is still one attempt and one busy.
        let waited = b
            .lock("order:1")
            .wait(Duration::from_millis(300))
            .acquire()
            .await;
        assert!(matches!(waited, Err(LockError::Busy { .. })), "{waited:?}");
        assert_eq!(seen.counter(BUSY, ns), 2);
        assert_eq!(seen.counter(ACQUIRE_ATTEMPTS, ns), 3);
        assert!(seen.counter(ACQUIRE_RETRIES, ns) >= 1);

        guard.release().await.unwrap();
        assert_eq!(seen.gauge(HELD, ns), 0.0);
        let holds = seen.samples(HOLD_SECONDS, ns);
        assert_eq!(holds.len(), 1);
        assert!(
            holds[0] >= 0.0 && holds[0] < PATIENCE.as_secs_f64(),
            "{holds:?}"
        );

        // A guard dropped without release comes off the gauge at once.
        let dropped = a.lock("order:2").acquire().await.unwrap();
        assert_eq!(seen.gauge(HELD, ns), 1.0);
        drop(dropped);
        assert_eq!(seen.gauge(HELD, ns), 0.0);
        assert_eq!(seen.samples(HOLD_SECONDS, ns).len(), 2);

        // The run() form, and a client without a namespace.
        assert_eq!(a.lock("order:3").run(async { 7 }).await.unwrap(), 7);
        let plain = base.lock("plain").acquire().await.unwrap();
        assert_eq!(seen.gauge(HELD, NO_NAMESPACE), 1.0);
        assert_eq!(seen.counter(ACQUIRED, NO_NAMESPACE), 1);
        plain.release().await.unwrap();

        // close() gives up what is still held: counted lost with reason `closed`, and the
        // gauge is back to 0 while the guards still live.
        let kept = a.lock("order:4").acquire().await.unwrap();
        let kept_too = base.lock("plain").acquire().await.unwrap();
        assert_eq!(seen.gauge(HELD, ns), 1.0);
        base.close().await.unwrap();
        assert_eq!(seen.gauge(HELD, ns), 0.0);
        assert_eq!(seen.gauge(HELD, NO_NAMESPACE), 0.0);
        assert_eq!(seen.lost(ns, "closed"), 1);
        assert_eq!(seen.lost(NO_NAMESPACE, "closed"), 1);
        drop((kept, kept_too));
        assert_eq!(
            seen.gauge(HELD, ns),
            0.0,
            "a dropped guard is not counted twice"
        );
        b.close().await.unwrap();

        assert_eq!(seen.counter(ACQUIRED, ns), 4);
        assert_eq!(seen.samples(WAIT_SECONDS, ns).len(), 4);
        assert_eq!(seen.samples(HOLD_SECONDS, ns).len(), 4);
        assert_eq!(seen.lost(ns, "taken"), 0);
        assert_eq!(seen.counter(RENEWAL_FAILURES, ns), 0);
        for wait in seen.samples(WAIT_SECONDS, ns) {
            assert!((0.0..PATIENCE.as_secs_f64()).contains(&wait), "{wait}");
        }
    });
}

#[test]
fn a_lock_whose_key_is_deleted_is_counted_lost_taken() {
    let Some(server) = server() else { return };
    with_recorder(|mut seen| async move {
        let client = connect(&server).await.with_namespace("jobs");
        let ns = "jobs";
        let mut raw = server.connection().unwrap();
        let work = client
            .lock("nightly")
            .ttl(Duration::from_millis(600))
            .run(async {
                // Delete the key from under the holder; the watchdog's next renewal finds it
                // gone and cancels this work.
                let deleted: u64 = redis::cmd("DEL")
                    .arg("jobs:nightly")
                    .query(&mut raw)
                    .unwrap();
                assert_eq!(deleted, 1);
                std::future::pending::<()>().await
            });
        match within("losing the lock", work).await {
            Err(LockError::Lost { reason, .. }) => assert_eq!(reason, LostReason::Taken),
            other => panic!("expected Lost, got {other:?}"),
        }
        assert_eq!(seen.lost(ns, "taken"), 1);
        assert_eq!(seen.gauge(HELD, ns), 0.0);
        assert_eq!(seen.samples(HOLD_SECONDS, ns).len(), 1);
        assert_eq!(seen.counter(ACQUIRED, ns), 1);

        // Overwritten by someone else's token: the same.
        let guard = client
            .lock("nightly")
            .ttl(Duration::from_millis(600))
            .acquire()
            .await
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg("jobs:nightly")
            .arg("someone-else")
            .query(&mut raw)
            .unwrap();
        assert_eq!(within("the loss", guard.lost()).await, LostReason::Taken);
        assert_eq!(seen.lost(ns, "taken"), 2);
        assert_eq!(seen.gauge(HELD, ns), 0.0);
        drop(guard);
        assert_eq!(seen.gauge(HELD, ns), 0.0);
        assert_eq!(seen.samples(HOLD_SECONDS, ns).len(), 2);
        client.close().await.unwrap();
        assert_eq!(seen.lost(ns, "closed"), 0, "nothing was held at close");
    });
}

#[test]
fn a_lock_ended_by_its_max_hold_is_counted_lost_max_hold() {
    let Some(server) = server() else { return };
    with_recorder(|mut seen| async move {
        let client = connect(&server).await;
        let ns = NO_NAMESPACE;
        let work = client
            .lock("export")
            .ttl(Duration::from_secs(1))
            .max_hold(Duration::from_millis(300))
            .run(std::future::pending::<()>());
        match within("the max_hold", work).await {
            Err(LockError::Lost { reason, .. }) => assert_eq!(reason, LostReason::MaxHold),
            other => panic!("expected Lost, got {other:?}"),
        }
        assert_eq!(seen.lost(ns, "max_hold"), 1);
        assert_eq!(seen.gauge(HELD, ns), 0.0);
        client.close().await.unwrap();
    });
}

#[test]
fn renewals_that_time_out_are_counted_and_the_loss_is_expired() {
    let Some(mut server) = server() else { return };
    with_recorder(|mut seen| async move {
        let client = LockClient::builder(server.url())
            .connect_timeout(Duration::from_millis(300))
            .response_timeout(Duration::from_millis(200))
            .connect()
            .await
            .unwrap();
        let ns = NO_NAMESPACE;
        let guard = client
            .lock("report")
            .ttl(Duration::from_secs(3))
            .acquire()
            .await
            .unwrap();
        // A stopped server answers nothing: every renewal times out until the lease runs out.
        server.pause().unwrap();
        let reason = within("the loss", guard.lost()).await;
        server.resume().unwrap();
        assert_eq!(reason, LostReason::Expired);
        eventually("a renewal failure", &mut seen, |s| {
            s.counter(RENEWAL_FAILURES, ns) >= 1
        })
        .await;
        assert_eq!(seen.lost(ns, "expired"), 1);
        assert_eq!(seen.gauge(HELD, ns), 0.0);
        drop(guard);
        client.close().await.unwrap();
        assert_eq!(seen.gauge(HELD, ns), 0.0);
        assert_eq!(seen.lost(ns, "closed"), 0);
    });
}

#[test]
fn a_waiter_woken_by_a_release_records_its_handoff_latency() {
    let Some(server) = server() else { return };
    with_recorder(|mut seen| async move {
        let holder = connect(&server).await.with_namespace("queue");
        let waiter = connect(&server).await.with_namespace("queue");
        let ns = "queue";
        let guard = holder.lock("head").acquire().await.unwrap();
        // Polling is slow on purpose (10 s steps, and the holder's TTL is 30 s), so the
        // waiter gets the lock through the release notification.
        let waiting = tokio::spawn(async move {
            let got = waiter
                .lock("head")
                .wait(PATIENCE)
                .backoff(Backoff::constant(Duration::from_secs(10)))
                .acquire()
                .await;
            (waiter, got)
        });
        // The waiter's second round trip comes right after it subscribed.
        eventually("the waiter to subscribe", &mut seen, |s| {
            s.counter(ACQUIRE_RETRIES, ns) >= 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(seen.samples(HANDOFF_SECONDS, ns).is_empty());
        guard.release().await.unwrap();
        let (waiter, got) = within("the hand-off", waiting).await.unwrap();
        let got = got.unwrap();
        let handoffs = seen.samples(HANDOFF_SECONDS, ns);
        assert_eq!(handoffs.len(), 1, "{handoffs:?}");
        let waits = seen.samples(WAIT_SECONDS, ns);
        assert_eq!(waits.len(), 2, "the holder's and the waiter's");
        let longest_wait = waits.iter().copied().fold(0.0, f64::max);
        assert!(
            (0.0..=longest_wait).contains(&handoffs[0]),
            "a hand-off is part of the wait: {handoffs:?} {waits:?}"
        );
        assert_eq!(seen.counter(ACQUIRED, ns), 2);
        assert_eq!(seen.gauge(HELD, ns), 1.0);
        got.release().await.unwrap();
        assert_eq!(seen.gauge(HELD, ns), 0.0);
        holder.close().await.unwrap();
        waiter.close().await.unwrap();
    });
}

#[test]
fn in_memory_locks_are_counted_too() {
    with_recorder(|mut seen| async move {
        let client = LockClient::in_memory().with_namespace("mem");
        let guard = client.lock("k").acquire().await.unwrap();
        assert!(client.lock("k").acquire().await.unwrap_err().is_busy());
        assert_eq!(seen.counter(ACQUIRED, "mem"), 1);
        assert_eq!(seen.counter(BUSY, "mem"), 1);
        assert_eq!(seen.gauge(HELD, "mem"), 1.0);
        drop(guard);
        assert_eq!(seen.gauge(HELD, "mem"), 0.0);
        // Bad input is refused before anything is counted.
        assert!(client.lock("").acquire().await.is_err());
        assert_eq!(seen.counter(ACQUIRE_ATTEMPTS, "mem"), 2);
        client.close().await.unwrap();
    });
}
