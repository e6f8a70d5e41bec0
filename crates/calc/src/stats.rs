//! A running summary of a stream of numbers, numerically stable over millions of values:
//! Welford's algorithm for mean and variance, Neumaier's compensated sum for the total.

/// A summary of the numbers seen so far. For no numbers, every field is 0.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// How many numbers.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Their arithmetic mean.
    pub mean: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// Population variance (divides by `count`).
    pub variance: f64,
}

/// Why a number cannot be added to a summary.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// NaN or infinite input.
    #[error("value #{index} is {value}: only finite numbers can be summarized")]
    NotFinite {
        /// 1-based position of the value in the stream.
        index: u64,
        /// The value.
        value: f64,
    },
}

/// Accumulates numbers one at a time.
#[derive(Debug, Clone, Default)]
pub struct RunningStats {
    count: u64,
    mean: f64,
    m2: f64,
    sum: f64,
    compensation: f64,
    min: f64,
    max: f64,
}

impl RunningStats {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one number.
    ///
    /// # Errors
    /// [`StatsError::NotFinite`] for NaN or ±∞; the accumulator is left unchanged.
    pub fn push(&mut self, x: f64) -> Result<(), StatsError> {
        if !x.is_finite() {
            return Err(StatsError::NotFinite {
                index: self.count + 1,
                value: x,
            });
        }
        self.count += 1;
        if self.count == 1 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        // Neumaier: keep the low-order bits that each addition loses.
        let t = self.sum + x;
        self.compensation += if self.sum.abs() >= x.abs() {
            (self.sum - t) + x
        } else {
            (x - t) + self.sum
        };
        self.sum = t;
        Ok(())
    }

    /// The summary of everything pushed so far.
    pub fn summary(&self) -> Summary {
        if self.count == 0 {
            return Summary::default();
        }
        Summary {
            count: self.count,
            sum: self.sum + self.compensation,
            mean: self.mean,
            min: self.min,
            max: self.max,
            variance: self.m2 / self.count as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(xs: &[f64]) -> Summary {
        let n = xs.len() as f64;
        let sum: f64 = xs.iter().sum();
        let mean = sum / n;
        let variance = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        Summary {
            count: xs.len() as u64,
            sum,
            mean,
            min: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            variance,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    fn assert_close(got: Summary, want: Summary) {
        assert_eq!(got.count, want.count);
        assert_eq!((got.min, got.max), (want.min, want.max));
        for (g, w, name) in [
            (got.sum, want.sum, "sum"),
            (got.mean, want.mean, "mean"),
            (got.variance, want.variance, "variance"),
        ] {
            assert!(close(g, w), "{name}: got {g}, want {w}");
        }
    }

    fn summarize(xs: &[f64]) -> Summary {
        let mut s = RunningStats::new();
        for &x in xs {
            s.push(x).unwrap();
        }
        s.summary()
    }

    #[test]
    fn empty_is_all_zero() {
        assert_eq!(RunningStats::new().summary(), Summary::default());
    }

    #[test]
    fn matches_two_pass_computation() {
        // A deterministic pseudo-random sequence (xorshift), with a large offset that makes a
        // naive one-pass sum-of-squares variance lose every digit.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let xs: Vec<f64> = (0..1_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                1e9 + (state % 10_000) as f64 / 7.0
            })
            .collect();
        assert_close(summarize(&xs), naive(&xs));
        assert_close(summarize(&[3.0]), naive(&[3.0]));
        assert_close(
            summarize(&[-1.5, 2.0, 7.25, -3.0]),
            naive(&[-1.5, 2.0, 7.25, -3.0]),
        );
    }

    #[test]
    fn compensated_sum_keeps_small_terms() {
        let s = summarize(&[1e16, 1.0, -1e16]);
        assert_eq!(s.sum, 1.0);
    }

    #[test]
    fn non_finite_values_are_rejected_without_change() {
        let mut s = RunningStats::new();
        s.push(1.0).unwrap();
        assert_eq!(
            s.push(f64::NAN).unwrap_err().to_string(),
            "value #2 is NaN: only finite numbers can be summarized"
        );
        assert!(s.push(f64::INFINITY).is_err());
        assert_eq!(s.summary().count, 1);
    }
}
