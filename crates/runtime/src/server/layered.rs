//! A service behind a tower layer of your own — authentication, logging, anything that sees the
//! HTTP request and response — served as the service itself: same name (health, routing), its
//! futures boxed as the server's routes want them.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::server::NamedService;

use crate::server::BoxCall;

/// `S` (a tonic service named `N`) behind a layer: see [`Server::add_layered`](super::Server::add_layered).
pub struct Layered<S, N> {
    inner: S,
    _name: PhantomData<fn() -> N>,
}

impl<S, N> Layered<S, N> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            _name: PhantomData,
        }
    }
}

impl<S: Clone, N> Clone for Layered<S, N> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone())
    }
}

impl<S, N: NamedService> NamedService for Layered<S, N> {
    const NAME: &'static str = N::NAME;
}

impl<S, N> tower_service::Service<http::Request<Body>> for Layered<S, N>
where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        >,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxCall;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> BoxCall {
        Box::pin(self.inner.call(request))
    }
}
