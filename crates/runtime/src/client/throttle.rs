//! `retryThrottling` (gRFC A6): retries and hedged copies stop while too many calls to a target
//! fail.
//!
//! Tokens start at `maxTokens`. An attempt that fails with a retryable (or non-fatal) status
//! takes one; a call that succeeds gives back `tokenRatio`. Retries and hedges are sent only
//! while more than half of `maxTokens` is left. Kept in thousandths, as gRPC does, so the
//! arithmetic is exact.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::client::service_config::RetryThrottling;

/// One target's tokens.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// `maxTokens` × 1000.
    max: u64,
    /// `tokenRatio` × 1000.
    ratio: u64,
    tokens: AtomicU64,
}

impl Throttle {
    pub(crate) fn new(config: RetryThrottling) -> Self {
        let max = u64::from(config.max_tokens) * 1000;
        Self {
            max,
            ratio: (config.token_ratio * 1000.0).round() as u64,
            tokens: AtomicU64::new(max),
        }
    }

    /// An attempt failed in a way retries are for: takes a token, and says whether retries may
    /// still be sent.
    pub(crate) fn failed(&self) -> bool {
        let update = |t: u64| Some(t.saturating_sub(1000));
        let before = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, update)
            .unwrap_or_default();
        before.saturating_sub(1000) > self.max / 2
    }

    /// A call succeeded: gives back `tokenRatio`, up to `maxTokens`.
    pub(crate) fn succeeded(&self) {
        let update = |t: u64| Some((t + self.ratio).min(self.max));
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, update);
    }

    /// Whether a hedged copy may be sent now.
    pub(crate) fn allows(&self) -> bool {
        self.tokens.load(Ordering::Relaxed) > self.max / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stop_at_half_the_tokens_and_come_back_with_successes() {
        let t = Throttle::new(RetryThrottling {
            max_tokens: 10,
            token_ratio: 0.5,
        });
        let allowed: Vec<bool> = (0..6).map(|_| t.failed()).collect();
        assert_eq!(allowed, [true, true, true, true, false, false]);
        assert!(!t.allows());
        t.succeeded();
        t.succeeded();
        assert!(!t.allows(), "4 + 1 = 5 is not over 5");
        t.succeeded();
        assert!(t.allows());
        (0..100).for_each(|_| t.succeeded());
        assert_eq!(
            t.tokens.load(Ordering::Relaxed),
            10_000,
            "capped at maxTokens"
        );
    }
}
