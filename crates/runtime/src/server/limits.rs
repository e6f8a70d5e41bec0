//! What the wire may carry: a gRPC content type, an encoding the server reads (see
//! `server::encoding`), and messages within the size limit.
//!
//! A request whose `content-type` is not `application/grpc` (or `application/grpc+…`) is not a
//! gRPC call: it gets HTTP 415, as the gRPC over HTTP/2 spec says, with `grpc-status`
//! INVALID_ARGUMENT naming the type, so a gRPC client can say what went wrong, and the same in
//! text for a person, once the request has ended (`not_grpc`). A codec no
//! service here has (`application/grpc+json`: only protobuf is served) is HTTP 415 with
//! UNIMPLEMENTED, and a method other than POST HTTP 405 with UNIMPLEMENTED. A method that takes
//! one request message and gets none or two is UNIMPLEMENTED, the spec's cardinality violation
//! ([`MessageSizeLimitLayer::single_request`]).
//!
//! gRPC says a message larger than the receiver's limit fails with RESOURCE_EXHAUSTED; tonic's
//! own decoder answers OUT_OF_RANGE. [`MessageSizeLimitLayer`] reads the 5-byte length prefix of
//! every request message as it arrives and fails the call with RESOURCE_EXHAUSTED the moment a
//! prefix announces more than the limit, before the payload is buffered. The layer only counts
//! bytes passing by; it copies nothing. A compressed message is bounded twice: its announced
//! (compressed) length here, and its decompressed size by tonic's decoder, which stops inflating
//! at the same limit and answers RESOURCE_EXHAUSTED — a small message that would inflate to
//! gigabytes never holds more than the limit in memory.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

use crate::compression::CompressAnswers;
use crate::framing::FrameScanner;
use crate::telemetry::metrics::ReceivedMessages;

/// A tower layer that fails request messages larger than `limit` bytes with RESOURCE_EXHAUSTED.
#[derive(Debug, Clone)]
pub struct MessageSizeLimitLayer {
    limit: usize,
    answers: CompressAnswers,
    single: Arc<fnv::FnvHashSet<String>>,
}

impl MessageSizeLimitLayer {
    /// A layer with a limit of `limit` bytes per (uncompressed) request message, whose server
    /// compresses `answers` as said.
    pub fn new(limit: usize, answers: CompressAnswers) -> Self {
        Self {
            limit,
            answers,
            single: Arc::default(),
        }
    }

    /// Fails a call to one of `paths` (methods whose request is one message: unary and
    /// server-streaming) with UNIMPLEMENTED when it sends no message or more than one — the
    /// gRPC spec's cardinality violation, which tonic lets pass (it reads the first message
    /// and drops the rest, or answers INTERNAL "Missing request message").
    pub fn single_request(mut self, paths: fnv::FnvHashSet<String>) -> Self {
        self.single = Arc::new(paths);
        self
    }
}

impl<S> tower_layer::Layer<S> for MessageSizeLimitLayer {
    type Service = MessageSizeLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageSizeLimit {
            inner,
            limit: self.limit,
            answers: self.answers,
            single: self.single.clone(),
        }
    }
}

/// The service made by [`MessageSizeLimitLayer`].
#[derive(Debug, Clone)]
pub struct MessageSizeLimit<S> {
    inner: S,
    limit: usize,
    answers: CompressAnswers,
    single: Arc<fnv::FnvHashSet<String>>,
}

/// HTTP 415 for a request (`headers`, `body`) that is not gRPC: `grpc-status` INVALID_ARGUMENT
/// naming its content type in the headers, so a gRPC client can say what went wrong, and the
/// same words as a text body, for a person with curl or a browser.
///
/// The answer ends only once the request has (or once [`NOT_GRPC_READ`] bytes of it are read and
/// dropped). Ended earlier, the stream would be closed while the client still sends, and an
/// HTTP/2 peer that breaks the protocol later in the request (a pseudo-header in its trailers, a
/// wrong `content-length`, a stream past the limit) would get no stream error, or one depending
/// on which came first: h2spec's verdicts on those cases changed from run to run.
pub(crate) fn not_grpc(headers: &http::HeaderMap, body: Body) -> http::Response<Body> {
    let given = headers
        .get(http::header::CONTENT_TYPE)
        .map_or_else(|| "none".to_owned(), |v| format!("{v:?}"));
    let words = format!("content-type {given} is not a gRPC request: expected application/grpc");
    let refused = Status::invalid_argument(words.clone()).into_http::<Body>();
    let (mut head, _) = refused.into_parts();
    head.status = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
    head.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let body = AfterRequest {
        request: body,
        read: 0,
        words: Some(bytes::Bytes::from(words + "\n")),
    };
    http::Response::from_parts(head, Body::new(body))
}

/// How much of a request that is not gRPC is read (and dropped) before it is answered anyway.
const NOT_GRPC_READ: usize = 64 * 1024;

/// A body of `words`, sent once the request has ended.
struct AfterRequest {
    request: Body,
    read: usize,
    words: Option<bytes::Bytes>,
}

impl HttpBody for AfterRequest {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
        while self.read < NOT_GRPC_READ && self.words.is_some() {
            match ready!(Pin::new(&mut self.request).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    self.read += frame.data_ref().map_or(0, Buf::remaining);
                }
                // Ended, or reset by the client: either way, the request is over.
                Some(Err(_)) | None => break,
            }
        }
        Poll::Ready(self.words.take().map(|words| Ok(Frame::data(words))))
    }

    fn is_end_stream(&self) -> bool {
        self.words.is_none()
    }
}

/// The answer to a request that is no gRPC call this server can take, if it is one: HTTP 415
/// for a content type that is not gRPC (INVALID_ARGUMENT) or not protobuf (UNIMPLEMENTED: a
/// codec no service here has), HTTP 405 for a method other than POST (UNIMPLEMENTED).
fn refusal(request: &mut http::Request<Body>) -> Option<http::Response<Body>> {
    let content_type = request.headers().get(http::header::CONTENT_TYPE);
    let given = || content_type.map_or_else(|| "none".to_owned(), |v| format!("{v:?}"));
    let subtype = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("application/grpc"));
    let grpc = subtype.filter(|r| r.is_empty() || r.starts_with('+') || r.starts_with(';'));
    let (status, code) = match grpc {
        None => {
            let body = std::mem::replace(request.body_mut(), Body::empty());
            return Some(not_grpc(request.headers(), body));
        }
        Some(rest) if !matches!(rest.split(';').next(), Some("" | "+proto")) => (
            Status::unimplemented(format!(
                "content-type {}: this server's messages are protobuf only (application/grpc or application/grpc+proto)",
                given()
            )),
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        Some(_) if request.method() != http::Method::POST => (
            Status::unimplemented(format!(
                "HTTP method {}: a gRPC call is a POST",
                request.method()
            )),
            http::StatusCode::METHOD_NOT_ALLOWED,
        ),
        Some(_) => return None,
    };
    let mut response = status.into_http::<Body>();
    *response.status_mut() = code;
    if code == http::StatusCode::METHOD_NOT_ALLOWED {
        let allow = http::HeaderValue::from_static("POST");
        response.headers_mut().insert(http::header::ALLOW, allow);
    }
    Some(response)
}

impl<S> tower_service::Service<http::Request<Body>> for MessageSizeLimit<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        futures_util::future::Ready<Result<http::Response<Body>, S::Error>>,
        S::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        use futures_util::future::{Either, ready};
        if let Some(refused) = refusal(&mut req) {
            return Either::Left(ready(Ok(refused)));
        }
        if let Some(refused) = crate::server::encoding::admit(&mut req, self.answers) {
            return Either::Left(ready(Ok(refused)));
        }
        let limit = self.limit;
        let received = req.extensions_mut().remove::<ReceivedMessages>();
        let single = self.single.contains(req.uri().path());
        Either::Right(self.inner.call(req.map(|body| {
            Body::new(LimitedBody {
                inner: body,
                limit,
                scanner: FrameScanner::default(),
                failed: None,
                received,
                single,
                messages: 0,
            })
        })))
    }
}

pin_project_lite::pin_project! {
    struct LimitedBody {
        #[pin]
        inner: Body,
        limit: usize,
        scanner: FrameScanner,
        failed: Option<Status>,
        // Counts the messages, when the telemetry layer asked (see `ReceivedMessages`).
        received: Option<ReceivedMessages>,
        // The method takes exactly one message (see `MessageSizeLimitLayer::single_request`).
        single: bool,
        messages: usize,
    }
}

/// UNIMPLEMENTED for a call that takes one request message and sent `sent` (0 or 2: the
/// second, as soon as its prefix is seen).
fn cardinality(sent: usize) -> Status {
    let sent = if sent == 0 { "none" } else { "more than one" };
    Status::unimplemented(format!(
        "this method takes exactly one request message, and the client sent {sent}"
    ))
}

impl HttpBody for LimitedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Some(status) = this.failed.take() {
            return Poll::Ready(Some(Err(status)));
        }
        let frame = ready!(this.inner.poll_frame(cx));
        let ended = frame
            .as_ref()
            .is_none_or(|f| f.as_ref().is_ok_and(Frame::is_trailers));
        if *this.single && ended && *this.messages == 0 {
            *this.single = false; // said once
            return Poll::Ready(Some(Err(cardinality(0))));
        }
        let Some(data) = frame
            .as_ref()
            .and_then(|f| f.as_ref().ok())
            .and_then(Frame::data_ref)
        else {
            return Poll::Ready(frame);
        };
        let scanned = this.scanner.scan(data.chunk(), *this.limit);
        let whole = scanned.unwrap_or_else(|oversized| oversized.before);
        if let Some(received) = this.received.as_ref() {
            received.add(whole);
        }
        *this.messages += whole;
        if *this.single && *this.messages > 1 {
            *this.single = false;
            return Poll::Ready(Some(Err(cardinality(*this.messages))));
        }
        if let Err(oversized) = scanned {
            let status = Status::resource_exhausted(format!(
                "received message larger than max ({} vs. {} bytes)",
                oversized.len, this.limit
            ));
            if oversized.prefix_start == 0 {
                return Poll::Ready(Some(Err(status)));
            }
            // Deliver the whole messages before the oversized one; fail on the next poll.
            *this.failed = Some(status);
            let before = data.slice(..oversized.prefix_start);
            return Poll::Ready(Some(Ok(Frame::data(before))));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        // A missing message is still to be said at the end.
        self.inner.is_end_stream() && !(self.single && self.messages == 0)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&len.to_be_bytes());
        m.resize(5 + len as usize, 7);
        m
    }

    #[test]
    fn messages_within_the_limit_pass_in_any_split() {
        let stream: Vec<u8> = [message(3), message(0), message(10)].concat();
        for split in 0..stream.len() {
            let mut s = FrameScanner::default();
            let first = s.scan(&stream[..split], 10).unwrap();
            let second = s.scan(&stream[split..], 10).unwrap();
            assert_eq!(
                first + second,
                3,
                "every message counted once (split at {split})"
            );
            // It stopped at a message boundary: the next message counts alone.
            assert_eq!(s.scan(&message(2), 10), Ok(1));
        }
    }

    #[test]
    fn a_prefix_over_the_limit_fails_even_when_split() {
        let stream: Vec<u8> = [message(4), message(11)].concat();
        for split in 0..stream.len() {
            // The oversized prefix occupies bytes 9..14.
            let mut s = FrameScanner::default();
            let result = s
                .scan(&stream[..split], 10)
                .and_then(|_| s.scan(&stream[split..], 10));
            let err = result.unwrap_err();
            assert_eq!(err.len, 11, "split at {split}");
            let expected = match split {
                0..=9 => 9 - split, // in the second chunk, after the first message's rest
                10..=13 => 0,       // straddles: began in the first chunk
                _ => 9,             // wholly in the first chunk
            };
            assert_eq!(err.prefix_start, expected, "split at {split}");
        }
    }

    #[test]
    fn an_oversized_prefix_says_how_many_whole_messages_came_before_it_in_the_chunk() {
        let stream: Vec<u8> = [message(2), message(1), message(11)].concat();
        let err = FrameScanner::default().scan(&stream, 10).unwrap_err();
        assert_eq!((err.before, err.prefix_start, err.len), (2, 13, 11));
    }

    #[test]
    fn byte_at_a_time() {
        let mut s = FrameScanner::default();
        let mut messages = 0;
        for b in [message(2), message(1)].concat() {
            messages += s.scan(&[b], 2).unwrap();
        }
        assert_eq!(messages, 2);
        let big = message(3);
        let result = big.iter().try_for_each(|b| s.scan(&[*b], 2).map(drop));
        assert_eq!(result.unwrap_err().len, 3);
    }
}
