//! The lease a holder keeps: its local deadline, and the watchdog that renews it.
//!
//! The deadline follows PROTOCOL.md: measured on the monotonic clock from the moment the
//! acquire (or the last successful renewal) was *sent*, minus a drift allowance. The
//! watchdog declares the lock lost one more drift before that deadline, so that dropping the
//! protected work has finished by the time the lease can end on the server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::LostReason;
use crate::backend::{Backend, Renewal};

/// Clock drift and scheduling allowance for a lease of `ttl` (Redlock's factor: 1 % + 2 ms).
pub(crate) fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// How long to wait before retrying a renewal that failed on the network.
fn retry_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(5), Duration::from_millis(200))
}

#[derive(Debug, Clone, Copy)]
struct Times {
    ttl: Duration,
    /// When the last successful acquire or renewal was sent.
    renewed_at: Instant,
    /// `renewed_at + ttl - drift`: past this, the server may have let the key go.
    deadline: Instant,
}

impl Times {
    fn new(sent_at: Instant, ttl: Duration) -> Self {
        Times {
            ttl,
            renewed_at: sent_at,
            deadline: sent_at + ttl.saturating_sub(drift(ttl)),
        }
    }

    /// When the watchdog gives up: one drift before the deadline, so the work is stopped
    /// before the deadline itself.
    fn lost_at(&self) -> Instant {
        self.deadline
            .checked_sub(drift(self.ttl))
            .unwrap_or(self.renewed_at)
    }
}

/// One held lock: what it is, how long it lasts, and whether it has been lost.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) key: String,
    pub(crate) token: String,
    times: Mutex<Times>,
    /// Woken when `extend` changes the TTL or deadline.
    changed: Notify,
    lost: watch::Sender<Option<LostReason>>,
}

impl Lease {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        key: String,
        token: String,
        ttl: Duration,
        sent_at: Instant,
    ) -> Self {
        Lease {
            backend,
            key,
            token,
            times: Mutex::new(Times::new(sent_at, ttl)),
            changed: Notify::new(),
            lost: watch::Sender::new(None),
        }
    }

    fn times(&self) -> Times {
        *self.times.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a successful renewal sent at `sent_at` for `ttl`.
    pub(crate) fn renewed(&self, sent_at: Instant, ttl: Duration) {
        let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
        // Only move forward: an older renewal answering late must not undo a newer one.
        if sent_at >= times.renewed_at {
            *times = Times::new(sent_at, ttl);
        }
    }

    /// Records a renewal that `extend` made, and wakes the watchdog to follow the new TTL.
    pub(crate) fn extended(&self, sent_at: Instant, ttl: Duration) {
        self.renewed(sent_at, ttl);
        self.changed.notify_one();
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.times().ttl
    }

    /// The local lease deadline.
    pub(crate) fn deadline(&self) -> Instant {
        self.times().deadline
    }

    pub(crate) fn declare_lost(&self, reason: LostReason) {
        let newly = self.lost.send_if_modified(|state| {
            if state.is_none() {
                *state = Some(reason);
                true
            } else {
                false
            }
        });
        if newly {
            tracing::warn!(key = %self.key, %reason, "lock lost");
        }
    }

    pub(crate) fn lost_reason(&self) -> Option<LostReason> {
        *self.lost.borrow()
    }

    /// Resolves with the reason once the lock has been declared lost.
    pub(crate) async fn wait_lost(&self) -> LostReason {
        let mut rx = self.lost.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(state) => *state,
            // The sender lives in `self`, so it cannot be gone while we borrow it.
            Err(_) => None,
        };
        reason.unwrap_or(LostReason::Expired)
    }
}

/// Keeps `lease` alive until it is aborted (by release or drop) or the lock is lost.
///
/// With `renew == false` it only keeps time: it declares the lock lost when the lease runs
/// out, so `lost()` and `run` behave the same with or without renewal.
pub(crate) async fn watchdog(lease: Arc<Lease>, renew: bool) {
    let op_timeout = lease.backend.op_timeout();
    // Set after a failed renewal: try again at this instant instead of at `ttl/3`.
    let mut retry_at: Option<Instant> = None;
    loop {
        let times = lease.times();
        let lost_at = times.lost_at();
        let next_renew = retry_at.unwrap_or(times.renewed_at + times.ttl / 3);
        tokio::select! {
            biased;
            () = sleep_until(lost_at) => {
                lease.declare_lost(LostReason::Expired);
                return;
            }
            () = lease.changed.notified() => {
                retry_at = None;
                continue;
            }
            () = sleep_until(next_renew), if renew => {}
        }

        let sent_at = Instant::now();
        let batch = [Renewal {
            key: &lease.key,
            token: &lease.token,
            ttl: times.ttl,
        }];
        let attempt = timeout_at(
            lost_at.min(sent_at + op_timeout),
            lease.backend.renew(&batch),
        );
        match attempt.await {
            Ok(Ok(renewed)) if renewed.first() == Some(&true) => {
                lease.renewed(sent_at, times.ttl);
                retry_at = None;
                tracing::trace!(key = %lease.key, ttl_ms = times.ttl.as_millis() as u64, "lock renewed");
            }
            Ok(Ok(_)) => {
                lease.declare_lost(LostReason::Taken);
                return;
            }
            Ok(Err(e)) => {
                let e = e.into_lock_error(&lease.key, "renew");
                tracing::warn!(key = %lease.key, error = %e, "lock renewal failed; retrying until the lease deadline");
                retry_at = Some(Instant::now() + retry_interval(times.ttl));
            }
            Err(_) => {
                tracing::warn!(key = %lease.key, "lock renewal timed out; retrying until the lease deadline");
                retry_at = Some(Instant::now() + retry_interval(times.ttl));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_at_comes_before_the_deadline_which_comes_before_the_ttl() {
        let now = Instant::now();
        for ms in [10u64, 300, 10_000, 30_000] {
            let ttl = Duration::from_millis(ms);
            let t = Times::new(now, ttl);
            assert!(t.lost_at() < t.deadline, "ttl {ms}");
            assert!(t.deadline < now + ttl, "ttl {ms}");
            assert!(t.lost_at() > now, "ttl {ms}");
        }
    }

    #[test]
    fn drift_is_one_percent_plus_two_ms() {
        assert_eq!(drift(Duration::from_secs(10)), Duration::from_millis(102));
    }
}
