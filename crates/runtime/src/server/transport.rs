//! Serving accepted connections: `h2` on each ([`http2`]), or hyper-util's HTTP/1-or-2 where
//! gRPC-Web is served; and for each request the server's stack, given the caller's
//! [`PeerInfo`] and held to the caller's `grpc-timeout`.
//!
//! This is what tonic's `Server` did for calcmesh, without what calcmesh never used of it: per
//! call, tonic boxed a clone of the whole stack and wrapped it in four more services (error
//! recovery, load shedding, a concurrency limit, the timeout), and it read every connection
//! through a rewindable buffer to tell HTTP/1 from HTTP/2 even where only HTTP/2 is served.
//! Here a call clones the stack (a few `Arc`s) and adds one future, and a gRPC-only server
//! speaks HTTP/2 to the socket directly.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use std::future::Ready;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::transport::server::Connected;

use crate::server::GrpcService;
use crate::server::http2;
use crate::server::ready::{call_now, not_ready};
use crate::tls::PeerInfo;

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Concurrent streams allowed on one connection (HTTP/2 SETTINGS).
    pub max_concurrent_streams: u32,
    /// After this long a connection is sent GOAWAY; after `.1` more, closed.
    pub max_connection_age: Option<(Duration, Duration)>,
    /// HTTP/1.1 as well as HTTP/2 (gRPC-Web).
    pub http1: bool,
}

/// Serves each connection `incoming` yields with `stack` until `stop` completes; then stops
/// taking connections (dropping `incoming`), sends every connection a GOAWAY, and returns once
/// all have closed. Dropping the returned future closes the connections still open.
pub(crate) async fn serve<S, IO>(
    settings: Settings,
    stack: S,
    incoming: impl Stream<Item = std::io::Result<IO>>,
    stop: impl Future<Output = ()>,
) where
    S: GrpcService,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + Connected<ConnectInfo = PeerInfo>
        + Unpin
        + Send
        + 'static,
{
    let (drain, draining) = watch::channel(false);
    let mut connections = JoinSet::new();
    {
        let (mut incoming, mut stop) = (pin!(incoming), pin!(stop));
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = incoming.next() => match accepted {
                    Some(Ok(io)) => {
                        let calls = Calls { peer: io.connect_info(), stack: stack.clone() };
                        spawn(&mut connections, settings, io, calls, draining.clone());
                    }
                    Some(Err(err)) => tracing::debug!(%err, "accepting a connection failed"),
                    None => break,
                },
                // Reap connections as they close.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
    let _ = drain.send(true);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection in a task of `connections` until it closes: on a drain, or at its
/// maximum age, it is sent a GOAWAY and its calls may finish (after its age, for at most the
/// grace that follows it). A gRPC-only connection is made here, so its task holds the connection
/// alone (every idle connection costs that task's size).
fn spawn<IO, S>(
    connections: &mut JoinSet<()>,
    settings: Settings,
    io: IO,
    calls: Calls<S>,
    draining: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: GrpcService,
{
    let max_age = settings.max_connection_age;
    if settings.http1 {
        let io = TokioIo::new(io);
        // hyper-util's HTTP/1-or-2 connection borrows its builder: both live in the task.
        connections.spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new());
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(settings.max_concurrent_streams);
            let conn = Box::pin(builder.serve_connection(io, calls));
            drive(conn, draining, max_age).await;
        });
    } else {
        let handshake = http2::builder(settings.max_concurrent_streams).handshake(io);
        let conn = Box::pin(http2::Connection::new(handshake, calls));
        connections.spawn(drive(conn, draining, max_age));
    }
}

/// A connection that can be asked to end once its calls have: hyper's, or the `h2` one of
/// [`http2`].
trait Graceful: Future<Output = Result<(), Self::Error>> {
    type Error: std::fmt::Display;
    /// Sends the GOAWAY; the connection ends when its calls have.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<C> Graceful for C
where
    C: GracefulConnection,
    <C as GracefulConnection>::Error: std::fmt::Display,
{
    type Error = <C as GracefulConnection>::Error;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        GracefulConnection::graceful_shutdown(self);
    }
}

impl<IO, S> Graceful for http2::Connection<IO, S>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    S: GrpcService,
{
    type Error = h2::Error;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.get_mut().graceful_shutdown();
    }
}

/// Runs `conn` to its end, shutting it down gracefully on a drain or at its maximum age.
/// The connection comes boxed: moved into the task's future, it took its room there twice
/// (the argument and the pinned local), 2 KiB more per idle connection than in a box of its own.
async fn drive<C>(
    mut conn: Pin<Box<C>>,
    mut draining: watch::Receiver<bool>,
    max_age: Option<(Duration, Duration)>,
) where
    C: Graceful,
{
    // Timers boxed, made only when used: most connections never age, and an idle connection
    // costs its task's size.
    let aged = async {
        match max_age {
            Some((age, _)) => Box::pin(tokio::time::sleep(age)).await,
            None => std::future::pending().await,
        }
    };
    // Biased: the connection first, and no random branch order drawn at every wake-up.
    let grace = tokio::select! {
        biased;
        result = conn.as_mut() => return closed(result),
        () = aged => {
            tracing::debug!("max connection age reached: GOAWAY");
            max_age.map(|(_, grace)| grace)
        }
        // A dropped sender is a drain too.
        _ = draining.wait_for(|draining| *draining) => None,
    };
    Graceful::graceful_shutdown(conn.as_mut());
    let closing = async {
        match grace {
            Some(grace) => Box::pin(tokio::time::sleep(grace)).await,
            // A drain's grace is the server's to bound.
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        result = conn => closed(result),
        () = closing => tracing::debug!("closing a connection whose calls outlived its age's grace"),
    }
}

fn closed<E: std::fmt::Display>(result: Result<(), E>) {
    if let Err(err) = result {
        tracing::debug!(%err, "connection ended with an error");
    }
}

/// A connection's calls: each request, with the connection's peer in its extensions, goes to a
/// clone of the stack.
#[derive(Clone)]
pub(super) struct Calls<S> {
    peer: PeerInfo,
    stack: S,
}

/// A call's answer, held to the caller's deadline.
pub(super) type CallFuture<S> =
    Deadline<Either<<S as tower_service::Service<http::Request<Body>>>::Future, Ready<Answered>>>;
type Answered = Result<http::Response<Body>, Infallible>;

impl<S: GrpcService> Calls<S> {
    /// Starts the call `request` makes.
    pub(super) fn answer(&self, mut request: http::Request<Body>) -> CallFuture<S> {
        request.extensions_mut().insert(self.peer.clone());
        let timeout = crate::deadline::timeout_of(request.headers());
        let web = crate::server::web::is_grpc_web(request.headers())
            .then(|| request.headers().get(http::header::CONTENT_TYPE).cloned())
            .flatten();
        let inner = match call_now(&mut self.stack.clone(), request) {
            Some(future) => Either::Left(future),
            None => Either::Right(std::future::ready(Ok(not_ready()))),
        };
        Deadline {
            inner,
            expires: timeout.map(|timeout| {
                let timer = Box::pin(tokio::time::sleep(timeout));
                Box::new(Expiry {
                    timeout,
                    timer,
                    web,
                })
            }),
        }
    }
}

impl<S: GrpcService> hyper::service::Service<http::Request<Incoming>> for Calls<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = CallFuture<S>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        self.answer(request.map(Body::new))
    }
}

pin_project_lite::pin_project! {
    /// A call held to the caller's deadline until its response headers: past it, the answer is
    /// DEADLINE_EXCEEDED and the handler is dropped.
    pub(super) struct Deadline<F> {
        #[pin]
        inner: F,
        // Boxed: most calls have no deadline, and a `Sleep` would make every call's future
        // larger.
        expires: Option<Box<Expiry>>,
    }
}

/// A call's deadline: the caller's timeout and its timer, and for a gRPC-Web call its content
/// type, which the DEADLINE_EXCEEDED answer must have (this layer is outside tonic-web's).
struct Expiry {
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    web: Option<http::HeaderValue>,
}

impl<F> Future for Deadline<F>
where
    F: Future<Output = Result<http::Response<Body>, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(answer) = this.inner.poll(cx) {
            return Poll::Ready(answer);
        }
        let Some(expiry) = this.expires.as_mut() else {
            return Poll::Pending;
        };
        std::task::ready!(expiry.timer.as_mut().poll(cx));
        let status = tonic::Status::deadline_exceeded(format!(
            "the caller's deadline (grpc-timeout {:?}) passed before the server answered",
            expiry.timeout
        ));
        let mut answer = status.into_http();
        if let Some(web) = expiry.web.take() {
            answer.headers_mut().insert(http::header::CONTENT_TYPE, web);
        }
        Poll::Ready(Ok(answer))
    }
}
