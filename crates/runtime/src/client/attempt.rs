//! One call through a [`MeshChannel`](super::MeshChannel): wait for discovery, pick an endpoint,
//! send, and on a transport failure decide whether to try another (gRFC A6's rules as far as
//! they apply: only before any response, only when safe, within the deadline and the budget).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body::Body as HttpBody;
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;
use tower::retry::budget::Budget;

use super::Shared;
use crate::client::balance::{Endpoint, Outstanding};
use crate::client::message_limits::Limited;
use crate::client::retry::{Pushback, ReplayBody, Retries, never_reached_server, unreachable};
use crate::client::service_config::ServiceConfig;
use crate::error::BoxError;

/// One call, as every attempt of it sends it.
pub(super) struct Call {
    pub(super) parts: http::request::Parts,
    pub(super) body: ReplayBody,
    pub(super) deadline: Option<Instant>,
    pub(super) wait_for_ready: bool,
    /// The method's `maxResponseMessageBytes`.
    pub(super) response_limit: Option<usize>,
    /// Set when the request had a message over `maxRequestMessageBytes`: the call's status.
    pub(super) request_over_limit: Arc<std::sync::OnceLock<Status>>,
}

/// tonic reports its own expired deadline as a `TimeoutExpired` error (which becomes CANCELLED);
/// gRPC says DEADLINE_EXCEEDED.
fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    crate::error::is_caused_by::<tonic::TimeoutExpired>(err)
}

pub(super) fn deadline_exceeded() -> BoxError {
    Box::new(Status::deadline_exceeded(
        "deadline exceeded before the server answered",
    ))
}

impl Shared {
    fn no_endpoint(&self) -> BoxError {
        let cause = self
            .balancer
            .a_failure()
            .map(|f| format!(" (last failure: {f})"))
            .unwrap_or_default();
        let why = self.balancer.counts().none_eligible(&self.target);
        Box::new(Status::unavailable(format!("{why}{cause}")))
    }

    /// An endpoint for the next attempt. With none eligible but some reconnecting (gRPC's
    /// CONNECTING), waits for one — at most the connect timeout, and never past the deadline.
    /// A `wait_for_ready` call waits for any endpoint to become eligible, until its deadline.
    async fn pick(
        &self,
        tried: &[Arc<Endpoint>],
        deadline: Option<Instant>,
        wait_for_ready: bool,
    ) -> Option<Arc<Endpoint>> {
        let mut changes = self.balancer.subscribe();
        let until = match (wait_for_ready, deadline) {
            (true, Some(deadline)) => deadline,
            (true, None) => Instant::now() + Duration::from_secs(86_400),
            (false, _) => {
                let until = Instant::now() + self.connect_timeout;
                deadline.map_or(until, |d| d.min(until))
            }
        };
        loop {
            changes.borrow_and_update();
            if let Some(endpoint) = self.balancer.pick(tried) {
                return Some(endpoint);
            }
            let worth_waiting = wait_for_ready || self.balancer.counts().connecting > 0;
            if !worth_waiting
                || tokio::time::timeout_at(until, changes.changed())
                    .await
                    .is_err()
            {
                return None;
            }
        }
    }

    /// Sends `request`, again (on another endpoint where there is one) after a failure when
    /// that is safe or the method's retry policy says so; as hedged copies under a hedging
    /// policy.
    pub(super) async fn call(
        self: Arc<Self>,
        mut request: http::Request<Body>,
    ) -> Result<http::Response<Body>, BoxError> {
        let config = self.live.get();
        let deadline = Self::deadline(&mut request, config.as_deref());
        self.wait_for_discovery(deadline).await?;
        let path = request.uri().path().to_owned();
        let method = config.as_deref().and_then(|c| c.method(&path));
        let (parts, body) = request.into_parts();
        let request_over_limit = Arc::default();
        let limit = method.and_then(|m| m.max_request_bytes);
        let body = Limited::request(body, limit, Arc::clone(&request_over_limit));
        let call = Call {
            parts,
            body: ReplayBody::new(body),
            request_over_limit,
            deadline,
            wait_for_ready: method.and_then(|m| m.wait_for_ready) == Some(true),
            response_limit: method.and_then(|m| m.max_response_bytes),
        };
        if let Some(policy) = method.and_then(|m| m.hedging.clone()) {
            return self.hedged(call, policy).await;
        }
        let idempotent = self.idempotent.iter().any(|p| path.starts_with(p.as_str()));
        let retries = method.and_then(|m| m.retry.clone()).map(Retries::new);
        self.budget.deposit();
        self.retried(call, retries, idempotent).await
    }

    /// The attempts of one call, one after another.
    async fn retried(
        &self,
        call: Call,
        mut retries: Option<Retries>,
        idempotent: bool,
    ) -> Result<http::Response<Body>, BoxError> {
        let mut tried = Vec::new();
        loop {
            let endpoint = self.endpoint_for(&call, &tried).await?;
            let (result, outstanding) = self.attempt(&call, endpoint.clone(), tried.len()).await?;
            tried.push(endpoint);
            let (code, pushback) = match &result {
                Ok(response) => match trailers_only_code(response) {
                    Some(code) if code != tonic::Code::Ok => {
                        (code, Pushback::of(response.headers()))
                    }
                    _ => return self.final_answer(result, &tried, &call, outstanding),
                },
                Err(err) => {
                    if let Some(err) = self.broken(err, &call, &tried, idempotent, &retries) {
                        return Err(err);
                    }
                    if never_reached_server(err.as_ref()) || retries.is_none() {
                        self.count_retry(&tried, err);
                        continue;
                    }
                    (tonic::Code::Unavailable, Pushback::None)
                }
            };
            let wait = retries
                .as_mut()
                .and_then(|r| self.retry_wait(r, code, pushback, &call));
            let Some(wait) = wait else {
                return self.final_answer(result, &tried, &call, outstanding);
            };
            drop(outstanding);
            if !sleep_within(wait, call.deadline).await {
                return Err(deadline_exceeded());
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target = %self.target, attempt = tried.len() + 1, ?code, ?wait, "retrying, as the retry policy says");
        }
    }

    /// An endpoint for the next attempt, or the error that ends the call.
    pub(super) async fn endpoint_for(
        &self,
        call: &Call,
        tried: &[Arc<Endpoint>],
    ) -> Result<Arc<Endpoint>, BoxError> {
        match self.pick(tried, call.deadline, call.wait_for_ready).await {
            Some(endpoint) => Ok(endpoint),
            None => Err(self.nowhere_to_go(call.deadline)),
        }
    }

    /// Sends one attempt to `endpoint`; `previous` attempts went before it (sent to the server
    /// as `grpc-previous-rpc-attempts`). The outer error ends the call (the body can no longer
    /// be replayed); the inner one is the attempt's.
    pub(super) async fn attempt(
        &self,
        call: &Call,
        endpoint: Arc<Endpoint>,
        previous: usize,
    ) -> Result<(Result<http::Response<Body>, BoxError>, Outstanding), BoxError> {
        let Some(body) = call.body.replay() else {
            return Err(Box::new(Status::unavailable("request too large to retry")));
        };
        let request = attempt_request(&call.parts, body, previous)?;
        let outstanding = endpoint.start_call();
        let mut channel = endpoint.channel.clone();
        let result = match tower::ServiceExt::ready(&mut channel).await {
            Ok(channel) => tower_service::Service::call(channel, request).await,
            Err(err) => Err(err),
        };
        let result = result.map(|r| as_grpc(super::answer::head(r)));
        // What outlier detection counts: a failed attempt now; a committed call at its end.
        match &result {
            Err(_) => outstanding.record(false),
            Ok(response) => {
                if let Some(code) = trailers_only_code(response) {
                    outstanding.record(code == tonic::Code::Ok);
                }
            }
        }
        Ok((result, outstanding))
    }

    /// After an attempt's transport error: the error that ends the call, or `None` when it may
    /// be tried again (the server never saw it, or the method is idempotent, or a retry policy
    /// decides).
    fn broken(
        &self,
        err: &BoxError,
        call: &Call,
        tried: &[Arc<Endpoint>],
        idempotent: bool,
        retries: &Option<Retries>,
    ) -> Option<BoxError> {
        // A request message over maxRequestMessageBytes: final, whatever else is true.
        if let Some(status) = call.request_over_limit.get() {
            return Some(Box::new(status.clone()));
        }
        // Past the deadline, the call failed because of it, however the server ended the
        // stream (grpc-go resets it with CANCEL): gRPC says DEADLINE_EXCEEDED.
        if is_timeout(err.as_ref()) || call.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(deadline_exceeded());
        }
        let endpoint = &tried[tried.len() - 1];
        if unreachable(err.as_ref()) {
            endpoint.set_down(endpoint.explain(err.as_ref()));
        }
        let unseen = never_reached_server(err.as_ref());
        let by_policy = retries
            .as_ref()
            .is_some_and(|r| r.retryable(tonic::Code::Unavailable));
        let retryable = (unseen && tried.len() < self.max_attempts)
            || (retries.is_none() && idempotent && tried.len() < self.max_attempts)
            || by_policy;
        let budget_left = retries.is_some() && !unseen || self.budget.withdraw();
        (!retryable || call.body.replay().is_none() || !budget_left)
            .then(|| gave_up(tried, err.as_ref()))
    }

    /// How long to wait before retrying after a failure with `code`, or `None` for no retry.
    fn retry_wait(
        &self,
        retries: &mut Retries,
        code: tonic::Code,
        pushback: Pushback,
        call: &Call,
    ) -> Option<Duration> {
        if !retries.retryable(code) {
            return None;
        }
        let throttled = self.live.throttle().is_some_and(|t| !t.failed());
        if throttled || call.body.replay().is_none() {
            return None;
        }
        retries.next_wait(pushback)
    }

    /// Counts a transparent (or budgeted) retry and says so.
    fn count_retry(&self, tried: &[Arc<Endpoint>], err: &BoxError) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target = %self.target, attempt = tried.len() + 1, %err, "retrying on another endpoint");
    }

    /// The answer of a call no longer tried again: its last attempt's.
    pub(super) fn final_answer(
        &self,
        result: Result<http::Response<Body>, BoxError>,
        tried: &[Arc<Endpoint>],
        call: &Call,
        outstanding: Outstanding,
    ) -> Result<http::Response<Body>, BoxError> {
        match result {
            Ok(response) => {
                let response = response.map(|b| Limited::response(b, call.response_limit));
                let throttle = self.live.throttle();
                Ok(super::answer::answered(
                    response,
                    call.deadline,
                    outstanding,
                    throttle,
                ))
            }
            // The request's own message was over maxRequestMessageBytes: that is the status.
            Err(err) => Err(match call.request_over_limit.get() {
                Some(status) => Box::new(status.clone()),
                None => gave_up(tried, err.as_ref()),
            }),
        }
    }

    /// The call's deadline: the caller's `grpc-timeout`, or the method's service-config
    /// `timeout` when that is sooner (then sent as the call's `grpc-timeout`, so the server
    /// knows it too).
    fn deadline(
        request: &mut http::Request<Body>,
        config: Option<&ServiceConfig>,
    ) -> Option<Instant> {
        let now = Instant::now();
        let asked = crate::deadline::timeout_of(request.headers());
        let configured = config.and_then(|c| c.timeout(request.uri().path()));
        match (asked, configured) {
            (_, Some(limit)) if asked.is_none_or(|a| limit < a) => {
                let value = crate::deadline::format_timeout(limit);
                if let Ok(value) = http::HeaderValue::from_str(&value) {
                    request.headers_mut().insert("grpc-timeout", value);
                }
                Some(now + limit)
            }
            _ => asked.map(|left| now + left),
        }
    }

    /// Waits for discovery's first answer (static targets have it already), within the deadline
    /// or 10 s.
    async fn wait_for_discovery(&self, deadline: Option<Instant>) -> Result<(), BoxError> {
        // Every call but the first few finds it resolved: no timer armed, no clock read.
        if *self.resolved.borrow() {
            return Ok(());
        }
        let mut resolved = self.resolved.clone();
        let first = resolved.wait_for(|r| *r);
        let wait = deadline.map_or(Duration::from_secs(10), |d| {
            d.saturating_duration_since(Instant::now())
        });
        match tokio::time::timeout(wait, first).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(self.nowhere_to_go(deadline)),
        }
    }

    /// DEADLINE_EXCEEDED once the deadline has passed, UNAVAILABLE with the reason otherwise.
    pub(super) fn nowhere_to_go(&self, deadline: Option<Instant>) -> BoxError {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            deadline_exceeded()
        } else {
            self.no_endpoint()
        }
    }
}

/// A copy of the call's request for one attempt, with the replayed body; after `previous`
/// attempts, it says so in `grpc-previous-rpc-attempts` (gRFC A6).
fn attempt_request<B: HttpBody<Data = bytes::Bytes> + Send + 'static>(
    parts: &http::request::Parts,
    body: B,
    previous: usize,
) -> Result<http::Request<Body>, BoxError>
where
    B::Error: Into<BoxError>,
{
    let mut builder = http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .version(parts.version);
    if let Some(headers) = builder.headers_mut() {
        *headers = parts.headers.clone();
        if previous > 0 {
            headers.insert(
                "grpc-previous-rpc-attempts",
                http::HeaderValue::from(previous),
            );
        }
    }
    builder
        .body(Body::new(body))
        .map_err(|e| Box::new(e) as BoxError)
}

/// The status of a trailers-only answer (`grpc-status` among the response headers): a call that
/// failed before the server sent any headers of its own. `None`: the call is committed.
pub(super) fn trailers_only_code(response: &http::Response<Body>) -> Option<tonic::Code> {
    let status = crate::headers::find(response.headers(), &crate::headers::GRPC_STATUS)?;
    let code: i32 = status.to_str().ok()?.parse().ok()?;
    Some(tonic::Code::from(code))
}

/// A response that is not gRPC (see [`crate::diagnose::http_answer`]) as a trailers-only
/// answer with the code the gRPC spec maps its HTTP status to; tonic alone would read an error
/// page as gRPC messages ("invalid compression flag").
fn as_grpc(response: http::Response<Body>) -> http::Response<Body> {
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let grpc = content_type.starts_with("application/grpc");
    if trailers_only_code(&response).is_some() || (response.status().is_success() && grpc) {
        return response;
    }
    let (code, message) = crate::diagnose::http_answer(response.status(), content_type);
    let mut answer = http::Response::new(Body::empty());
    let headers = answer.headers_mut();
    let grpc_status = http::HeaderValue::from(code as i32);
    headers.insert("grpc-status", grpc_status);
    if let Ok(message) = http::HeaderValue::from_str(&message) {
        headers.insert("grpc-message", message);
    }
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    answer
}

/// Waits `wait`, unless the deadline comes first: then waits for it and says `false`.
pub(super) async fn sleep_within(wait: Duration, deadline: Option<Instant>) -> bool {
    let wake = Instant::now() + wait;
    match deadline {
        Some(deadline) if deadline < wake => {
            tokio::time::sleep_until(deadline).await;
            false
        }
        _ => {
            tokio::time::sleep_until(wake).await;
            true
        }
    }
}

/// The error of a call that will not be tried again: a transport failure is UNAVAILABLE in
/// gRPC's terms (tonic would say UNKNOWN for a reset connection), naming the endpoints tried.
pub(super) fn gave_up(
    tried: &[Arc<Endpoint>],
    err: &(dyn std::error::Error + 'static),
) -> BoxError {
    let last = &tried[tried.len() - 1];
    let (endpoint, cause) = (&last.authority, last.explain(err));
    let attempts = match tried.len() {
        1 => String::new(),
        n => format!(
            " (attempt {n}, after {})",
            tried[..n - 1]
                .iter()
                .map(|e| e.authority.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Box::new(Status::unavailable(format!(
        "{endpoint}: {cause}{attempts}"
    )))
}
