//! Samples and their summaries: percentiles by nearest rank on sorted samples.

use std::time::{Duration, Instant};

/// A set of latency samples in microseconds, kept sorted once summarised.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// The samples, in microseconds; sorted ascending after [`Samples::sorted`].
    us: Vec<f64>,
}

impl Samples {
    /// An empty set with room for `n` samples, so that recording does not allocate.
    pub fn with_capacity(n: usize) -> Self {
        Samples {
            us: Vec::with_capacity(n),
        }
    }

    /// Records one duration.
    pub fn push(&mut self, d: Duration) {
        self.us.push(d.as_secs_f64() * 1e6);
    }

    /// Records one signed value in microseconds (a hand-off may in principle be observed
    /// slightly before the release that allowed it returns).
    pub fn push_us(&mut self, us: f64) {
        self.us.push(us);
    }

    /// Sorts the samples and summarises them.
    pub fn sorted(mut self) -> Summary {
        self.us.sort_by(f64::total_cmp);
        let n = self.us.len();
        let mean = if n == 0 {
            f64::NAN
        } else {
            self.us.iter().sum::<f64>() / n as f64
        };
        Summary {
            n,
            mean,
            p50: percentile(&self.us, 0.50),
            p99: percentile(&self.us, 0.99),
            p999: percentile(&self.us, 0.999),
            min: self.us.first().copied().unwrap_or(f64::NAN),
            max: self.us.last().copied().unwrap_or(f64::NAN),
            sorted_us: self.us,
        }
    }
}

impl From<Vec<f64>> for Samples {
    /// Samples already taken, in microseconds.
    fn from(us: Vec<f64>) -> Self {
        Samples { us }
    }
}

/// A summary of [`Samples`], in microseconds, with the sorted samples kept for plots.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// 99.9th percentile (nearest rank); with fewer than 1,000 samples this is the maximum.
    pub p999: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// All samples, ascending.
    pub sorted_us: Vec<f64>,
}

/// The nearest-rank percentile `q` (0..=1) of ascending `sorted` samples: the smallest
/// sample such that at least `q` of all samples are at or below it.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of a few values (not necessarily sorted).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// `to - from` in microseconds, negative if `to` came first.
pub fn signed_us(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1e6,
        None => -(from - to).as_secs_f64() * 1e6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 500.0);
        assert_eq!(percentile(&v, 0.99), 990.0);
        assert_eq!(percentile(&v, 0.999), 999.0);
        assert_eq!(percentile(&v, 1.0), 1000.0);
        assert_eq!(percentile(&[7.0], 0.999), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn summary_sorts() {
        let mut s = Samples::with_capacity(3);
        for us in [30.0, 10.0, 20.0] {
            s.push_us(us);
        }
        let s = s.sorted();
        assert_eq!(
            (s.n, s.min, s.p50, s.max, s.mean),
            (3, 10.0, 20.0, 30.0, 20.0)
        );
        assert_eq!(s.sorted_us, vec![10.0, 20.0, 30.0]);
    }

    #[test]
    fn median_of_unsorted() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn signed_difference() {
        let a = Instant::now();
        let b = a + Duration::from_micros(5);
        assert!((signed_us(a, b) - 5.0).abs() < 1e-6);
        assert!((signed_us(b, a) + 5.0).abs() < 1e-6);
    }
}
