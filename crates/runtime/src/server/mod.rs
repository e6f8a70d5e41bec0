//! The one place that builds gRPC servers.
//!
//! A [`Server`] wraps the services it is given with what every calcmesh server has:
//! `grpc.health.v1` (see [`crate::server::health`]), server reflection v1 and v1alpha, a per-message size
//! limit answering RESOURCE_EXHAUSTED, a cap on concurrent streams per connection, dead-peer
//! detection by the kernel (TCP keepalive and TCP_USER_TIMEOUT), TCP_NODELAY, a deep listen
//! backlog, a count of accepted connections, and a graceful drain: when the shutdown future
//! completes, health turns NOT_SERVING, the listener closes, every connection gets a GOAWAY and
//! in-flight calls have the grace period to finish.
//!
//! [`Server::serve`] takes an already-bound listener, so tests bind `127.0.0.1:0` and read the
//! port back before serving.

pub mod authz;
mod encoding;
pub mod fault;
pub mod health;
mod http2;
pub mod keepalive;
pub mod layered;
pub mod limits;
mod ready;
mod routes;
pub mod trailers;
mod transport;
pub mod unary;
pub mod web;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::server::NamedService;

use crate::channelz::registry::ServerEntry;
use crate::server::authz::{AuthzLayer, AuthzPolicy};
use crate::server::fault::FaultLayer;
use crate::server::health::HealthState;
use crate::server::keepalive::Policed;
use crate::server::limits::MessageSizeLimitLayer;
use crate::server::routes::RoutesBuilder;
use crate::telemetry::metrics::{RpcTelemetryLayer, ServerMetrics};
use crate::tls::{Conn, ServerTls};

/// Server limits and timings. [`Default`] gives production defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request message accepted, in bytes; larger → RESOURCE_EXHAUSTED. Default 4 MiB.
    pub max_message_size: usize,
    /// HTTP/2 streams (calls) one connection may have open at once. Default 1024.
    pub max_concurrent_streams: u32,
    /// How long a connection may be silent before the kernel probes the client (TCP keepalive).
    /// Default 60 s, within [`KEEPALIVE_RANGE`].
    pub keepalive_interval: Duration,
    /// How long probes may then go unanswered: a client silent for interval + timeout is
    /// closed (see `tune`). Default 20 s, within [`KEEPALIVE_RANGE`].
    pub keepalive_timeout: Duration,
    /// How long in-flight calls may take to finish after shutdown starts. Default 10 s.
    pub grace_period: Duration,
    /// Listen backlog: connections the kernel queues before `accept`. Default 1024.
    pub backlog: u32,
    /// The `host:port` clients reach this server at, sent back on every response as the
    /// [`ENDPOINT_HEADER`] header so callers can see which instance answered. Default: the
    /// bound address, unless it is a wildcard (then no header is sent).
    pub advertise: Option<String>,
    /// TLS (and, with a client CA, mutual TLS). `None`: plaintext, which is refused on a
    /// non-loopback address unless `insecure` is set.
    pub tls: Option<Arc<ServerTls>>,
    /// Who may call what, by client-certificate identity; `None` admits every caller.
    pub policy: Option<Arc<AuthzPolicy>>,
    /// Allow plaintext on a non-loopback address (logged as a warning).
    pub insecure: bool,
    /// When answers are compressed. Default: in kind (see [`crate::compression`]).
    pub compress_answers: crate::compression::CompressAnswers,
    /// Close each connection gracefully (GOAWAY) once it is this old, so clients that discover
    /// by DNS reconnect and spread over instances added since. `None` (default): no limit.
    pub max_connection_age: Option<Duration>,
    /// After [`max_connection_age`](Self::max_connection_age), how long calls on the old
    /// connection may take before it is closed. Default 10 s.
    pub max_connection_age_grace: Duration,
    /// How long a new connection may take to complete its TLS handshake and send the HTTP/2
    /// preface; a client that connects and sends nothing is closed then. Default 10 s.
    pub handshake_timeout: Duration,
    /// Faults to inject, for drills (see [`fault`]). Default: none.
    pub faults: Arc<[fault::Fault]>,
    /// How often clients may ping (see [`keepalive`]). Default: every 5 min, while a call is
    /// open, as in gRPC.
    pub ping_policy: keepalive::PingPolicy,
    /// Serve gRPC-Web too (see [`web`]). Default: off.
    pub grpc_web: Option<web::GrpcWeb>,
    /// Serve `grpc.channelz.v1.Channelz`: this process's servers, channels and connections
    /// (see [`crate::channelz`]). Under an authorisation policy, only the identities it allows
    /// `/grpc.channelz.v1.Channelz/` may call it. Only then does the server count its
    /// connections (sockets) for channelz: off, a connection costs nothing for it. Default: off.
    pub channelz: bool,
}

/// The response header naming the instance that answered (see [`ServerConfig::advertise`]).
pub const ENDPOINT_HEADER: &str = "calcmesh-endpoint";
/// [`ENDPOINT_HEADER`], parsed once rather than on every response.
static ENDPOINT_HEADER_NAME: http::HeaderName = http::HeaderName::from_static(ENDPOINT_HEADER);

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_message_size: 4 * 1024 * 1024,
            max_concurrent_streams: 1024,
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            grace_period: Duration::from_secs(10),
            backlog: 1024,
            advertise: None,
            tls: None,
            policy: None,
            insecure: false,
            compress_answers: crate::compression::CompressAnswers::InKind,
            max_connection_age: None,
            max_connection_age_grace: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            faults: Arc::new([]),
            ping_policy: keepalive::PingPolicy::default(),
            grpc_web: None,
            channelz: false,
        }
    }
}

/// Counters a running server keeps.
#[derive(Debug, Default)]
pub struct ServerStats {
    accepted: AtomicU64,
}

impl ServerStats {
    /// TCP connections accepted since the server started.
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Why a server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not be built from the registered descriptors.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The listener failed.
    #[error("listener failed: {0}")]
    Io(#[from] std::io::Error),
    /// Plaintext on a non-loopback address without `insecure`.
    #[error(
        "refusing to serve plaintext on {0}, which is not a loopback address: give a TLS certificate and key (--tls-cert, --tls-key), or --insecure to accept the risk"
    )]
    Insecure(SocketAddr),
}

/// What a server serves and stacks: a service of HTTP requests with tonic bodies that answers
/// every call (errors are gRPC statuses in the response), and can be cloned for each call.
/// Every tonic service is one.
pub trait GrpcService:
    tower_service::Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> GrpcService for S where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A call's answer still to come, boxed: what tonic's generated services return for every
/// call, and what a server keeps for each call it routes.
pub type BoxCall =
    std::pin::Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

/// Binds a TCP listener on `addr` with the configured backlog and `SO_REUSEADDR`.
///
/// # Errors
/// The address is in use, not local, or not permitted.
pub fn bind(addr: SocketAddr, config: &ServerConfig) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(config.backlog)
}

/// A gRPC server under construction: add services, then [`serve`](Server::serve).
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    routes: RoutesBuilder,
    descriptors: Vec<&'static [u8]>,
    health: HealthState,
    stats: Arc<ServerStats>,
    metrics: std::sync::OnceLock<Arc<ServerMetrics>>,
    faults: fault::FaultCounters,
}

impl Server {
    /// A server with no services yet.
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config,
            routes: RoutesBuilder::default(),
            descriptors: Vec::new(),
            health: HealthState::new(),
            stats: Arc::default(),
            metrics: std::sync::OnceLock::new(),
            faults: fault::FaultCounters::default(),
        }
    }

    /// The server's metrics (for an admin endpoint, [`crate::admin::Admin::server`]). Call it
    /// after adding services and descriptors: they give each method its `grpc_type`.
    pub fn metrics(&self) -> Arc<ServerMetrics> {
        self.metrics
            .get_or_init(|| {
                let mut metrics = ServerMetrics::new(&self.all_descriptors());
                if !self.config.faults.is_empty() {
                    metrics.registry_mut().register(
                        "calcmesh_faults_injected",
                        "Calls a --fault hit, by fault and method",
                        self.faults.clone(),
                    );
                }
                Arc::new(metrics)
            })
            .clone()
    }

    /// Records into `metrics` (e.g. another server's, when one instance listens on two ports)
    /// instead of a registry of its own.
    pub fn with_metrics(mut self, metrics: Arc<ServerMetrics>) -> Self {
        self.metrics = std::sync::OnceLock::from(metrics);
        self
    }

    /// Adds a tonic service; its health status starts as SERVING under its full name. Its
    /// futures are boxed ([`BoxCall`]), as every tonic-generated service's are.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: GrpcService<Future: Into<BoxCall>> + NamedService + Sync,
    {
        self.health.set_serving(S::NAME, true);
        self.routes.add_service(service);
        self
    }

    /// Adds a tonic service behind a tower `layer` of your own (authentication, logging, …):
    /// the layer sees each call's HTTP request and response, inside the server's own layers
    /// (limits, authorisation, metrics), and the service keeps its name.
    pub fn add_layered<S, L>(self, layer: L, service: S) -> Self
    where
        S: NamedService + 'static,
        L: tower_layer::Layer<S>,
        L::Service: GrpcService + Sync,
    {
        self.add_service(layered::Layered::<_, S>::new(layer.layer(service)))
    }

    /// Registers an encoded `FileDescriptorSet` for server reflection.
    pub fn add_descriptors(mut self, file_descriptor_set: &'static [u8]) -> Self {
        self.descriptors.push(file_descriptor_set);
        self
    }

    /// The server's health: set a service NOT_SERVING to take it out of rotation.
    pub fn health(&self) -> HealthState {
        self.health.clone()
    }

    /// The server's counters, readable while it runs.
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// The server's configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Checks that the configuration may serve on `addr`: plaintext only on loopback unless
    /// `insecure`. [`serve`](Self::serve) checks too; call this first to fail before announcing.
    ///
    /// # Errors
    /// [`ServeError::Insecure`].
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), ServeError> {
        if self.config.tls.is_none() && !addr.ip().is_loopback() {
            if !self.config.insecure {
                return Err(ServeError::Insecure(addr));
            }
            tracing::warn!(%addr, "serving PLAINTEXT on a non-loopback address (--insecure): anyone on the network can read and forge calls");
        }
        Ok(())
    }

    fn reflection(&self) -> tonic_reflection::server::Builder<'static> {
        self.descriptors.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |builder, fds| builder.register_encoded_file_descriptor_set(fds),
        )
    }

    /// The services added, and those every server serves: health, reflection (v1 and v1alpha)
    /// and, when configured, channelz.
    /// The descriptors of every service this server serves: those added, and health's.
    fn all_descriptors(&self) -> Vec<&'static [u8]> {
        let mut descriptors = self.descriptors.clone();
        descriptors.push(tonic_health::pb::FILE_DESCRIPTOR_SET);
        descriptors
    }

    fn all_routes(&mut self) -> Result<RoutesBuilder, ServeError> {
        let mut routes = std::mem::take(&mut self.routes);
        if self.config.channelz {
            routes.add_service(crate::channelz::ChannelzService::server());
            self.descriptors
                .push(calcmesh_proto::CHANNELZ_DESCRIPTOR_SET);
        }
        let reflection_v1 = self.reflection().build_v1()?;
        let reflection_v1alpha = self.reflection().build_v1alpha()?;
        routes
            .add_service(self.health.service())
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        Ok(routes)
    }

    /// Serves on `listener` until `shutdown` completes, then drains gracefully: health turns
    /// NOT_SERVING, the listener closes, connections get a GOAWAY, and in-flight calls have
    /// [`ServerConfig::grace_period`] to finish before the remaining connections are closed.
    ///
    /// # Errors
    /// The reflection descriptors are invalid, or the address is not allowed ([`check_listen`](Self::check_listen)).
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let addr = listener.local_addr()?;
        self.check_listen(addr)?;
        let metrics = self.metrics();
        let channelz = crate::channelz::registry::register_server(addr, metrics.clone());
        let routes = self.all_routes()?;
        let single_request = crate::descriptors::single_request(&self.all_descriptors());
        let Server {
            config,
            health,
            stats,
            faults,
            ..
        } = self;

        // Sockets are counted for channelz only when it is served: nobody else reads them.
        let sockets = config.channelz.then(|| channelz.entry.clone());
        let incoming = accept(listener, &config, stats, sockets);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let calls = tower::ServiceBuilder::new()
            .layer(RpcTelemetryLayer::new(metrics.clone()))
            .layer(
                MessageSizeLimitLayer::new(config.max_message_size, config.compress_answers)
                    .single_request(single_request),
            )
            .layer(endpoint_header(config.advertise.clone(), addr))
            .layer(AuthzLayer::new(config.policy.clone()))
            // Only when there are faults: no layer, no cost per call.
            .option_layer(
                (!config.faults.is_empty()).then(|| FaultLayer::new(config.faults.clone(), faults)),
            )
            .service(routes.build());
        let settings = transport::Settings {
            max_concurrent_streams: config.max_concurrent_streams,
            max_connection_age: config
                .max_connection_age
                .map(|age| (age, config.max_connection_age_grace)),
            http1: config.grpc_web.is_some(),
        };
        // A dropped sender also means stop.
        let stopped = async {
            let _ = stop_rx.await;
        };
        // gRPC-Web's layers only where it is served: as an optional layer their size (CORS's
        // settings) would be in the stack's type, and copied with every call's clone of it.
        let server = match &config.grpc_web {
            Some(web) => futures_util::future::Either::Left(transport::serve(
                settings,
                tower::ServiceBuilder::new()
                    .layer(web::cors(web))
                    .layer_fn(web::Http1)
                    .layer(tonic_web::GrpcWebLayer::new())
                    .service(calls),
                incoming,
                stopped,
            )),
            None => futures_util::future::Either::Right(transport::serve(
                settings, calls, incoming, stopped,
            )),
        };
        let mut server = std::pin::pin!(server);
        tracing::debug!(%addr, "serving");

        tokio::select! {
            () = &mut server => return Ok(()),
            () = shutdown => {}
        }
        let grace = config.grace_period;
        let in_flight = metrics.in_flight();
        tracing::info!(%addr, ?grace, in_flight, "draining: health is NOT_SERVING, no new connections, in-flight calls may finish");
        health.drain();
        let _ = stop_tx.send(());
        drain_within(grace, server, addr, &metrics).await;
        Ok(())
    }
}

/// The layer that names the serving instance in every response (`ENDPOINT_HEADER`): the
/// `advertise` address configured, else `addr` unless it is unspecified; and adds the trailers
/// a handler set ([`trailers::set`]).
fn endpoint_header(
    advertise: Option<String>,
    addr: SocketAddr,
) -> tower::util::MapResponseLayer<impl Fn(http::Response<Body>) -> http::Response<Body> + Clone> {
    let advertise = advertise
        .or_else(|| (!addr.ip().is_unspecified()).then(|| addr.to_string()))
        .and_then(|a| http::HeaderValue::try_from(a).ok());
    tower::util::MapResponseLayer::new(move |response: http::Response<Body>| {
        let mut response = trailers::from_handler(response);
        if let Some(value) = &advertise {
            response
                .headers_mut()
                .insert(ENDPOINT_HEADER_NAME.clone(), value.clone());
        }
        response
    })
}

/// Waits for a draining `server` to close its last connection, at most `grace`; says which.
async fn drain_within(
    grace: Duration,
    server: impl Future<Output = ()>,
    addr: SocketAddr,
    metrics: &ServerMetrics,
) {
    let in_flight = metrics.in_flight();
    let started = Instant::now();
    match tokio::time::timeout(grace, server).await {
        Ok(()) => {
            tracing::info!(%addr, elapsed = ?started.elapsed(), in_flight_at_start = in_flight, "drained: every connection closed");
        }
        Err(_) => {
            tracing::warn!(%addr, ?grace, unfinished = metrics.in_flight(), "grace period over: closing the connections still open")
        }
    }
}

/// Serves only `grpc.health.v1` from `health`, in plaintext, on `listener` until `shutdown`:
/// for probes that cannot speak TLS, such as the kubelet's gRPC probe. It reports what the
/// server owning `health` reports (NOT_SERVING from the moment that server drains), so stop it
/// after that server has finished. Health says nothing secret, so any address is allowed.
/// Connections are accepted as `config`'s server accepts them (TCP options, keepalive, the
/// handshake timeout), without its TLS.
///
/// # Errors
/// None so far: failed connections are logged and dropped. A `Result`, like [`Server::serve`].
pub async fn serve_health(
    health: HealthState,
    listener: TcpListener,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let plaintext = ServerConfig {
        tls: None,
        ..config.clone()
    };
    let incoming = accept(listener, &plaintext, Arc::default(), None);
    let mut routes = RoutesBuilder::default();
    routes.add_service(health.service());
    let settings = transport::Settings {
        max_concurrent_streams: config.max_concurrent_streams,
        max_connection_age: None,
        http1: false,
    };
    transport::serve(settings, routes.build(), incoming, shutdown).await;
    Ok(())
}

/// What the kernel accepts as a TCP keepalive time (`TCP_KEEPIDLE`, `TCP_KEEPINTVL`); keepalive
/// settings outside it are clamped into it.
pub const KEEPALIVE_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(32_767);

/// TCP_NODELAY, and dead clients left to the kernel (ARCHITECTURE.md says why): after `interval`
/// of silence it probes, three times a third of `timeout` apart, and closes the connection once
/// the peer has been silent for `interval + timeout`, probes unanswered or data sent
/// unacknowledged (`TCP_USER_TIMEOUT` on Linux, counted from the last segment received, which
/// is why it is the sum: `timeout` alone would let one lost probe close an idle connection).
fn tune(tcp: &tokio::net::TcpStream, interval: Duration, timeout: Duration) -> std::io::Result<()> {
    let clamp = |d: Duration| d.clamp(*KEEPALIVE_RANGE.start(), *KEEPALIVE_RANGE.end());
    let (interval, timeout) = (clamp(interval), clamp(timeout));
    tcp.set_nodelay(true)?;
    let socket = socket2::SockRef::from(tcp);
    socket.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(interval)
            .with_interval(clamp(timeout / 3))
            .with_retries(3),
    )?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(interval + timeout))?;
    Ok(())
}

/// Accepts connections (TCP_NODELAY, keepalive: [`tune`], counted) and, with TLS, completes each
/// handshake in its own task, so a slow or silent client never holds up the others. Failed
/// handshakes (a plaintext client on a TLS port, an unknown CA…) are logged and dropped. Every
/// connection must then send the HTTP/2 preface within the handshake timeout ([`Preface`]). The
/// loop and the listener end when the server stops taking connections.
fn accept(
    listener: TcpListener,
    config: &ServerConfig,
    stats: Arc<ServerStats>,
    channelz: Option<Arc<ServerEntry>>,
) -> ReceiverStream<std::io::Result<Policed<Preface>>> {
    let (tx, rx) = mpsc::channel(64);
    let (tls, handshake) = (config.tls.clone(), config.handshake_timeout);
    // gRPC-Web may come over HTTP/1.1: TLS offers it beside HTTP/2 (ALPN).
    let http1 = config.grpc_web.is_some();
    let keepalive = (config.keepalive_interval, config.keepalive_timeout);
    let pings = config.ping_policy;
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        // Out of file descriptors and the like: wait a little rather than spin.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            if let Err(err) = tune(&tcp, keepalive.0, keepalive.1) {
                tracing::warn!(%peer, %err, "cannot set TCP_NODELAY or keepalive on a connection");
            }
            tracing::debug!(%peer, "connection accepted");
            let deadline = tokio::time::Instant::now() + handshake;
            let policed = {
                let channelz = channelz.clone();
                move |conn: Conn| {
                    let socket = channelz.as_ref().map(|server| {
                        let socket = conn.register_socket();
                        server.accepted(&socket);
                        socket
                    });
                    Policed::new(Preface::new(conn, deadline), pings, socket)
                }
            };
            let Some(tls) = &tls else {
                if tx.send(Ok(policed(Conn::Plain(tcp)))).await.is_err() {
                    return;
                }
                continue;
            };
            let (acceptor, tx) = (tls.acceptor(http1), tx.clone());
            tokio::spawn(async move {
                if let Some(stream) = tls_handshake(acceptor, tcp, peer, deadline).await {
                    let _ = tx.send(Ok(policed(Conn::Tls(Box::new(stream))))).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The TLS handshake of a connection from `peer`, by `deadline`. A failure is logged once, at
/// info, saying what went wrong on the client's side of it; the connection is then read until
/// the client closes it (or the deadline), so that closing sends no reset, which could make the
/// client's kernel drop the TLS alert that tells it why.
async fn tls_handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    mut tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    deadline: tokio::time::Instant,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    if refused_plaintext(&mut tcp, deadline).await {
        let why = crate::diagnose::plaintext_client();
        tracing::info!(%peer, why, "TLS handshake failed");
        drain(tcp, deadline).await;
        return None;
    }
    let (err, tcp) =
        match tokio::time::timeout_at(deadline, acceptor.accept(tcp).into_fallible()).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(failed)) => failed,
            Err(_) => {
                tracing::warn!(%peer, "TLS handshake timed out");
                return None;
            }
        };
    let why = crate::diagnose::server_handshake(&err);
    tracing::info!(%peer, why, "TLS handshake failed");
    drain(tcp, deadline).await;
    None
}

/// Reads `tcp` until the peer closes it or `deadline`, then drops it.
async fn drain(mut tcp: tokio::net::TcpStream, deadline: tokio::time::Instant) {
    use tokio::io::AsyncReadExt;
    let mut sink = [0; 1024];
    let reading = async { while matches!(tcp.read(&mut sink).await, Ok(1..)) {} };
    let _ = tokio::time::timeout_at(deadline, reading).await;
}

/// A client that starts with the HTTP/2 preface on a TLS port is answered in HTTP/2 — SETTINGS
/// and GOAWAY INADEQUATE_SECURITY "this server requires TLS" — which every gRPC client can show,
/// where a TLS alert or a closed connection would say nothing to it. Whether it did.
async fn refused_plaintext(
    tcp: &mut tokio::net::TcpStream,
    deadline: tokio::time::Instant,
) -> bool {
    use tokio::io::AsyncWriteExt;
    let mut head = [0; 4];
    let peeked = tokio::time::timeout_at(deadline, tcp.peek(&mut head)).await;
    if !matches!(peeked, Ok(Ok(4))) || head != crate::h2::PREFACE[..4] {
        return false;
    }
    let goaway = crate::h2::goaway(
        0,
        crate::h2::INADEQUATE_SECURITY,
        crate::diagnose::TLS_REQUIRED.as_bytes(),
    );
    let answer = [&crate::h2::EMPTY_SETTINGS[..], &goaway].concat();
    let _ = tokio::time::timeout_at(deadline, tcp.write_all(&answer)).await;
    let _ = tcp.shutdown().await;
    true
}

/// The length of the HTTP/2 client connection preface.
const PREFACE_LEN: usize = 24;

pin_project_lite::pin_project! {
    /// A connection whose first [`PREFACE_LEN`] bytes must arrive by a deadline: reading fails
    /// with `TimedOut` after it, so hyper closes a connection that never started HTTP/2 (a
    /// client that connects and sends nothing, or too little). After the preface it is the
    /// connection itself.
    pub(crate) struct Preface {
        #[pin]
        conn: Conn,
        remaining: usize,
        deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    }
}

impl Preface {
    fn new(conn: Conn, deadline: tokio::time::Instant) -> Self {
        Self {
            conn,
            remaining: PREFACE_LEN,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }
}

/// The peer's address as the server's logs show it (`127.0.0.1:40000`), or `unknown`.
fn peer_of(conn: &Conn) -> String {
    use tonic::transport::server::Connected;
    conn.connect_info()
        .remote
        .map_or_else(|| "unknown".to_owned(), |remote| remote.to_string())
}

impl tonic::transport::server::Connected for Preface {
    type ConnectInfo = crate::tls::PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.conn.connect_info()
    }
}

impl tokio::io::AsyncRead for Preface {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let mut this = self.project();
        let Some(deadline) = this.deadline.as_mut() else {
            return this.conn.poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match this.conn.as_mut().poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if *this.remaining == PREFACE_LEN && buf.filled()[before..].starts_with(&[22, 3]) {
                    // A TLS ClientHello where the preface belongs: hyper ends the connection.
                    tracing::info!(
                        peer = %peer_of(&this.conn),
                        why = crate::diagnose::tls_client(),
                        "not an HTTP/2 connection"
                    );
                }
                *this.remaining = this.remaining.saturating_sub(read);
                if *this.remaining == 0 || read == 0 {
                    *this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    tracing::debug!("closing a connection that sent no HTTP/2 preface in time");
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no HTTP/2 preface within the handshake timeout",
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl tokio::io::AsyncWrite for Preface {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.project().conn.poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().conn.poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().conn.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.project().conn.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.conn.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    /// Accepted connections get TCP_NODELAY and the kernel's dead-peer detection from the config.
    #[tokio::test]
    async fn accepted_connections_have_nodelay_and_keepalive() {
        let config = ServerConfig {
            keepalive_interval: Duration::from_secs(42),
            keepalive_timeout: Duration::from_secs(9),
            ..ServerConfig::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = accept(listener, &config, Arc::default(), None);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let conn = incoming.next().await.unwrap().unwrap();
        let Conn::Plain(tcp) = &conn.get_ref().conn else {
            panic!("a plaintext server accepted a TLS connection");
        };
        let socket = socket2::SockRef::from(tcp);
        assert!(tcp.nodelay().unwrap());
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(42)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(3)
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 3);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(42 + 9))
        );
    }
}
