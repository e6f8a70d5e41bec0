//! The one place that builds gRPC channels.
//!
//! A [`Target`] names where to call, in gRPC's name syntax; [`connect`] turns it into a
//! [`MeshChannel`]: discovery ([`crate::client::discovery`]) feeding a health-aware balancer
//! ([`crate::client::balance`]) with one HTTP/2 connection per endpoint, retries of calls that failed
//! before any response ([`crate::client::retry`]) under a retry budget, and expired deadlines reported
//! as DEADLINE_EXCEEDED (tonic alone says CANCELLED "Timeout expired").

pub mod balance;
pub mod discovery;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod metrics;
pub mod retry;

pub use metrics::ClientMetrics;

use std::fmt;
use std::future::Future;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_util::{FutureExt, StreamExt};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};
use tower::retry::budget::{Budget, TpsBudget};

use crate::client::balance::{Balancer, EndpointCounts, LbPolicy, Outstanding};
use crate::client::discovery::{Change, Discover, Dns, StaticList};
use crate::client::retry::{ReplayBody, never_reached_server, unreachable};

/// The target forms accepted, for error messages and `--help`.
pub const TARGET_FORMS: &str = "host:port, http://host:port, ipv4:ADDR:PORT[,ADDR:PORT...], \
ipv6:[ADDR]:PORT[,[ADDR]:PORT...], dns:///NAME:PORT, dns://DNS_SERVER:PORT/NAME:PORT, \
etcd://HOST:PORT[,HOST:PORT...]/SERVICE";

/// Where a client sends its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One endpoint, `host:port` (a host name is resolved when connecting).
    Endpoint(String),
    /// A fixed list of addresses (`ipv4:` / `ipv6:`).
    Static(Vec<SocketAddr>),
    /// Every A/AAAA record of `host`, re-resolved (`dns:///host:port`).
    Dns {
        /// The DNS server to ask (`dns://SERVER:PORT/…`); `None` for the system's.
        server: Option<SocketAddr>,
        /// The name.
        host: String,
        /// The port.
        port: u16,
    },
    /// Endpoints registered in etcd under `SERVICE/` (`etcd://HOST:PORT[,…]/SERVICE`).
    Etcd {
        /// The etcd cluster's client endpoints, `host:port`.
        endpoints: Vec<String>,
        /// The service name: the key prefix.
        service: String,
    },
}

/// Why a target or channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The target text is not one of the accepted forms.
    #[error("invalid target {target:?}: {reason}; accepted forms: {TARGET_FORMS}")]
    InvalidTarget {
        /// The text given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The target needs a feature this build does not have.
    #[error("target {target:?} needs etcd support: build calcmesh with `--features etcd`")]
    Unsupported {
        /// The target.
        target: String,
    },
}

fn invalid(target: &str, reason: impl Into<String>) -> ClientError {
    ClientError::InvalidTarget {
        target: target.to_owned(),
        reason: reason.into(),
    }
}

fn parse_list<A: FromStr>(
    target: &str,
    list: &str,
    family: &str,
) -> Result<Vec<SocketAddr>, ClientError>
where
    SocketAddr: From<A>,
{
    list.split(',')
        .map(|item| {
            item.trim()
                .parse::<A>()
                .map(SocketAddr::from)
                .map_err(|_| invalid(target, format!("{item:?} is not an {family} ADDR:PORT")))
        })
        .collect()
}

/// Parses `host:port`, requiring the port.
fn host_port<'a>(target: &str, authority: &'a str) -> Result<(&'a str, u16), ClientError> {
    let parsed = http::uri::Authority::from_str(authority)
        .map_err(|err| invalid(target, format!("{authority:?} is not a host:port ({err})")))?;
    let port = parsed.port_u16().ok_or_else(|| {
        invalid(
            target,
            format!("{authority:?} has no port (the calculator's usual one is 50051)"),
        )
    })?;
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

impl FromStr for Target {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(list) = s.strip_prefix("ipv4:") {
            return parse_list::<SocketAddrV4>(s, list, "IPv4").map(Target::Static);
        }
        if let Some(list) = s.strip_prefix("ipv6:") {
            return parse_list::<SocketAddrV6>(s, list, "IPv6").map(Target::Static);
        }
        if let Some(rest) = s.strip_prefix("dns://") {
            let (server, name) = rest
                .split_once('/')
                .ok_or_else(|| invalid(s, "expected dns:///NAME:PORT"))?;
            let server =
                match server {
                    "" => None,
                    server => Some(server.parse::<SocketAddr>().map_err(|_| {
                        invalid(s, format!("DNS server {server:?} is not an IP:PORT"))
                    })?),
                };
            let (host, port) = host_port(s, name)?;
            return Ok(Target::Dns {
                server,
                host: host.to_owned(),
                port,
            });
        }
        if let Some(rest) = s.strip_prefix("etcd://") {
            let (hosts, service) = rest
                .split_once('/')
                .ok_or_else(|| invalid(s, "expected etcd://HOST:PORT/SERVICE"))?;
            if service.is_empty() || service.contains('/') {
                return Err(invalid(
                    s,
                    "the service name after the '/' must be one non-empty word",
                ));
            }
            let endpoints = hosts
                .split(',')
                .map(|h| host_port(s, h).map(|_| h.to_owned()))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Target::Etcd {
                endpoints,
                service: service.to_owned(),
            });
        }
        // TLS is a property of the client (ClientConfig::tls), so https:// reads like http://.
        let authority = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .unwrap_or(s);
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains("://") || authority.contains('/') {
            return Err(invalid(s, "unknown scheme or a path after host:port"));
        }
        host_port(s, authority)?;
        Ok(Target::Endpoint(authority.to_owned()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Endpoint(authority) => f.write_str(authority),
            Target::Static(addrs) => {
                let family = if addrs.first().is_some_and(SocketAddr::is_ipv6) {
                    "ipv6"
                } else {
                    "ipv4"
                };
                let list: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
                write!(f, "{family}:{}", list.join(","))
            }
            Target::Dns { server, host, port } => {
                let server = server.map(|s| s.to_string()).unwrap_or_default();
                if host.contains(':') {
                    write!(f, "dns://{server}/[{host}]:{port}")
                } else {
                    write!(f, "dns://{server}/{host}:{port}")
                }
            }
            Target::Etcd { endpoints, service } => {
                write!(f, "etcd://{}/{service}", endpoints.join(","))
            }
        }
    }
}

/// Client behaviour. [`Default`] gives production defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How long to wait for a TCP connection. Default 5 s.
    pub connect_timeout: Duration,
    /// How often to PING an idle HTTP/2 connection. Default 60 s.
    pub keepalive_interval: Duration,
    /// How long to wait for the PING ack. Default 20 s.
    pub keepalive_timeout: Duration,
    /// How calls are spread over endpoints. Default least_request.
    pub policy: LbPolicy,
    /// The service whose `grpc.health.v1` status decides if an endpoint takes calls (`""`: the
    /// server as a whole); `None` turns health checking off. Default `Some("")`.
    pub health_service: Option<String>,
    /// Attempts per call, the first included. Default 3.
    pub max_attempts: usize,
    /// Method path prefixes (e.g. `/calculator.Calculator/`) that are safe to send twice.
    /// Calls to other methods are retried only when the server provably never saw them.
    pub idempotent: Vec<String>,
    /// How often DNS targets are resolved again. Default 30 s.
    pub dns_interval: Duration,
    /// TLS to every endpoint (with a client certificate: mutual TLS); `None`: plaintext.
    pub tls: Option<crate::tls::ClientTls>,
    /// TLS to etcd, for `etcd://` targets; `None`: plaintext.
    pub etcd_tls: Option<crate::tls::ClientTls>,
    /// Where to record `grpc_client_*` and this channel's endpoint metrics; `None`: nowhere.
    pub metrics: Option<Arc<ClientMetrics>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            policy: LbPolicy::default(),
            health_service: Some(String::new()),
            max_attempts: 3,
            idempotent: Vec::new(),
            dns_interval: Duration::from_secs(30),
            tls: None,
            etcd_tls: None,
            metrics: None,
        }
    }
}

fn tonic_channel(authority: &str, config: &ClientConfig) -> Option<Channel> {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = TonicEndpoint::from_shared(format!("{scheme}://{authority}")).ok()?;
    if let Some(tls) = &config.tls {
        endpoint = endpoint
            .tls_config(tls.tonic())
            .inspect_err(
                |err| tracing::error!(endpoint = authority, %err, "TLS configuration refused"),
            )
            .ok()?;
    }
    Some(
        endpoint
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(config.keepalive_interval)
            .keep_alive_timeout(config.keepalive_timeout)
            .keep_alive_while_idle(true)
            .connect_lazy(),
    )
}

fn discovery(target: &Target, config: &ClientConfig) -> Result<Box<dyn Discover>, ClientError> {
    Ok(match target {
        Target::Endpoint(authority) => Box::new(StaticList(vec![authority.clone()])),
        Target::Static(addrs) => Box::new(StaticList(
            addrs.iter().map(SocketAddr::to_string).collect(),
        )),
        Target::Dns { server, host, port } => Box::new(Dns {
            server: *server,
            host: host.clone(),
            port: *port,
            interval: config.dns_interval,
        }),
        #[cfg(feature = "etcd")]
        Target::Etcd { endpoints, service } => Box::new(crate::client::etcd::EtcdDiscovery::new(
            endpoints.clone(),
            service.clone(),
            config.etcd_tls.clone(),
        )),
        #[cfg(not(feature = "etcd"))]
        Target::Etcd { .. } => {
            return Err(ClientError::Unsupported {
                target: target.to_string(),
            });
        }
    })
}

/// A channel to `target`: discovery, balancing, health checks and retries as [`ClientConfig`]
/// says. It connects on demand, so this never waits on the network; a call with no endpoint to
/// go to fails with UNAVAILABLE. Must be called within a tokio runtime.
///
/// # Errors
/// The target needs a feature this build lacks.
pub fn connect(target: &Target, config: &ClientConfig) -> Result<MeshChannel, ClientError> {
    let discover = discovery(target, config)?;
    let factory_config = config.clone();
    let balancer = Arc::new(Balancer::new(
        config.policy,
        config.health_service.clone(),
        move |authority| tonic_channel(authority, &factory_config),
    ));
    let (resolved_tx, resolved) = watch::channel(false);
    let (stop, stopped) = oneshot::channel::<()>();
    let connection_lost = balancer.connection_lost();
    let mut changes = discover.changes(connection_lost);
    let driver = balancer.clone();
    let discovery = Arc::new(DiscoveryStats::default());
    let stats = discovery.clone();
    let apply = move |change: Change| {
        match change {
            Change::Insert(a) => driver.insert(&a),
            Change::Remove(a) => driver.remove(&a),
            Change::Reset(all) => driver.reset(&all),
        }
        stats.updated();
        let _ = resolved_tx.send(true);
    };
    // Static targets are known now: apply them before the first call can look.
    if matches!(target, Target::Endpoint(_) | Target::Static(_))
        && let Some(Some(change)) = changes.next().now_or_never()
    {
        apply(change);
    }
    tokio::spawn(async move {
        let mut stopped = stopped;
        loop {
            tokio::select! {
                change = changes.next() => match change {
                    Some(change) => apply(change),
                    None => return,
                },
                _ = &mut stopped => return,
            }
        }
    });
    let shared = Arc::new(Shared {
        target: target.to_string(),
        balancer,
        resolved,
        budget: TpsBudget::new(Duration::from_secs(10), 10, 0.2),
        max_attempts: config.max_attempts.max(1),
        idempotent: config.idempotent.clone(),
        connect_timeout: config.connect_timeout,
        metrics: config.metrics.clone(),
        retries: AtomicU64::new(0),
        discovery,
        _stop: stop,
    });
    if let Some(metrics) = &config.metrics {
        let mut channels = crate::sync::lock(&metrics.channels);
        channels.retain(|c| c.strong_count() > 0);
        channels.push(Arc::downgrade(&shared));
    }
    Ok(MeshChannel { shared })
}

pub(crate) use crate::error::BoxError;

/// What discovery has delivered: how often, and when last.
#[derive(Debug, Default)]
struct DiscoveryStats {
    updates: AtomicU64,
    /// Milliseconds since the Unix epoch.
    last_update_ms: AtomicU64,
}

impl DiscoveryStats {
    fn updated(&self) {
        self.updates.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_update_ms
            .store(now.as_millis() as u64, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    target: String,
    balancer: Arc<Balancer>,
    resolved: watch::Receiver<bool>,
    budget: TpsBudget,
    max_attempts: usize,
    idempotent: Vec<String>,
    /// How long a call may wait for a reconnecting endpoint.
    connect_timeout: Duration,
    metrics: Option<Arc<ClientMetrics>>,
    /// Attempts sent again on another endpoint.
    retries: AtomicU64,
    discovery: Arc<DiscoveryStats>,
    /// Dropped with the last clone of the channel: stops discovery.
    _stop: oneshot::Sender<()>,
}

/// The channel [`connect`] builds: use it wherever a tonic client wants a channel
/// (`CalculatorClient::new(channel)`). Cheap to clone; clones share endpoints and connections.
#[derive(Debug, Clone)]
pub struct MeshChannel {
    shared: Arc<Shared>,
}

impl MeshChannel {
    /// Endpoint counts by state, e.g. for readiness.
    pub fn endpoints(&self) -> EndpointCounts {
        self.shared.balancer.counts()
    }

    /// The target this channel calls, as given.
    pub fn target(&self) -> &str {
        &self.shared.target
    }

    /// The metrics this channel records into, if its config gave some.
    pub fn metrics(&self) -> Option<Arc<ClientMetrics>> {
        self.shared.metrics.clone()
    }

    /// Waits until the endpoint counts satisfy `ready` (re-checked on every endpoint change:
    /// added, removed, health or reachability changed). Bound it with a timeout.
    pub async fn wait_for_endpoints(&self, mut ready: impl FnMut(EndpointCounts) -> bool) {
        let mut changes = self.shared.balancer.subscribe();
        loop {
            changes.borrow_and_update();
            if ready(self.endpoints()) || changes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// tonic reports its own expired deadline as a `TimeoutExpired` error (which becomes CANCELLED);
/// gRPC says DEADLINE_EXCEEDED.
fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    crate::error::is_caused_by::<tonic::TimeoutExpired>(err)
}

fn deadline_exceeded() -> BoxError {
    Box::new(Status::deadline_exceeded(
        "deadline exceeded before the server answered",
    ))
}

impl Shared {
    fn no_endpoint(&self) -> BoxError {
        let cause = self
            .balancer
            .a_failure()
            .map(|f| format!(" (last failure: {f})"))
            .unwrap_or_default();
        let why = self.balancer.counts().none_eligible(&self.target);
        Box::new(Status::unavailable(format!("{why}{cause}")))
    }

    /// An endpoint for the next attempt. With none eligible but some reconnecting (gRPC's
    /// CONNECTING), waits for one — at most the connect timeout, and never past the deadline.
    async fn pick(
        &self,
        tried: &[Arc<crate::client::balance::Endpoint>],
        deadline: Option<Instant>,
    ) -> Option<Arc<crate::client::balance::Endpoint>> {
        let mut changes = self.balancer.subscribe();
        let until = Instant::now() + self.connect_timeout;
        let until = deadline.map_or(until, |d| d.min(until));
        loop {
            changes.borrow_and_update();
            if let Some(endpoint) = self.balancer.pick(tried) {
                return Some(endpoint);
            }
            if self.balancer.counts().connecting == 0
                || tokio::time::timeout_at(until, changes.changed())
                    .await
                    .is_err()
            {
                return None;
            }
        }
    }

    async fn call(
        self: Arc<Self>,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, BoxError> {
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::deadline::parse_timeout)
            .map(|left| Instant::now() + left);
        // Wait for discovery's first answer (static targets have it already).
        let mut resolved = self.resolved.clone();
        let first = resolved.wait_for(|r| *r);
        let wait = deadline.map_or(Duration::from_secs(10), |d| {
            d.saturating_duration_since(Instant::now())
        });
        if !matches!(tokio::time::timeout(wait, first).await, Ok(Ok(_))) {
            return Err(if deadline.is_some_and(|d| Instant::now() >= d) {
                deadline_exceeded()
            } else {
                self.no_endpoint()
            });
        }

        let idempotent = self
            .idempotent
            .iter()
            .any(|p| request.uri().path().starts_with(p.as_str()));
        let (parts, body) = request.into_parts();
        let body = ReplayBody::new(body);
        self.budget.deposit();
        let mut tried = Vec::new();
        loop {
            let Some(endpoint) = self.pick(&tried, deadline).await else {
                return Err(if deadline.is_some_and(|d| Instant::now() >= d) {
                    deadline_exceeded()
                } else {
                    self.no_endpoint()
                });
            };
            let Some(attempt_body) = body.replay() else {
                return Err(Box::new(Status::unavailable("request too large to retry")));
            };
            let mut builder = http::Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.clone())
                .version(parts.version);
            if let Some(headers) = builder.headers_mut() {
                *headers = parts.headers.clone();
            }
            let attempt = builder
                .body(Body::new(attempt_body))
                .map_err(|e| Box::new(e) as BoxError)?;
            let outstanding = endpoint.start_call();
            let mut channel = endpoint.channel.clone();
            let result = tower::ServiceExt::ready(&mut channel).await;
            let result = match result {
                Ok(channel) => tower_service::Service::call(channel, attempt).await,
                Err(err) => Err(err),
            };
            match result {
                Ok(mut response) => {
                    // A tonic server whose copy of our deadline fired first answers CANCELLED
                    // "Timeout expired"; once our deadline has passed, that is DEADLINE_EXCEEDED.
                    let cancelled = response
                        .headers()
                        .get("grpc-status")
                        .is_some_and(|s| s == "1");
                    if cancelled && deadline.is_some_and(|d| Instant::now() >= d) {
                        let headers = response.headers_mut();
                        headers.insert("grpc-status", http::HeaderValue::from_static("4"));
                        headers.insert(
                            "grpc-message",
                            http::HeaderValue::from_static("deadline exceeded"),
                        );
                    }
                    return Ok(response.map(|body| {
                        Body::new(CountedBody {
                            inner: body,
                            _outstanding: outstanding,
                        })
                    }));
                }
                Err(err) => {
                    drop(outstanding);
                    if is_timeout(&err) {
                        return Err(deadline_exceeded());
                    }
                    let unseen = never_reached_server(&err);
                    if unreachable(&err) {
                        endpoint.set_down(crate::error::display_chain(&err));
                    }
                    tried.push(endpoint);
                    let retryable = (idempotent || unseen)
                        && tried.len() < self.max_attempts
                        && body.replay().is_some()
                        && deadline.is_none_or(|d| Instant::now() < d);
                    if !retryable || !self.budget.withdraw() {
                        // A transport failure is UNAVAILABLE in gRPC's terms (tonic would say
                        // UNKNOWN for a reset connection).
                        let endpoint = &tried[tried.len() - 1].authority;
                        let cause = crate::error::display_chain(&err);
                        let attempts = match tried.len() {
                            1 => String::new(),
                            n => format!(
                                " (attempt {n}, after {})",
                                tried[..n - 1]
                                    .iter()
                                    .map(|e| e.authority.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        };
                        return Err(Box::new(Status::unavailable(format!(
                            "{endpoint}: {cause}{attempts}"
                        ))));
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target = %self.target, attempt = tried.len(), %err, "retrying on another endpoint");
                }
            }
        }
    }
}

impl tower_service::Service<http::Request<Body>> for MeshChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        crate::telemetry::trace::inject(request.headers_mut());
        let shared = self.shared.clone();
        match shared.metrics.clone() {
            Some(metrics) => Box::pin(metrics.observe(request, |r| shared.call(r))),
            None => Box::pin(shared.call(request)),
        }
    }
}

/// Whether `status` comes from the connection failing (hyper's error among its sources).
fn transport_failure(status: &Status) -> bool {
    crate::error::is_caused_by::<hyper::Error>(status)
}

pin_project_lite::pin_project! {
    /// A response body that keeps its call counted as outstanding until it ends.
    struct CountedBody {
        #[pin]
        inner: Body,
        _outstanding: Outstanding,
    }
}

impl HttpBody for CountedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().inner.poll_frame(cx) {
            // The connection failed mid-response: gRPC calls that UNAVAILABLE (tonic: UNKNOWN).
            Poll::Ready(Some(Err(status)))
                if status.code() == tonic::Code::Unknown && transport_failure(&status) =>
            {
                Poll::Ready(Some(Err(Status::unavailable(status.message().to_owned()))))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(
            "localhost:50051".parse::<Target>().unwrap(),
            Target::Endpoint("localhost:50051".into())
        );
        assert_eq!(
            "http://127.0.0.1:9/".parse::<Target>().unwrap(),
            Target::Endpoint("127.0.0.1:9".into())
        );
        assert_eq!(
            "[::1]:50051".parse::<Target>().unwrap(),
            Target::Endpoint("[::1]:50051".into())
        );
        let list: Target = "ipv4:127.0.0.1:1,127.0.0.2:2".parse().unwrap();
        assert_eq!(list.to_string(), "ipv4:127.0.0.1:1,127.0.0.2:2");
        let list: Target = "ipv6:[::1]:1".parse().unwrap();
        assert_eq!(list.to_string(), "ipv6:[::1]:1");
    }

    #[test]
    fn rejected_forms_say_what_is_accepted() {
        for bad in [
            "localhost",
            "ftp://x:1",
            "ipv4:1.2.3.4",
            "ipv4:localhost:1",
            "x:1/path",
            "",
            "ipv6:::1:1",
        ] {
            let err = bad.parse::<Target>().unwrap_err().to_string();
            assert!(err.contains("accepted forms: host:port"), "{bad}: {err}");
        }
    }
}
