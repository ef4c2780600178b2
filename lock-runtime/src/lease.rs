//! The lease a holder keeps: its local deadline and whether it has been lost. The
//! [`Renewer`](crate::renewer::Renewer) keeps it alive.
//!
//! The deadline follows PROTOCOL.md: measured on the monotonic clock from the moment the
//! acquire (or the last successful renewal) was *sent*, minus a drift allowance. The
//! watchdog declares the lock lost one more drift before that deadline, so that dropping the
//! protected work has finished by the time the lease can end on the server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::LostReason;
use crate::backend::Backend;

/// Clock drift and scheduling allowance for a lease of `ttl` (Redlock's factor: 1 % + 2 ms).
pub(crate) fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// How long to wait before retrying a renewal that failed on the network.
pub(crate) fn retry_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(5), Duration::from_millis(200))
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Times {
    pub(crate) ttl: Duration,
    /// When the last successful acquire or renewal was sent.
    pub(crate) renewed_at: Instant,
    /// `renewed_at + ttl - drift`: past this, the server may have let the key go.
    pub(crate) deadline: Instant,
}

impl Times {
    fn new(sent_at: Instant, ttl: Duration) -> Self {
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

/// One held lock: what it is, how long it lasts, and whether it has been lost.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) key: String,
    pub(crate) token: String,
    times: Mutex<Times>,
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
            lost: watch::Sender::new(None),
        }
    }

    pub(crate) fn times(&self) -> Times {
        *self.times.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a successful renewal sent at `sent_at` for `ttl`. A lost lease stays lost.
    pub(crate) fn renewed(&self, sent_at: Instant, ttl: Duration) {
        if self.lost_reason().is_some() {
            return;
        }
        let mut times = self.times.lock().unwrap_or_else(|p| p.into_inner());
        // Only move forward: an older renewal answering late must not undo a newer one.
        if sent_at >= times.renewed_at {
            *times = Times::new(sent_at, ttl);
        }
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
