//! etcd, on both sides of discovery (cargo feature `etcd`).
//!
//! The key layout is the one grpc-go's etcd resolver reads, so Go clients find calcmesh servers:
//! key `SERVICE/HOST:PORT`, value `{"Op":0,"Addr":"HOST:PORT","Metadata":null}`.
//! - [`EtcdDiscovery`]: a prefix Get, then a Watch from the next revision; changes apply live.
//!   Each session talks to one member of the cluster, the next one after a failure; if etcd
//!   goes away the last endpoints stay, and the session starts again with backoff. It
//!   also reads and watches the service config published at `_grpc_config/SERVICE`
//!   ([`CONFIG_PREFIX`]): a channel takes it, keeping its last good one when an update is bad.
//! - [`Registration`]: a key attached to a lease (TTL default 10 s) kept alive in a loop; the key
//!   is deleted on [`Registration::deregister`] (graceful shutdown) and expires with the lease
//!   after a crash. If etcd goes away, the server registers again when it returns.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, WatchOptions, WatchStream,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::backoff::Backoff;
use crate::client::discovery::{Change, Changes, Discover};
use crate::tls::ClientTls;

/// How every etcd connection is made.
///
/// - `hasleader` metadata on every request (etcd's "require leader", as grpc-go's etcd resolver
///   sets it): a member that has lost the cluster's leader refuses new requests at once and
///   cancels open watches, instead of serving a view that no longer changes.
/// - HTTP/2 PINGs at most every 10 s, and only while a stream is open: etcd (grpc-go's server)
///   takes a PING from a client no more often than every 5 s by default
///   (`--grpc-keepalive-min-time`) and closes the connection with GOAWAY "too_many_pings" at the
///   third that comes sooner while it has sent nothing. With a PING every 2 s, an idle watch's
///   connection was closed every 8 s. Liveness is not left to PINGs: a discovery session probes
///   its watch ([`Probe`]), a registration bounds every request by a third of its TTL.
fn options(tls: Option<&ClientTls>) -> ConnectOptions {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(2))
        .with_keep_alive_while_idle(false)
        .with_require_leader(true);
    match tls {
        Some(tls) => options.with_tls(tls.tonic()),
        None => options,
    }
}

/// How often a discovery session asks its watch for a progress report when the watch has said
/// nothing, and how long it waits for the answer before taking the watch for dead. A watch that
/// goes silent (its member frozen, or cut off on a connection that still looks open) is
/// therefore noticed within 1.5 s, and replaced through the next member.
const PROBE_EVERY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The liveness check of a watch: a progress request (etcd answers it with the member's current
/// revision, whether or not anything changed) whenever the watch has been quiet for
/// [`PROBE_EVERY`]; any message from the watch counts as the answer.
#[derive(Debug)]
struct Probe {
    /// When to ask next (nothing asked) or when the question times out (asked).
    due: Instant,
    asked: bool,
}

impl Probe {
    fn new() -> Self {
        Self {
            due: Instant::now() + PROBE_EVERY,
            asked: false,
        }
    }

    /// The watch said something.
    fn answered(&mut self) {
        self.due = Instant::now() + PROBE_EVERY;
        self.asked = false;
    }

    /// `due` came: asks, or gives up on a question left unanswered.
    async fn fire(&mut self, watch: &mut WatchStream, member: &[String]) -> Result<(), String> {
        if self.asked {
            return Err(format!(
                "the watch on {member:?} left a progress request unanswered for {PROBE_TIMEOUT:?} (a frozen member, or a dead connection)"
            ));
        }
        watch
            .request_progress()
            .await
            .map_err(|e| format!("progress request: {e}"))?;
        self.due = Instant::now() + PROBE_TIMEOUT;
        self.asked = true;
        Ok(())
    }
}

/// The etcd members a session talks to: one at a time, the next one after a failed session.
/// (etcd-client balances requests over every endpoint it is given and keeps sending a share to
/// a member that is down, so with one member lost, sessions kept failing at random and the
/// backoff grew; a watch belongs on one member anyway.)
#[derive(Debug)]
struct Members {
    endpoints: Vec<String>,
    current: usize,
}

impl Members {
    fn new(endpoints: &[String]) -> Self {
        Self {
            endpoints: endpoints.to_vec(),
            current: 0,
        }
    }

    /// The member to use now (none if the list is empty).
    fn current(&self) -> &[String] {
        self.endpoints
            .get(self.current)
            .map_or(&[], std::slice::from_ref)
    }

    /// The current member failed a session: the next one is tried.
    fn failed(&mut self) {
        self.current = (self.current + 1) % self.endpoints.len().max(1);
    }
}

/// The value stored for `addr`, in grpc-go's layout.
pub fn registration_value(addr: &str) -> String {
    format!(r#"{{"Op":0,"Addr":"{addr}","Metadata":null}}"#)
}

/// Where service configs are published: `_grpc_config/SERVICE`, beside the instances'
/// `SERVICE/` prefix and outside it, so grpc-go's resolver never reads a config as an endpoint.
pub const CONFIG_PREFIX: &str = "_grpc_config/";

/// The endpoint a registration value names.
fn addr_of(kv: &KeyValue) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(kv.value()).ok()?;
    value.get("Addr")?.as_str().map(str::to_owned)
}

/// Endpoints registered in etcd under `SERVICE/`.
#[derive(Debug, Clone)]
pub struct EtcdDiscovery {
    endpoints: Vec<String>,
    service: String,
    tls: Option<ClientTls>,
}

impl EtcdDiscovery {
    /// Discovery of `service` through the etcd cluster at `endpoints` (`host:port` each), over
    /// TLS when `tls` is given.
    pub fn new(endpoints: Vec<String>, service: String, tls: Option<ClientTls>) -> Self {
        Self {
            endpoints,
            service,
            tls,
        }
    }

    /// The key a service config for this service is published under.
    pub fn config_key(service: &str) -> String {
        format!("{CONFIG_PREFIX}{service}")
    }

    /// One session: the current set and config, then every change, until an error (or until
    /// nobody listens: `Ok`).
    async fn session(
        &self,
        member: &[String],
        tx: &mpsc::Sender<Change>,
        backoff: &mut Backoff,
    ) -> Result<(), String> {
        let mut client = Client::connect(member, Some(options(self.tls.as_ref())))
            .await
            .map_err(|e| e.to_string())?;
        let Some(revision) = self.read_current(&mut client, member, tx).await? else {
            return Ok(());
        };
        backoff.reset();
        let prefix = format!("{}/", self.service);
        let from = |options: WatchOptions| options.with_start_revision(revision + 1);
        let mut endpoints = client
            .watch(
                prefix.clone(),
                Some(from(WatchOptions::new().with_prefix())),
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut configs = client
            .watch(
                Self::config_key(&self.service),
                Some(from(WatchOptions::new())),
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut probe = Probe::new();
        loop {
            let changes = tokio::select! {
                r = endpoints.message() => {
                    probe.answered();
                    self.endpoint_changes(r, &prefix)?
                }
                r = configs.message() => self.config_changes(r)?,
                () = tokio::time::sleep_until(probe.due) => {
                    probe.fire(&mut endpoints, member).await?;
                    continue;
                }
                () = tx.closed() => return Ok(()),
            };
            for change in changes {
                tracing::info!(service = %self.service, ?change, "etcd: change");
                if tx.send(change).await.is_err() {
                    return Ok(());
                }
            }
        }
    }

    /// Reads the current endpoints and config and sends them; the revision they were read at,
    /// or `None` if nobody listens any more.
    async fn read_current(
        &self,
        client: &mut Client,
        member: &[String],
        tx: &mpsc::Sender<Change>,
    ) -> Result<Option<i64>, String> {
        let prefix = format!("{}/", self.service);
        let current = client
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| e.to_string())?;
        let revision = current.header().map_or(0, |h| h.revision());
        // The config as of the same revision: the watches start after it, so a change landing
        // between the two reads is in the watches. (Read at its own, later revision, a
        // registration landing between the two was never seen until the next session.)
        let config = client
            .get(
                Self::config_key(&self.service),
                Some(GetOptions::new().with_revision(revision)),
            )
            .await
            .map_err(|e| e.to_string())?;
        let addrs: Vec<String> = current.kvs().iter().filter_map(addr_of).collect();
        tracing::info!(service = %self.service, ?member, revision, endpoints = ?addrs, "etcd: current endpoints");
        let published = self.published(config.kvs().first());
        // The config first: the first calls, let go by the endpoints, already follow it.
        let sent = tx.send(published).await.is_ok() && tx.send(Change::Reset(addrs)).await.is_ok();
        Ok(sent.then_some(revision))
    }

    /// The config change a key's value (or its absence) makes.
    fn published(&self, kv: Option<&KeyValue>) -> Change {
        Change::ServiceConfig {
            source: format!("etcd key {}", Self::config_key(&self.service)),
            json: kv.map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
        }
    }

    /// The endpoint changes in a watch response under `prefix`.
    fn endpoint_changes(
        &self,
        response: WatchMessage,
        prefix: &str,
    ) -> Result<Vec<Change>, String> {
        let response = watched(response)?;
        tracing::debug!(
            service = %self.service,
            revision = response.header().map(|h| h.revision()),
            created = response.created(),
            events = response.events().len(),
            "etcd: watch response"
        );
        Ok(response
            .events()
            .iter()
            .filter_map(|event| {
                let kv = event.kv()?;
                match event.event_type() {
                    EventType::Put => addr_of(kv).map(Change::Insert),
                    EventType::Delete => kv
                        .key_str()
                        .ok()
                        .and_then(|k| k.strip_prefix(prefix))
                        .map(|a| Change::Remove(a.to_owned())),
                }
            })
            .collect())
    }

    /// The config changes in a watch response on the config key.
    fn config_changes(&self, response: WatchMessage) -> Result<Vec<Change>, String> {
        let response = watched(response)?;
        Ok(response
            .events()
            .iter()
            .map(|event| match event.event_type() {
                EventType::Put => self.published(event.kv()),
                EventType::Delete => self.published(None),
            })
            .collect())
    }
}

type WatchMessage = Result<Option<etcd_client::WatchResponse>, etcd_client::Error>;

/// A watch's next response, or why the watch is over.
fn watched(message: WatchMessage) -> Result<etcd_client::WatchResponse, String> {
    let response = message
        .map_err(|e| e.to_string())?
        .ok_or("the watch ended")?;
    if response.canceled() {
        return Err("the watch was cancelled".into());
    }
    Ok(response)
}

impl Discover for EtcdDiscovery {
    fn changes(self: Box<Self>, _: Arc<Notify>) -> Changes {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut backoff = Backoff::new();
            let mut members = Members::new(&self.endpoints);
            loop {
                match self.session(members.current(), &tx, &mut backoff).await {
                    Ok(()) => return,
                    Err(err) => {
                        tracing::warn!(service = %self.service, member = ?members.current(), %err, "etcd unreachable: keeping the last endpoints, trying again (the next member)");
                        members.failed();
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.next()) => {}
                    () = tx.closed() => return,
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

/// A server's registration in etcd, kept alive until [`deregister`](Self::deregister).
#[derive(Debug)]
pub struct Registration {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Where and how to register.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The etcd cluster's client endpoints, `host:port`.
    pub endpoints: Vec<String>,
    /// The service name: the key prefix.
    pub service: String,
    /// The address clients should call, `host:port`.
    pub addr: String,
    /// Lease time to live: how long a crashed server's key outlives it. Default 10 s.
    pub ttl: Duration,
    /// TLS to etcd (with a client certificate: mutual TLS); `None`: plaintext.
    pub tls: Option<ClientTls>,
}

impl Registration {
    /// Registers `config.addr` and keeps it registered in the background, across etcd outages.
    pub fn start(config: RegistrationConfig) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(keep_registered(config, stopped));
        Self { stop, task }
    }

    /// Deletes the key (by revoking its lease) and stops; bounded to 3 s if etcd is away.
    pub async fn deregister(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(3), &mut task)
            .await
            .is_err()
        {
            task.abort();
            tracing::warn!("etcd: could not deregister in 3 s; the key expires with its lease");
        }
    }
}

/// Completes once a stop was requested (or the registration handle is gone).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

async fn keep_registered(config: RegistrationConfig, mut stopped: watch::Receiver<bool>) {
    let mut backoff = Backoff::new();
    // The lease this server holds, kept across reconnections: a lease belongs to the cluster,
    // not to one member, so keeping it alive through another member keeps the key in place.
    let mut lease = None;
    let mut members = Members::new(&config.endpoints);
    loop {
        let member = members.current();
        match session(&config, member, &mut stopped, &mut lease, &mut backoff).await {
            Ok(()) => return,
            Err(err) if lease.is_some() => {
                tracing::warn!(service = %config.service, addr = %config.addr, ?member, %err, "etcd: lost the member keeping the lease alive; reconnecting (the next member)")
            }
            Err(err) => {
                tracing::warn!(service = %config.service, addr = %config.addr, ?member, %err, "etcd: registration lost, registering again (the next member)")
            }
        }
        members.failed();
        // While a lease may still be alive, try again well before it runs out; otherwise at
        // least once per TTL, so a server is back in etcd soon after etcd is (an election
        // fails every request for a second or two, and the backoff would otherwise grow to 10 s).
        let pause = match lease {
            Some(_) => backoff.next().min(config.ttl / 3),
            None => backoff.next().min(config.ttl),
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = until_stopped(&mut stopped) => return,
        }
    }
}

/// `future`, or an error after `limit`: no etcd request may outlast a third of the lease's TTL,
/// or a member that stopped answering (cut off, or without a leader) would cost the lease.
async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result.map_err(|e| format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

/// Connects, registers unless `lease` is still held, and keeps the lease alive; `Ok` once
/// deregistered on request. A keepalive unanswered within a third of the TTL ends the session,
/// so a member cut off from the network is left well before the lease runs out.
async fn session(
    config: &RegistrationConfig,
    member: &[String],
    stopped: &mut watch::Receiver<bool>,
    lease: &mut Option<i64>,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let e = |e: etcd_client::Error| e.to_string();
    let third = config.ttl / 3;
    let options = Some(options(config.tls.as_ref()));
    let mut client = within(third, "connect", Client::connect(member, options)).await?;
    let ttl = i64::try_from(config.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    let key = format!("{}/{}", config.service, config.addr);
    // A lease still held from before the reconnection may have run out meanwhile.
    if let Some(id) = *lease {
        let left = within(third, "lease TTL", client.lease_time_to_live(id, None)).await?;
        if left.ttl() <= 0 {
            tracing::info!(%key, lease = id, "etcd: the lease ran out while etcd was out of reach");
            *lease = None;
        }
    }
    let id = match *lease {
        Some(id) => id,
        None => {
            let id = within(third, "lease grant", client.lease_grant(ttl, None))
                .await?
                .id();
            let put = client.put(
                key.clone(),
                registration_value(&config.addr),
                Some(PutOptions::new().with_lease(id)),
            );
            within(third, "put", put).await?;
            tracing::info!(%key, lease = id, ttl, "etcd: registered");
            *lease = Some(id);
            id
        }
    };
    let (mut keeper, mut acks) = within(third, "keepalive", client.lease_keep_alive(id)).await?;
    let mut every = tokio::time::interval(third);
    loop {
        tokio::select! {
            _ = every.tick() => {
                within(third, "keepalive", keeper.keep_alive()).await?;
                match tokio::time::timeout(third, acks.message()).await {
                    Err(_) => return Err(format!("no keepalive answer within {third:?}")),
                    Ok(Err(err)) => return Err(e(err)),
                    Ok(Ok(Some(ack))) if ack.ttl() > 0 => backoff.reset(),
                    Ok(Ok(_)) => {
                        *lease = None;
                        return Err("the lease expired".into());
                    }
                }
            }
            () = until_stopped(stopped) => {
                client.lease_revoke(id).await.map_err(e)?;
                *lease = None;
                tracing::info!(%key, "etcd: deregistered");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_go_round_the_members_one_at_a_time() {
        let mut members = Members::new(&["a:1".into(), "b:1".into(), "c:1".into()]);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(members.current().to_vec());
            members.failed();
        }
        assert_eq!(seen, [["a:1"], ["b:1"], ["c:1"], ["a:1"]]);
        let mut none = Members::new(&[]);
        none.failed();
        assert!(none.current().is_empty());
    }
}
