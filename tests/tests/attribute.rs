//! `#[distributed_lock]` against a real `redis-server`: every exit path, contention,
//! parallelism, loss, re-entry, `current()`, clients on methods, fencing, generics,
//! `#[async_trait]`, and the options `on_busy`, `min_hold`, `max_hold`, `watchdog` and
//! `ttl = <expression>`.

mod common;

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{Fixture, eventually};
use lock_runtime::{LockClient, LockError, LostReason, distributed_lock};

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Invalid(&'static str),
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError::Lock(e)
    }
}

#[derive(Clone, Copy)]
enum Exit {
    Ok,
    Err,
    Question,
    EarlyReturn,
    Panic,
    Hang,
}

fn validate(ok: bool) -> Result<(), AppError> {
    if ok {
        Ok(())
    } else {
        Err(AppError::Invalid("bad input"))
    }
}

#[distributed_lock(key = "order:<id>", ttl = "2s", client = locks)]
async fn settle(locks: &LockClient, id: u64, exit: Exit) -> Result<u64, AppError> {
    tokio::task::yield_now().await;
    match exit {
        Exit::Ok => {}
        Exit::Err => return Err(AppError::Invalid("refused")),
        Exit::Question => validate(false)?,
        Exit::EarlyReturn => {
            if id > 0 {
                return Ok(0);
            }
        }
        Exit::Panic => panic!("settle panicked"),
        Exit::Hang => std::future::pending::<()>().await,
    }
    Ok(id)
}

async fn exit_path_frees_the_key(exit: Exit, what: &str) {
    let fx = Fixture::redis();
    let locks = fx.client().await;
    let task = tokio::spawn(async move { settle(&locks, 7, exit).await });
    let result = match exit {
        Exit::Hang => {
            // Cancellation: the caller stops polling mid-body.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(fx.is_locked("order:7").await, "held while the body runs");
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());
            None
        }
        Exit::Panic => {
            assert!(task.await.unwrap_err().is_panic());
            None
        }
        _ => Some(task.await.unwrap()),
    };
    match (exit, result) {
        (Exit::Ok, Some(Ok(7))) | (Exit::EarlyReturn, Some(Ok(0))) => {}
        (Exit::Err, Some(Err(AppError::Invalid("refused")))) => {}
        (Exit::Question, Some(Err(AppError::Invalid("bad input")))) => {}
        (Exit::Panic | Exit::Hang, None) => {}
        (_, other) => panic!("{what}: unexpected result {other:?}"),
    }
    fx.assert_freed_promptly("order:7", what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ok_return_releases() {
    exit_path_frees_the_key(Exit::Ok, "Ok").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn err_return_releases() {
    exit_path_frees_the_key(Exit::Err, "Err").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_mark_releases() {
    exit_path_frees_the_key(Exit::Question, "?").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_return_releases() {
    exit_path_frees_the_key(Exit::EarlyReturn, "early return").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_releases() {
    exit_path_frees_the_key(Exit::Panic, "panic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_releases() {
    exit_path_frees_the_key(Exit::Hang, "cancellation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_cancellation_releases() {
    let fx = Fixture::redis();
    let locks = fx.client().await;
    let out = tokio::time::timeout(Duration::from_millis(100), settle(&locks, 8, Exit::Hang)).await;
    assert!(out.is_err());
    fx.assert_freed_promptly("order:8", "tokio::time::timeout")
        .await;
}

/// Counts how many bodies run at once while each holds its lock for a while.
#[derive(Clone, Default)]
struct Overlap {
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Overlap {
    async fn hold(&self, hold: Duration) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(hold).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

#[distributed_lock(key = "job:{id}", client = locks, ttl = "5s")]
async fn hold(locks: &LockClient, id: u64, overlap: Overlap) -> Result<(), LockError> {
    overlap.hold(Duration::from_millis(300)).await;
    Ok(())
}

#[distributed_lock(key = "job:{id}", client = locks, ttl = "5s", wait = "3s")]
async fn hold_waiting(locks: &LockClient, id: u64, overlap: Overlap) -> Result<(), LockError> {
    overlap.hold(Duration::from_millis(200)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calls_with_the_same_id_one_is_busy() {
    let fx = Fixture::redis();
    let (a, b) = (fx.client().await, fx.client().await);
    let overlap = Overlap::default();
    let (ra, rb) = tokio::join!(hold(&a, 1, overlap.clone()), hold(&b, 1, overlap.clone()));
    let busy = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r, Err(LockError::Busy { key, .. }) if key == "job:1"))
        .count();
    let ok = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
    assert_eq!((ok, busy), (1, 1), "{ra:?} {rb:?}");
    assert_eq!(overlap.peak(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calls_with_the_same_id_and_wait_run_one_after_the_other() {
    let fx = Fixture::redis();
    let (a, b) = (fx.client().await, fx.client().await);
    let overlap = Overlap::default();
    let (ra, rb) = tokio::join!(
        hold_waiting(&a, 2, overlap.clone()),
        hold_waiting(&b, 2, overlap.clone())
    );
    ra.unwrap();
    rb.unwrap();
    assert_eq!(overlap.peak(), 1, "the bodies never overlapped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_ids_run_in_parallel() {
    let fx = Fixture::redis();
    let locks = fx.client().await;
    let overlap = Overlap::default();
    let (ra, rb) = tokio::join!(
        hold(&locks, 10, overlap.clone()),
        hold(&locks, 11, overlap.clone())
    );
    ra.unwrap();
    rb.unwrap();
    assert_eq!(overlap.peak(), 2, "the bodies overlapped");
}

#[distributed_lock(key = "fragile:<id>", ttl = "300ms", client = locks)]
async fn fragile(
    locks: &LockClient,
    id: u64,
    reached_end: Arc<AtomicUsize>,
) -> Result<(), AppError> {
    tokio::time::sleep(Duration::from_secs(5)).await;
    reached_end.fetch_add(1, Ordering::SeqCst);
    let _ = id;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_loss_cancels_the_body_and_returns_lost_through_from() {
    let fx = Fixture::redis();
    let locks = fx.client().await;
    let reached_end = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn({
        let reached_end = Arc::clone(&reached_end);
        async move { fragile(&locks, 3, reached_end).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _: () = redis::cmd("DEL")
        .arg("fragile:3")
        .query(&mut fx.raw())
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("cancelled promptly")
        .unwrap();
    match out {
        Err(AppError::Lock(LockError::Lost { key, reason })) => {
            assert_eq!(key, "fragile:3");
            assert_eq!(reason, LostReason::Taken);
        }
        other => panic!("expected Lost, got {other:?}"),
    }
    assert_eq!(
        reached_end.load(Ordering::SeqCst),
        0,
        "the body was cancelled"
    );
}

#[distributed_lock(key = "account:<id>", client = locks)]
async fn outer(locks: &LockClient, id: u64) -> Result<(String, String, bool), LockError> {
    let outer_token = lock_runtime::current().unwrap().token().to_owned();
    let (inner_token, other_key) = inner(locks, id).await?;
    Ok((outer_token, inner_token, other_key == format!("audit:{id}")))
}

#[distributed_lock(key = "account:<id>", client = locks)]
async fn inner(locks: &LockClient, id: u64) -> Result<(String, String), LockError> {
    let token = lock_runtime::current().unwrap().token().to_owned();
    let other = audit(locks, id).await?;
    Ok((token, other))
}

#[distributed_lock(key = "audit:<id>", client = locks)]
async fn audit(locks: &LockClient, id: u64) -> Result<String, LockError> {
    let _ = id;
    Ok(lock_runtime::current().unwrap().key().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_entry_on_the_same_key_runs_inside_the_outer_lock() {
    let fx = Fixture::redis();
    let locks = fx.client().await;
    let (outer_token, inner_token, other_was_own_lock) =
        tokio::time::timeout(Duration::from_secs(2), outer(&locks, 5))
            .await
            .expect("no deadlock")
            .unwrap();
    assert_eq!(
        outer_token, inner_token,
        "the inner call ran under the outer lock"
    );
    assert!(other_was_own_lock, "a different key takes its own lock");
    fx.assert_freed_promptly("account:5", "outer").await;
    fx.assert_freed_promptly("audit:5", "audit").await;
}

struct Order {
    id: u64,
}

struct Shipping {
    tenant: String,
    locks: LockClient,
}

impl Shipping {
    #[distributed_lock(key = "tenant:{self.tenant}:order:{order.id}", client = &self.locks, fencing)]
    async fn ship(&self, order: &Order) -> Result<(String, Option<u64>), LockError> {
        let held = lock_runtime::current().expect("inside the lock");
        Ok((held.key().to_owned(), held.fencing_token()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_on_a_method_current_and_increasing_fencing_tokens() {
    let fx = Fixture::redis();
    let shipping = Shipping {
        tenant: "acme".into(),
        locks: fx.client().await,
    };
    let mut last = 0;
    for _ in 0..5 {
        let (key, fence) = shipping.ship(&Order { id: 9 }).await.unwrap();
        assert_eq!(key, "tenant:acme:order:9");
        let fence = fence.expect("fencing on");
        assert!(fence > last, "{fence} after {last}");
        last = fence;
    }
    // Another client's acquisitions continue the same sequence.
    let other = Shipping {
        tenant: "acme".into(),
        locks: fx.client().await,
    };
    assert_eq!(
        other.ship(&Order { id: 9 }).await.unwrap().1,
        Some(last + 1)
    );
}

#[distributed_lock(key = "generic:{item}", client = locks)]
async fn generic<T>(
    locks: &LockClient,
    item: T,
    extra: impl Display + Send,
) -> Result<String, LockError>
where
    T: Display + Clone + Send + Sync,
{
    Ok(format!(
        "{}:{}",
        lock_runtime::current().unwrap().key(),
        extra
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_fns_with_where_clauses_and_impl_trait() {
    let fx = Fixture::redis();
    let locks = fx.client().await;
    assert_eq!(generic(&locks, 42u8, "x").await.unwrap(), "generic:42:x");
    assert_eq!(
        generic(&locks, "abc", 1.5).await.unwrap(),
        "generic:abc:1.5"
    );
}

#[async_trait]
trait Job {
    fn locks(&self) -> &LockClient;

    async fn run(&self, id: u64) -> Result<String, LockError>;

    /// A default method: `#[async_trait]` on the trait expands around ours.
    #[distributed_lock(key = "default:<id>", client = self.locks())]
    async fn run_default(&self, id: u64) -> Result<String, LockError> {
        Ok(lock_runtime::current().unwrap().key().to_owned())
    }
}

struct Nightly {
    locks: LockClient,
}

#[async_trait]
impl Job for Nightly {
    fn locks(&self) -> &LockClient {
        &self.locks
    }

    #[distributed_lock(key = "nightly:<id>", client = &self.locks)]
    async fn run(&self, id: u64) -> Result<String, LockError> {
        Ok(lock_runtime::current().unwrap().key().to_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_trait_impl_and_default_methods_lock() {
    let fx = Fixture::redis();
    let nightly: Box<dyn Job + Send + Sync> = Box::new(Nightly {
        locks: fx.client().await,
    });
    assert_eq!(nightly.run(1).await.unwrap(), "nightly:1");
    assert_eq!(nightly.run_default(2).await.unwrap(), "default:2");

    // And the lock is real: a held key makes the method Busy.
    let held = fx.client().await.lock("nightly:4").acquire().await.unwrap();
    assert!(matches!(nightly.run(4).await, Err(LockError::Busy { .. })));
    held.release().await.unwrap();
    let held = fx.client().await.lock("default:4").acquire().await.unwrap();
    assert!(matches!(
        nightly.run_default(4).await,
        Err(LockError::Busy { .. })
    ));
    held.release().await.unwrap();
}

// ---- options ----

/// The key's remaining time to live on the server, in ms (-2: no key, -1: no expiry).
fn pttl(fx: &Fixture, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(&mut fx.raw()).unwrap()
}

#[distributed_lock(key = "skip:{id}", client = locks, on_busy = "skip")]
async fn skippable(
    locks: &LockClient,
    id: u64,
    ran: Arc<AtomicUsize>,
) -> Result<Option<u64>, AppError> {
    ran.fetch_add(1, Ordering::SeqCst);
    Ok(Some(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_busy_skip_returns_at_once_without_running_the_body() {
    let fx = Fixture::redis();
    let locks = fx.client().await;
    let ran = Arc::new(AtomicUsize::new(0));
    let held = fx.client().await.lock("skip:1").acquire().await.unwrap();
    let started = Instant::now();
    let out = skippable(&locks, 1, Arc::clone(&ran)).await;
    assert!(matches!(out, Ok(None)), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "skipped at once, took {:?}",
        started.elapsed()
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the body did not run");
    assert!(
        fx.is_locked("skip:1").await,
        "the holder's lock is untouched"
    );
    held.release().await.unwrap();
    assert!(matches!(
        skippable(&locks, 1, Arc::clone(&ran)).await,
        Ok(Some(1))
    ));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[distributed_lock(key = "skip:{id}", client = locks, on_busy = "skip", wait = "300ms")]
async fn skippable_after_a_wait(locks: &LockClient, id: u64) -> Result<(), AppError> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_busy_skip_with_wait_skips_only_after_the_wait() {
    let fx = Fixture::redis();
    let locks = fx.client().await;
    let held = fx.client().await.lock("skip:2").acquire().await.unwrap();
    let started = Instant::now();
    skippable_after_a_wait(&locks, 2).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(700),
        "skipped after {took:?}"
    );
    held.release().await.unwrap();
}

#[distributed_lock(key = "min-hold:{id}", client = locks, ttl = "10s", min_hold = "2s")]
async fn quick(locks: &LockClient, id: u64) -> Result<(), LockError> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_hold_keeps_the_key_after_a_quick_body_until_acquisition_plus_min_hold() {
    let fx = Fixture::redis();
    let locks = fx.client().await;
    let started = Instant::now();
    quick(&locks, 1).await.unwrap();
    let left = Duration::from_secs(2).saturating_sub(started.elapsed());
    let pttl = pttl(&fx, "min-hold:1");
    let expected = left.as_millis() as i64;
    assert!(
        pttl > 0 && (pttl - expected).abs() < 250,
        "PTTL {pttl} ms, expected about {expected} ms"
    );
    // Still taken for everyone else, and it frees itself on time.
    let other = fx.client().await;
    assert!(matches!(
        other.lock("min-hold:1").acquire().await,
        Err(LockError::Busy { .. })
    ));
    let freed = eventually(Duration::from_secs(3), || async {
        !fx.is_locked("min-hold:1").await
    })
    .await
    .expect("the lock frees itself");
    let at = started.elapsed();
    assert!(
        at >= Duration::from_millis(1900) && at < Duration::from_millis(2400),
        "freed {at:?} after acquisition ({freed:?} after the check)"
    );
}

#[distributed_lock(key = "max-hold:{id}", client = locks, ttl = "300ms", max_hold = "1s")]
async fn runaway(
    locks: &LockClient,
    id: u64,
    reached_end: Arc<AtomicUsize>,
) -> Result<(), AppError> {
    tokio::time::sleep(Duration::from_secs(10)).await;
    reached_end.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_hold_cancels_a_runaway_body_on_time_and_frees_the_key() {
    let fx = Fixture::redis();
    let locks = fx.client().await;
    let reached_end = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(3),
        runaway(&locks, 1, Arc::clone(&reached_end)),
    )
    .await
    .expect("cancelled by max_hold, not by this timeout");
    let took = started.elapsed();
    match out {
        Err(AppError::Lock(LockError::Lost { key, reason })) => {
            assert_eq!(key, "max-hold:1");
            assert_eq!(reason, LostReason::MaxHold);
        }
        other => panic!("expected Lost (max hold), got {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1300),
        "cancelled after {took:?}"
    );
    assert_eq!(
        reached_end.load(Ordering::SeqCst),
        0,
        "the body was cancelled"
    );
    fx.assert_freed_promptly("max-hold:1", "max_hold").await;
}

#[distributed_lock(key = "no-watchdog:{id}", client = locks, ttl = "500ms", watchdog = false)]
async fn unrenewed(
    locks: &LockClient,
    id: u64,
    reached_end: Arc<AtomicUsize>,
) -> Result<(), AppError> {
    tokio::time::sleep(Duration::from_secs(5)).await;
    reached_end.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_false_ends_the_body_with_the_lease() {
    let fx = Fixture::redis();
    let locks = fx.client().await;
    let reached_end = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(3),
        unrenewed(&locks, 1, Arc::clone(&reached_end)),
    )
    .await
    .expect("cancelled at the end of the lease");
    let took = started.elapsed();
    assert!(
        matches!(out, Err(AppError::Lock(LockError::Lost { .. }))),
        "{out:?}"
    );
    // Before the server lets the key go (500 ms), and not long before.
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(500),
        "cancelled after {took:?}"
    );
    assert_eq!(
        reached_end.load(Ordering::SeqCst),
        0,
        "the body was cancelled"
    );
}

const JOB_TTL: Duration = Duration::from_secs(7);

#[distributed_lock(key = "const-ttl:{id}", client = locks, ttl = JOB_TTL)]
async fn with_const_ttl(locks: &LockClient, id: u64, fx: &Fixture) -> Result<i64, LockError> {
    Ok(pttl(fx, &format!("const-ttl:{id}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_from_a_const_sets_that_pttl() {
    let fx = Fixture::redis();
    let locks = fx.client().await;
    let pttl = with_const_ttl(&locks, 1, &fx).await.unwrap();
    assert!(
        pttl > 6_500 && pttl <= 7_000,
        "PTTL {pttl} ms under `ttl = JOB_TTL` (7 s)"
    );
}
