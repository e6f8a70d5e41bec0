//! Which service a call goes to: the service name in the path (`/package.Service/Method`)
//! compared with the few a server serves (lengths first, so mostly one string compared: cheaper
//! than hashing the name), then that service's future. This replaces tonic's `Routes`,
//! which routes through axum: a path-pattern match, a URL-parameter extension, two body
//! conversions and a cloned boxed service per call, none of which a gRPC path needs.
//! An unknown service is UNIMPLEMENTED, named as grpc-go names it.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use std::future::{Ready, ready};
use tonic::body::Body;
use tonic::server::NamedService;

use crate::server::ready::{call_now, not_ready};
use crate::server::{BoxCall, GrpcService};

type Answer = Result<http::Response<Body>, Infallible>;
/// A service's call, `None` when the service is not ready.
type Handler = Box<dyn Fn(http::Request<Body>) -> Option<BoxCall> + Send + Sync>;

/// The services a server serves, by full name. Cloned per call: one `Arc`.
#[derive(Clone, Default)]
pub(crate) struct Routes {
    services: Arc<[(&'static str, Handler)]>,
}

/// Collects services before serving.
#[derive(Default)]
pub(crate) struct RoutesBuilder {
    services: Vec<(&'static str, Handler)>,
}

impl std::fmt::Debug for RoutesBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.services.iter().map(|(name, _)| name))
            .finish()
    }
}

impl RoutesBuilder {
    /// Adds `service` under its [`NamedService::NAME`]; a later one of the same name replaces it.
    /// Its calls' futures are kept as they come, boxed once (tonic's generated services box
    /// theirs).
    pub(crate) fn add_service<S>(&mut self, service: S) -> &mut Self
    where
        S: GrpcService<Future: Into<BoxCall>> + NamedService + Sync,
    {
        let handler: Handler =
            Box::new(move |request| Some(call_now(&mut service.clone(), request)?.into()));
        self.services.retain(|(name, _)| *name != S::NAME);
        self.services.push((S::NAME, handler));
        self
    }

    /// The routes, ready to serve.
    pub(crate) fn build(self) -> Routes {
        Routes {
            services: self.services.into(),
        }
    }
}

impl Routes {
    fn route(&self, request: http::Request<Body>) -> RouteFuture {
        let service = service_name(request.uri().path());
        let handler = service.and_then(|wanted| {
            let found = self.services.iter().find(|(name, _)| *name == wanted);
            found.map(|(_, handler)| handler)
        });
        let Some(handler) = handler else {
            return Either::Right(ready(Ok(unknown(request.uri().path(), service))));
        };
        match handler(request) {
            Some(future) => Either::Left(future),
            None => Either::Right(ready(Ok(not_ready()))),
        }
    }
}

/// `package.Service` of `/package.Service/Method`; `None` for any other shape.
fn service_name(path: &str) -> Option<&str> {
    // Bytes, not `split_once`: a `char` search costs more than these ~30 bytes do.
    let rest = path.strip_prefix('/')?;
    let slash = rest.bytes().position(|b| b == b'/')?;
    let method = &rest.as_bytes()[slash + 1..];
    (slash > 0 && !method.is_empty() && !method.contains(&b'/')).then_some(&rest[..slash])
}

/// UNIMPLEMENTED, saying what was not found.
fn unknown(path: &str, service: Option<&str>) -> http::Response<Body> {
    let message = match service {
        Some(name) => format!("unknown service {name}"),
        None => format!("malformed method name: {path:?}"),
    };
    tonic::Status::unimplemented(message).into_http()
}

impl tower_service::Service<http::Request<Body>> for Routes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> RouteFuture {
        self.route(request)
    }
}

/// A routed call: the service's future, or the answer given here (an unknown service, or one
/// not ready).
pub(crate) type RouteFuture = Either<BoxCall, Ready<Answer>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_the_first_path_segment() {
        assert_eq!(
            service_name("/calculator.Calculator/Calculate"),
            Some("calculator.Calculator")
        );
        assert_eq!(service_name("/calculator.Calculator/"), None);
        assert_eq!(service_name("//Calculate"), None);
        assert_eq!(service_name("/calculator.Calculator"), None);
        assert_eq!(service_name("/a/b/c"), None);
        assert_eq!(service_name("calculator.Calculator/Calculate"), None);
    }

    #[test]
    fn an_unknown_service_is_unimplemented_and_named() {
        let answer = unknown("/no.Such/Thing", Some("no.Such"));
        let status = tonic::Status::from_header_map(answer.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert_eq!(status.message(), "unknown service no.Such");
        let malformed = unknown("/nothing", None);
        let status = tonic::Status::from_header_map(malformed.headers()).unwrap();
        assert_eq!(status.message(), "malformed method name: \"/nothing\"");
    }
}
