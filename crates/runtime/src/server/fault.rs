//! Fault injection for drills, off by default: `--fault` makes a share of a server's calls fail
//! with a status, or wait before they are served, so clients' retries, hedging and ejection can
//! be rehearsed against a real server.
//!
//! A fault is written `key=value,…`:
//! - `method=/calculator.Calculator/Calculate` (exact) or `method=/calculator.Calculator/` (a
//!   prefix); without it, every method of the served services — never `grpc.health.v1` or
//!   reflection, so a faulty server still looks healthy, as the faults it rehearses would.
//! - `status=UNAVAILABLE` (a name or a number): the call fails at once with that status, as a
//!   trailers-only answer, before the service sees it.
//! - `delay=200ms`: the call waits that long first (then fails, if `status` is given too).
//! - `ratio=0.3`: the share of matching calls it hits (default 1: all).
//! - `pushback=100`: with `status`, the `grpc-retry-pushback-ms` value to send (gRFC A6: retry
//!   after that many ms; a negative value says do not retry).
//!
//! Each fault that hits is counted on `/metrics` as `calcmesh_faults_injected_total`, by fault
//! and method.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tonic::body::Body;

/// One `--fault`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// An exact method path, or a prefix ending in `/`; `None`: every served method.
    pub method: Option<String>,
    /// The status the call fails with.
    pub status: Option<tonic::Code>,
    /// How long the call waits first.
    pub delay: Option<Duration>,
    /// The share of matching calls hit, 0 to 1.
    pub ratio: f64,
    /// `grpc-retry-pushback-ms` sent with `status`.
    pub pushback_ms: Option<i32>,
    spec: String,
}

/// A `--fault` that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--fault {spec:?}: {why}")]
pub struct FaultError {
    spec: String,
    why: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

impl FromStr for Fault {
    type Err = FaultError;

    fn from_str(spec: &str) -> Result<Self, FaultError> {
        let fail = |why: String| FaultError {
            spec: spec.to_owned(),
            why,
        };
        let mut fault = Fault {
            method: None,
            status: None,
            delay: None,
            ratio: 1.0,
            pushback_ms: None,
            spec: spec.to_owned(),
        };
        for pair in spec.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| fail(format!("{pair:?} is not key=value")))?;
            fault.set(key.trim(), value.trim()).map_err(fail)?;
        }
        if fault.status.is_none() && fault.delay.is_none() {
            return Err(fail("give status=CODE, delay=DURATION or both".into()));
        }
        if fault.pushback_ms.is_some() && fault.status.is_none() {
            return Err(fail(
                "pushback is sent with a failure: give status too".into(),
            ));
        }
        Ok(fault)
    }
}

impl Fault {
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "method" if value.starts_with('/') => self.method = Some(value.to_owned()),
            "method" => return Err(format!("method {value:?} must start with '/'")),
            "status" => {
                let code = crate::codes::from_name(value).filter(|c| *c != tonic::Code::Ok);
                self.status = Some(code.ok_or_else(|| {
                    format!("status {value:?} is not a failing gRPC status, such as UNAVAILABLE")
                })?);
            }
            "delay" => {
                let delay = humantime_duration(value)
                    .ok_or_else(|| format!("delay {value:?} is not a duration, such as 200ms"))?;
                self.delay = Some(delay);
            }
            "ratio" => {
                self.ratio = value
                    .parse()
                    .ok()
                    .filter(|r: &f64| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("ratio {value:?} is not a number from 0 to 1"))?;
            }
            "pushback" => {
                self.pushback_ms = Some(value.parse().map_err(|_| {
                    format!("pushback {value:?} is not a whole number of milliseconds")
                })?);
            }
            other => {
                return Err(format!(
                    "unknown key {other:?}: expected method, status, delay, ratio or pushback"
                ));
            }
        }
        Ok(())
    }

    fn matches(&self, path: &str) -> bool {
        match &self.method {
            Some(m) if m.ends_with('/') => path.starts_with(m.as_str()),
            Some(m) => path == m,
            None => !is_infrastructure(path),
        }
    }

    /// The answer of a call this fault fails.
    fn answer(&self) -> Option<http::Response<Body>> {
        let code = self.status?;
        let status = tonic::Status::new(code, format!("injected fault (--fault {})", self.spec));
        let mut response = status.into_http::<Body>();
        if let Some(ms) = self.pushback_ms {
            response
                .headers_mut()
                .insert("grpc-retry-pushback-ms", http::HeaderValue::from(ms));
        }
        Some(response)
    }
}

/// `200ms`, `1s`, `1.5s`: the few forms a fault's delay takes.
fn humantime_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = number.parse().ok().filter(|n: &f64| *n >= 0.0)?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Health and reflection: what no default fault touches.
fn is_infrastructure(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FaultLabels {
    fault: String,
    grpc_method: String,
}

/// `calcmesh_faults_injected_total`, by fault and method.
pub(crate) type FaultCounters = Family<FaultLabels, Counter>;

/// The tower layer that injects the configured faults.
#[derive(Debug, Clone)]
pub struct FaultLayer {
    faults: Arc<[Fault]>,
    counters: FaultCounters,
}

impl FaultLayer {
    pub(crate) fn new(faults: Arc<[Fault]>, counters: FaultCounters) -> Self {
        Self { faults, counters }
    }
}

impl<S> tower_layer::Layer<S> for FaultLayer {
    type Service = FaultInjection<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FaultInjection {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`FaultLayer`].
#[derive(Debug, Clone)]
pub struct FaultInjection<S> {
    inner: S,
    layer: FaultLayer,
}

/// What the faults that hit a call do to it: wait, then fail or go on.
struct Verdict {
    delay: Duration,
    answer: Option<http::Response<Body>>,
}

impl FaultLayer {
    fn verdict(&self, path: &str) -> Option<Verdict> {
        let mut verdict: Option<Verdict> = None;
        for fault in self.faults.iter().filter(|f| f.matches(path)) {
            if fault.ratio < 1.0 && fastrand::f64() >= fault.ratio {
                continue;
            }
            self.counters
                .get_or_create(&FaultLabels {
                    fault: fault.spec.clone(),
                    grpc_method: path.to_owned(),
                })
                .inc();
            let v = verdict.get_or_insert(Verdict {
                delay: Duration::ZERO,
                answer: None,
            });
            v.delay += fault.delay.unwrap_or_default();
            if let Some(answer) = fault.answer() {
                v.answer = Some(answer);
                break;
            }
        }
        verdict
    }
}

impl<S> tower_service::Service<http::Request<Body>> for FaultInjection<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let Some(verdict) = self.layer.verdict(request.uri().path()) else {
            return Box::pin(self.inner.call(request));
        };
        // The ready service answers this call; a clone waits for the next (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if !verdict.delay.is_zero() {
                tokio::time::sleep(verdict.delay).await;
            }
            match verdict.answer {
                Some(answer) => Ok(answer),
                None => inner.call(request).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_as_written_on_the_command_line() {
        let f: Fault = "method=/calculator.Calculator/Calculate,status=UNAVAILABLE,ratio=0.3"
            .parse()
            .unwrap();
        assert_eq!(f.status, Some(tonic::Code::Unavailable));
        assert_eq!(f.ratio, 0.3);
        assert!(f.matches("/calculator.Calculator/Calculate"));
        assert!(!f.matches("/calculator.Calculator/Factorize"));
        let f: Fault = "delay=200ms,ratio=0.1".parse().unwrap();
        assert_eq!(f.delay, Some(Duration::from_millis(200)));
        assert!(f.matches("/calculator.Calculator/Factorize"));
        assert!(
            !f.matches("/grpc.health.v1.Health/Watch"),
            "health is spared"
        );
        let f: Fault = "method=/calculator.Calculator/,status=14,pushback=-1"
            .parse()
            .unwrap();
        assert!(f.matches("/calculator.Calculator/Summarize"));
        let answer = f.answer().unwrap();
        assert_eq!(answer.headers()["grpc-status"], "14");
        assert_eq!(answer.headers()["grpc-retry-pushback-ms"], "-1");
    }

    #[test]
    fn bad_faults_say_what_to_write() {
        let err = |s: &str| s.parse::<Fault>().unwrap_err().to_string();
        assert_eq!(
            err("ratio=0.5"),
            "--fault \"ratio=0.5\": give status=CODE, delay=DURATION or both"
        );
        assert!(err("status=BROKEN").contains("not a failing gRPC status"));
        assert!(err("status=OK").contains("not a failing gRPC status"));
        assert!(err("status=INTERNAL,ratio=2").contains("not a number from 0 to 1"));
        assert!(err("delay=fast").contains("not a duration"));
        assert!(err("delay=1s,pushback=5").contains("give status too"));
        assert!(err("status=INTERNAL,odds=1").contains("unknown key \"odds\""));
        assert!(err("method=calc,status=INTERNAL").contains("must start with '/'"));
    }
}
