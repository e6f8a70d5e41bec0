//! The one place that builds gRPC channels.
//!
//! A [`Target`] names where to call, in gRPC's name syntax; [`connect`] turns it into a
//! [`MeshChannel`]: discovery ([`crate::client::discovery`]) feeding a health-aware balancer
//! ([`crate::client::balance`]) with one HTTP/2 connection per endpoint, retries of calls that failed
//! before any response ([`crate::client::retry`]) under a retry budget, and expired deadlines reported
//! as DEADLINE_EXCEEDED (tonic alone says CANCELLED "Timeout expired").

mod answer;
mod attempt;
pub mod balance;
mod config;
mod connector;
pub mod discovery;
#[cfg(feature = "etcd")]
pub mod etcd;
mod hedge;
mod live_config;
mod message_limits;
pub mod metrics;
pub mod outlier;
pub mod reply;
pub mod retry;
pub mod service_config;
mod status;
mod target;
mod throttle;
mod transport;
mod web;

pub use config::{ClientConfig, Protocol};
pub use live_config::ConfigUpdates;
pub use metrics::ClientMetrics;
pub use service_config::{ServiceConfig, ServiceConfigError};
pub use status::{ChannelStatus, EndpointStatus};
pub use target::{ClientError, TARGET_FORMS, Target};

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_util::{FutureExt, StreamExt};
use tokio::sync::{oneshot, watch};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};
use tower::retry::budget::TpsBudget;

use crate::client::balance::{Balancer, EndpointCounts};
use crate::client::connector::{Connector, CurrentSocket, Keepalive};
use crate::client::discovery::{Change, Discover, Dns, StaticList};
use crate::client::live_config::LiveConfig;
use crate::client::transport::{Transport, WebChannel};

/// One endpoint's transport: its connections made by [`Connector`] (TCP, TLS, the watch for
/// "too_many_pings"), with the channel's keepalive time as it is now, carrying gRPC (tonic's
/// channel) or gRPC-Web as the config says.
fn endpoint_transport(
    authority: &str,
    config: &ClientConfig,
    keepalive: &Arc<Keepalive>,
) -> Option<(Transport, CurrentSocket)> {
    let socket = CurrentSocket::default();
    let connector = Connector::new(
        authority,
        config.tls.clone(),
        keepalive.clone(),
        socket.clone(),
    );
    let tls = config.tls.is_some();
    let transport = match config.protocol {
        Protocol::Grpc => {
            Transport::Grpc(tonic_channel(authority, tls, config, keepalive, connector)?)
        }
        Protocol::GrpcWebHttp2 => {
            Transport::WebHttp2(tonic_channel(authority, tls, config, keepalive, connector)?)
        }
        Protocol::GrpcWebHttp1 => Transport::WebHttp1(Box::new(WebChannel::new(
            authority,
            tls,
            connector.http1(config.connect_timeout),
        )?)),
    };
    Some((transport, socket))
}

fn tonic_channel(
    authority: &str,
    tls: bool,
    config: &ClientConfig,
    keepalive: &Arc<Keepalive>,
    connector: Connector,
) -> Option<Channel> {
    let mut endpoint = TonicEndpoint::from_shared(format!("http://{authority}")).ok()?;
    if tls {
        // The connector makes the TLS handshake; the requests still say `https`.
        endpoint = endpoint.origin(format!("https://{authority}").parse().ok()?);
    }
    Some(
        endpoint
            .connect_timeout(config.connect_timeout)
            .http2_keep_alive_interval(keepalive.time())
            .keep_alive_timeout(config.keepalive_timeout)
            .keep_alive_while_idle(true)
            .connect_with_connector_lazy(connector),
    )
}

/// Reconnects each endpoint told "too_many_pings" with the channel's new keepalive time, until
/// the channel is gone.
async fn renew_endpoints(
    balancer: std::sync::Weak<Balancer>,
    mut renewals: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    while let Some(endpoint) = renewals.recv().await {
        let Some(balancer) = balancer.upgrade() else {
            return;
        };
        balancer.renew(&endpoint);
    }
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
            service_config: config.dns_service_config,
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
    let live = Arc::new(LiveConfig::new(
        config.service_config.clone(),
        config.policy,
    ));
    let factory_config = config.clone();
    let (keepalive, renewals) = Keepalive::new(config.keepalive_interval);
    let factory_keepalive = keepalive.clone();
    let balancer = Arc::new(Balancer::new(
        live.policy(),
        match live.get().and_then(|c| c.health_service.clone()) {
            Some(name) => Some(name),
            None => config.health_service.clone(),
        },
        move |authority| endpoint_transport(authority, &factory_config, &factory_keepalive),
    ));
    tokio::spawn(renew_endpoints(Arc::downgrade(&balancer), renewals));
    tokio::spawn(detect_outliers(
        Arc::downgrade(&balancer),
        live.outlier_detection(),
    ));
    let (resolved_tx, resolved) = watch::channel(false);
    let (stop, stopped) = oneshot::channel::<()>();
    let discovery = Arc::new(DiscoveryStats::default());
    let (driver, stats, settings) = (balancer.clone(), discovery.clone(), live.clone());
    let apply = move |change: Change| {
        match change {
            Change::Insert(a) => driver.insert(&a),
            Change::Remove(a) => driver.remove(&a),
            Change::Reset(all) => driver.reset(&all),
            Change::ServiceConfig { source, json } => {
                settings.publish(&source, json.as_deref(), &driver);
                return;
            }
        }
        stats.updated();
        let _ = resolved_tx.send(true);
    };
    follow(
        target,
        discover.changes(balancer.connection_lost()),
        apply,
        stopped,
    );
    let shared = Arc::new(Shared {
        target: target.to_string(),
        balancer,
        resolved,
        budget: TpsBudget::new(Duration::from_secs(10), 10, 0.2),
        max_attempts: config.max_attempts.max(1),
        idempotent: config.idempotent.clone(),
        connect_timeout: config.connect_timeout,
        metrics: config.metrics.clone(),
        live,
        retries: AtomicU64::new(0),
        discovery,
        keepalive,
        certificate_expires_ms: config
            .tls
            .as_ref()
            .and_then(crate::tls::ClientTls::certificate_expires_ms),
        _stop: stop,
    });
    let source: std::sync::Weak<dyn crate::channelz::registry::ChannelSource> =
        Arc::downgrade(&shared) as _;
    crate::channelz::registry::register_channel(source);
    if let Some(metrics) = &config.metrics {
        let mut channels = crate::sync::lock(&metrics.channels);
        channels.retain(|c| c.strong_count() > 0);
        channels.push(Arc::downgrade(&shared));
    }
    Ok(MeshChannel { shared })
}

/// Applies discovery's changes until the channel stops. Static targets are known at once: they
/// are applied before this returns, so the first call finds them.
fn follow(
    target: &Target,
    mut changes: discovery::Changes,
    mut apply: impl FnMut(Change) + Send + 'static,
    mut stopped: oneshot::Receiver<()>,
) {
    if matches!(target, Target::Endpoint(_) | Target::Static(_))
        && let Some(Some(change)) = changes.next().now_or_never()
    {
        apply(change);
    }
    tokio::spawn(async move {
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
}

pub(crate) use crate::error::BoxError;

/// Runs outlier detection every interval while the config asks for it, until the channel is
/// gone.
async fn detect_outliers(
    balancer: std::sync::Weak<Balancer>,
    mut settings: watch::Receiver<Option<outlier::OutlierDetection>>,
) {
    loop {
        let config = settings.borrow_and_update().clone();
        let wait = config
            .as_ref()
            .map_or(Duration::from_secs(86_400), |c| c.interval);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            changed = settings.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        }
        let (Some(config), Some(balancer)) = (config, balancer.upgrade()) else {
            return;
        };
        balancer.sweep_outliers(&config);
    }
}

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
    /// The service config now, and what is built from it (throttling's tokens).
    live: Arc<LiveConfig>,
    /// Attempts sent again on another endpoint.
    retries: AtomicU64,
    discovery: Arc<DiscoveryStats>,
    /// The keepalive time for new connections.
    keepalive: Arc<Keepalive>,
    /// When the client certificate expires (ms since the Unix epoch), with mutual TLS.
    certificate_expires_ms: Option<i64>,
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

    /// Service configs published for this channel's target (etcd, DNS) that it took or
    /// refused.
    pub fn service_config_updates(&self) -> ConfigUpdates {
        self.shared.live.updates()
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
