//! `LockRequest`: what to lock and how, then `acquire` or `run`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::wakeup::{ReleaseWatch, Wake};
use crate::backend::{AcquireArgs, Acquired, HolderTtl, bounded};
use crate::guard::LockGuard;
use crate::holder::new_token;
use crate::keys::{MAX_TTL, MIN_TTL, check_ttl, fence_key, full_key};
use crate::lease::{Holds, Lease};
use crate::store::Store;
use crate::{Backoff, LockClient, LockError, context};

/// The default lock TTL: 30 seconds.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A request for one lock, built by [`LockClient::lock`]. Nothing is sent until
/// [`acquire`](LockRequest::acquire) or [`run`](LockRequest::run).
///
/// ```
/// # async fn demo() -> Result<(), lock_runtime::LockError> {
/// use std::time::Duration;
/// let client = lock_runtime::LockClient::in_memory();
/// let guard = client
///     .lock("order:42")
///     .ttl(Duration::from_secs(10))   // default 30 s
///     .wait(Duration::from_secs(2))   // default: none, a held lock is `Busy` at once
///     .fencing(true)                  // default off
///     .acquire()
///     .await?;
/// assert_eq!(guard.fencing_token(), Some(1));
/// guard.release().await?;
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
#[must_use = "a lock request does nothing until `.acquire().await` or `.run(..).await`"]
pub struct LockRequest {
    client: LockClient,
    key: String,
    ttl: Duration,
    wait: Duration,
    fencing: bool,
    renew: bool,
    backoff: Backoff,
    min_hold: Option<Duration>,
    max_hold: Option<Duration>,
}

impl LockRequest {
    pub(crate) fn new(client: LockClient, key: String) -> Self {
        LockRequest {
            client,
            key,
            ttl: DEFAULT_TTL,
            wait: Duration::ZERO,
            fencing: false,
            renew: true,
            backoff: Backoff::default(),
            min_hold: None,
            max_hold: None,
        }
    }

    /// How long the lock lives on the server without renewal (default 30 s; from
    /// [`MIN_TTL`](crate::MIN_TTL), 100 ms, to [`MAX_TTL`](crate::MAX_TTL), 365 days). The watchdog renews it every `ttl/3`, so the TTL bounds how long a crashed
    /// holder blocks others, not how long the work may take.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long to keep trying while someone else holds the lock, before giving up with
    /// [`LockError::Busy`]. The default is no wait at all.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Whether to hand out a fencing token (default off). Turning it on keeps one counter
    /// key per lock name forever, beside the lock key and in the same cluster slot.
    pub fn fencing(mut self, on: bool) -> Self {
        self.fencing = on;
        self
    }

    /// Whether the watchdog renews the lock (default on). With it off the lock lasts one
    /// TTL; the guard still reports it lost when that runs out.
    pub fn watchdog(mut self, on: bool) -> Self {
        self.renew = on;
        self
    }

    /// The pause between attempts while waiting (default: exponential, 5 ms to 200 ms,
    /// jittered). Releases announced by lock-runtime wake waiters at once, one waiter per
    /// client and release, so polling is only the fallback for holders that announce
    /// nothing (other libraries, expiry): while subscribed, a waiter polls at the longest
    /// step, never past the holder's remaining TTL.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// ShedLock's `lockAtLeastFor`: if the lock is given back sooner than `min_hold` after
    /// it was acquired, the key is not deleted but kept (owner-checked) until then, and then
    /// frees itself. For jobs that run on several replicas with skewed clocks, so that a job
    /// that finishes quickly does not run again on another replica.
    pub fn min_hold(mut self, min_hold: Duration) -> Self {
        self.min_hold = Some(min_hold);
        self
    }

    /// ShedLock's `lockAtMostFor`, Redisson's lease time: the watchdog never renews past
    /// acquisition + `max_hold`. Then the lock ends: work run through [`run`](Self::run) is
    /// cancelled with [`LockError::Lost`] ([`LostReason::MaxHold`](crate::LostReason::MaxHold))
    /// and the lock is released; the key itself never outlives the bound on the server.
    pub fn max_hold(mut self, max_hold: Duration) -> Self {
        self.max_hold = Some(max_hold);
        self
    }

    /// Checks the hold bounds against each other and the TTL limits.
    fn check_holds(&self, key: &str) -> Result<(), LockError> {
        let invalid = |option, reason: String| {
            Err(LockError::InvalidOption {
                key: key.to_owned(),
                option,
                reason,
            })
        };
        if let Some(max) = self.max_hold
            && !(MIN_TTL..=MAX_TTL).contains(&max)
        {
            return invalid(
                "max_hold",
                format!("{max:?} is outside {MIN_TTL:?} to 365 days, the limits of a lock's TTL"),
            );
        }
        if let Some(min) = self.min_hold
            && min > MAX_TTL
        {
            return invalid("min_hold", format!("{min:?} is over 365 days"));
        }
        if let (Some(min), Some(max)) = (self.min_hold, self.max_hold)
            && min > max
        {
            return invalid(
                "min_hold",
                format!(
                    "min_hold {min:?} is longer than max_hold {max:?}; make min_hold <= max_hold"
                ),
            );
        }
        Ok(())
    }

    /// The full key, namespace included, checked.
    fn full_key(&self) -> Result<String, LockError> {
        full_key(self.client.namespace(), &self.key)
    }

    /// Takes the lock, waiting up to the request's `wait` while someone else holds it.
    ///
    /// Errors: [`Busy`](LockError::Busy) when the wait runs out, [`InvalidKey`],
    /// [`InvalidTtl`] and [`InvalidOption`] for bad input, [`WrongType`](LockError::WrongType)
    /// when the key holds something that is not a lock, [`Closed`](LockError::Closed) after
    /// [`LockClient::close`], and [`Timeout`](LockError::Timeout) or
    /// [`Backend`](LockError::Backend) when the server cannot be reached. A waiter retries
    /// transient server errors (timeouts, dropped connections) within its wait, and returns
    /// the last one if the wait runs out.
    ///
    /// Cancel-safe: if this future is dropped while an attempt is in flight, that attempt is
    /// undone by token in the background, so a cancelled acquire never leaves the key locked.
    ///
    /// [`InvalidKey`]: LockError::InvalidKey
    /// [`InvalidTtl`]: LockError::InvalidTtl
    /// [`InvalidOption`]: LockError::InvalidOption
    pub async fn acquire(self) -> Result<LockGuard, LockError> {
        let key = self.full_key()?;
        check_ttl(&key, self.ttl)?;
        self.check_holds(&key)?;
        let fence_key = match self.fencing {
            true => Some(fence_key(&key)?),
            false => None,
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(LockError::NoRuntime { key });
        }
        let store = Arc::clone(&self.client.store);
        if store.is_closed() {
            return Err(LockError::Closed { key });
        }
        let backend = Arc::clone(&store.backend);
        // The key never outlives max_hold on the server, even if this process dies.
        let ttl = self.max_hold.map_or(self.ttl, |max| self.ttl.min(max));
        let op_timeout = backend.op_timeout();
        let started = Instant::now();
        let mut stats = crate::metrics::Acquire::start(self.client.namespace(), started);
        let give_up_at = started.checked_add(self.wait);
        let remaining = || {
            give_up_at.map_or(Duration::MAX, |at| {
                at.saturating_duration_since(Instant::now())
            })
        };
        let mut attempt: u32 = 0;
        // Set up on the first busy answer; `None` after that means polling only.
        let mut releases: Option<ReleaseWatch> = None;
        let mut watching = false;
        // Other waiters of this client already wait for this key: queue behind them (FIFO,
        // no barging) and make no attempt until woken. The watch is taken before any
        // attempt, so no release is missed.
        if !self.wait.is_zero()
            && let Some(mut watch) = backend.watch_if_queued(&key)
        {
            let delay = self.backoff.delay(u32::MAX).min(remaining());
            let stale = tokio::select! {
                () = tokio::time::sleep(delay) => false,
                wake = watch.released() => stats.woke(wake) == Wake::Stale,
            };
            if !stale {
                releases = Some(watch);
                watching = true;
            }
            attempt = 1;
        }
        loop {
            if store.is_closed() {
                return Err(LockError::Closed { key });
            }
            // Counted until this attempt is settled, undo included: close() waits for it.
            let in_flight = store.attempt();
            let token = new_token(self.client.holder());
            let sent_at = Instant::now();
            let lease = || {
                let holds = Holds {
                    min_until: self.min_hold.map(|d| sent_at + d),
                    max_until: self.max_hold.map(|d| sent_at + d),
                };
                Lease::new(
                    Arc::clone(&backend),
                    key.clone(),
                    token.clone(),
                    ttl,
                    sent_at,
                    holds,
                )
            };
            // Armed before sending: if this future is dropped mid-attempt, or the attempt
            // fails in a way that may hide a landed SET, the token is released by itself.
            let mut undo = Undo {
                store: &store,
                key: &key,
                token: &token,
                ttl,
                sent_at,
                armed: true,
            };
            // The first attempt is the uncontended path: a plain `SET`. A caller that will
            // wait needs no PTTL from it (it subscribes and tries again at once); a waiter's
            // retries, often busy, get the PTTL in the same round trip.
            let holder_ttl = match (attempt, self.wait.is_zero()) {
                (0, true) => HolderTtl::After,
                (0, false) => HolderTtl::Skip,
                _ => HolderTtl::Within,
            };
            let args = AcquireArgs {
                key: &key,
                token: &token,
                ttl,
                fence_key: fence_key.as_deref(),
                read_fence: false,
                holder_ttl,
            };
            // This attempt acts on any wake the watch holds; a release from now on wakes
            // it again.
            if let Some(watch) = releases.as_mut() {
                watch.consume();
            }
            stats.round_trip();
            let outcome = bounded(&*backend, &key, "acquire", backend.acquire(args)).await;
            // The attempt has its answer: a wake given up from now on is passed on only if
            // it came in since.
            if let Some(watch) = releases.as_mut() {
                watch.settled();
            }
            let holder_ttl = match outcome {
                Ok(Acquired::Yes { fence }) => {
                    undo.disarm();
                    drop(undo);
                    // A wake that came in during this attempt was for the release it took:
                    // nothing to pass on to the next waiter.
                    if let Some(mut watch) = releases.take() {
                        watch.won();
                    }
                    let guard = LockGuard::start(&store, stats.hold(lease()), fence, self.renew);
                    if store.is_closed() {
                        // close() ran while this attempt was in flight: give it back now,
                        // while close() still waits for this attempt.
                        if let Err(e) = guard.release().await {
                            tracing::debug!(key, error = %e, "release after close failed");
                        }
                        drop(in_flight);
                        return Err(LockError::Closed { key });
                    }
                    tracing::debug!(
                        key,
                        attempts = attempt + 1,
                        fencing_token = fence,
                        "lock acquired"
                    );
                    return Ok(guard);
                }
                Ok(Acquired::Busy { holder_ttl }) => {
                    undo.disarm();
                    drop(undo);
                    drop(in_flight);
                    holder_ttl
                }
                Err(e) => {
                    drop(undo);
                    drop(in_flight);
                    if !e.is_transient() || remaining().is_zero() {
                        return Err(e);
                    }
                    attempt = attempt.saturating_add(1);
                    tracing::debug!(key, error = %e, "acquire failed; retrying within the wait");
                    let delay = self.backoff.delay(attempt - 1).min(remaining());
                    tokio::time::sleep(delay).await;
                    if remaining().is_zero() {
                        return Err(e);
                    }
                    continue;
                }
            };
            let remaining = remaining();
            if remaining.is_zero() {
                tracing::debug!(key, attempts = attempt + 1, "lock busy");
                stats.busy();
                return Err(LockError::Busy { key, holder_ttl });
            }
            attempt = attempt.saturating_add(1);
            // Set when a subscription failed for a reason that may pass: try again soon.
            let mut resubscribe_soon = false;
            if !watching {
                watching = true;
                // Subscribe, then try again at once: a release between the attempt above
                // and the subscription is caught by that retry, one after it by the watch.
                // The backend bounds the subscription itself; this outer bound only keeps
                // the wait's own limit.
                match tokio::time::timeout(
                    remaining.min(2 * op_timeout),
                    backend.watch_releases(&key),
                )
                .await
                {
                    Ok(Ok(watch)) => {
                        releases = Some(watch);
                        continue;
                    }
                    Ok(Err(e)) => {
                        let e = e.into_lock_error(&key, "subscribe");
                        tracing::debug!(key, error = %e, "no release notifications; polling");
                        resubscribe_soon = e.is_transient();
                    }
                    Err(_) => {
                        tracing::debug!(key, "release subscription timed out; polling");
                        resubscribe_soon = true;
                    }
                }
                // A subscriber connection that hung is torn down and replaced; subscribe
                // again after one short pause rather than poll for the whole wait.
                watching = !resubscribe_soon;
            }
            // Polling stays as the fallback: a holder using another library, or a lock that
            // expires, announces nothing. Never sleep past the holder's expiry. While a
            // watch is up, releases come through it, so poll at the backoff's longest step
            // only: ramping up from the first step cost ~5 busy attempts per acquisition with
            // 64 waiters (P6 in BENCHMARKS.md).
            let step = match releases.is_some() {
                true => u32::MAX,
                false => attempt - 1,
            };
            let mut delay = self.backoff.delay(step).min(remaining);
            if let Some(holder_ttl) = holder_ttl {
                delay = delay.min(holder_ttl);
            }
            if resubscribe_soon {
                delay = delay.min(op_timeout);
            }
            match releases.as_mut() {
                Some(watch) => {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        wake = watch.released() => if stats.woke(wake) == Wake::Stale {
                            // The subscriber connection died: subscribe again (on a new one)
                            // after the next attempt.
                            releases = None;
                            watching = false;
                        },
                    }
                }
                None => tokio::time::sleep(delay).await,
            }
        }
    }

    /// Takes the lock, runs `work` under the watchdog, and releases the lock on every exit:
    /// return, panic, or this future being dropped.
    ///
    /// If the lock is lost while `work` runs, `work` is dropped (cancelled at its current
    /// `.await`) and the result is [`LockError::Lost`], always before the local lease
    /// deadline: no one else can have the lock while `work` still runs, as far as this
    /// process's clock can tell. Make `work` cancel-safe, or use fencing tokens where it
    /// writes.
    ///
    /// **Re-entry:** inside `run` (or a `#[distributed_lock]` fn), a nested `run` on the
    /// same key and the same client store runs `work` under the outer lock instead of
    /// deadlocking. Re-entered sections exclude each other: two sub-futures of one body
    /// (`join!`, `select!`) that both re-enter run one at a time; the second waits up to its
    /// own `wait`, then gets [`LockError::Busy`], just as another task would. The outer
    /// lock's TTL, watchdog and hold bounds apply; a nested request for fencing under a lock
    /// taken without it fails with [`LockError::Reentry`].
    ///
    /// Re-entry is seen only within the task running the outer `run`, and only for locks
    /// taken through `run` or the attribute: a lock held through a [`LockGuard`], or through
    /// a client on another store, is not re-entered, and locking it again is `Busy` (or a
    /// deadlock, with a long enough wait).
    ///
    /// ```
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let client = lock_runtime::LockClient::in_memory();
    /// let total = client.lock("ledger").run(async { 2 + 2 }).await?;
    /// assert_eq!(total, 4);
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn run<F: Future>(self, work: F) -> Result<F::Output, LockError> {
        // Boxed once here: the layers below (re-entry, protection, the task-local scope)
        // then each hold a pointer, not a copy of `work`. Unboxed, every nesting level of
        // locked calls multiplied the future's size, and deep nesting overflowed a thread's
        // stack in unoptimised builds.
        let work = Box::pin(work);
        let key = self.full_key()?;
        if let Some(outer) = context::held(context::store_id(&self.client.store.backend), &key) {
            return self.reenter(key, outer, work).await;
        }
        let guard = Box::pin(self.acquire()).await?;
        match guard.protect(work).await {
            Ok(out) => {
                if let Err(e) = guard.release().await {
                    // The work is done; reporting an error now would invite a second run.
                    tracing::warn!(key, error = %e, "work finished but the release failed");
                }
                Ok(out)
            }
            Err(reason) => {
                drop(guard);
                Err(LockError::Lost { key, reason })
            }
        }
    }

    /// Like [`run`](Self::run), but when the lock is busy (after the wait, if any) the work
    /// is skipped and the result is `Ok(None)`: ShedLock's behaviour for a job that another
    /// replica is already running. Other errors are returned as they are.
    ///
    /// ```
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let client = lock_runtime::LockClient::in_memory();
    /// let held = client.lock("nightly").acquire().await?;
    /// assert_eq!(client.lock("nightly").run_or_skip(async { "ran" }).await?, None);
    /// held.release().await?;
    /// assert_eq!(client.lock("nightly").run_or_skip(async { "ran" }).await?, Some("ran"));
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn run_or_skip<F: Future>(self, work: F) -> Result<Option<F::Output>, LockError> {
        match self.run(work).await {
            Ok(out) => Ok(Some(out)),
            Err(LockError::Busy { key, .. }) => {
                tracing::debug!(key, "lock busy; work skipped");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `work` under a lock this task already holds, one re-entered section at a time.
    async fn reenter<F: Future>(
        self,
        key: String,
        outer: context::CurrentLock,
        work: F,
    ) -> Result<F::Output, LockError> {
        if self.fencing && outer.fencing_token.is_none() {
            return Err(LockError::Reentry {
                key,
                reason: "this nested request asks for fencing, but the lock was taken without \
                         it; take the outer lock with `.fencing(true)` (or `fencing = true`)"
                    .into(),
            });
        }
        let busy = || LockError::Busy {
            key: key.clone(),
            holder_ttl: None,
        };
        let gate = Arc::clone(&outer.gate);
        let _section = if self.wait.is_zero() {
            gate.try_lock_owned().map_err(|_| busy())?
        } else {
            tokio::time::timeout(self.wait, gate.lock_owned())
                .await
                .map_err(|_| busy())?
        };
        tracing::trace!(key, "re-entering a lock this task holds");
        Ok(context::scope(outer.reentered(), work).await)
    }
}

/// Undoes an acquire attempt by token unless disarmed: dropped while the attempt is in
/// flight (the caller's future was cancelled) or after it failed in a way that may hide a
/// `SET` that landed.
struct Undo<'a> {
    store: &'a Arc<Store>,
    key: &'a str,
    token: &'a str,
    ttl: Duration,
    sent_at: Instant,
    armed: bool,
}

impl Undo<'_> {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            // A plain release by token: no hold bounds apply to an attempt never handed out.
            let lease = Lease::new(
                Arc::clone(&self.store.backend),
                self.key.to_owned(),
                self.token.to_owned(),
                self.ttl,
                self.sent_at,
                Holds::default(),
            );
            self.store.release_in_background(None, Arc::new(lease));
        }
    }
}
