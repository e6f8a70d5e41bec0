//! A server's answer as a client reads it, beyond what tonic checks (the Connect conformance
//! suite's client cases found each gap):
//! - `grpc-status` in the headers makes a trailers-only answer only when nothing follows them;
//!   with a body after them, the status is the trailers' (tonic takes the headers' at once);
//! - an answer compressed with an encoding this client does not read is INTERNAL (tonic:
//!   UNIMPLEMENTED, a server's code);
//! - the call's deadline holds until the answer's end, not only until its headers: a stream
//!   still arriving when it passes fails with DEADLINE_EXCEEDED (tonic only sends it along);
//! - an answer that ends inside a message, or without a status, is INTERNAL (tonic ends it OK).
//!
//! And its body keeps the call counted as outstanding (least_request, outlier detection) until
//! it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;

use crate::client::attempt::trailers_only_code;
use crate::client::balance::Outstanding;
use crate::client::throttle::Throttle;
use crate::compression::Compression;
use crate::framing::FrameScanner;
use crate::headers::{GRPC_ENCODING, GRPC_STATUS, find};

/// `response`'s head as gRPC reads it: a status among headers followed by a body is no status
/// (the trailers' counts), and an encoding this client does not read makes the answer a
/// trailers-only INTERNAL.
pub(super) fn head(mut response: http::Response<Body>) -> http::Response<Body> {
    if find(response.headers(), &GRPC_STATUS).is_some() && !response.body().is_end_stream() {
        for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
            response.headers_mut().remove(name);
        }
    }
    let encoding = find(response.headers(), &GRPC_ENCODING);
    let unread = encoding
        .and_then(|v| v.to_str().ok())
        .filter(|name| *name != "identity" && !Compression::is_accepted(name));
    let Some(name) = unread else {
        return response;
    };
    let status = Status::internal(format!(
        "the server compressed its answer with {name:?}, which this client does not read \
         (it reads {})",
        crate::compression::ACCEPTED
    ));
    status.into_http()
}

/// The response of a call that reached a server: its body keeps the call outstanding until it
/// ends, and tells `throttle` when the call succeeded. A tonic server whose copy of our deadline
/// fired first answers CANCELLED "Timeout expired"; once our deadline has passed, that is
/// DEADLINE_EXCEEDED.
pub(super) fn answered(
    mut response: http::Response<Body>,
    deadline: Option<Instant>,
    outstanding: Outstanding,
    throttle: Option<Arc<Throttle>>,
) -> http::Response<Body> {
    let code = trailers_only_code(&response);
    if code == Some(tonic::Code::Ok)
        && let Some(throttle) = &throttle
    {
        throttle.succeeded();
    }
    let cancelled = code == Some(tonic::Code::Cancelled);
    if cancelled && deadline.is_some_and(|d| Instant::now() >= d) {
        let headers = response.headers_mut();
        headers.insert("grpc-status", http::HeaderValue::from_static("4"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static("deadline exceeded"),
        );
    }
    // A committed call counts as a success when its trailers say OK.
    let committed = code.is_none();
    let throttle = throttle.filter(|_| committed);
    response.map(|body| {
        Body::new(AnswerBody {
            inner: body,
            deadline,
            timer: deadline
                .filter(|_| committed)
                .map(|d| Box::pin(tokio::time::sleep_until(d))),
            throttle,
            outstanding,
            scanner: FrameScanner::default(),
            committed,
            status_seen: false,
            ended: false,
        })
    })
}

/// Whether `status` comes from the connection failing (hyper's error among its sources).
fn transport_failure(status: &Status) -> bool {
    crate::error::is_caused_by::<hyper::Error>(status)
}

/// A response stream's failure as gRPC names it: past the deadline DEADLINE_EXCEEDED, whatever
/// reset the stream; a connection failing mid-response UNAVAILABLE (tonic: UNKNOWN).
fn call_error(status: Status, deadline: Option<Instant>) -> Status {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        Status::deadline_exceeded("deadline exceeded")
    } else if status.code() == tonic::Code::Unknown && transport_failure(&status) {
        Status::unavailable(status.message().to_owned())
    } else {
        status
    }
}

pin_project_lite::pin_project! {
    /// A response body checked as it passes (see the module), that keeps its call counted as
    /// outstanding until it ends.
    struct AnswerBody {
        #[pin]
        inner: Body,
        deadline: Option<Instant>,
        // The deadline, for a committed answer (a trailers-only one has ended already).
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        throttle: Option<Arc<Throttle>>,
        outstanding: Outstanding,
        scanner: FrameScanner,
        // Not trailers-only: its status must come in trailers.
        committed: bool,
        status_seen: bool,
        ended: bool,
    }
}

impl AnswerBody {
    /// Ends the answer with `status`.
    fn fail(
        self: Pin<&mut Self>,
        status: Status,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
        let this = self.project();
        *this.ended = true;
        this.outstanding.record(false);
        Poll::Ready(Some(Err(status)))
    }

    /// What the end of the answer (its trailers, or its last byte) says of it, if wrong.
    fn at_end(&self) -> Option<Status> {
        if self.scanner.mid_message() {
            return Some(Status::internal(
                "the server's answer ended inside a message (its prefix announced more bytes)",
            ));
        }
        (self.committed && !self.status_seen).then(|| {
            Status::internal("the server's answer ended without a status (no grpc-status trailer)")
        })
    }
}

impl HttpBody for AnswerBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let expired = self
            .as_mut()
            .project()
            .timer
            .as_mut()
            .is_some_and(|t| t.as_mut().poll(cx).is_ready());
        if expired {
            let status =
                Status::deadline_exceeded("deadline exceeded while the answer was arriving");
            return self.fail(status);
        }
        let this = self.as_mut().project();
        let frame = match ready!(this.inner.poll_frame(cx)) {
            Some(Err(status)) => {
                let status = call_error(status, *this.deadline);
                return self.fail(status);
            }
            Some(Ok(frame)) => frame,
            None => {
                *this.ended = true;
                return match self.at_end() {
                    Some(status) => self.fail(status),
                    None => Poll::Ready(None),
                };
            }
        };
        if let Some(data) = frame.data_ref() {
            let _ = this.scanner.scan(data, usize::MAX);
        }
        if let Some(trailers) = frame.trailers_ref() {
            let status = find(trailers, &GRPC_STATUS);
            *this.status_seen = status.is_some();
            if let Some(status) = self.at_end() {
                return self.fail(status);
            }
            let this = self.as_mut().project();
            let ok = status.is_some_and(|s| s == "0");
            this.outstanding.record(ok);
            if let (true, Some(throttle)) = (ok, this.throttle.as_ref()) {
                throttle.succeeded();
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.ended || (self.inner.is_end_stream() && self.at_end().is_none())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
