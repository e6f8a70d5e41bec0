//! How long to wait before trying again: the balancer's reconnects and health watches, and
//! etcd's registration and watch, all back off the same way.

use std::time::Duration;

/// Exponential backoff with jitter, 100 ms doubling to 10 s.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    pub(crate) fn new() -> Self {
        Self(Self::MIN)
    }

    pub(crate) fn reset(&mut self) {
        self.0 = Self::MIN;
    }

    pub(crate) fn next(&mut self) -> Duration {
        let base = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        base.mul_f64(0.8 + 0.4 * fastrand::f64())
    }
}
