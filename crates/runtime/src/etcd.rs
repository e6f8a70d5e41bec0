//! etcd, on both sides of discovery (cargo feature `etcd`).
//!
//! The key layout is the one grpc-go's etcd resolver reads, so Go clients find calcmesh servers:
//! key `SERVICE/HOST:PORT`, value `{"Op":0,"Addr":"HOST:PORT","Metadata":null}`.
//! - [`EtcdDiscovery`]: a prefix Get, then a Watch from the next revision; changes apply live.
//!   If etcd goes away the last endpoints stay, and the session starts again with backoff.
//! - [`Registration`]: a key attached to a lease (TTL default 10 s) kept alive in a loop; the key
//!   is deleted on [`Registration::deregister`] (graceful shutdown) and expires with the lease
//!   after a crash. If etcd goes away, the server registers again when it returns.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, WatchOptions,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::balance::Backoff;
use crate::discovery::{Change, Changes, Discover};
use crate::tls::ClientTls;

fn options(tls: Option<&ClientTls>) -> ConnectOptions {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    match tls {
        Some(tls) => options.with_tls(tls.tonic()),
        None => options,
    }
}

/// The value stored for `addr`, in grpc-go's layout.
pub fn registration_value(addr: &str) -> String {
    format!(r#"{{"Op":0,"Addr":"{addr}","Metadata":null}}"#)
}

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

    /// One session: the current set, then every change, until an error (or until nobody listens:
    /// `Ok`).
    async fn session(
        &self,
        tx: &mpsc::Sender<Change>,
        backoff: &mut Backoff,
    ) -> Result<(), String> {
        let mut client = Client::connect(&self.endpoints, Some(options(self.tls.as_ref())))
            .await
            .map_err(|e| e.to_string())?;
        let prefix = format!("{}/", self.service);
        let current = client
            .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| e.to_string())?;
        let addrs: Vec<String> = current.kvs().iter().filter_map(addr_of).collect();
        tracing::info!(service = %self.service, endpoints = ?addrs, "etcd: current endpoints");
        if tx.send(Change::Reset(addrs)).await.is_err() {
            return Ok(());
        }
        backoff.reset();
        let revision = current.header().map_or(0, |h| h.revision());
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = client
            .watch(prefix.clone(), Some(options))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let response = tokio::select! {
                r = stream.message() => r.map_err(|e| e.to_string())?.ok_or("the watch ended")?,
                () = tx.closed() => return Ok(()),
            };
            if response.canceled() {
                return Err("the watch was cancelled".into());
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let change = match event.event_type() {
                    EventType::Put => addr_of(kv).map(Change::Insert),
                    EventType::Delete => kv
                        .key_str()
                        .ok()
                        .and_then(|k| k.strip_prefix(&prefix))
                        .map(|a| Change::Remove(a.to_owned())),
                };
                if let Some(change) = change {
                    tracing::info!(service = %self.service, ?change, "etcd: endpoint change");
                    if tx.send(change).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

impl Discover for EtcdDiscovery {
    fn changes(self: Box<Self>, _: Arc<Notify>) -> Changes {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut backoff = Backoff::new();
            loop {
                match self.session(&tx, &mut backoff).await {
                    Ok(()) => return,
                    Err(err) => {
                        tracing::warn!(service = %self.service, endpoints = ?self.endpoints, %err, "etcd unreachable: keeping the last endpoints, trying again")
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
    loop {
        match registered_session(&config, &mut stopped, &mut backoff).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(service = %config.service, addr = %config.addr, %err, "etcd: registration lost, registering again")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next()) => {}
            () = until_stopped(&mut stopped) => return,
        }
    }
}

/// Registers once and keeps the lease alive; `Ok` once deregistered on request.
async fn registered_session(
    config: &RegistrationConfig,
    stopped: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let e = |e: etcd_client::Error| e.to_string();
    let mut client = Client::connect(&config.endpoints, Some(options(config.tls.as_ref())))
        .await
        .map_err(e)?;
    let ttl = i64::try_from(config.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    let lease = client.lease_grant(ttl, None).await.map_err(e)?.id();
    let key = format!("{}/{}", config.service, config.addr);
    client
        .put(
            key.clone(),
            registration_value(&config.addr),
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .map_err(e)?;
    tracing::info!(%key, lease, ttl, "etcd: registered");
    backoff.reset();
    let (mut keeper, mut acks) = client.lease_keep_alive(lease).await.map_err(e)?;
    let mut every = tokio::time::interval(config.ttl / 3);
    loop {
        tokio::select! {
            _ = every.tick() => {
                keeper.keep_alive().await.map_err(e)?;
                match acks.message().await.map_err(e)? {
                    Some(ack) if ack.ttl() > 0 => {}
                    _ => return Err("the lease expired".into()),
                }
            }
            () = until_stopped(stopped) => {
                client.lease_revoke(lease).await.map_err(e)?;
                tracing::info!(%key, "etcd: deregistered");
                return Ok(());
            }
        }
    }
}
