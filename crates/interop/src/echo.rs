//! The interop cases' metadata echo (`custom_metadata`): a request's
//! `x-grpc-test-echo-initial` comes back in the response headers and its
//! `x-grpc-test-echo-trailing-bin` in the trailers — for every method, so it wraps the service
//! rather than living in each handler.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::server::NamedService;

const INITIAL: HeaderName = HeaderName::from_static("x-grpc-test-echo-initial");
const TRAILING: HeaderName = HeaderName::from_static("x-grpc-test-echo-trailing-bin");

/// `S`, with the echo of the two test headers.
#[derive(Debug, Clone)]
pub struct EchoMetadata<S>(pub S);

impl<S: NamedService> NamedService for EchoMetadata<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower_service::Service<http::Request<Body>> for EchoMetadata<S>
where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let initial = request.headers().get(INITIAL).cloned();
        let trailing = request.headers().get(TRAILING).cloned();
        let response = self.0.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            if let Some(value) = initial {
                response.headers_mut().insert(INITIAL, value);
            }
            let Some(value) = trailing else {
                return Ok(response);
            };
            // A trailers-only response (an error before any message) carries its trailers in
            // the headers.
            if response.headers().contains_key("grpc-status") {
                response.headers_mut().insert(TRAILING, value);
                return Ok(response);
            }
            Ok(response.map(|inner| {
                Body::new(WithTrailer {
                    inner,
                    value: Some(value),
                })
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that adds the echoed header to its trailers.
    struct WithTrailer {
        #[pin]
        inner: Body,
        value: Option<HeaderValue>,
    }
}

impl HttpBody for WithTrailer {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                let mut trailers = frame.into_trailers().unwrap_or_else(|_| HeaderMap::new());
                if let Some(value) = this.value.take() {
                    trailers.insert(TRAILING, value);
                }
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
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
