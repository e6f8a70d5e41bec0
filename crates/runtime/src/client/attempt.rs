//! One call through a [`MeshChannel`](super::MeshChannel): wait for discovery, pick an endpoint,
//! send, and on a transport failure decide whether to try another (gRFC A6's rules as far as
//! they apply: only before any response, only when safe, within the deadline and the budget).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;
use tower::retry::budget::Budget;

use super::Shared;
use crate::client::balance::{Endpoint, Outstanding};
use crate::client::retry::{ReplayBody, never_reached_server, unreachable};
use crate::error::BoxError;

/// tonic reports its own expired deadline as a `TimeoutExpired` error (which becomes CANCELLED);
/// gRPC says DEADLINE_EXCEEDED.
fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    crate::error::is_caused_by::<tonic::TimeoutExpired>(err)
}

fn deadline_exceeded() -> BoxError {
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

    /// Sends `request`, on another endpoint again after a failure when that is safe.
    pub(super) async fn call(
        self: Arc<Self>,
        mut request: http::Request<Body>,
    ) -> Result<http::Response<Body>, BoxError> {
        let deadline = self.deadline(&mut request);
        self.wait_for_discovery(deadline).await?;
        let wait_for_ready = self
            .service_config
            .as_ref()
            .is_some_and(|c| c.wait_for_ready(request.uri().path()));
        let idempotent = self
            .idempotent
            .iter()
            .any(|p| request.uri().path().starts_with(p.as_str()));
        let (parts, body) = request.into_parts();
        let body = ReplayBody::new(body);
        self.budget.deposit();
        let mut tried = Vec::new();
        loop {
            let Some(endpoint) = self.pick(&tried, deadline, wait_for_ready).await else {
                return Err(self.nowhere_to_go(deadline));
            };
            let Some(attempt_body) = body.replay() else {
                return Err(Box::new(Status::unavailable("request too large to retry")));
            };
            let attempt = attempt_request(&parts, attempt_body)?;
            let outstanding = endpoint.start_call();
            let mut channel = endpoint.channel.clone();
            let result = match tower::ServiceExt::ready(&mut channel).await {
                Ok(channel) => tower_service::Service::call(channel, attempt).await,
                Err(err) => Err(err),
            };
            let err = match result {
                Ok(response) => return Ok(answered(response, deadline, outstanding)),
                Err(err) => err,
            };
            drop(outstanding);
            // Past the deadline, the call failed because of it, however the server ended the
            // stream (grpc-go resets it with CANCEL): gRPC says DEADLINE_EXCEEDED.
            if is_timeout(&err) || deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(deadline_exceeded());
            }
            let unseen = never_reached_server(&err);
            if unreachable(&err) {
                endpoint.set_down(crate::error::display_chain(&err));
            }
            tried.push(endpoint);
            let retryable = (idempotent || unseen)
                && tried.len() < self.max_attempts
                && body.replay().is_some()
                && deadline.is_none_or(|d| Instant::now() < d);
            if !retryable || !self.budget.withdraw() {
                return Err(gave_up(&tried, &err));
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target = %self.target, attempt = tried.len(), %err, "retrying on another endpoint");
        }
    }

    /// The call's deadline: the caller's `grpc-timeout`, or the method's service-config
    /// `timeout` when that is sooner (then sent as the call's `grpc-timeout`, so the server
    /// knows it too).
    fn deadline(&self, request: &mut http::Request<Body>) -> Option<Instant> {
        let now = Instant::now();
        let asked = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::deadline::parse_timeout);
        let configured = self
            .service_config
            .as_ref()
            .and_then(|c| c.timeout(request.uri().path()));
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
    fn nowhere_to_go(&self, deadline: Option<Instant>) -> BoxError {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            deadline_exceeded()
        } else {
            self.no_endpoint()
        }
    }
}

/// A copy of the call's request for one attempt, with the replayed body.
fn attempt_request<B: HttpBody<Data = bytes::Bytes> + Send + 'static>(
    parts: &http::request::Parts,
    body: B,
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
    }
    builder
        .body(Body::new(body))
        .map_err(|e| Box::new(e) as BoxError)
}

/// The response of a call that reached a server: its body keeps the call outstanding until it
/// ends. A tonic server whose copy of our deadline fired first answers CANCELLED "Timeout
/// expired"; once our deadline has passed, that is DEADLINE_EXCEEDED.
fn answered(
    mut response: http::Response<Body>,
    deadline: Option<Instant>,
    outstanding: Outstanding,
) -> http::Response<Body> {
    let cancelled = response
        .headers()
        .get("grpc-status")
        .is_some_and(|s| s == "1");
    if cancelled && deadline.is_some_and(|d| Instant::now() >= d) {
        let headers = response.headers_mut();
        headers.insert("grpc-status", http::HeaderValue::from_static("4"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static("deadline exceeded"),
        );
    }
    response.map(|body| {
        Body::new(OutstandingBody {
            inner: body,
            deadline,
            _outstanding: outstanding,
        })
    })
}

/// The error of a call that will not be tried again: a transport failure is UNAVAILABLE in
/// gRPC's terms (tonic would say UNKNOWN for a reset connection), naming the endpoints tried.
fn gave_up(tried: &[Arc<Endpoint>], err: &(dyn std::error::Error + 'static)) -> BoxError {
    let endpoint = &tried[tried.len() - 1].authority;
    let cause = crate::error::display_chain(err);
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

/// Whether `status` comes from the connection failing (hyper's error among its sources).
fn transport_failure(status: &Status) -> bool {
    crate::error::is_caused_by::<hyper::Error>(status)
}

pin_project_lite::pin_project! {
    /// A response body that keeps its call counted as outstanding until it ends.
    struct OutstandingBody {
        #[pin]
        inner: Body,
        deadline: Option<Instant>,
        _outstanding: Outstanding,
    }
}

impl HttpBody for OutstandingBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            // The stream failed once the deadline had passed: DEADLINE_EXCEEDED, whatever reset it.
            Poll::Ready(Some(Err(_))) if this.deadline.is_some_and(|d| Instant::now() >= d) => {
                Poll::Ready(Some(Err(Status::deadline_exceeded("deadline exceeded"))))
            }
            // The connection failed mid-response: gRPC calls that UNAVAILABLE (tonic: UNKNOWN).
            Poll::Ready(Some(Err(status)))
                if status.code() == tonic::Code::Unknown && transport_failure(&status) =>
            {
                Poll::Ready(Some(Err(Status::unavailable(status.message().to_owned()))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
