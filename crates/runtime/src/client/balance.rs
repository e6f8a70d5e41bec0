//! Client-side load balancing over a changing set of endpoints.
//!
//! tonic's balanced channel reports load 0 for every endpoint, so its power-of-two-choices is a
//! random pick, and it knows nothing of health. This balancer keeps, per endpoint:
//! - one transport, reconnected on demand: tonic's channel over one HTTP/2 connection (gRPC,
//!   or gRPC-Web), or for gRPC-Web over HTTP/1.1 hyper's pool of connections;
//! - the number of calls outstanding on it (from the request until its response body ends);
//! - its state, fed by a `grpc.health.v1` Watch on that same connection: NOT_SERVING takes it
//!   out of rotation at once; a connection that fails puts it out too, and the watcher retries
//!   with exponential backoff until it connects and reports SERVING again.
//!
//! Policies ([`LbPolicy`]): `round_robin` cycles through the eligible endpoints; `least_request`
//! picks two at random and sends to the one with fewer calls outstanding (P2C), so a slow
//! instance, which accumulates outstanding calls, gets less traffic.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};

use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::backoff::Backoff;
use crate::channelz::registry::{CallCounts, Connectivity, SocketStats, next_id, now_ms};
use crate::client::connector::CurrentSocket;
use crate::client::outlier::{OutlierDetection, OutlierState};
use crate::client::transport::Transport;

/// How a client spreads calls over endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LbPolicy {
    /// Each eligible endpoint in turn.
    RoundRobin,
    /// Power of two choices over calls outstanding: the less busy of two random endpoints.
    #[default]
    LeastRequest,
    /// Every call to the first eligible endpoint in the list (with `shuffle`, a list order
    /// chosen at random per channel, so that clients spread).
    PickFirst {
        /// `shuffleAddressList`.
        shuffle: bool,
    },
}

impl FromStr for LbPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round_robin" => Ok(LbPolicy::RoundRobin),
            "least_request" => Ok(LbPolicy::LeastRequest),
            "pick_first" => Ok(LbPolicy::PickFirst { shuffle: false }),
            other => Err(format!(
                "unknown load-balancing policy {other:?}: expected round_robin, least_request or pick_first"
            )),
        }
    }
}

impl LbPolicy {
    fn code(self) -> u8 {
        match self {
            LbPolicy::RoundRobin => 0,
            LbPolicy::LeastRequest => 1,
            LbPolicy::PickFirst { shuffle: false } => 2,
            LbPolicy::PickFirst { shuffle: true } => 3,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            0 => LbPolicy::RoundRobin,
            2 => LbPolicy::PickFirst { shuffle: false },
            3 => LbPolicy::PickFirst { shuffle: true },
            _ => LbPolicy::LeastRequest,
        }
    }
}

impl fmt::Display for LbPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LbPolicy::RoundRobin => "round_robin",
            LbPolicy::LeastRequest => "least_request",
            LbPolicy::PickFirst { .. } => "pick_first",
        })
    }
}

/// What is known of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// Not checked yet: eligible (optimistically), so the first calls need not wait.
    Unknown = 0,
    /// Its health service says SERVING (or it has none).
    Serving = 1,
    /// Its health service says NOT_SERVING (or SERVICE_UNKNOWN): out of rotation.
    NotServing = 2,
    /// Its connection failed: out of rotation until the health watcher reconnects.
    Down = 3,
    /// Its connection was lost and a new one is being made: out of rotation, but calls with no
    /// other endpoint wait for it (briefly) instead of failing — gRPC's CONNECTING.
    Connecting = 4,
}

impl State {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => State::Serving,
            2 => State::NotServing,
            3 => State::Down,
            4 => State::Connecting,
            _ => State::Unknown,
        }
    }

    fn eligible(self) -> bool {
        matches!(self, State::Unknown | State::Serving)
    }
}

/// One backend instance.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) authority: String,
    pub(crate) channel: Transport,
    /// Its channelz subchannel id.
    pub(crate) id: i64,
    /// Its connection now, for channelz.
    pub(crate) socket: CurrentSocket,
    /// When its last call started, in ms since the Unix epoch (0: never).
    last_call_ms: AtomicI64,
    outstanding: AtomicUsize,
    state: AtomicU8,
    /// Times it went out of rotation (eligible → not serving or down).
    ejections: AtomicU64,
    watcher: std::sync::OnceLock<AbortHandle>,
    connection_lost: Arc<Notify>,
    changed: Arc<watch::Sender<()>>,
    last_error: std::sync::Mutex<Option<String>>,
    /// Its calls' outcomes and its ejection as an outlier.
    pub(crate) outliers: OutlierState,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.get() {
            watcher.abort();
        }
    }
}

impl Endpoint {
    pub(crate) fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub(crate) fn set_state(&self, state: State) {
        let old = State::from_u8(self.state.swap(state as u8, Ordering::Relaxed));
        if old != state {
            if old.eligible() && !state.eligible() {
                self.ejections.fetch_add(1, Ordering::Relaxed);
            }
            tracing::info!(endpoint = %self.authority, from = ?old, to = ?state, "endpoint state changed");
            if state == State::Down {
                self.connection_lost.notify_one();
            }
            self.changed.send_replace(());
        }
    }

    /// Marks the endpoint unreachable, remembering why.
    pub(crate) fn set_down(&self, cause: String) {
        *crate::sync::lock(&self.last_error) = Some(cause);
        self.set_state(State::Down);
    }

    /// Why the endpoint was last marked unreachable.
    pub(crate) fn last_error(&self) -> Option<String> {
        crate::sync::lock(&self.last_error).clone()
    }

    /// Counts a call as outstanding until the returned guard drops.
    pub(crate) fn start_call(self: &Arc<Self>) -> Outstanding {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.last_call_ms.store(now_ms(), Ordering::Relaxed);
        Outstanding(self.clone())
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Whether calls may go to it: healthy (or not known to be otherwise) and not ejected as an
    /// outlier.
    fn eligible(&self) -> bool {
        self.state().eligible() && !self.outliers.ejected()
    }

    /// Times this endpoint went out of rotation.
    pub(crate) fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Its calls, as channelz counts a subchannel's: every attempt sent to it.
    pub(crate) fn calls(&self) -> CallCounts {
        let (finished, failed) = self.outliers.totals();
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        CallCounts {
            started: as_i64(finished) + as_i64(self.outstanding() as u64),
            succeeded: as_i64(finished - failed),
            failed: as_i64(failed),
            last_started_ms: self.last_call_ms.load(Ordering::Relaxed),
        }
    }

    /// Its state as gRPC names a subchannel's: a connection that works is READY (health says
    /// SERVING, or nothing yet), a failed health check or connection TRANSIENT_FAILURE.
    pub(crate) fn connectivity(&self) -> Connectivity {
        match self.state() {
            State::Serving => Connectivity::Ready,
            State::Unknown if self.socket_now().is_some() => Connectivity::Ready,
            State::Unknown => Connectivity::Idle,
            State::Connecting => Connectivity::Connecting,
            State::NotServing | State::Down => Connectivity::TransientFailure,
        }
    }

    /// Its open connection, if it has one.
    pub(crate) fn socket_now(&self) -> Option<Arc<SocketStats>> {
        self.socket.socket()
    }

    /// When it is down: why, as a short reason and the sentence for people.
    pub(crate) fn down_reason(&self) -> Option<(&'static str, String)> {
        if self.state() != State::Down {
            return None;
        }
        let reason = self.socket.failure().map_or("other", |d| d.reason);
        Some((reason, self.last_error().unwrap_or_default()))
    }

    /// What `err`, met on this endpoint, means for a person: the explanation it carries, else
    /// the one its connection left (a connection that failed before HTTP/2 began ends its calls
    /// with no more than "connection closed"), else its own words.
    pub(crate) fn explain(&self, err: &(dyn std::error::Error + 'static)) -> String {
        if let Some(why) = crate::diagnose::explanation(err) {
            return why;
        }
        if let Some(why) = self.socket.failure() {
            return why.message;
        }
        // tonic's connect timeout (hyper-timeout's, an I/O error around tokio's `Elapsed`).
        if crate::diagnose::find::<tokio::time::error::Elapsed>(err).is_some() {
            let why = crate::diagnose::connect_timeout();
            self.socket.failed(&self.authority, &why);
            return why.message;
        }
        crate::error::display_chain(err)
    }
}

/// A call in progress on an endpoint.
#[derive(Debug)]
pub(crate) struct Outstanding(Arc<Endpoint>);

impl Outstanding {
    /// Counts how the call ended, for outlier detection.
    pub(crate) fn record(&self, ok: bool) {
        self.0.outliers.record(ok);
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps `endpoint`'s state current from its health service, until the endpoint is dropped.
async fn watch_health(endpoint: Weak<Endpoint>, service: String) {
    let mut backoff = Backoff::new();
    loop {
        let Some(channel) = endpoint.upgrade().map(|e| e.channel.clone()) else {
            return;
        };
        let request = HealthCheckRequest {
            service: service.clone(),
        };
        let refused = match HealthClient::new(channel).watch(request).await {
            Ok(stream) => match follow_health(&endpoint, stream.into_inner(), &mut backoff).await {
                Ok(true) => continue,
                Ok(false) => {
                    tokio::time::sleep(backoff.next()).await;
                    continue;
                }
                Err(status) => status,
            },
            Err(status) => status,
        };
        if refused.code() == tonic::Code::Unimplemented {
            // No health service there (e.g. a peer in another language): trust calls alone.
            if let Some(e) = endpoint.upgrade() {
                e.set_state(State::Serving);
            }
            return;
        }
        // Any other refusal (e.g. PERMISSION_DENIED, or a server that answers every call it
        // does not expect with INVALID_ARGUMENT) leaves the endpoint down, as grpc-go's health
        // check does (TRANSIENT_FAILURE), and the watch is tried again after a backoff.
        tracing::debug!(status = %refused, "health watch failed");
        if let Some(e) = endpoint.upgrade() {
            e.set_down(e.explain(&refused));
        }
        tokio::time::sleep(backoff.next()).await;
    }
}

/// Applies a watch's updates to `endpoint` until the stream ends. `Ok(true)`: it said something
/// (watch again at once); `Ok(false)`: it ended quietly before any update (again after a
/// backoff); `Err`: the status that ended it before any update (a server may send its refusal
/// after the response headers rather than as a trailers-only response).
async fn follow_health(
    endpoint: &Weak<Endpoint>,
    mut stream: tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
    backoff: &mut Backoff,
) -> Result<bool, tonic::Status> {
    let mut updates = 0;
    let ended = loop {
        match stream.message().await {
            Ok(Some(update)) => {
                backoff.reset();
                updates += 1;
                let state = if update.status() == ServingStatus::Serving {
                    State::Serving
                } else {
                    State::NotServing
                };
                if let Some(e) = endpoint.upgrade() {
                    e.set_state(state);
                }
            }
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    // The stream ended: a draining server already said NOT_SERVING; a lost connection (a server
    // closing an old one, a host gone silent and found out by the keepalive) says nothing. Out
    // of rotation while a new connection is made: a watch that worked is tried again at once,
    // and if that fails the endpoint is down.
    if let Some(e) = endpoint.upgrade().filter(|e| e.state() == State::Serving) {
        e.set_state(State::Connecting);
    }
    match ended {
        Some(status) if updates == 0 => Err(status),
        _ => Ok(updates > 0),
    }
}

/// Counts of endpoints by state, for messages and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointCounts {
    /// Endpoints known.
    pub total: usize,
    /// Endpoints eligible for calls.
    pub eligible: usize,
    /// Endpoints whose health service says NOT_SERVING.
    pub not_serving: usize,
    /// Endpoints whose connection failed.
    pub down: usize,
    /// Endpoints whose connection was lost and is being made again.
    pub connecting: usize,
    /// Endpoints up and serving but ejected as outliers (too many failed calls).
    pub ejected: usize,
}

impl EndpointCounts {
    /// Why a channel to `target` cannot make a call now: the one wording of UNAVAILABLE's
    /// message and of `/readyz`'s reason.
    pub fn none_eligible(&self, target: &dyn std::fmt::Display) -> String {
        let Self {
            total,
            eligible,
            not_serving,
            down,
            connecting,
            ejected,
        } = self;
        format!(
            "no endpoint of {target} can take calls: {total} known, {eligible} eligible, {not_serving} not serving, {down} unreachable, {connecting} reconnecting, {ejected} ejected as outliers"
        )
    }
}

/// Makes the channel of a new endpoint from its `host:port`.
type ChannelFactory = Box<dyn Fn(&str) -> Option<(Transport, CurrentSocket)> + Send + Sync>;

/// The endpoint set of one target.
pub(crate) struct Balancer {
    /// The [`LbPolicy`], as its code: a service-config update may change it.
    policy: AtomicU8,
    health_service: Option<String>,
    make_channel: ChannelFactory,
    endpoints: RwLock<Vec<Arc<Endpoint>>>,
    cursor: AtomicUsize,
    connection_lost: Arc<Notify>,
    changed: Arc<watch::Sender<()>>,
}

impl fmt::Debug for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("policy", &self.policy())
            .field("health_service", &self.health_service)
            .field("endpoints", &self.read())
            .finish_non_exhaustive()
    }
}

impl Balancer {
    pub(crate) fn new(
        policy: LbPolicy,
        health_service: Option<String>,
        make_channel: impl Fn(&str) -> Option<(Transport, CurrentSocket)> + Send + Sync + 'static,
    ) -> Self {
        Self {
            policy: AtomicU8::new(policy.code()),
            health_service,
            make_channel: Box::new(make_channel),
            endpoints: RwLock::default(),
            cursor: AtomicUsize::new(match policy {
                LbPolicy::PickFirst { shuffle: true } => fastrand::usize(..1 << 16),
                _ => 0,
            }),
            connection_lost: Arc::default(),
            changed: Arc::new(watch::Sender::new(())),
        }
    }

    pub(crate) fn policy(&self) -> LbPolicy {
        LbPolicy::from_code(self.policy.load(Ordering::Relaxed))
    }

    /// Switches the policy (a service-config update); calls already sent stay where they are.
    pub(crate) fn set_policy(&self, policy: LbPolicy) {
        let old = self.policy.swap(policy.code(), Ordering::Relaxed);
        if old != policy.code() {
            tracing::info!(from = %LbPolicy::from_code(old), to = %policy, "load-balancing policy changed");
        }
    }

    /// Marked changed whenever an endpoint is added, removed or changes state.
    pub(crate) fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Notified whenever an endpoint's connection is lost (discovery may look again).
    pub(crate) fn connection_lost(&self) -> Arc<Notify> {
        self.connection_lost.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Endpoint>>> {
        crate::sync::read(&self.endpoints)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Endpoint>>> {
        crate::sync::write(&self.endpoints)
    }

    /// Adds an endpoint (no-op if known). Must run inside a tokio runtime (it starts the
    /// endpoint's health watcher).
    pub(crate) fn insert(&self, authority: &str) {
        let mut endpoints = self.write();
        if endpoints.iter().any(|e| e.authority == authority) {
            return;
        }
        if let Some(endpoint) = self.new_endpoint(authority) {
            tracing::info!(endpoint = authority, "endpoint added");
            endpoints.push(endpoint);
            self.changed.send_replace(());
        }
    }

    /// Replaces an endpoint with a new one on a new connection, made as the channel now says
    /// (a longer keepalive time); calls already on the old one finish there.
    pub(crate) fn renew(&self, authority: &str) {
        let mut endpoints = self.write();
        let Some(slot) = endpoints.iter_mut().find(|e| e.authority == authority) else {
            return;
        };
        if let Some(endpoint) = self.new_endpoint(authority) {
            tracing::info!(endpoint = authority, "endpoint reconnecting");
            *slot = endpoint;
            self.changed.send_replace(());
        }
    }

    fn new_endpoint(&self, authority: &str) -> Option<Arc<Endpoint>> {
        let Some((channel, socket)) = (self.make_channel)(authority) else {
            tracing::warn!(
                endpoint = authority,
                "ignoring an endpoint that is not a valid host:port"
            );
            return None;
        };
        let endpoint = Arc::new(Endpoint {
            authority: authority.to_owned(),
            channel,
            id: next_id(),
            socket,
            last_call_ms: AtomicI64::new(0),
            outstanding: AtomicUsize::new(0),
            state: AtomicU8::new(State::Unknown as u8),
            ejections: AtomicU64::new(0),
            watcher: std::sync::OnceLock::new(),
            connection_lost: self.connection_lost.clone(),
            changed: self.changed.clone(),
            last_error: std::sync::Mutex::new(None),
            outliers: OutlierState::default(),
        });
        if let Some(service) = &self.health_service {
            let task = tokio::spawn(watch_health(Arc::downgrade(&endpoint), service.clone()));
            let _ = endpoint.watcher.set(task.abort_handle());
        }
        Some(endpoint)
    }

    /// Removes an endpoint; calls already on it finish.
    pub(crate) fn remove(&self, authority: &str) {
        let mut endpoints = self.write();
        let before = endpoints.len();
        endpoints.retain(|e| e.authority != authority);
        if endpoints.len() != before {
            tracing::info!(endpoint = authority, "endpoint removed");
            self.changed.send_replace(());
        }
    }

    /// Makes the set exactly `authorities`.
    pub(crate) fn reset(&self, authorities: &[String]) {
        let stale: Vec<String> = self
            .read()
            .iter()
            .filter(|e| !authorities.contains(&e.authority))
            .map(|e| e.authority.clone())
            .collect();
        for authority in stale {
            self.remove(&authority);
        }
        for authority in authorities {
            self.insert(authority);
        }
    }

    /// An endpoint for the next call, by policy, among the eligible ones not in `avoid`
    /// (endpoints already tried by this call); falls back to `avoid` ones if nothing else is left.
    pub(crate) fn pick(&self, avoid: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        let endpoints = self.read();
        let fresh = |e: &&Arc<Endpoint>| e.eligible() && !avoid.iter().any(|a| Arc::ptr_eq(a, e));
        let mut candidates: Vec<&Arc<Endpoint>> = endpoints.iter().filter(fresh).collect();
        if candidates.is_empty() {
            candidates = endpoints.iter().filter(|e| e.eligible()).collect();
        }
        let n = candidates.len();
        let chosen = match (n, self.policy()) {
            (0, _) => return None,
            (1, _) => candidates[0],
            (_, LbPolicy::RoundRobin) => {
                candidates[self.cursor.fetch_add(1, Ordering::Relaxed) % n]
            }
            (_, LbPolicy::PickFirst { .. }) => candidates[self.cursor.load(Ordering::Relaxed) % n],
            (_, LbPolicy::LeastRequest) => {
                let a = fastrand::usize(..n);
                let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                let (a, b) = (candidates[a], candidates[b]);
                if b.outstanding() < a.outstanding() {
                    b
                } else {
                    a
                }
            }
        };
        Some(chosen.clone())
    }

    /// Every endpoint, for metrics.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Endpoint>> {
        self.read().clone()
    }

    /// Why some unreachable endpoint is down, as `host:port: cause`.
    pub(crate) fn a_failure(&self) -> Option<String> {
        self.read()
            .iter()
            .filter(|e| e.state() == State::Down)
            .find_map(|e| e.last_error().map(|err| format!("{}: {err}", e.authority)))
    }

    pub(crate) fn counts(&self) -> EndpointCounts {
        let endpoints = self.read();
        let mut counts = EndpointCounts {
            total: endpoints.len(),
            ..EndpointCounts::default()
        };
        for e in endpoints.iter() {
            match e.state() {
                State::Unknown | State::Serving if e.outliers.ejected() => counts.ejected += 1,
                State::Unknown | State::Serving => counts.eligible += 1,
                State::NotServing => counts.not_serving += 1,
                State::Down => counts.down += 1,
                State::Connecting => counts.connecting += 1,
            }
        }
        counts
    }

    /// Runs outlier detection over the endpoints once (one interval), logging what changed.
    pub(crate) fn sweep_outliers(&self, config: &OutlierDetection) {
        let endpoints = self.snapshot();
        let pairs: Vec<(&str, &OutlierState)> = endpoints
            .iter()
            .map(|e| (e.authority.as_str(), &e.outliers))
            .collect();
        let swept = crate::client::outlier::sweep(&pairs, config);
        for (endpoint, reason) in &swept.ejected {
            tracing::warn!(%endpoint, reason = reason.name(), "endpoint ejected as an outlier: too many of its calls failed");
        }
        for endpoint in &swept.returned {
            tracing::info!(%endpoint, "outlier ejection over: endpoint back in rotation");
        }
        if !swept.ejected.is_empty() || !swept.returned.is_empty() {
            self.changed.send_replace(());
        }
    }
}
