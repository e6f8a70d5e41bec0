//! How one endpoint's calls travel, as [`ClientConfig::protocol`](super::ClientConfig::protocol)
//! says: gRPC over HTTP/2 (tonic's [`Channel`]); gRPC-Web over HTTP/2 (the same channel, each
//! request and answer translated by [`super::web`]); or gRPC-Web over HTTP/1.1 ([`super::web`]
//! over hyper's pooled client, a connection per call in flight). All make their connections with
//! the same [`Connector`] (TCP, TLS, the diagnosis of a failed connection), and all answer with a
//! gRPC response the attempt reads the same way: the balancer, retries and health checks do not
//! know which it is.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::TryFutureExt;
use futures_util::future::{Either, MapErr};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tonic::body::Body;
use tonic::transport::Channel;

use super::connector::{Connector, Watched};
use crate::error::BoxError;

/// One endpoint's transport.
#[derive(Debug, Clone)]
pub(crate) enum Transport {
    Grpc(Channel),
    WebHttp2(Channel),
    WebHttp1(Box<WebChannel>),
}

type Boxed = Pin<Box<dyn Future<Output = Result<http::Response<Body>, BoxError>> + Send>>;

fn boxed(err: tonic::transport::Error) -> BoxError {
    Box::new(err)
}

impl tower_service::Service<http::Request<Body>> for Transport {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Either<
        MapErr<tonic::transport::channel::ResponseFuture, fn(tonic::transport::Error) -> BoxError>,
        Boxed,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::Grpc(channel) | Self::WebHttp2(channel) => channel.poll_ready(cx).map_err(boxed),
            Self::WebHttp1(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self {
            Self::Grpc(channel) => Either::Left(channel.call(request).map_err(boxed as fn(_) -> _)),
            Self::WebHttp2(channel) => {
                let answer = channel.call(super::web::request(request, false));
                Either::Right(Box::pin(async move {
                    Ok(super::web::response(answer.await.map_err(boxed)?))
                }))
            }
            Self::WebHttp1(web) => Either::Right(web.call(request)),
        }
    }
}

/// gRPC-Web over HTTP/1.1 to one endpoint: each gRPC request made a gRPC-Web one (and the
/// trailers frame at the end of the answer made trailers again) by [`super::web`], carried by
/// hyper's pooled client with a connection per call in flight.
#[derive(Clone)]
pub(crate) struct WebChannel {
    client: Client<Connector, Body>,
    /// `http://host:port` or `https://host:port`: what the requests' paths are put under.
    origin: Arc<http::uri::Parts>,
}

impl std::fmt::Debug for WebChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebChannel")
            .field("authority", &self.origin.authority)
            .finish_non_exhaustive()
    }
}

impl WebChannel {
    /// A channel to `authority` over `connector`'s (HTTP/1.1) connections.
    pub(crate) fn new(authority: &str, tls: bool, connector: Connector) -> Option<Self> {
        let scheme = if tls { "https" } else { "http" };
        let origin: http::Uri = format!("{scheme}://{authority}").parse().ok()?;
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90));
        let client = builder.build(connector);
        Some(Self {
            client,
            origin: Arc::new(origin.into_parts()),
        })
    }

    fn call(&mut self, request: http::Request<Body>) -> Boxed {
        let mut request = super::web::request(request, true);
        // tonic's requests carry the path only; hyper's client wants the whole URI.
        let mut uri = http::uri::Parts::default();
        uri.scheme.clone_from(&self.origin.scheme);
        uri.authority.clone_from(&self.origin.authority);
        uri.path_and_query = request.uri().path_and_query().cloned();
        match http::Uri::from_parts(uri) {
            Ok(uri) => *request.uri_mut() = uri,
            Err(err) => return Box::pin(std::future::ready(Err(Box::new(err) as BoxError))),
        }
        let answer = self.client.request(request);
        Box::pin(async move {
            let response = answer.await.map_err(|e| Box::new(e) as BoxError)?;
            Ok(super::web::response(response))
        })
    }
}

impl Connection for Watched {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}
