//! Where a target's endpoints come from. A [`Discover`] yields a stream of [`Change`]s; the
//! balancer applies them and knows nothing else about the source.
//!
//! - [`StaticList`]: a fixed list (`host:port`, `ipv4:…`, `ipv6:…`): one reset, then nothing.
//! - [`Dns`]: every A/AAAA record of a name, re-resolved periodically and as soon as an
//!   endpoint's connection is lost. `dns:///name:port` asks the system's resolvers
//!   (/etc/resolv.conf); `dns://SERVER:PORT/name:port` asks that DNS server. When asked, also
//!   the service config in TXT `_grpc_config.NAME`.
//! - `Etcd` (cargo feature `etcd`): endpoints registered under a prefix, kept live by a watch.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::backoff::Backoff;

/// A change to a target's set of endpoints (`host:port` strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An endpoint appeared.
    Insert(String),
    /// An endpoint went away.
    Remove(String),
    /// The set is exactly this now.
    Reset(Vec<String>),
    /// The source publishes a service config (JSON), or no longer does (`None`).
    ServiceConfig {
        /// Where it was read, for logs and errors (e.g. the etcd key).
        source: String,
        /// The config's JSON.
        json: Option<String>,
    },
}

/// A stream of endpoint changes.
pub type Changes = Pin<Box<dyn Stream<Item = Change> + Send>>;

/// A source of endpoints.
pub trait Discover: Send + 'static {
    /// Starts discovery. `connection_lost` is notified when an endpoint's connection fails, a
    /// hint for sources that can look again sooner (DNS).
    fn changes(self: Box<Self>, connection_lost: Arc<Notify>) -> Changes;
}

/// A fixed list of endpoints.
#[derive(Debug, Clone)]
pub struct StaticList(pub Vec<String>);

impl Discover for StaticList {
    fn changes(self: Box<Self>, _: Arc<Notify>) -> Changes {
        Box::pin(tokio_stream::iter([Change::Reset(self.0)]))
    }
}

/// Endpoints from DNS A/AAAA records.
#[derive(Debug, Clone)]
pub struct Dns {
    /// The DNS server to ask; `None` for the system's.
    pub server: Option<SocketAddr>,
    /// The name to resolve.
    pub host: String,
    /// The port every endpoint listens on.
    pub port: u16,
    /// How often to resolve again. Default 30 s.
    pub interval: Duration,
    /// Also read the service config published as TXT `_grpc_config.NAME` (gRFC A2). Off by
    /// default, as in gRPC's own implementations: whoever controls the DNS zone would control
    /// the clients' retries and balancing.
    pub service_config: bool,
}

/// Resolving again on connection loss waits at least this long after the last resolution.
const MIN_DNS_INTERVAL: Duration = Duration::from_secs(1);

impl Dns {
    fn resolver(&self) -> Result<TokioResolver, String> {
        let mut builder = match self.server {
            Some(server) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => Resolver::builder_tokio()
                .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?,
        };
        // Every resolution asks the server: the point is to see changes.
        builder.options_mut().cache_size = 0;
        builder
            .build()
            .map_err(|e| format!("cannot build a DNS resolver: {e}"))
    }

    async fn resolve(&self, resolver: &TokioResolver) -> Result<Vec<String>, String> {
        let lookup = resolver
            .lookup_ip(self.host.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let mut addrs: Vec<IpAddr> = lookup.iter().collect();
        addrs.sort();
        addrs.dedup();
        Ok(addrs
            .into_iter()
            .map(|ip| SocketAddr::new(ip, self.port).to_string())
            .collect())
    }
}

impl Dns {
    /// The service config in TXT `_grpc_config.NAME`: `Ok(None)` when there is none.
    async fn published_config(&self, resolver: &TokioResolver) -> Result<Option<String>, String> {
        let name = format!("_grpc_config.{}", self.host);
        let lookup = match resolver.txt_lookup(name.as_str()).await {
            Ok(lookup) => lookup,
            Err(err) if err.is_no_records_found() || err.is_nx_domain() => return Ok(None),
            Err(err) => return Err(err.to_string()),
        };
        let records = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect::<String>(),
            ),
            _ => None,
        });
        let texts: Vec<String> = records.collect();
        crate::client::service_config::choose_from_txt(&texts)
    }

    /// Sends the published config, if asked to read one; a TXT record that cannot be read is
    /// logged and changes nothing.
    async fn send_config(&self, resolver: &TokioResolver, tx: &mpsc::Sender<Change>) -> bool {
        if !self.service_config {
            return true;
        }
        match self.published_config(resolver).await {
            Ok(json) => {
                let source = format!("DNS TXT _grpc_config.{}", self.host);
                tx.send(Change::ServiceConfig { source, json })
                    .await
                    .is_ok()
            }
            Err(err) => {
                tracing::warn!(host = %self.host, %err, "DNS service config refused: keeping the last good one");
                true
            }
        }
    }
}

impl Dns {
    /// One round: the config, then the addresses. `None` once the channel has gone; otherwise
    /// whether the addresses were resolved (a failure, or no records, is retried sooner).
    async fn round(&self, resolver: &TokioResolver, tx: &mpsc::Sender<Change>) -> Option<bool> {
        // The config first: the first calls, let go by the addresses, already follow it.
        if !self.send_config(resolver, tx).await {
            return None;
        }
        match self.resolve(resolver).await {
            Ok(addrs) if !addrs.is_empty() => {
                tracing::debug!(host = %self.host, ?addrs, "resolved");
                tx.send(Change::Reset(addrs)).await.ok().map(|()| true)
            }
            Ok(_) => {
                tracing::warn!(host = %self.host, "no A/AAAA records; keeping the last endpoints");
                Some(false)
            }
            Err(err) => {
                tracing::warn!(host = %self.host, %err, "DNS resolution failed; keeping the last endpoints");
                Some(false)
            }
        }
    }
}

impl Discover for Dns {
    fn changes(self: Box<Self>, connection_lost: Arc<Notify>) -> Changes {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            let resolver = match self.resolver() {
                Ok(r) => r,
                Err(err) => {
                    tracing::error!(host = %self.host, %err, "DNS discovery cannot start");
                    return;
                }
            };
            // A failed resolution is tried again with backoff (100 ms doubling, at most the
            // interval), as gRPC's resolvers do: waiting the whole interval would leave a
            // channel started before its DNS server answered with no endpoints for 30 s.
            let mut backoff = Backoff::new();
            loop {
                let Some(resolved) = self.round(&resolver, &tx).await else {
                    return;
                };
                let wait = if resolved {
                    backoff.reset();
                    tokio::time::sleep(MIN_DNS_INTERVAL).await;
                    self.interval.saturating_sub(MIN_DNS_INTERVAL)
                } else {
                    backoff.next().min(self.interval)
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = connection_lost.notified(), if resolved => tracing::debug!(host = %self.host, "connection lost: resolving again"),
                    () = tx.closed() => return,
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}
