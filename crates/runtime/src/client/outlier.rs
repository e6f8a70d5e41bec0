//! Outlier detection (gRFC A50, `outlier_detection_experimental`): an endpoint that is up and
//! SERVING but fails many of its calls is ejected — taken out of rotation for a while — which
//! health checks never do, and which least-request would not do either (failing fast leaves an
//! endpoint few calls outstanding, so it looks the least busy).
//!
//! Every call's outcome is counted per endpoint (`OutlierState::record`). Every `interval`,
//! `sweep` takes the counts and runs A50's two algorithms on the endpoints that saw at least
//! `requestVolume` calls, when at least `minimumHosts` did:
//! - success rate: ejected when its success rate is under mean − stdev × `stdevFactor`/1000;
//! - failure percentage: ejected when more than `threshold` % of its calls failed.
//!
//! An ejection lasts `baseEjectionTime` × the endpoint's ejection count, at most
//! `max(baseEjectionTime, maxEjectionTime)`; each interval without an ejection lowers the count
//! by one. Ejections stop once `maxEjectionPercent` of the endpoints are ejected (so with 10 %
//! and three endpoints, one may be). A call's outcome is OK or not, whatever the status, as A50 counts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// `outlier_detection_experimental`'s settings (A50's defaults where the JSON is silent).
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    /// How often the algorithms run. Default 10 s.
    pub interval: Duration,
    /// An ejection lasts this × the endpoint's ejection count. Default 30 s.
    pub base_ejection_time: Duration,
    /// An ejection lasts at most max(this, base). Default 300 s.
    pub max_ejection_time: Duration,
    /// The most endpoints ejected at once, in percent. Default 10.
    pub max_ejection_percent: u32,
    /// `successRateEjection`: `None`, not run.
    pub success_rate: Option<Algorithm>,
    /// `failurePercentageEjection`: `None`, not run.
    pub failure_percentage: Option<Algorithm>,
}

/// One algorithm's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Algorithm {
    /// Success rate: `stdevFactor` (1900 is 1.9 standard deviations); failure percentage:
    /// `threshold` (85 is 85 %).
    pub factor: u32,
    /// The chance, in percent, that an endpoint found to be an outlier is ejected.
    pub enforcement_percentage: u32,
    /// Endpoints with enough calls needed to run at all.
    pub minimum_hosts: u32,
    /// Calls in the interval for an endpoint to count.
    pub request_volume: u32,
}

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    SuccessRate = 0,
    FailurePercentage = 1,
}

impl Reason {
    pub(crate) const ALL: [Reason; 2] = [Reason::SuccessRate, Reason::FailurePercentage];

    /// The label on `/metrics` and in logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Reason::SuccessRate => "success_rate",
            Reason::FailurePercentage => "failure_percentage",
        }
    }
}

#[derive(Debug, Default)]
struct Ejection {
    since: Option<Instant>,
    multiplier: u32,
}

/// One endpoint's calls this interval and its ejection.
#[derive(Debug, Default)]
pub(crate) struct OutlierState {
    succeeded: AtomicU64,
    failed: AtomicU64,
    ejected: AtomicBool,
    ejection: Mutex<Ejection>,
    ejections: [AtomicU64; 2],
    /// Calls and failed calls since the endpoint was added (never reset).
    totals: [AtomicU64; 2],
}

impl OutlierState {
    /// Counts a finished call.
    pub(crate) fn record(&self, ok: bool) {
        let counter = if ok { &self.succeeded } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        self.totals[0].fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.totals[1].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls finished since the endpoint was added, and how many of them failed.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let [calls, failed] = &self.totals;
        (
            calls.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        )
    }

    /// Whether the endpoint is ejected now.
    pub(crate) fn ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Times it was ejected for `reason`.
    pub(crate) fn ejections(&self, reason: Reason) -> u64 {
        self.ejections[reason as usize].load(Ordering::Relaxed)
    }

    fn eject(&self, now: Instant, reason: Reason) {
        let mut ejection = crate::sync::lock(&self.ejection);
        ejection.since = Some(now);
        ejection.multiplier += 1;
        self.ejected.store(true, Ordering::Relaxed);
        self.ejections[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Ends an ejection that has lasted long enough, or lowers the multiplier of an endpoint
    /// that was not ejected; says whether it came back.
    fn maybe_return(&self, now: Instant, config: &OutlierDetection) -> bool {
        let mut ejection = crate::sync::lock(&self.ejection);
        let Some(since) = ejection.since else {
            ejection.multiplier = ejection.multiplier.saturating_sub(1);
            return false;
        };
        let longest = config.max_ejection_time.max(config.base_ejection_time);
        let lasts = (config.base_ejection_time * ejection.multiplier).min(longest);
        if now < since + lasts {
            return false;
        }
        ejection.since = None;
        self.ejected.store(false, Ordering::Relaxed);
        true
    }
}

/// An endpoint as a sweep sees it.
struct Candidate<'a> {
    name: &'a str,
    state: &'a OutlierState,
    succeeded: u64,
    volume: u64,
}

/// What a sweep changed.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Swept {
    pub(crate) ejected: Vec<(String, Reason)>,
    pub(crate) returned: Vec<String>,
}

/// One interval's run over a target's endpoints (`(host:port, state)`), as A50's timer does.
pub(crate) fn sweep(endpoints: &[(&str, &OutlierState)], config: &OutlierDetection) -> Swept {
    let now = Instant::now();
    let candidates: Vec<Candidate<'_>> = endpoints
        .iter()
        .map(|(name, state)| {
            let succeeded = state.succeeded.swap(0, Ordering::Relaxed);
            let failed = state.failed.swap(0, Ordering::Relaxed);
            Candidate {
                name,
                state,
                succeeded,
                volume: succeeded + failed,
            }
        })
        .collect();
    let mut swept = Swept::default();
    if let Some(algorithm) = config.success_rate {
        let threshold = success_rate_threshold(&candidates, algorithm);
        let outlier = |c: &Candidate<'_>| threshold.is_some_and(|t| rate(c) < t);
        eject(
            &candidates,
            algorithm,
            config,
            Reason::SuccessRate,
            outlier,
            now,
            &mut swept,
        );
    }
    if let Some(algorithm) = config.failure_percentage {
        let limit = f64::from(algorithm.factor);
        let outlier = |c: &Candidate<'_>| (1.0 - rate(c)) * 100.0 > limit;
        let reason = Reason::FailurePercentage;
        eject(
            &candidates,
            algorithm,
            config,
            reason,
            outlier,
            now,
            &mut swept,
        );
    }
    for c in &candidates {
        if c.state.maybe_return(now, config) {
            swept.returned.push(c.name.to_owned());
        }
    }
    swept
}

fn rate(c: &Candidate<'_>) -> f64 {
    c.succeeded as f64 / c.volume as f64
}

fn enough_calls(c: &Candidate<'_>, algorithm: Algorithm) -> bool {
    c.volume >= u64::from(algorithm.request_volume) && c.volume > 0
}

/// mean − stdev × factor/1000 over the endpoints with enough calls, when there are enough.
fn success_rate_threshold(candidates: &[Candidate<'_>], algorithm: Algorithm) -> Option<f64> {
    let rates: Vec<f64> = candidates
        .iter()
        .filter(|c| enough_calls(c, algorithm))
        .map(rate)
        .collect();
    if rates.len() < algorithm.minimum_hosts as usize || rates.is_empty() {
        return None;
    }
    let n = rates.len() as f64;
    let mean = rates.iter().sum::<f64>() / n;
    let variance = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
    Some(mean - variance.sqrt() * f64::from(algorithm.factor) / 1000.0)
}

/// Ejects the candidates `outlier` picks, within `maxEjectionPercent` and by enforcement chance.
fn eject(
    candidates: &[Candidate<'_>],
    algorithm: Algorithm,
    config: &OutlierDetection,
    reason: Reason,
    outlier: impl Fn(&Candidate<'_>) -> bool,
    now: Instant,
    swept: &mut Swept,
) {
    let eligible: Vec<&Candidate<'_>> = candidates
        .iter()
        .filter(|c| enough_calls(c, algorithm))
        .collect();
    if eligible.len() < algorithm.minimum_hosts as usize {
        return;
    }
    let total = candidates.len() as u64;
    for c in eligible {
        let ejected = candidates.iter().filter(|c| c.state.ejected()).count() as u64;
        if ejected * 100 >= u64::from(config.max_ejection_percent) * total {
            return;
        }
        let enforced = fastrand::u32(0..100) < algorithm.enforcement_percentage;
        if !c.state.ejected() && outlier(c) && enforced {
            c.state.eject(now, reason);
            swept.ejected.push((c.name.to_owned(), reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OutlierDetection {
        OutlierDetection {
            interval: Duration::from_secs(1),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
            success_rate: None,
            failure_percentage: Some(Algorithm {
                factor: 20,
                enforcement_percentage: 100,
                minimum_hosts: 3,
                request_volume: 10,
            }),
        }
    }

    fn calls(state: &OutlierState, ok: u32, failed: u32) {
        (0..ok).for_each(|_| state.record(true));
        (0..failed).for_each(|_| state.record(false));
    }

    #[test]
    fn failure_percentage_ejects_the_failing_endpoint_only() {
        let [a, b, c] = [(); 3].map(|()| OutlierState::default());
        calls(&a, 50, 0);
        calls(&b, 49, 1);
        calls(&c, 25, 25);
        let swept = sweep(&[("a", &a), ("b", &b), ("c", &c)], &config());
        assert_eq!(swept.ejected, [("c".to_owned(), Reason::FailurePercentage)]);
        assert!(c.ejected() && !a.ejected() && !b.ejected());
        assert_eq!(c.ejections(Reason::FailurePercentage), 1);
    }

    #[test]
    fn too_few_calls_or_hosts_eject_nobody() {
        let [a, b, c] = [(); 3].map(|()| OutlierState::default());
        calls(&a, 50, 0);
        calls(&b, 50, 0);
        calls(&c, 0, 9); // under requestVolume
        assert_eq!(
            sweep(&[("a", &a), ("b", &b), ("c", &c)], &config()),
            Swept::default()
        );
        calls(&c, 0, 50);
        assert_eq!(
            sweep(&[("a", &a), ("c", &c)], &config()),
            Swept::default(),
            "2 < minimumHosts"
        );
    }

    #[test]
    fn success_rate_ejects_below_mean_minus_stdevs() {
        let mut config = config();
        config.failure_percentage = None;
        config.success_rate = Some(Algorithm {
            factor: 1000,
            enforcement_percentage: 100,
            minimum_hosts: 3,
            request_volume: 10,
        });
        let states: Vec<OutlierState> = (0..5).map(|_| OutlierState::default()).collect();
        for s in &states[..4] {
            calls(s, 100, 0);
        }
        calls(&states[4], 60, 40);
        let names = ["a", "b", "c", "d", "e"];
        let pairs: Vec<(&str, &OutlierState)> = names.iter().copied().zip(&states).collect();
        let swept = sweep(&pairs, &config);
        assert_eq!(swept.ejected, [("e".to_owned(), Reason::SuccessRate)]);
    }

    #[test]
    fn an_ejection_ends_after_base_times_count_and_never_past_the_maximum() {
        let mut config = config();
        config.base_ejection_time = Duration::ZERO;
        let state = OutlierState::default();
        state.eject(Instant::now(), Reason::FailurePercentage);
        assert!(
            state.maybe_return(Instant::now(), &config),
            "0 s × 1 has passed"
        );
        config.base_ejection_time = Duration::from_secs(30);
        state.eject(Instant::now(), Reason::FailurePercentage);
        assert!(!state.maybe_return(Instant::now(), &config));
        let later = Instant::now() + Duration::from_secs(59);
        assert!(
            !state.maybe_return(later, &config),
            "second ejection: 2 × 30 s"
        );
        assert!(state.maybe_return(later + Duration::from_secs(2), &config));
    }

    #[test]
    fn ejections_stop_at_max_ejection_percent() {
        let mut config = config();
        config.max_ejection_percent = 10;
        let states: Vec<OutlierState> = (0..3).map(|_| OutlierState::default()).collect();
        states.iter().for_each(|s| calls(s, 0, 50));
        let pairs: Vec<(&str, &OutlierState)> = ["a", "b", "c"].into_iter().zip(&states).collect();
        assert_eq!(sweep(&pairs, &config).ejected.len(), 1);
    }
}
