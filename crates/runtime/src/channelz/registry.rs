//! What channelz can report, kept as the process runs: every server, channel and connection
//! registers here with an id (one sequence for all, as in gRPC), and the service reads
//! snapshots. Servers and channels report through [`ServerSource`] and [`ChannelSource`], so this
//! module knows nothing of either; connections keep their numbers in a shared [`SocketStats`].
//! Entries are held weakly: what is gone drops out by itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

static NEXT_ID: AtomicI64 = AtomicI64::new(1);

/// A new id for a server, channel, subchannel or socket.
pub(crate) fn next_id() -> i64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Calls counted by a server, channel or subchannel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Calls started.
    pub started: i64,
    /// Calls ended with OK.
    pub succeeded: i64,
    /// Calls ended with another status.
    pub failed: i64,
    /// When the last call started, in ms since the Unix epoch; 0: never.
    pub last_started_ms: i64,
}

/// A channel's or subchannel's state, as gRPC names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connectivity {
    Idle,
    Connecting,
    Ready,
    TransientFailure,
}

/// The TLS of a connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsInfo {
    /// The cipher suite's standard (IANA) name.
    pub(crate) cipher: String,
    pub(crate) local_certificate: Vec<u8>,
    pub(crate) remote_certificate: Vec<u8>,
}

/// One connection's numbers, updated by whoever watches it.
#[derive(Debug)]
pub struct SocketStats {
    pub(crate) id: i64,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) tls: Option<TlsInfo>,
    streams_started: AtomicI64,
    streams_succeeded: AtomicI64,
    streams_failed: AtomicI64,
    messages_sent: AtomicI64,
    messages_received: AtomicI64,
    keep_alives_sent: AtomicI64,
    last_local_stream_ms: AtomicI64,
    last_remote_stream_ms: AtomicI64,
    last_message_sent_ms: AtomicI64,
    last_message_received_ms: AtomicI64,
}

/// A [`SocketStats`] read at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct SocketSnapshot {
    pub(crate) streams_started: i64,
    pub(crate) streams_succeeded: i64,
    pub(crate) streams_failed: i64,
    pub(crate) messages_sent: i64,
    pub(crate) messages_received: i64,
    pub(crate) keep_alives_sent: i64,
    pub(crate) last_local_stream_ms: i64,
    pub(crate) last_remote_stream_ms: i64,
    pub(crate) last_message_sent_ms: i64,
    pub(crate) last_message_received_ms: i64,
}

impl SocketStats {
    /// A connection's stats, registered for `GetSocket` until the returned `Arc` is dropped.
    pub(crate) fn register(
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
        tls: Option<TlsInfo>,
    ) -> Arc<Self> {
        let stats = Arc::new(Self {
            id: next_id(),
            local,
            remote,
            tls,
            streams_started: AtomicI64::new(0),
            streams_succeeded: AtomicI64::new(0),
            streams_failed: AtomicI64::new(0),
            messages_sent: AtomicI64::new(0),
            messages_received: AtomicI64::new(0),
            keep_alives_sent: AtomicI64::new(0),
            last_local_stream_ms: AtomicI64::new(0),
            last_remote_stream_ms: AtomicI64::new(0),
            last_message_sent_ms: AtomicI64::new(0),
            last_message_received_ms: AtomicI64::new(0),
        });
        let mut registry = crate::sync::lock(&REGISTRY);
        registry.sockets.retain(|_, s| s.strong_count() > 0);
        registry.sockets.insert(stats.id, Arc::downgrade(&stats));
        stats
    }

    /// A stream opened: by this side (`local`) or by the peer.
    pub(crate) fn stream_opened(&self, local: bool) {
        self.streams_started.fetch_add(1, Ordering::Relaxed);
        let stamp = if local {
            &self.last_local_stream_ms
        } else {
            &self.last_remote_stream_ms
        };
        stamp.store(now_ms(), Ordering::Relaxed);
    }

    /// A stream ended: with END_STREAM (`ok`), or reset.
    pub(crate) fn stream_ended(&self, ok: bool) {
        let count = if ok {
            &self.streams_succeeded
        } else {
            &self.streams_failed
        };
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// This side sent a keepalive PING.
    pub(crate) fn keepalive_sent(&self) {
        self.keep_alives_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` gRPC messages went out (`sent`) or came in.
    pub(crate) fn messages(&self, sent: bool, n: u64) {
        let (count, stamp) = if sent {
            (&self.messages_sent, &self.last_message_sent_ms)
        } else {
            (&self.messages_received, &self.last_message_received_ms)
        };
        count.fetch_add(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
        stamp.store(now_ms(), Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SocketSnapshot {
        let get = |a: &AtomicI64| a.load(Ordering::Relaxed);
        SocketSnapshot {
            streams_started: get(&self.streams_started),
            streams_succeeded: get(&self.streams_succeeded),
            streams_failed: get(&self.streams_failed),
            messages_sent: get(&self.messages_sent),
            messages_received: get(&self.messages_received),
            keep_alives_sent: get(&self.keep_alives_sent),
            last_local_stream_ms: get(&self.last_local_stream_ms),
            last_remote_stream_ms: get(&self.last_remote_stream_ms),
            last_message_sent_ms: get(&self.last_message_sent_ms),
            last_message_received_ms: get(&self.last_message_received_ms),
        }
    }
}

/// A server's calls, read when asked.
pub(crate) trait ServerSource: Send + Sync {
    fn calls(&self) -> CallCounts;
}

/// One server: a listening port.
pub(crate) struct ServerEntry {
    pub(crate) name: String,
    pub(crate) listen_socket: Arc<SocketStats>,
    source: Arc<dyn ServerSource>,
    sockets: Mutex<BTreeMap<i64, Weak<SocketStats>>>,
}

impl ServerEntry {
    pub(crate) fn calls(&self) -> CallCounts {
        self.source.calls()
    }

    /// Its open connections, by id.
    pub(crate) fn sockets(&self) -> Vec<Arc<SocketStats>> {
        let mut sockets = crate::sync::lock(&self.sockets);
        sockets.retain(|_, s| s.strong_count() > 0);
        sockets.values().filter_map(Weak::upgrade).collect()
    }

    /// A connection it accepted.
    pub(crate) fn accepted(&self, socket: &Arc<SocketStats>) {
        crate::sync::lock(&self.sockets).insert(socket.id, Arc::downgrade(socket));
    }
}

/// A registered server; dropping it (the server stopped) unregisters it.
pub(crate) struct ServerRegistration {
    pub(crate) id: i64,
    pub(crate) entry: Arc<ServerEntry>,
}

impl Drop for ServerRegistration {
    fn drop(&mut self) {
        crate::sync::lock(&REGISTRY).servers.remove(&self.id);
    }
}

/// Registers a server listening on `addr`.
pub(crate) fn register_server(
    addr: SocketAddr,
    source: Arc<dyn ServerSource>,
) -> ServerRegistration {
    let entry = Arc::new(ServerEntry {
        name: addr.to_string(),
        listen_socket: SocketStats::register(Some(addr), None, None),
        source,
        sockets: Mutex::default(),
    });
    let id = next_id();
    crate::sync::lock(&REGISTRY)
        .servers
        .insert(id, entry.clone());
    ServerRegistration { id, entry }
}

/// A subchannel (one endpoint of a channel) now.
#[derive(Debug, Clone)]
pub(crate) struct SubchannelSnapshot {
    pub(crate) id: i64,
    pub(crate) address: String,
    pub(crate) state: Connectivity,
    pub(crate) calls: CallCounts,
    /// Its connection, if it has one open.
    pub(crate) socket: Option<Arc<SocketStats>>,
    /// Why its last connection failed before HTTP/2 began, and when (ms since the Unix epoch).
    pub(crate) failure: Option<(String, i64)>,
}

/// A channel now.
#[derive(Debug, Clone)]
pub(crate) struct ChannelSnapshot {
    pub(crate) target: String,
    pub(crate) state: Connectivity,
    pub(crate) calls: CallCounts,
    pub(crate) subchannels: Vec<SubchannelSnapshot>,
}

/// A channel, read when asked.
pub(crate) trait ChannelSource: Send + Sync {
    fn snapshot(&self) -> ChannelSnapshot;
}

/// Registers a channel for as long as it lives.
pub(crate) fn register_channel(channel: Weak<dyn ChannelSource>) {
    let id = next_id();
    let mut registry = crate::sync::lock(&REGISTRY);
    registry.channels.retain(|_, c| c.strong_count() > 0);
    registry.channels.insert(id, channel);
}

#[derive(Default)]
struct Registry {
    servers: BTreeMap<i64, Arc<ServerEntry>>,
    channels: BTreeMap<i64, Weak<dyn ChannelSource>>,
    sockets: BTreeMap<i64, Weak<SocketStats>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

/// Servers with ids from `start`, in id order.
pub(crate) fn servers(start: i64) -> Vec<(i64, Arc<ServerEntry>)> {
    let registry = crate::sync::lock(&REGISTRY);
    registry
        .servers
        .range(start..)
        .map(|(id, s)| (*id, s.clone()))
        .collect()
}

/// Live channels with ids from `start`, in id order.
pub(crate) fn channels(start: i64) -> Vec<(i64, Arc<dyn ChannelSource>)> {
    let registry = crate::sync::lock(&REGISTRY);
    registry
        .channels
        .range(start..)
        .filter_map(|(id, c)| Some((*id, c.upgrade()?)))
        .collect()
}

/// The server with this id.
pub(crate) fn server(id: i64) -> Option<Arc<ServerEntry>> {
    crate::sync::lock(&REGISTRY).servers.get(&id).cloned()
}

/// The live channel with this id.
pub(crate) fn channel(id: i64) -> Option<Arc<dyn ChannelSource>> {
    crate::sync::lock(&REGISTRY).channels.get(&id)?.upgrade()
}

/// The open connection with this id.
pub(crate) fn socket(id: i64) -> Option<Arc<SocketStats>> {
    crate::sync::lock(&REGISTRY).sockets.get(&id)?.upgrade()
}
