//! The lease a holder keeps: its local deadline and whether it has been lost. The
//! [`Renewer`](crate::renewer::Renewer) keeps it alive.
//!
//! The deadline follows PROTOCOL.md: measured on the monotonic clock from the moment the
//! acquire (or the last successful renewal) was *sent*, minus a drift allowance. The
//! watchdog declares the lock lost one more drift before that deadline, so that dropping the
//! protected work has finished by the time the lease can end on the server.
//!
//! Loss is declared by whoever sees it first: the renewal scheduler (a renewal found the key
//! taken, or its clock reached [`Times::lost_at`]), or [`Lease::wait_lost`]'s own timer on
//! the task that waits. The second keeps "the body is dropped before the deadline" true even
//! when no scheduler runs at all (its runtime gone or no longer driven).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::LostReason;
use crate::backend::{Backend, BackendResult, Renewal, Renewed};
use crate::error::BackendError;

/// Clock drift and scheduling allowance for a lease of `ttl` (Redlock's factor: 1 % + 2 ms).
pub(crate) fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// How long to wait before retrying a renewal that failed on the network.
pub(crate) fn retry_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(5), Duration::from_millis(200))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    /// The TTL the last acquire or renewal set.
    pub(crate) ttl: Duration,
    /// When the last successful acquire or renewal was sent.
    pub(crate) renewed_at: Instant,
    /// `renewed_at + ttl - drift`: past this, the server may have let the key go.
    pub(crate) deadline: Instant,
}

impl Times {
    pub(crate) fn new(sent_at: Instant, ttl: Duration) -> Self {
        Times {
            ttl,
            renewed_at: sent_at,
            deadline: sent_at + ttl.saturating_sub(drift(ttl)),
        }
    }

    /// When the next renewal falls due: a third of the TTL after the last one.
    pub(crate) fn renew_due(&self) -> Instant {
        self.renewed_at + self.ttl / 3
    }

    /// When the watchdog gives up: one drift before the deadline, so the work is stopped
    /// before the deadline itself.
    pub(crate) fn lost_at(&self) -> Instant {
        self.deadline
            .checked_sub(drift(self.ttl))
            .unwrap_or(self.renewed_at)
    }
}

/// Bounds on how long a lease is held, from the request's `min_hold` and `max_hold`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Holds {
    /// Until when a release keeps the key (owner-checked) instead of deleting it.
    pub(crate) min_until: Option<Instant>,
    /// Past this, the lease is never renewed: it ends, as lost with `MaxHold`.
    pub(crate) max_until: Option<Instant>,
}

/// One held lock: what it is, how long it lasts, and whether it has been lost.
pub(crate) struct Lease {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) key: String,
    pub(crate) token: String,
    pub(crate) holds: Holds,
    /// The times and the loss, behind one plain lock: a lease is held by the thousand, and
    /// a `watch` channel each for them cost about 800 bytes per lease.
    state: Mutex<State>,
    /// Woken whenever `state` changes, for [`wait_lost`](Self::wait_lost).
    changed: Notify,
    /// The TTL the next renewal sends, in ms: the request's TTL, or the last `extend`'s.
    target_ttl_ms: AtomicU64,
    /// Cancelled when the lease is lost or given back: the owned signal of
    /// [`LockGuard::lost_token`](crate::LockGuard::lost_token). Made on first request; most
    /// leases never need one.
    cancel: OnceLock<CancellationToken>,
    /// Whether it counts in the metrics as held (nothing without the `metrics` feature).
    pub(crate) held: crate::metrics::Held,
}

#[derive(Debug)]
struct State {
    times: Times,
    lost: Option<LostReason>,
    /// Given back (or lost): the loss signal is cancelled.
    ended: bool,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token: it is a capability that can release the lock.
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("times", &self.times())
            .field("holds", &self.holds)
            .field("lost", &self.lost_reason())
            .finish_non_exhaustive()
    }
}

impl Lease {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        key: String,
        token: String,
        ttl: Duration,
        sent_at: Instant,
        holds: Holds,
    ) -> Self {
        Lease {
            backend,
            key,
            token,
            holds,
            state: Mutex::new(State {
                times: Times::new(sent_at, ttl),
                lost: None,
                ended: false,
            }),
            changed: Notify::new(),
            target_ttl_ms: AtomicU64::new(ttl.as_millis() as u64),
            cancel: OnceLock::new(),
            held: Default::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn times(&self) -> Times {
        self.state().times
    }

    /// The TTL the next renewal should send.
    pub(crate) fn target_ttl(&self) -> Duration {
        Duration::from_millis(self.target_ttl_ms.load(Ordering::Acquire))
    }

    pub(crate) fn set_target_ttl(&self, ttl: Duration) {
        self.target_ttl_ms
            .store(ttl.as_millis() as u64, Ordering::Release);
    }

    /// What a renewal sent at `now` should ask for: the target TTL, cut short so the key
    /// never outlives `max_hold`. `None` when such a renewal would not move the lease
    /// forward (the hold bound is reached): then the lease just runs out.
    pub(crate) fn renewal_ttl(&self, now: Instant) -> Option<Duration> {
        let target = self.target_ttl();
        let Some(until) = self.holds.max_until else {
            return Some(target);
        };
        let capped = target.min(until.saturating_duration_since(now));
        let new_deadline = now + capped.saturating_sub(drift(capped));
        (capped >= crate::MIN_TTL && new_deadline > self.times().deadline).then_some(capped)
    }

    /// Why the lease ran out, when it does: its hold bound, or a renewal that never came.
    pub(crate) fn expiry_reason(&self) -> LostReason {
        match self.holds.max_until {
            Some(until) if self.times().deadline + drift(self.ttl()) >= until => {
                LostReason::MaxHold
            }
            _ => LostReason::Expired,
        }
    }

    /// Records a successful renewal sent at `sent_at` for `ttl`. A lost lease stays lost.
    pub(crate) fn renewed(&self, sent_at: Instant, ttl: Duration) {
        let mut state = self.state();
        // Only move forward: an older renewal answering late must not undo a newer one.
        if state.lost.is_some() || sent_at < state.times.renewed_at {
            return;
        }
        state.times = Times::new(sent_at, ttl);
        drop(state);
        self.changed.notify_waiters();
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.times().ttl
    }

    /// The local lease deadline.
    pub(crate) fn deadline(&self) -> Instant {
        self.times().deadline
    }

    pub(crate) fn declare_lost(&self, reason: LostReason) {
        let newly = {
            let mut state = self.state();
            let newly = state.lost.is_none();
            if newly {
                state.lost = Some(reason);
                self.end(&mut state);
            }
            newly
        };
        if newly {
            crate::metrics::lost(&self.held, reason);
            self.changed.notify_waiters();
            match reason {
                LostReason::Closed => tracing::debug!(key = %self.key, %reason, "lock given up"),
                _ => tracing::warn!(key = %self.key, %reason, "lock lost"),
            }
        }
    }

    pub(crate) fn lost_reason(&self) -> Option<LostReason> {
        self.state().lost
    }

    /// The owned loss signal; cancelled on loss and when the lease is given back.
    pub(crate) fn cancel_token(&self) -> CancellationToken {
        // Made and checked under the state lock, which `end` holds too: a lease that ends
        // meanwhile either finds the token or is seen ended here.
        let state = self.state();
        let token = self.cancel.get_or_init(CancellationToken::new);
        if state.ended {
            token.cancel();
        }
        token.child_token()
    }

    /// Marks the lease as given back: its loss signal fires, but it is not "lost".
    pub(crate) fn ended(&self) {
        crate::metrics::released(&self.held);
        self.end(&mut self.state());
    }

    /// Fires the loss signal; called with the state locked.
    fn end(&self, state: &mut State) {
        state.ended = true;
        if let Some(token) = self.cancel.get() {
            token.cancel();
        }
    }

    /// Resolves with the reason once the lock has been declared lost, or once this task's
    /// own clock reaches [`Times::lost_at`], whichever comes first; the timer is re-armed
    /// whenever a renewal or an extend moves the deadline.
    pub(crate) async fn wait_lost(&self) -> LostReason {
        loop {
            // Registered before the state is read, so no change in between is missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (lost, lost_at) = {
                let state = self.state();
                (state.lost, state.times.lost_at())
            };
            if let Some(reason) = lost {
                return reason;
            }
            if Instant::now() >= lost_at {
                self.declare_lost(self.expiry_reason());
                continue;
            }
            tokio::select! {
                () = changed => {}
                () = sleep_until(lost_at) => {}
            }
        }
    }

    /// Gives the key back: deletes it if it still holds our token, or, before `min_hold`
    /// has passed, keeps it (owner-checked) only until then. `Ok(false)`: not ours any more.
    pub(crate) async fn give_back(&self) -> BackendResult<bool> {
        self.ended();
        let now = Instant::now();
        match self.holds.min_until {
            Some(until) if until > now => {
                let keep = until - now;
                let batch = [Renewal {
                    key: &self.key,
                    token: &self.token,
                    ttl: keep,
                }];
                match self.backend.renew(&batch).await?.first() {
                    Some(Renewed::Yes) => Ok(true),
                    Some(Renewed::No) => Ok(false),
                    Some(&Renewed::Unknown { answered, needed }) => {
                        Err(BackendError::NoQuorum { answered, needed })
                    }
                    None => Err(BackendError::NoQuorum {
                        answered: 0,
                        needed: 1,
                    }),
                }
            }
            _ => self.backend.release(&self.key, &self.token).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_at_comes_before_the_deadline_which_comes_before_the_ttl() {
        let now = Instant::now();
        for ms in [100u64, 300, 10_000, 30_000] {
            let ttl = Duration::from_millis(ms);
            let t = Times::new(now, ttl);
            assert!(t.lost_at() < t.deadline, "ttl {ms}");
            assert!(t.deadline < now + ttl, "ttl {ms}");
            assert!(t.lost_at() > t.renew_due(), "ttl {ms}");
        }
    }

    #[test]
    fn at_the_minimum_ttl_a_failed_renewal_is_retried_several_times() {
        let now = Instant::now();
        let t = Times::new(now, crate::MIN_TTL);
        let window = t.lost_at() - t.renew_due();
        let tries = window.as_nanos() / retry_interval(crate::MIN_TTL).as_nanos();
        assert!(tries >= 5, "only {tries} retries fit at MIN_TTL");
        // And the body is cancelled two drifts before the earliest server expiry.
        assert!(now + crate::MIN_TTL - t.lost_at() >= Duration::from_millis(6));
    }

    #[tokio::test(start_paused = true)]
    async fn the_local_timer_declares_the_loss_with_no_scheduler_running() {
        // A lease no scheduler looks after (its runtime gone, say): whoever waits on it
        // still sees it lost at `lost_at`, and is re-armed by a renewal meanwhile.
        let backend: Arc<dyn Backend> = Arc::new(crate::backend::memory::MemoryBackend::default());
        let ttl = Duration::from_secs(3);
        let start = Instant::now();
        let lease = Arc::new(Lease::new(
            backend,
            "k".into(),
            "t".into(),
            ttl,
            start,
            Holds::default(),
        ));
        let first_lost_at = lease.times().lost_at();
        let renewer = {
            let lease = Arc::clone(&lease);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                lease.renewed(Instant::now(), ttl);
            })
        };
        let reason = lease.wait_lost().await;
        renewer.await.unwrap();
        assert_eq!(reason, LostReason::Expired);
        let at = Instant::now();
        assert!(at > first_lost_at, "the renewal re-armed the timer");
        assert_eq!(at, lease.times().lost_at());
        assert!(lease.cancel_token().is_cancelled());
    }

    #[test]
    fn drift_is_one_percent_plus_two_ms() {
        assert_eq!(drift(Duration::from_secs(10)), Duration::from_millis(102));
    }
}
