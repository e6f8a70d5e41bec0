//! gRPC-Web (`--grpc-web`, off by default): browsers speak gRPC only as gRPC-Web — HTTP/1.1 or
//! HTTP/2, with the status in the body — so a page can call the services directly. tonic-web
//! translates each gRPC-Web call into a gRPC call before any other layer sees it (limits,
//! authorisation, metrics and logs all apply to it as to any call), and tower-http answers the
//! browser's CORS preflight for the origins allowed (`--grpc-web-allow-origin`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// gRPC-Web settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcWeb {
    /// Origins whose pages may call (`https://host:port`); `*` allows any. None: only pages
    /// from the server's own origin (which browsers do not preflight).
    pub allow_origins: Vec<String>,
}

/// The headers a gRPC-Web client sends, and those its page may read.
const REQUEST_HEADERS: [&str; 5] = [
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "traceparent",
];
const RESPONSE_HEADERS: [&str; 3] = [
    "grpc-status",
    "grpc-message",
    crate::server::ENDPOINT_HEADER,
];

/// The CORS layer for `config`'s origins.
pub(crate) fn cors(config: &GrpcWeb) -> CorsLayer {
    let origins = if config.allow_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = config
            .allow_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok());
        AllowOrigin::list(list)
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::POST])
        .allow_headers(REQUEST_HEADERS.map(HeaderName::from_static))
        .expose_headers(RESPONSE_HEADERS.map(HeaderName::from_static))
}

/// What gRPC-Web over HTTP/1.1 needs beyond tonic-web: a request that is not gRPC-Web gets the
/// server's HTTP 415 (tonic-web answers a bare 400), and the request body a call left unread is
/// read to its end after it ([`Drained`]).
#[derive(Debug, Clone)]
pub(crate) struct Http1<S>(pub(crate) S);

/// Whether `headers` say gRPC-Web (`application/grpc-web`, `+proto`, `-text`…).
pub(crate) fn is_grpc_web(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc-web"))
}

impl<S> tower_service::Service<http::Request<Body>> for Http1<S>
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
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        use futures_util::future::{Either, ready};
        if request.version() >= http::Version::HTTP_2 {
            return Either::Right(self.0.call(request));
        }
        if !is_grpc_web(request.headers()) {
            let (head, body) = request.into_parts();
            // Read to its end, in the background past what the answer waits for.
            let body = Body::new(Drained(body));
            let refused = crate::server::limits::not_grpc(&head.headers, body);
            return Either::Left(ready(Ok(refused)));
        }
        Either::Right(self.0.call(request.map(|body| Body::new(Drained(body)))))
    }
}

/// An HTTP/1.1 request body that, dropped before its end, is read to the end in the
/// background (for at most [`DRAIN_FOR`] and [`DRAIN_AT_MOST`] bytes). A call that fails
/// early — a message over the limit, an encoding the server does not read — answers before the
/// client has sent everything; HTTP/1.1 cannot answer and stop reading at once as HTTP/2 does
/// (RST_STREAM), and a connection closed under a client still writing makes it see a broken
/// pipe instead of the status.
struct Drained(Body);

/// How long a dropped body is read for, at most.
const DRAIN_FOR: Duration = Duration::from_secs(10);
/// How much of a dropped body is read, at most.
const DRAIN_AT_MOST: usize = 16 * 1024 * 1024;

impl HttpBody for Drained {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        if self.0.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut body = std::mem::replace(&mut self.0, Body::empty());
        runtime.spawn(tokio::time::timeout(DRAIN_FOR, async move {
            use http_body_util::BodyExt;
            let mut read = 0;
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, bytes::Buf::remaining);
                if read > DRAIN_AT_MOST {
                    break;
                }
            }
        }));
    }
}
