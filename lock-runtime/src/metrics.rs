//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (cargo feature
//! `metrics`, off by default).
//!
//! The library only *emits*; the application installs a recorder (for Prometheus,
//! `metrics-exporter-prometheus`'s `PrometheusBuilder`), and until it does every emission is
//! a no-op. Call [`describe`] after installing it to give each metric its help text and unit.
//!
//! Every metric carries a `namespace` label ([`NAMESPACE_LABEL`]): the namespace of the client
//! the lock was taken through ([`LockClient::with_namespace`], nested ones joined with `:`),
//! or [`NO_NAMESPACE`], `"(none)"`, for a client without one. Lock keys are never labels:
//! there can be millions of them, and a time series per key would swamp any metrics store.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | [`distributed_lock_acquire_attempts_total`](ACQUIRE_ATTEMPTS) | counter | `namespace` | acquire calls that reached the lock server: one per `acquire`, `run`, `run_or_skip` or `#[distributed_lock]` call, however many round trips it took |
//! | [`distributed_lock_acquire_retries_total`](ACQUIRE_RETRIES) | counter | `namespace` | acquire round trips after the first within one call (busy answers and transient errors while waiting) |
//! | [`distributed_lock_acquired_total`](ACQUIRED) | counter | `namespace` | locks taken |
//! | [`distributed_lock_busy_total`](BUSY) | counter | `namespace` | acquire calls that gave up with [`LockError::Busy`] (one per error returned, not per busy answer) |
//! | [`distributed_lock_lost_total`](LOST) | counter | `namespace`, `reason` | held locks declared lost; `reason` is `taken`, `expired`, `max_hold` or `closed` ([`lost_reason_label`]) |
//! | [`distributed_lock_renewal_failures_total`](RENEWAL_FAILURES) | counter | `namespace` | renewals (and extends) of a held lock that got no answer: timeouts, connection errors, no quorum; each is retried until the lease deadline |
//! | [`distributed_lock_wait_seconds`](WAIT_SECONDS) | histogram | `namespace` | from the start of an acquire call to holding the lock |
//! | [`distributed_lock_hold_seconds`](HOLD_SECONDS) | histogram | `namespace` | from holding the lock to its release, loss or the guard's drop |
//! | [`distributed_lock_handoff_seconds`](HANDOFF_SECONDS) | histogram | `namespace` | for a waiter whose winning attempt followed a release notification: from the waiting task seeing that notification to holding the lock |
//! | [`distributed_lock_held`](HELD) | gauge | `namespace` | locks this process holds now |
//!
//! Exactly how each is counted:
//!
//! - **Attempts, acquired, busy.** Every acquire call that gets past input checks (a bad key
//!   or TTL, no runtime, or a closed client is refused before anything is sent, and is not
//!   counted) ends as acquired, busy, or another error (a timeout, a backend error, `Closed`
//!   during the wait) or is cancelled. Re-entering a lock the task already holds (a nested
//!   `run`) sends nothing and counts nothing.
//! - **Lost.** A lock counts as lost once, when the watchdog (or the task watching its lease)
//!   declares it: `taken` (a renewal found another token or no key), `expired` (no renewal got
//!   through before the lease deadline), `max_hold` (its hold bound ended it), `closed`
//!   ([`LockClient::close`] gave it up). Alert on `reason != "closed"`: `closed` is a
//!   deliberate shutdown. A lock released or dropped first is not lost.
//! - **Renewal failures** count per lock, per attempt: one failed batch of 100 renewals counts
//!   100. A renewal that *answers* that the lock is gone is not a failure but a loss (`taken`).
//! - **Hand-off latency** is what this process can measure on its own clock: the release
//!   happened on another client (or process), and when exactly is unknown here. A waiter that
//!   is woken by a release notification and then wins its next attempt records the time from
//!   its task seeing the notification to the lock being held: that attempt's round trip plus
//!   the local scheduling delay. Acquisitions won by polling (a holder that announces nothing,
//!   an expiry) or without waiting record nothing.
//! - **Held** goes up when a lock is taken and down, once, at the first of: its release
//!   ([`LockGuard::release`](crate::LockGuard::release)), its loss, or its guard being
//!   dropped. After [`LockClient::close`], and once every guard is gone, it is back to 0.
//!   The wait histogram is recorded when the lock is taken, the hold histogram when it comes
//!   down.
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! use lock_runtime::metrics;
//! // e.g. in a dashboard query builder:
//! let lost = format!("rate({}{{reason!=\"closed\"}}[5m])", metrics::LOST);
//! assert_eq!(lost, "rate(distributed_lock_lost_total{reason!=\"closed\"}[5m])");
//! # }
//! ```
//!
//! [`LockClient::with_namespace`]: crate::LockClient::with_namespace
//! [`LockClient::close`]: crate::LockClient::close
//! [`LockError::Busy`]: crate::LockError::Busy

#[cfg(feature = "metrics")]
pub use names::*;
#[cfg(feature = "metrics")]
pub(crate) use on::{Acquire, Held, lost, released, renewal_failed};

#[cfg(not(feature = "metrics"))]
pub(crate) use off::{Acquire, Held, lost, released, renewal_failed};

/// The public names: metric names, label names and label values.
#[cfg(feature = "metrics")]
mod names {
    use crate::LostReason;

    /// Counter: acquire calls that reached the lock server (one per call, retries aside).
    pub const ACQUIRE_ATTEMPTS: &str = "distributed_lock_acquire_attempts_total";
    /// Counter: acquire round trips after the first within one call.
    pub const ACQUIRE_RETRIES: &str = "distributed_lock_acquire_retries_total";
    /// Counter: locks taken.
    pub const ACQUIRED: &str = "distributed_lock_acquired_total";
    /// Counter: acquire calls that returned [`LockError::Busy`](crate::LockError::Busy).
    pub const BUSY: &str = "distributed_lock_busy_total";
    /// Counter: held locks declared lost, labelled with [`REASON_LABEL`].
    pub const LOST: &str = "distributed_lock_lost_total";
    /// Counter: renewals or extends of a held lock that got no answer (retried).
    pub const RENEWAL_FAILURES: &str = "distributed_lock_renewal_failures_total";
    /// Histogram, seconds: from the start of an acquire call to holding the lock.
    pub const WAIT_SECONDS: &str = "distributed_lock_wait_seconds";
    /// Histogram, seconds: from holding a lock to its release, loss or drop.
    pub const HOLD_SECONDS: &str = "distributed_lock_hold_seconds";
    /// Histogram, seconds: from a waiter seeing a release notification to holding the lock.
    pub const HANDOFF_SECONDS: &str = "distributed_lock_handoff_seconds";
    /// Gauge: locks this process holds now.
    pub const HELD: &str = "distributed_lock_held";

    /// The label every metric carries: the client's namespace, or [`NO_NAMESPACE`].
    pub const NAMESPACE_LABEL: &str = "namespace";
    /// The value of [`NAMESPACE_LABEL`] for a client without a namespace. A namespace is
    /// never empty (`with_namespace("")` changes nothing), and Prometheus treats an empty
    /// label value as no label at all, hence a visible placeholder.
    pub const NO_NAMESPACE: &str = "(none)";
    /// The label of [`LOST`]: why the lock was lost, see [`lost_reason_label`].
    pub const REASON_LABEL: &str = "reason";

    /// The value of [`REASON_LABEL`] for a [`LostReason`]: its name in snake_case
    /// (`taken`, `expired`, `max_hold`, `closed`). These values are stable.
    ///
    /// ```
    /// use lock_runtime::{LostReason, metrics::lost_reason_label};
    /// assert_eq!(lost_reason_label(LostReason::MaxHold), "max_hold");
    /// ```
    pub fn lost_reason_label(reason: LostReason) -> &'static str {
        match reason {
            LostReason::Taken => "taken",
            LostReason::Expired => "expired",
            LostReason::MaxHold => "max_hold",
            LostReason::Closed => "closed",
        }
    }

    /// Gives every metric its unit and help text in the recorder installed now (the
    /// Prometheus exporter prints them as `# HELP` lines). Call it once, after installing the
    /// recorder; emitting works without it.
    pub fn describe() {
        use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_counter!(
            ACQUIRE_ATTEMPTS,
            Unit::Count,
            "Lock acquire calls that reached the lock server, however many round trips each took."
        );
        describe_counter!(
            ACQUIRE_RETRIES,
            Unit::Count,
            "Acquire round trips after the first within one acquire call."
        );
        describe_counter!(ACQUIRED, Unit::Count, "Locks taken.");
        describe_counter!(
            BUSY,
            Unit::Count,
            "Acquire calls that gave up because another owner held the lock."
        );
        describe_counter!(
            LOST,
            Unit::Count,
            "Held locks declared lost, by reason (taken, expired, max_hold, closed)."
        );
        describe_counter!(
            RENEWAL_FAILURES,
            Unit::Count,
            "Renewals of a held lock that got no answer (retried until the lease deadline)."
        );
        describe_histogram!(
            WAIT_SECONDS,
            Unit::Seconds,
            "Time from the start of an acquire call to holding the lock."
        );
        describe_histogram!(
            HOLD_SECONDS,
            Unit::Seconds,
            "Time a lock was held: from acquisition to its release, loss or drop."
        );
        describe_histogram!(
            HANDOFF_SECONDS,
            Unit::Seconds,
            "Time from a waiter seeing a release notification to holding the lock."
        );
        describe_gauge!(HELD, Unit::Count, "Locks this process holds now.");
    }
}

/// The hooks, emitting.
#[cfg(feature = "metrics")]
mod on {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    use metrics::{SharedString, counter, gauge, histogram};
    use tokio::time::Instant;

    use super::names::*;
    use crate::LostReason;
    use crate::backend::wakeup::Wake;
    use crate::lease::Lease;

    fn namespace_label(namespace: Option<&str>) -> SharedString {
        match namespace {
            Some(ns) => SharedString::from(String::from(ns)),
            None => SharedString::const_str(NO_NAMESPACE),
        }
    }

    /// One acquire call, from its first round trip to its outcome.
    pub(crate) struct Acquire {
        namespace: SharedString,
        started: Instant,
        round_trips: u32,
        /// When the waiting task last saw a release notification, not yet acted on.
        woken_at: Option<Instant>,
        /// The notification the round trip in flight acts on.
        acting_on: Option<Instant>,
    }

    impl Acquire {
        /// Counts an acquire call; `started` is when the call began.
        pub(crate) fn start(namespace: Option<&str>, started: Instant) -> Acquire {
            let namespace = namespace_label(namespace);
            counter!(ACQUIRE_ATTEMPTS, NAMESPACE_LABEL => namespace.clone()).increment(1);
            Acquire {
                namespace,
                started,
                round_trips: 0,
                woken_at: None,
                acting_on: None,
            }
        }

        /// A round trip is about to be sent; any after the first is a retry.
        pub(crate) fn round_trip(&mut self) {
            if self.round_trips > 0 {
                counter!(ACQUIRE_RETRIES, NAMESPACE_LABEL => self.namespace.clone()).increment(1);
            }
            self.round_trips = self.round_trips.saturating_add(1);
            self.acting_on = self.woken_at.take();
        }

        /// The waiting task's release watch returned `wake`; passes it on.
        pub(crate) fn woke(&mut self, wake: Wake) -> Wake {
            if wake == Wake::Released {
                self.woken_at = Some(Instant::now());
            }
            wake
        }

        /// The call gave up with `Busy`.
        pub(crate) fn busy(&self) {
            counter!(BUSY, NAMESPACE_LABEL => self.namespace.clone()).increment(1);
        }

        /// The lock was taken: counts it, and marks `lease` held until it ends.
        pub(crate) fn hold(&self, lease: Lease) -> Lease {
            let now = Instant::now();
            let ns = || self.namespace.clone();
            counter!(ACQUIRED, NAMESPACE_LABEL => ns()).increment(1);
            histogram!(WAIT_SECONDS, NAMESPACE_LABEL => ns())
                .record(now.saturating_duration_since(self.started));
            if let Some(woken_at) = self.acting_on {
                histogram!(HANDOFF_SECONDS, NAMESPACE_LABEL => ns())
                    .record(now.saturating_duration_since(woken_at));
            }
            gauge!(HELD, NAMESPACE_LABEL => ns()).increment(1.0);
            let _ = lease.held.since.set((ns(), now));
            lease
        }
    }

    /// Whether, since when and under which namespace a lease counts as held. A lease that
    /// was never handed out (an undone attempt) never counts.
    #[derive(Default)]
    pub(crate) struct Held {
        since: OnceLock<(SharedString, Instant)>,
        ended: AtomicBool,
    }

    impl Held {
        /// Ends the hold once: the gauge goes down and the hold time is recorded. Returns
        /// the namespace if this call ended it.
        fn end(&self) -> Option<&SharedString> {
            let (namespace, since) = self.since.get()?;
            if self.ended.swap(true, Ordering::AcqRel) {
                return None;
            }
            gauge!(HELD, NAMESPACE_LABEL => namespace.clone()).decrement(1.0);
            histogram!(HOLD_SECONDS, NAMESPACE_LABEL => namespace.clone()).record(since.elapsed());
            Some(namespace)
        }
    }

    /// The lease was declared lost.
    pub(crate) fn lost(held: &Held, reason: LostReason) {
        if let Some(namespace) = held.end() {
            counter!(
                LOST,
                NAMESPACE_LABEL => namespace.clone(),
                REASON_LABEL => lost_reason_label(reason)
            )
            .increment(1);
        }
    }

    /// The lease was given back, or its guard dropped.
    pub(crate) fn released(held: &Held) {
        held.end();
    }

    /// A renewal (or extend) of the lease got no answer.
    pub(crate) fn renewal_failed(held: &Held) {
        if let Some((namespace, _)) = held.since.get() {
            counter!(RENEWAL_FAILURES, NAMESPACE_LABEL => namespace.clone()).increment(1);
        }
    }
}

/// The hooks without the feature: empty, and inlined away.
#[cfg(not(feature = "metrics"))]
mod off {
    use tokio::time::Instant;

    use crate::LostReason;
    use crate::backend::wakeup::Wake;
    use crate::lease::Lease;

    pub(crate) struct Acquire;

    impl Acquire {
        #[inline(always)]
        pub(crate) fn start(_: Option<&str>, _: Instant) -> Acquire {
            Acquire
        }
        #[inline(always)]
        pub(crate) fn round_trip(&mut self) {}
        #[inline(always)]
        pub(crate) fn woke(&mut self, wake: Wake) -> Wake {
            wake
        }
        #[inline(always)]
        pub(crate) fn busy(&self) {}
        #[inline(always)]
        pub(crate) fn hold(&self, lease: Lease) -> Lease {
            lease
        }
    }

    #[derive(Default)]
    pub(crate) struct Held;

    #[inline(always)]
    pub(crate) fn lost(_: &Held, _: LostReason) {}
    #[inline(always)]
    pub(crate) fn released(_: &Held) {}
    #[inline(always)]
    pub(crate) fn renewal_failed(_: &Held) {}
}
