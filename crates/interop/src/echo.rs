//! The interop cases' metadata echo (`custom_metadata`): a request's
//! `x-grpc-test-echo-initial` comes back in the response headers and its
//! `x-grpc-test-echo-trailing-bin` in the trailers — for every method, so it wraps the service
//! rather than living in each handler.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName};
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
            let mut trailers = HeaderMap::new();
            if let Some(value) = trailing {
                trailers.insert(TRAILING, value);
            }
            Ok(calcmesh_runtime::server::trailers::append(
                response, trailers,
            ))
        })
    }
}
