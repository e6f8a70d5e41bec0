//! calcmesh's own path for a unary method: the request's one message read straight from the
//! body, the handler called, and the answer sent as one DATA frame and `grpc-status: 0`.
//!
//! tonic's generated service does the same work in general form: compression negotiated from
//! the headers on every call, a decoding stream's state machine, an encoding stream, and trailers
//! built from a `Status`. For a plain call that is most of what a server does per call besides
//! HTTP/2 itself (see BENCHMARKS.md, "Instructions per call"). [`Unary`] takes the plain calls
//! of one method — no `grpc-encoding` (or `identity`), no `grpc-accept-encoding` left after
//! `encoding` admitted the call, so the answer is plain too — and leaves
//! everything else to the tonic service it wraps. A body that turns out not to be exactly one
//! uncompressed message that decodes, or that ends in trailers or an error, is handed to tonic
//! as it came (its bytes replayed), so tonic stays the one place that answers those cases.
//!
//! Messages larger than the server's limit never get here whole: the size limit's body
//! ([`limits`](super::limits)) ends them with RESOURCE_EXHAUSTED, which tonic then answers.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use http_body_util::BodyExt;
use tonic::Status;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;

use crate::server::encoding;
use crate::server::ready::{call_now, not_ready};
use crate::server::{BoxCall, GrpcService};
use crate::{framing, headers};

type Answer = Result<http::Response<Body>, Infallible>;

/// `service`, with the plain calls of one unary method served by `handler` on the lean path.
/// Its name ([`NamedService`]) is `service`'s.
///
/// The calculator's (`calcmesh_calculator::mesh_server`), where `answer` is what the
/// `Calculator` trait's `calculate` returns too:
///
/// ```text
/// let handler = service.clone();
/// Unary::new(
///     CalculatorServer::new(service),
///     "/calculator.Calculator/Calculate",
///     move |request| std::future::ready(handler.answer(&request)),
/// )
/// ```
pub struct Unary<S, F, Req> {
    service: S,
    path: &'static str,
    handler: Arc<F>,
    _request: PhantomData<fn(Req)>,
}

impl<S, F, Req> Unary<S, F, Req> {
    /// Serves `path` (`/package.Service/Method`, a unary method of `service`) with `handler`,
    /// which must answer as `service` would.
    pub fn new(service: S, path: &'static str, handler: F) -> Self {
        Self {
            service,
            path,
            handler: Arc::new(handler),
            _request: PhantomData,
        }
    }
}

impl<S: Clone, F, Req> Clone for Unary<S, F, Req> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            path: self.path,
            handler: self.handler.clone(),
            _request: PhantomData,
        }
    }
}

impl<S: NamedService, F, Req> NamedService for Unary<S, F, Req> {
    const NAME: &'static str = S::NAME;
}

impl<S, F, Fut, Req, Resp> tower_service::Service<http::Request<Body>> for Unary<S, F, Req>
where
    S: GrpcService<Future: Into<BoxCall>>,
    F: Fn(tonic::Request<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>> + Send + 'static,
    Req: prost::Message + Default + 'static,
    Resp: prost::Message + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxCall;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != self.path || !encoding::is_plain(request.headers()) {
            return self.service.call(request).into();
        }
        Box::pin(lean(self.service.clone(), request, self.handler.clone()))
    }
}

/// One call on the lean path: the body read, its message decoded and answered by `handler`, or
/// the call handed to `service` with the body replayed.
async fn lean<S, F, Fut, Req, Resp>(
    mut service: S,
    request: http::Request<Body>,
    handler: Arc<F>,
) -> Answer
where
    S: GrpcService,
    F: Fn(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    Req: prost::Message + Default,
    Resp: prost::Message,
{
    let (parts, mut body) = request.into_parts();
    let read = Read::from(&mut body).await;
    let Some(message) = read.message::<Req>() else {
        let replayed = http::Request::from_parts(parts, Body::new(read.replay()));
        return match call_now(&mut service, replayed) {
            Some(future) => future.await,
            None => Ok(not_ready()),
        };
    };
    let metadata = MetadataMap::from_headers(parts.headers);
    let answer = handler(tonic::Request::from_parts(
        metadata,
        parts.extensions,
        message,
    ))
    .await;
    Ok(respond(answer))
}

/// A request body, read to its end (or to its trailers or error).
#[derive(Default)]
struct Read {
    /// The first chunk: usually the whole body, kept without a copy.
    first: Bytes,
    /// Every chunk, copied, once there is more than one.
    joined: BytesMut,
    /// The trailers or error that ended the body; `None` when it just ended.
    end: Option<Result<HeaderMap, Status>>,
}

impl Read {
    async fn from(body: &mut Body) -> Self {
        let mut read = Self::default();
        while let Some(frame) = body.frame().await {
            match frame.map(Frame::into_data) {
                Ok(Ok(chunk)) => read.push(chunk),
                Ok(Err(frame)) => {
                    read.end = frame.into_trailers().ok().map(Ok);
                    break;
                }
                Err(status) => {
                    read.end = Some(Err(status));
                    break;
                }
            }
        }
        read
    }

    fn push(&mut self, chunk: Bytes) {
        if self.first.is_empty() && self.joined.is_empty() {
            self.first = chunk;
            return;
        }
        if self.joined.is_empty() {
            self.joined
                .extend_from_slice(&std::mem::take(&mut self.first));
        }
        self.joined.extend_from_slice(&chunk);
    }

    fn bytes(&self) -> &[u8] {
        if self.joined.is_empty() {
            &self.first
        } else {
            &self.joined
        }
    }

    /// The body's one message, if it ended cleanly holding exactly one uncompressed message
    /// that decodes as `M`.
    fn message<M: prost::Message + Default>(&self) -> Option<M> {
        if self.end.is_some() {
            return None;
        }
        M::decode(framing::only_message(self.bytes())?).ok()
    }

    /// The body as it came.
    fn replay(self) -> Replay {
        let data = if self.joined.is_empty() {
            self.first
        } else {
            self.joined.freeze()
        };
        Replay {
            data: (!data.is_empty()).then_some(data),
            end: self.end,
        }
    }
}

/// A body read already, given again: its bytes in one frame, then its trailers or error.
struct Replay {
    data: Option<Bytes>,
    end: Option<Result<HeaderMap, Status>>,
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.end.take().map(|end| end.map(Frame::trailers)))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.end.is_none()
    }
}

/// The handler's answer as tonic's generated service sends it: the response metadata (less the
/// names gRPC reserves) and `content-type: application/grpc`, then the message and
/// `grpc-status: 0`; or the error as a trailers-only response.
fn respond<M: prost::Message>(answer: Result<tonic::Response<M>, Status>) -> http::Response<Body> {
    let (metadata, message, extensions) = match answer {
        Ok(response) => response.into_parts(),
        Err(status) => return status.into_http(),
    };
    let Ok(length) = u32::try_from(message.encoded_len()) else {
        return Status::resource_exhausted(
            "the answer is larger than a gRPC message may be (4 GiB)",
        )
        .into_http();
    };
    let mut frame = BytesMut::with_capacity(5 + length as usize);
    frame.extend_from_slice(&framing::prefix(length));
    message.encode_raw(&mut frame);
    let mut response = http::Response::new(Body::new(OneMessage {
        message: Some(frame.freeze()),
        status_to_send: true,
    }));
    *response.version_mut() = http::Version::HTTP_2;
    *response.headers_mut() = without_reserved(metadata.into_headers());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        headers::GRPC_CONTENT_TYPE.clone(),
    );
    *response.extensions_mut() = extensions;
    response
}

/// `headers` without the names gRPC reserves for itself, which a handler's metadata may not set
/// (tonic drops the same ones).
fn without_reserved(mut headers: HeaderMap) -> HeaderMap {
    if !headers.is_empty() {
        for name in [
            &http::header::TE,
            &http::header::CONTENT_TYPE,
            &headers::GRPC_MESSAGE,
            &headers::GRPC_MESSAGE_TYPE,
            &headers::GRPC_STATUS,
        ] {
            headers.remove(name);
        }
    }
    headers
}

/// An answer's body: one message (a whole gRPC frame), then the trailers `grpc-status: 0`.
struct OneMessage {
    message: Option<Bytes>,
    status_to_send: bool,
}

impl http_body::Body for OneMessage {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(message) = self.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(message))));
        }
        if std::mem::take(&mut self.status_to_send) {
            let mut trailers = HeaderMap::with_capacity(1);
            trailers.insert(headers::GRPC_STATUS.clone(), HeaderValue::from_static("0"));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.message.is_none() && !self.status_to_send
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    const PATH: &str = "/test.Echo/Twice";

    /// The wrapped service: answers `FAILED_PRECONDITION` "tonic: N bytes[, trailers][, error]",
    /// saying what body it was given.
    fn tonic_side() -> impl GrpcService<Future = BoxCall> {
        tower::service_fn(|request: http::Request<Body>| {
            Box::pin(async move {
                let read = Read::from(&mut request.into_body()).await;
                let mut said = format!("tonic: {} bytes", read.bytes().len());
                match &read.end {
                    Some(Ok(_)) => said += ", trailers",
                    Some(Err(status)) => said += &format!(", error {}", status.message()),
                    None => {}
                }
                Ok(Status::failed_precondition(said).into_http())
            }) as BoxCall
        })
    }

    /// Doubles a `u64` (field 1, as prost's `u64` wrapper encodes it); 0 is refused.
    fn lean_side()
    -> Unary<impl GrpcService<Future = BoxCall>, impl Fn(tonic::Request<u64>) -> LeanAnswer, u64>
    {
        Unary::new(tonic_side(), PATH, |request: tonic::Request<u64>| {
            let n = request.into_inner();
            let answer = match n {
                0 => Err(Status::invalid_argument("zero")),
                n => Ok(tonic::Response::new(n * 2)),
            };
            std::future::ready(answer)
        })
    }
    type LeanAnswer = std::future::Ready<Result<tonic::Response<u64>, Status>>;

    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut frame = vec![flag];
        frame.extend((message.len() as u32).to_be_bytes());
        frame.extend(message);
        frame
    }

    fn encoded(n: u64) -> Vec<u8> {
        prost::Message::encode_to_vec(&n)
    }

    /// A body of these chunks, then these trailers or this error.
    fn body(chunks: Vec<Vec<u8>>, end: Option<Result<HeaderMap, Status>>) -> Body {
        let mut frames: Vec<Result<Frame<Bytes>, Status>> = chunks
            .into_iter()
            .map(|c| Ok(Frame::data(Bytes::from(c))))
            .collect();
        frames.extend(end.map(|end| end.map(Frame::trailers)));
        Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    fn request(path: &str, headers: &[(&str, &str)], body: Body) -> http::Request<Body> {
        let mut request = http::Request::post(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(body).unwrap()
    }

    /// The answer's headers, data and trailers, as a client reads them.
    async fn call(request: http::Request<Body>) -> (HeaderMap, Vec<u8>, HeaderMap) {
        let response = lean_side().call(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        (parts.headers, collected.to_bytes().to_vec(), trailers)
    }

    fn message(headers: &HeaderMap) -> String {
        Status::from_header_map(headers)
            .unwrap()
            .message()
            .to_owned()
    }

    #[tokio::test]
    async fn a_plain_call_is_answered_here_as_tonic_answers_it() {
        let chunks = vec![framed(0, &encoded(21))];
        let (headers, data, trailers) = call(request(PATH, &[], body(chunks, None))).await;
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(data, framed(0, &encoded(42)));
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers.len(), 1);

        // The message split over two chunks (DATA frames), and declared `identity`.
        let frame = framed(0, &encoded(21));
        let split = vec![frame[..3].to_vec(), frame[3..].to_vec()];
        let identity = [("grpc-encoding", "identity")];
        let (_, data, _) = call(request(PATH, &identity, body(split, None))).await;
        assert_eq!(data, framed(0, &encoded(42)));
    }

    #[tokio::test]
    async fn a_handlers_error_is_a_trailers_only_answer() {
        let chunks = vec![framed(0, &encoded(0))];
        let (headers, data, _) = call(request(PATH, &[], body(chunks, None))).await;
        assert_eq!(headers["grpc-status"], "3");
        assert_eq!(message(&headers), "zero");
        assert!(data.is_empty());
    }

    #[tokio::test]
    async fn other_methods_and_compressed_calls_go_to_tonic() {
        let one = || body(vec![framed(0, &encoded(21))], None);
        for (path, headers) in [
            ("/test.Echo/Other", &[][..]),
            (PATH, &[("grpc-encoding", "gzip")][..]),
            (PATH, &[("grpc-accept-encoding", "gzip")][..]),
        ] {
            let (headers, _, _) = call(request(path, headers, one())).await;
            assert_eq!(message(&headers), "tonic: 7 bytes", "{path} {headers:?}");
        }
    }

    #[tokio::test]
    async fn a_body_that_is_not_one_plain_message_goes_to_tonic_as_it_came() {
        let one = framed(0, &encoded(21));
        let cases = [
            (vec![], None, "tonic: 0 bytes"),
            (vec![one[..4].to_vec()], None, "tonic: 4 bytes"),
            (vec![one.clone(), one.clone()], None, "tonic: 14 bytes"),
            (vec![framed(1, &encoded(21))], None, "tonic: 7 bytes"),
            (vec![framed(0, &[0xff])], None, "tonic: 6 bytes"),
            (
                vec![one.clone()],
                Some(Ok(HeaderMap::new())),
                "tonic: 7 bytes, trailers",
            ),
            (
                vec![one[..2].to_vec(), one[2..].to_vec()],
                Some(Err(Status::resource_exhausted("too big"))),
                "tonic: 7 bytes, error too big",
            ),
        ];
        for (chunks, end, expected) in cases {
            let (headers, _, _) = call(request(PATH, &[], body(chunks, end))).await;
            assert_eq!(message(&headers), expected);
        }
    }

    #[test]
    fn reserved_names_are_dropped_from_the_handlers_metadata() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        let kept = without_reserved(headers);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept["x-kept"], "yes");
    }
}
