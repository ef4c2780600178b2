//! How long a waiter sleeps between attempts.

use std::time::Duration;

/// The delay between acquire attempts while waiting for a held lock.
///
/// Each delay is drawn at random between half and all of the current step ("equal
/// jitter"), so waiters spread out instead of retrying in lockstep. Whatever the policy, a
/// waiter never sleeps past the holder's remaining TTL (reported by the failed attempt
/// itself) nor past the end of its wait.
///
/// ```
/// use lock_runtime::Backoff;
/// use std::time::Duration;
/// let patient = Backoff::exponential(Duration::from_millis(20), Duration::from_secs(1));
/// let steady = Backoff::constant(Duration::from_millis(50));
/// # let _ = (patient, steady);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// Exponential from 5 ms to 200 ms.
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(5), Duration::from_millis(200))
    }
}

impl Backoff {
    /// Steps that start at `first` and double up to `max`.
    pub fn exponential(first: Duration, max: Duration) -> Backoff {
        let first = first.max(Duration::from_millis(1));
        Backoff {
            first,
            max: max.max(first),
        }
    }

    /// The same step every time.
    pub fn constant(step: Duration) -> Backoff {
        Backoff::exponential(step, step)
    }

    /// The delay before attempt number `attempt + 1`.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let step = self
            .first
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        let half = step / 2;
        half + Duration::from_nanos(rand::random_range(0..=(step - half).as_nanos() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_half_and_all_of_the_step() {
        let b = Backoff::exponential(Duration::from_millis(4), Duration::from_millis(100));
        for attempt in 0..40 {
            let step = (Duration::from_millis(4) * 2u32.pow(attempt.min(10)))
                .min(Duration::from_millis(100));
            let d = b.delay(attempt);
            assert!(
                d >= step / 2 && d <= step,
                "attempt {attempt}: {d:?} vs step {step:?}"
            );
        }
    }

    #[test]
    fn constant_is_constant_up_to_jitter() {
        let b = Backoff::constant(Duration::from_millis(50));
        for attempt in 0..10 {
            let d = b.delay(attempt);
            assert!(d >= Duration::from_millis(25) && d <= Duration::from_millis(50));
        }
    }
}
