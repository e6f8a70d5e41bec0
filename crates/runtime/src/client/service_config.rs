//! The gRPC service config (gRFC A2): the JSON every gRPC implementation takes, parsed once into
//! [`ServiceConfig`], validated as gRFC A2 and A6 say, with errors that name the source, the JSON
//! path and what was expected.
//!
//! What a channel applies: `loadBalancingConfig` (`round_robin`, `pick_first` with
//! `shuffleAddressList`, `least_request_experimental` with `choiceCount` 2; the first entry calcmesh
//! knows wins, as gRPC picks), `healthCheckConfig.serviceName`, `retryThrottling` (see
//! `client::throttle`), and per method: `timeout` (the longest a call may take, whatever deadline
//! the caller set), `waitForReady` (wait for an endpoint until the deadline instead of failing at
//! once), `retryPolicy` (see [`crate::client::retry`]) and `hedgingPolicy` (see `client::hedge`).
//! The message-size fields are parsed and validated, so a config written for grpc-go is accepted
//! as it is, but not applied: the server's `--max-message-size` bounds requests.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::client::balance::LbPolicy;

/// A parsed, validated service config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceConfig {
    /// The balancing policy chosen from `loadBalancingConfig` (`None`: the channel's own).
    pub lb_policy: Option<LbPolicy>,
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
        let lb_policy = lb_policy(&raw).map_err(|(p, w)| fail(p, w))?;
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

/// The first `loadBalancingConfig` entry calcmesh knows, or the deprecated `loadBalancingPolicy`.
fn lb_policy(raw: &Raw) -> Result<Option<LbPolicy>, Problem> {
    for (i, entry) in raw.load_balancing_config.iter().enumerate() {
        let path = format!("loadBalancingConfig[{i}]");
        let mut pairs = entry.iter();
        let (Some((name, body)), None) = (pairs.next(), pairs.next()) else {
            return Err((
                path,
                "expected an object with exactly one policy name".into(),
            ));
        };
        let path = format!("{path}.{name}");
        match name.as_str() {
            "round_robin" => return Ok(Some(LbPolicy::RoundRobin)),
            "pick_first" => {
                let shuffle = match body.get("shuffleAddressList") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err((
                            format!("{path}.shuffleAddressList"),
                            "expected true or false".into(),
                        ));
                    }
                };
                return Ok(Some(LbPolicy::PickFirst { shuffle }));
            }
            "least_request_experimental" => match body.get("choiceCount").map(Value::as_u64) {
                None | Some(Some(2)) => return Ok(Some(LbPolicy::LeastRequest)),
                _ => {
                    return Err((
                        format!("{path}.choiceCount"),
                        "calcmesh's least_request compares 2 endpoints: only 2 is supported".into(),
                    ));
                }
            },
            _ => continue, // gRPC skips policies it does not know and takes the next
        }
    }
    match raw.load_balancing_policy.as_deref() {
        None => Ok(None),
        Some("round_robin") => Ok(Some(LbPolicy::RoundRobin)),
        Some("pick_first") => Ok(Some(LbPolicy::PickFirst { shuffle: false })),
        Some(other) => Err((
            "loadBalancingPolicy".into(),
            format!("unknown policy {other:?}: expected round_robin or pick_first"),
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
    for (field, value) in [
        ("maxRequestMessageBytes", &m.max_request_message_bytes),
        ("maxResponseMessageBytes", &m.max_response_message_bytes),
    ] {
        if let Some(v) = value
            && !(v.is_u64() || v.as_str().is_some_and(|s| s.parse::<u64>().is_ok()))
        {
            return Err((format!(".{field}"), "expected a number of bytes".into()));
        }
    }
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
        ];
        for (json, want) in cases {
            let got = error(json);
            assert!(got.contains(want), "{json}\n got: {got}\nwant: {want}");
        }
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
