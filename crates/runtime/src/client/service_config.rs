//! The gRPC service config (gRFC A2): the JSON every gRPC implementation takes, parsed once into
//! [`ServiceConfig`], validated as gRFC A2 and A6 say, with errors that name the source, the JSON
//! path and what was expected.
//!
//! What a channel applies: `loadBalancingConfig` (`round_robin`, `pick_first` with
//! `shuffleAddressList`, `least_request_experimental` with `choiceCount` 2; the first entry calcmesh
//! knows wins, as gRPC picks), `healthCheckConfig.serviceName`, `retryThrottling` (see
//! `client::throttle`), and per method: `timeout` (the longest a call may take, whatever deadline
//! the caller set), `waitForReady` (wait for an endpoint until the deadline instead of failing at
//! once), `retryPolicy` (see [`crate::client::retry`]), `hedgingPolicy` (see `client::hedge`),
//! and the message-size limits `maxRequestMessageBytes` and `maxResponseMessageBytes` (see
//! `client::message_limits`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::client::balance::LbPolicy;
use crate::client::outlier::{Algorithm, OutlierDetection};

/// A parsed, validated service config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceConfig {
    /// The balancing policy chosen from `loadBalancingConfig` (`None`: the channel's own).
    pub lb_policy: Option<LbPolicy>,
    /// `outlier_detection_experimental` around that policy, when chosen.
    pub outlier_detection: Option<OutlierDetection>,
    /// `healthCheckConfig.serviceName`: the service the health Watch asks about.
    pub health_service: Option<String>,
    /// `methodConfig`, in order.
    pub methods: Vec<MethodConfig>,
    /// `retryThrottling`, validated.
    pub retry_throttling: Option<RetryThrottling>,
}

/// One `methodConfig` entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MethodConfig {
    /// Which methods it is for: `(service, method)`; an empty service is the default entry,
    /// no method is every method of the service.
    pub names: Vec<(String, Option<String>)>,
    /// The longest a call may take.
    pub timeout: Option<Duration>,
    /// `waitForReady`.
    pub wait_for_ready: Option<bool>,
    /// `maxRequestMessageBytes`: a larger request message is not sent (RESOURCE_EXHAUSTED).
    pub max_request_bytes: Option<usize>,
    /// `maxResponseMessageBytes`: a larger response message fails the call (RESOURCE_EXHAUSTED).
    pub max_response_bytes: Option<usize>,
    /// `retryPolicy`.
    pub retry: Option<RetryPolicy>,
    /// `hedgingPolicy`.
    pub hedging: Option<HedgingPolicy>,
}

/// A `retryPolicy` (gRFC A6): which failures are tried again, how often, and how far apart.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included: 2 to 5 (a larger value is capped at 5, as gRPC caps).
    pub max_attempts: u32,
    /// The first retry waits a random time up to this.
    pub initial_backoff: Duration,
    /// No retry waits longer than a random time up to this.
    pub max_backoff: Duration,
    /// How the longest wait grows per retry.
    pub backoff_multiplier: f64,
    /// The statuses worth trying again.
    pub retryable_codes: Vec<tonic::Code>,
}

/// A `hedgingPolicy` (gRFC A6): copies of a call sent `delay` apart until one answers.
#[derive(Debug, Clone, PartialEq)]
pub struct HedgingPolicy {
    /// Copies in all, the first included: 2 to 5 (capped at 5).
    pub max_attempts: u32,
    /// How long to wait for an answer before sending the next copy (0: all at once).
    pub delay: Duration,
    /// Statuses that send the next copy at once instead of ending the call.
    pub non_fatal_codes: Vec<tonic::Code>,
}

/// `retryThrottling`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryThrottling {
    /// `maxTokens`, in (0, 1000].
    pub max_tokens: u32,
    /// `tokenRatio`, over 0.
    pub token_ratio: f64,
}

/// A config that cannot be used: where, and what was expected.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{source_name}: service config at {path}: {what}")]
pub struct ServiceConfigError {
    /// The file, or `--service-config` for inline JSON.
    pub source_name: String,
    /// The JSON path, e.g. `methodConfig[0].retryPolicy.maxAttempts`.
    pub path: String,
    /// What was wrong or expected.
    pub what: String,
}

// The JSON as the proto's JSON mapping spells it. Unknown fields are errors: a typo must not
// silently turn a policy off.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    load_balancing_policy: Option<String>,
    #[serde(default)]
    load_balancing_config: Vec<BTreeMap<String, Value>>,
    #[serde(default)]
    method_config: Vec<RawMethod>,
    #[serde(default)]
    retry_throttling: Option<RawThrottling>,
    #[serde(default)]
    health_check_config: Option<RawHealth>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMethod {
    #[serde(default)]
    name: Vec<RawName>,
    #[serde(default)]
    wait_for_ready: Option<bool>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    max_request_message_bytes: Option<Value>,
    #[serde(default)]
    max_response_message_bytes: Option<Value>,
    #[serde(default)]
    retry_policy: Option<RawRetry>,
    #[serde(default)]
    hedging_policy: Option<RawHedging>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawName {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    method: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRetry {
    max_attempts: u32,
    initial_backoff: String,
    max_backoff: String,
    backoff_multiplier: f64,
    retryable_status_codes: Vec<Value>,
    #[serde(default)]
    per_attempt_recv_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHedging {
    max_attempts: u32,
    #[serde(default)]
    hedging_delay: Option<String>,
    #[serde(default)]
    non_fatal_status_codes: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawThrottling {
    max_tokens: u32,
    token_ratio: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHealth {
    #[serde(default)]
    service_name: Option<String>,
}

/// The names of the types above, which serde puts in its messages.
const RAW_TYPES: [&str; 7] = [
    "RawMethod",
    "RawName",
    "RawRetry",
    "RawHedging",
    "RawThrottling",
    "RawHealth",
    "Raw",
];

impl ServiceConfig {
    /// Parses `json`; `source_name` (a file, or `--service-config`) goes into errors.
    ///
    /// # Errors
    /// The first problem found, with its JSON path.
    pub fn parse(source_name: &str, json: &str) -> Result<Self, ServiceConfigError> {
        let fail = |path: String, what: String| ServiceConfigError {
            source_name: source_name.to_owned(),
            path: if path.is_empty() || path == "." {
                "the top".into()
            } else {
                path
            },
            // serde names the Rust types it wanted; a person wants to hear "an object".
            what: RAW_TYPES.iter().fold(what, |w, name| {
                w.replace(&format!("struct {name}"), "an object")
            }),
        };
        let mut de = serde_json::Deserializer::from_str(json);
        let raw: Raw = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| fail(e.path().to_string(), e.inner().to_string()))?;
        let (lb_policy, outlier_detection) = lb_policy(&raw).map_err(|(p, w)| fail(p, w))?;
        let methods = raw
            .method_config
            .iter()
            .enumerate()
            .map(|(i, m)| method(m).map_err(|(p, w)| fail(format!("methodConfig[{i}]{p}"), w)))
            .collect::<Result<Vec<_>, _>>()?;
        let retry_throttling = match &raw.retry_throttling {
            None => None,
            Some(t) => {
                Some(throttling(t).map_err(|(p, w)| fail(format!("retryThrottling{p}"), w))?)
            }
        };
        Ok(Self {
            lb_policy,
            outlier_detection,
            health_service: raw.health_check_config.and_then(|h| h.service_name),
            methods,
            retry_throttling,
        })
    }

    /// The `methodConfig` entry for `path` (`/SERVICE/METHOD`): the exact method's, else the
    /// service's, else the default one, as gRPC matches.
    pub fn method(&self, path: &str) -> Option<&MethodConfig> {
        let (service, method) = path.trim_start_matches('/').split_once('/')?;
        let exact = |n: &(String, Option<String>)| n.0 == service && n.1.as_deref() == Some(method);
        let whole = |n: &(String, Option<String>)| n.0 == service && n.1.is_none();
        let default = |n: &(String, Option<String>)| n.0.is_empty() && n.1.is_none();
        [&exact as &dyn Fn(&_) -> bool, &whole, &default]
            .iter()
            .find_map(|matches| self.methods.iter().find(|m| m.names.iter().any(matches)))
    }

    /// The `timeout` that applies to `path`.
    pub fn timeout(&self, path: &str) -> Option<Duration> {
        self.method(path).and_then(|m| m.timeout)
    }

    /// Whether calls to `path` wait for an endpoint that can take them (`waitForReady`) rather
    /// than fail at once when none can.
    pub fn wait_for_ready(&self, path: &str) -> bool {
        self.method(path).and_then(|m| m.wait_for_ready) == Some(true)
    }
}

type Problem = (String, String);

/// This process's draw for `percentage` choices, made once so that a client keeps its choice.
fn percentile() -> u32 {
    static DRAW: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *DRAW.get_or_init(|| fastrand::u32(0..100))
}

/// One choice of a DNS-published config (gRFC A2).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawChoice {
    #[serde(default)]
    client_language: Option<Vec<String>>,
    #[serde(default)]
    percentage: Option<u32>,
    #[serde(default)]
    client_hostname: Option<Vec<String>>,
    service_config: Value,
}

/// The service config a client picks from `_grpc_config.NAME`'s TXT strings (gRFC A2): the
/// record starting `grpc_config=` holds a JSON list of choices; the first whose
/// `clientLanguage` (if any) names rust, whose `percentage` (if any) this client falls in, and
/// whose `clientHostname` (if any) names this host, gives its `serviceConfig`. `Ok(None)`: no
/// record or no choice for this client.
pub(crate) fn choose_from_txt(texts: &[String]) -> Result<Option<String>, String> {
    let Some(json) = texts.iter().find_map(|t| t.strip_prefix("grpc_config=")) else {
        return Ok(None);
    };
    let mut de = serde_json::Deserializer::from_str(json);
    let choices: Vec<RawChoice> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| format!("grpc_config at {}: {}", e.path(), e.inner()))?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let chosen = choices.into_iter().find(|c| {
        let named = |list: &Option<Vec<String>>, me: &str| {
            list.as_ref()
                .is_none_or(|l| l.iter().any(|x| x.eq_ignore_ascii_case(me)))
        };
        named(&c.client_language, "rust")
            && named(&c.client_hostname, host.trim())
            && c.percentage.is_none_or(|p| percentile() < p)
    });
    Ok(chosen.map(|c| c.service_config.to_string()))
}

/// The first `loadBalancingConfig` entry calcmesh knows, or the deprecated `loadBalancingPolicy`.
fn lb_policy(raw: &Raw) -> Result<Balancing, Problem> {
    if let Some(chosen) = balancing(&raw.load_balancing_config, "loadBalancingConfig")? {
        return Ok(chosen);
    }
    let policy = match raw.load_balancing_policy.as_deref() {
        None => None,
        Some("round_robin") => Some(LbPolicy::RoundRobin),
        Some("pick_first") => Some(LbPolicy::PickFirst { shuffle: false }),
        Some(other) => {
            return Err((
                "loadBalancingPolicy".into(),
                format!("unknown policy {other:?}: expected round_robin or pick_first"),
            ));
        }
    };
    Ok((policy, None))
}

/// A balancing policy, and the outlier detection around it.
type Balancing = (Option<LbPolicy>, Option<OutlierDetection>);

/// The first entry of `entries` (at `path`) calcmesh knows; with outlier detection when that
/// entry is `outlier_detection_experimental` around a child policy.
fn balancing(
    entries: &[BTreeMap<String, Value>],
    path: &str,
) -> Result<Option<Balancing>, Problem> {
    for (i, entry) in entries.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let mut pairs = entry.iter();
        let (Some((name, body)), None) = (pairs.next(), pairs.next()) else {
            return Err((
                path,
                "expected an object with exactly one policy name".into(),
            ));
        };
        let path = format!("{path}.{name}");
        if name == "outlier_detection_experimental" {
            let (outlier, children) = outlier_detection(body, &path)?;
            let child_path = format!("{path}.childPolicy");
            let Some((Some(policy), _)) = balancing(&children, &child_path)? else {
                return Err((
                    child_path,
                    "expected a child policy calcmesh knows: round_robin, pick_first or least_request_experimental".into(),
                ));
            };
            return Ok(Some((Some(policy), Some(outlier))));
        }
        if let Some(policy) = known_policy(name, body, &path)? {
            return Ok(Some((Some(policy), None)));
        }
        // gRPC skips policies it does not know and takes the next.
    }
    Ok(None)
}

/// The policy `name` (with its settings `body`), or `None` for one calcmesh does not know.
fn known_policy(name: &str, body: &Value, path: &str) -> Result<Option<LbPolicy>, Problem> {
    match name {
        "round_robin" => Ok(Some(LbPolicy::RoundRobin)),
        "pick_first" => match body.get("shuffleAddressList") {
            None => Ok(Some(LbPolicy::PickFirst { shuffle: false })),
            Some(Value::Bool(shuffle)) => Ok(Some(LbPolicy::PickFirst { shuffle: *shuffle })),
            Some(_) => Err((
                format!("{path}.shuffleAddressList"),
                "expected true or false".into(),
            )),
        },
        "least_request_experimental" => match body.get("choiceCount").map(Value::as_u64) {
            None | Some(Some(2)) => Ok(Some(LbPolicy::LeastRequest)),
            _ => Err((
                format!("{path}.choiceCount"),
                "calcmesh's least_request compares 2 endpoints: only 2 is supported".into(),
            )),
        },
        _ => Ok(None),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOutlier {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    base_ejection_time: Option<String>,
    #[serde(default)]
    max_ejection_time: Option<String>,
    #[serde(default)]
    max_ejection_percent: Option<u32>,
    #[serde(default)]
    success_rate_ejection: Option<RawAlgorithm>,
    #[serde(default)]
    failure_percentage_ejection: Option<RawAlgorithm>,
    #[serde(default)]
    child_policy: Vec<BTreeMap<String, Value>>,
}

/// Both algorithms' fields; `stdevFactor` belongs to success rate, `threshold` to failure
/// percentage (checked in [`algorithm`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAlgorithm {
    #[serde(default)]
    stdev_factor: Option<u32>,
    #[serde(default)]
    threshold: Option<u32>,
    #[serde(default)]
    enforcement_percentage: Option<u32>,
    #[serde(default)]
    minimum_hosts: Option<u32>,
    #[serde(default)]
    request_volume: Option<u32>,
}

/// `outlier_detection_experimental`'s settings with A50's defaults, and its child policies.
fn outlier_detection(
    body: &Value,
    path: &str,
) -> Result<(OutlierDetection, Vec<BTreeMap<String, Value>>), Problem> {
    let raw: RawOutlier = serde_path_to_error::deserialize(body.clone()).map_err(|e| {
        let inner = e.path().to_string();
        let at = if inner == "." {
            path.to_owned()
        } else {
            format!("{path}.{inner}")
        };
        let what = e.inner().to_string();
        (
            at,
            what.replace("struct RawOutlier", "an object")
                .replace("struct RawAlgorithm", "an object"),
        )
    })?;
    let time = |field: &str, value: &Option<String>, default: u64| match value {
        Some(text) => duration(text).map_err(|w| (format!("{path}.{field}"), w)),
        None => Ok(Duration::from_secs(default)),
    };
    let success_rate = match &raw.success_rate_ejection {
        Some(r) => Some(algorithm(path, "successRateEjection", r)?),
        None => None,
    };
    let failure_percentage = match &raw.failure_percentage_ejection {
        Some(r) => Some(algorithm(path, "failurePercentageEjection", r)?),
        None => None,
    };
    let config = OutlierDetection {
        interval: time("interval", &raw.interval, 10)?,
        base_ejection_time: time("baseEjectionTime", &raw.base_ejection_time, 30)?,
        max_ejection_time: time("maxEjectionTime", &raw.max_ejection_time, 300)?,
        max_ejection_percent: percent(path, "maxEjectionPercent", raw.max_ejection_percent, 10)?,
        success_rate,
        failure_percentage,
    };
    if config.interval.is_zero() {
        return Err((format!("{path}.interval"), "expected more than 0s".into()));
    }
    Ok((config, raw.child_policy))
}

/// `successRateEjection` or `failurePercentageEjection` (`field`), with A50's defaults.
fn algorithm(path: &str, field: &str, raw: &RawAlgorithm) -> Result<Algorithm, Problem> {
    let at = format!("{path}.{field}");
    let success_rate = field == "successRateEjection";
    let (misplaced, name) = if success_rate {
        (raw.threshold.is_some(), "threshold")
    } else {
        (raw.stdev_factor.is_some(), "stdevFactor")
    };
    if misplaced {
        return Err((
            format!("{at}.{name}"),
            format!("{name} belongs to the other algorithm"),
        ));
    }
    let factor = match success_rate {
        true => raw.stdev_factor.unwrap_or(1900),
        false => percent(&at, "threshold", raw.threshold, 85)?,
    };
    Ok(Algorithm {
        factor,
        enforcement_percentage: percent(
            &at,
            "enforcementPercentage",
            raw.enforcement_percentage,
            100,
        )?,
        minimum_hosts: raw.minimum_hosts.unwrap_or(5),
        request_volume: raw
            .request_volume
            .unwrap_or(if success_rate { 100 } else { 50 }),
    })
}

/// A percentage field at `path.field` (default `default`), 0 to 100.
fn percent(path: &str, field: &str, value: Option<u32>, default: u32) -> Result<u32, Problem> {
    match value.unwrap_or(default) {
        p if p <= 100 => Ok(p),
        p => Err((
            format!("{path}.{field}"),
            format!("{p} is not a percentage (0 to 100)"),
        )),
    }
}

fn method(m: &RawMethod) -> Result<MethodConfig, Problem> {
    let mut names = Vec::new();
    for (i, n) in m.name.iter().enumerate() {
        match (&n.service, &n.method) {
            (None | Some(_), None) => names.push((n.service.clone().unwrap_or_default(), None)),
            (Some(s), Some(method)) if !s.is_empty() => {
                names.push((s.clone(), Some(method.clone())))
            }
            _ => return Err((format!(".name[{i}]"), "a method needs its service".into())),
        }
    }
    let bytes = |field: &str, value: &Option<Value>| match value {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX)))
            .ok_or_else(|| (format!(".{field}"), "expected a number of bytes".to_owned())),
    };
    let max_request_bytes = bytes("maxRequestMessageBytes", &m.max_request_message_bytes)?;
    let max_response_bytes = bytes("maxResponseMessageBytes", &m.max_response_message_bytes)?;
    if m.retry_policy.is_some() && m.hedging_policy.is_some() {
        return Err((
            "".into(),
            "retryPolicy and hedgingPolicy cannot both be set".into(),
        ));
    }
    let timeout = match &m.timeout {
        Some(t) => Some(duration(t).map_err(|w| (".timeout".to_owned(), w))?),
        None => None,
    };
    let retry = match &m.retry_policy {
        Some(r) => Some(retry(r).map_err(|(p, w)| (format!(".retryPolicy{p}"), w))?),
        None => None,
    };
    let hedging = match &m.hedging_policy {
        Some(h) => Some(hedging(h).map_err(|(p, w)| (format!(".hedgingPolicy{p}"), w))?),
        None => None,
    };
    Ok(MethodConfig {
        names,
        timeout,
        wait_for_ready: m.wait_for_ready,
        max_request_bytes,
        max_response_bytes,
        retry,
        hedging,
    })
}

/// gRFC A6's rules for a retry policy; the attempts capped at 5.
fn retry(r: &RawRetry) -> Result<RetryPolicy, Problem> {
    if r.max_attempts < 2 {
        return Err((
            ".maxAttempts".into(),
            format!("{} is under 2", r.max_attempts),
        ));
    }
    let positive = |field: &str, value: &str| {
        let d = duration(value).map_err(|w| (format!(".{field}"), w))?;
        if d.is_zero() {
            return Err((format!(".{field}"), "expected more than 0s".into()));
        }
        Ok(d)
    };
    let initial_backoff = positive("initialBackoff", &r.initial_backoff)?;
    let max_backoff = positive("maxBackoff", &r.max_backoff)?;
    if let Some(t) = &r.per_attempt_recv_timeout {
        duration(t).map_err(|w| (".perAttemptRecvTimeout".to_owned(), w))?;
    }
    if r.backoff_multiplier.is_nan() || r.backoff_multiplier <= 0.0 {
        return Err((
            ".backoffMultiplier".into(),
            "expected a number over 0".into(),
        ));
    }
    if r.retryable_status_codes.is_empty() {
        return Err((
            ".retryableStatusCodes".into(),
            "expected at least one status code".into(),
        ));
    }
    let retryable_codes = codes(&r.retryable_status_codes)
        .map_err(|(p, w)| (format!(".retryableStatusCodes{p}"), w))?;
    Ok(RetryPolicy {
        max_attempts: r.max_attempts.min(5),
        initial_backoff,
        max_backoff,
        backoff_multiplier: r.backoff_multiplier,
        retryable_codes,
    })
}

fn hedging(h: &RawHedging) -> Result<HedgingPolicy, Problem> {
    if h.max_attempts < 2 {
        return Err((
            ".maxAttempts".into(),
            format!("{} is under 2", h.max_attempts),
        ));
    }
    let delay = match &h.hedging_delay {
        Some(d) => duration(d).map_err(|w| (".hedgingDelay".to_owned(), w))?,
        None => Duration::ZERO,
    };
    let non_fatal_codes = codes(&h.non_fatal_status_codes)
        .map_err(|(p, w)| (format!(".nonFatalStatusCodes{p}"), w))?;
    Ok(HedgingPolicy {
        max_attempts: h.max_attempts.min(5),
        delay,
        non_fatal_codes,
    })
}

fn throttling(t: &RawThrottling) -> Result<RetryThrottling, Problem> {
    if t.max_tokens == 0 || t.max_tokens > 1000 {
        return Err((
            ".maxTokens".into(),
            format!("{} is not in 1..=1000", t.max_tokens),
        ));
    }
    if t.token_ratio.is_nan() || t.token_ratio <= 0.0 {
        return Err((".tokenRatio".into(), "expected a number over 0".into()));
    }
    Ok(RetryThrottling {
        max_tokens: t.max_tokens,
        token_ratio: t.token_ratio,
    })
}

/// Status codes by name (`"UNAVAILABLE"`) or number (`14`).
fn codes(list: &[Value]) -> Result<Vec<tonic::Code>, Problem> {
    list.iter()
        .enumerate()
        .map(|(i, code)| {
            let known = match code {
                Value::String(name) => crate::codes::NAMES
                    .contains(&name.as_str())
                    .then(|| crate::codes::from_name(name))
                    .flatten(),
                Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| crate::codes::from_name(&n.to_string())),
                _ => None,
            };
            known.ok_or_else(|| {
                (
                    format!("[{i}]"),
                    format!("{code} is not a status code (e.g. \"UNAVAILABLE\" or 14)"),
                )
            })
        })
        .collect()
}

/// A protobuf JSON duration: `"1.5s"`, `"0.000001s"`, `"10s"`.
fn duration(text: &str) -> Result<Duration, String> {
    let wrong =
        || format!("{text:?} is not a duration: expected seconds with an s, such as \"1.5s\"");
    let number = text.strip_suffix('s').ok_or_else(wrong)?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || fraction.len() > 9 {
        return Err(wrong());
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(wrong());
    }
    let secs: u64 = whole.parse().map_err(|_| wrong())?;
    let nanos: u32 = format!("{fraction:0<9}").parse().map_err(|_| wrong())?;
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GO_STYLE: &str = r#"{
      "loadBalancingConfig": [{"weighted_round_robin": {}}, {"round_robin": {}}],
      "methodConfig": [
        {"name": [{"service": "calculator.Calculator", "method": "Calculate"}], "timeout": "0.25s",
         "retryPolicy": {"maxAttempts": 7, "initialBackoff": "0.1s", "maxBackoff": "1s",
                         "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", 4]}},
        {"name": [{"service": "calculator.Calculator"}], "timeout": "2s", "waitForReady": true},
        {"name": [{}], "timeout": "30s"}
      ],
      "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
      "healthCheckConfig": {"serviceName": "calculator.Calculator"}
    }"#;

    #[test]
    fn a_config_written_for_grpc_go_parses_and_matches_methods_as_grpc_does() {
        let c = ServiceConfig::parse("f.json", GO_STYLE).unwrap();
        assert_eq!(
            c.lb_policy,
            Some(LbPolicy::RoundRobin),
            "the first known policy wins"
        );
        assert_eq!(c.health_service.as_deref(), Some("calculator.Calculator"));
        let retry = c.methods[0].retry.as_ref().unwrap();
        assert_eq!(retry.max_attempts, 5, "maxAttempts is capped at 5");
        assert_eq!(
            retry.retryable_codes,
            [tonic::Code::Unavailable, tonic::Code::DeadlineExceeded]
        );
        assert_eq!(retry.initial_backoff, Duration::from_millis(100));
        let t = |p| c.timeout(p);
        assert_eq!(
            t("/calculator.Calculator/Calculate"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            t("/calculator.Calculator/Summarize"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(t("/other.Service/Call"), Some(Duration::from_secs(30)));
    }

    fn error(json: &str) -> String {
        ServiceConfig::parse("svc.json", json)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_error_names_the_file_the_path_and_what_was_expected() {
        let cases = [
            (
                r#"{"methodConfig": [{"name": [{}], "timout": "1s"}]}"#,
                "svc.json: service config at methodConfig[0].timout: unknown field `timout`, expected one of `name`, `waitForReady`, `timeout`",
            ),
            (
                r#"{"methodConfig": [{"name": [{}], "timeout": "5"}]}"#,
                "at methodConfig[0].timeout: \"5\" is not a duration",
            ),
            (
                r#"{"methodConfig": [{}, {"retryPolicy": {"maxAttempts": 1, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#,
                "at methodConfig[1].retryPolicy.maxAttempts: 1 is under 2",
            ),
            (
                r#"{"methodConfig": [{"retryPolicy": {"maxAttempts": 3, "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABL"]}}]}"#,
                "at methodConfig[0].retryPolicy.retryableStatusCodes[0]: \"UNAVAILABL\" is not a status code",
            ),
            (
                r#"{"methodConfig": [{"name": [{"method": "Calculate"}]}]}"#,
                "at methodConfig[0].name[0]: a method needs its service",
            ),
            (
                r#"{"retryThrottling": {"maxTokens": 0, "tokenRatio": 1}}"#,
                "at retryThrottling.maxTokens: 0 is not in 1..=1000",
            ),
            (
                r#"{"loadBalancingConfig": [{"least_request_experimental": {"choiceCount": 3}}]}"#,
                "at loadBalancingConfig[0].least_request_experimental.choiceCount",
            ),
            (
                r#"{"methodConfig": [{"name": [{}], "timeout": 5}]}"#,
                "at methodConfig[0].timeout: invalid type",
            ),
            (
                r#"{"methodConfig": "#,
                "at methodConfig: EOF while parsing a value at line 1 column 17",
            ),
            (
                "42",
                "at the top: invalid type: integer `42`, expected an object",
            ),
            (
                r#"{"loadBalancingConfig": [{"outlier_detection_experimental": {"maxEjectionPercent": 150, "childPolicy": [{"round_robin": {}}]}}]}"#,
                "at loadBalancingConfig[0].outlier_detection_experimental.maxEjectionPercent: 150 is not a percentage (0 to 100)",
            ),
            (
                r#"{"loadBalancingConfig": [{"outlier_detection_experimental": {"childPolicy": [{"ring_hash_experimental": {}}]}}]}"#,
                "at loadBalancingConfig[0].outlier_detection_experimental.childPolicy: expected a child policy calcmesh knows",
            ),
            (
                r#"{"loadBalancingConfig": [{"outlier_detection_experimental": {"successRateEjection": {"threshold": 5}, "childPolicy": [{"round_robin": {}}]}}]}"#,
                "at loadBalancingConfig[0].outlier_detection_experimental.successRateEjection.threshold: threshold belongs to the other algorithm",
            ),
            (
                r#"{"loadBalancingConfig": [{"outlier_detection_experimental": {"intervall": "1s"}}]}"#,
                "at loadBalancingConfig[0].outlier_detection_experimental.intervall: unknown field `intervall`",
            ),
        ];
        for (json, want) in cases {
            let got = error(json);
            assert!(got.contains(want), "{json}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn outlier_detection_takes_a50_defaults_and_its_child_policy() {
        let json = r#"{"loadBalancingConfig": [{"outlier_detection_experimental": {
            "failurePercentageEjection": {}, "childPolicy": [{"weighted_round_robin": {}}, {"pick_first": {}}]}}]}"#;
        let c = ServiceConfig::parse("f.json", json).unwrap();
        assert_eq!(c.lb_policy, Some(LbPolicy::PickFirst { shuffle: false }));
        let od = c.outlier_detection.unwrap();
        assert_eq!(
            (
                od.interval,
                od.base_ejection_time,
                od.max_ejection_time,
                od.max_ejection_percent
            ),
            (
                Duration::from_secs(10),
                Duration::from_secs(30),
                Duration::from_secs(300),
                10
            )
        );
        assert_eq!(od.success_rate, None);
        let fp = od.failure_percentage.unwrap();
        assert_eq!(
            (
                fp.factor,
                fp.enforcement_percentage,
                fp.minimum_hosts,
                fp.request_volume
            ),
            (85, 100, 5, 50)
        );
    }

    #[test]
    fn a_dns_config_is_chosen_as_grpc_chooses() {
        let txt = |s: &str| vec!["v=spf1 -all".to_owned(), format!("grpc_config={s}")];
        let choices = r#"[
          {"clientLanguage": ["go"], "serviceConfig": {"loadBalancingConfig": [{"pick_first": {}}]}},
          {"clientLanguage": ["RUST", "java"], "serviceConfig": {"loadBalancingConfig": [{"round_robin": {}}]}}]"#;
        let chosen = choose_from_txt(&txt(choices)).unwrap().unwrap();
        assert!(chosen.contains("round_robin"), "{chosen}");
        let nobody = r#"[{"percentage": 0, "serviceConfig": {}}]"#;
        assert_eq!(choose_from_txt(&txt(nobody)), Ok(None));
        assert_eq!(choose_from_txt(&["v=spf1 -all".into()]), Ok(None));
        let typo = r#"[{"serviceConfig": {}, "clientLanguages": []}]"#;
        let err = choose_from_txt(&txt(typo)).unwrap_err();
        assert!(
            err.starts_with("grpc_config at [0].clientLanguages: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn durations_as_protobuf_spells_them() {
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("0.000000001s"), Ok(Duration::from_nanos(1)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        for bad in ["1", "-1s", "1.s0", "s", "1.0000000001s", "1ms"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
