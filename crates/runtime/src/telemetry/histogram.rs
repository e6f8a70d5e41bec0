//! The `grpc_*_handling_seconds` histogram: fixed buckets counted with atomics (prometheus-client's
//! own histogram takes a lock on every observation), encoded as an ordinary Prometheus histogram,
//! and readable in-process for the dashboard's p50 and p99.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds in seconds: 50 µs doubling to about 6.6 s, as before (18 buckets).
fn bounds() -> Arc<[f64]> {
    (0..18).map(|i| 0.000_05 * f64::powi(2.0, i)).collect()
}

/// A latency histogram; clones share their counts.
#[derive(Debug, Clone)]
pub(crate) struct Latency(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    bounds: Arc<[f64]>,
    /// Per bucket (not cumulative), the last one above every bound.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        let bounds = bounds();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(Inner {
            bounds,
            counts,
            sum_nanos: AtomicU64::new(0),
        }))
    }
}

impl Latency {
    pub(crate) fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = self.0.bounds.partition_point(|b| *b < seconds);
        self.0.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn counts(&self) -> Vec<u64> {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Observations so far.
    pub(crate) fn count(&self) -> u64 {
        self.counts().iter().sum()
    }

    /// The `q` quantile (0 to 1) in seconds, estimated as Prometheus' `histogram_quantile` does:
    /// linearly within the bucket it falls in (the top bucket gives its lower bound). `None`
    /// before the first observation.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let counts = self.counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let bounds = &self.0.bounds;
        let mut below = 0u64;
        for (i, &n) in counts.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
                let Some(&upper) = bounds.get(i) else {
                    return Some(lower);
                };
                let within = (rank - below as f64) / n as f64;
                return Some(lower + (upper - lower) * within);
            }
            below += n;
        }
        bounds.last().copied()
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Per bucket: the encoder writes them cumulative.
        let counts = self.counts();
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(counts.iter().copied())
            .collect();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket_as_prometheus_does() {
        let h = Latency::default();
        assert_eq!(h.quantile(0.5), None);
        // 100 calls of 1 ms: all in the (0.8 ms, 1.6 ms] bucket.
        for _ in 0..100 {
            h.observe(Duration::from_millis(1));
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 0.0012).abs() < 1e-9, "{p50}");
        // One slow call moves p99 no further than its bucket.
        h.observe(Duration::from_secs(1));
        assert!(h.quantile(0.99).unwrap() <= 0.0016);
        assert!(h.quantile(1.0).unwrap() > 0.8);
        assert_eq!(h.count(), 101);
    }

    #[test]
    fn it_encodes_as_a_cumulative_prometheus_histogram() {
        let mut registry = prometheus_client::registry::Registry::default();
        let h = Latency::default();
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_secs(100));
        registry.register("t", "test", h.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("t_bucket{le=\"0.00005\"} 1\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"6.5536\"} 1\n"), "{text}");
        assert!(text.contains("t_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("t_count 2"), "{text}");
        assert!(text.contains("t_sum 100.00003"), "{text}");
    }
}
