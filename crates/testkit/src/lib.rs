//! Test helpers shared by the crates' integration tests.
//!
//! # Layout
//! - [`Running`]: a [`Server`] serving on `127.0.0.1:0` in a task, with its address, counters,
//!   health, a channel to it, and an explicit [`Running::stop`].
//! - [`Intercept`]: a service wrapper that delays calls or records who made them.

use std::net::SocketAddr;
use std::sync::Arc;

use std::convert::Infallible;

use calcmesh_runtime::tls::PeerInfo;
use calcmesh_runtime::{ClientConfig, HealthState, MeshChannel, ServeError, Server, ServerStats};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::server::NamedService;

/// A server running on a free loopback port.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<ServerStats>,
    /// Its health.
    pub health: HealthState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Binds `127.0.0.1:0` and serves `server` in a task. The listener is bound before this
    /// returns, so clients can connect at once.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub fn start(server: Server) -> Self {
        Self::start_on(server, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Like [`start`](Self::start), on `addr` (e.g. another loopback address, `127.0.0.2:0`).
    ///
    /// # Panics
    /// If `addr` cannot be bound.
    pub fn start_on(server: Server, addr: SocketAddr) -> Self {
        let listener = calcmesh_runtime::bind(addr, server.config())
            .unwrap_or_else(|err| panic!("bind {addr}: {err}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (stats, health) = (server.stats(), server.health());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stats,
            health,
            stop,
            task,
        }
    }

    /// A new channel (and so a new connection) to this server.
    pub fn channel(&self) -> MeshChannel {
        let target = calcmesh_runtime::Target::Endpoint(self.addr.to_string());
        calcmesh_runtime::connect(&target, &ClientConfig::default())
            .expect("a socket address is a valid target")
    }

    /// Starts the graceful drain and waits for the server to finish it.
    ///
    /// # Panics
    /// If the server failed.
    pub async fn stop(self) {
        let (stop, task) = self.split();
        stop();
        task.await
            .expect("server task")
            .expect("server ran without error");
    }

    /// The stop trigger and the server task, for tests that act during the drain.
    pub fn split(self) -> (impl FnOnce(), JoinHandle<Result<(), ServeError>>) {
        let stop = self.stop;
        (
            move || {
                let _ = stop.send(());
            },
            self.task,
        )
    }
}

/// A tonic service wrapped for tests: each call can be delayed (a slow instance), the first
/// calls failed, and the [`PeerInfo`] or a header it carries recorded (what a handler sees).
#[derive(Debug, Clone)]
pub struct Intercept<S> {
    inner: S,
    delay: Option<std::time::Duration>,
    peers: Option<Arc<std::sync::Mutex<Vec<PeerInfo>>>>,
    header: Option<(&'static str, Recorded)>,
    fail_first: Option<(Arc<std::sync::atomic::AtomicUsize>, tonic::Code)>,
}

/// Each call's value of a header, in order (`None`: the call had none).
pub type Recorded = Arc<std::sync::Mutex<Vec<Option<String>>>>;

impl<S> Intercept<S> {
    /// `inner`, unchanged so far.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            delay: None,
            peers: None,
            header: None,
            fail_first: None,
        }
    }

    /// Fails the first `n` calls with `code` (a trailers-only answer, as a handler's error is).
    pub fn fail_first(mut self, n: usize, code: tonic::Code) -> Self {
        self.fail_first = Some((Arc::new(n.into()), code));
        self
    }

    /// Appends each call's value of header `name` to `into`.
    pub fn record_header(mut self, name: &'static str, into: Recorded) -> Self {
        self.header = Some((name, into));
        self
    }

    /// Answers every call `delay` later.
    pub fn delay(mut self, delay: std::time::Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Appends each call's [`PeerInfo`] to `peers`.
    pub fn record_peers(mut self, peers: Arc<std::sync::Mutex<Vec<PeerInfo>>>) -> Self {
        self.peers = Some(peers);
        self
    }
}

impl<S: NamedService> NamedService for Intercept<S> {
    const NAME: &'static str = S::NAME;
}

use std::sync::atomic::Ordering::Relaxed;

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S: calcmesh_runtime::GrpcService> tower_service::Service<http::Request<Body>>
    for Intercept<S>
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if let (Some(peers), Some(peer)) = (&self.peers, request.extensions().get::<PeerInfo>()) {
            peers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(peer.clone());
        }
        if let Some((name, into)) = &self.header {
            let value = request.headers().get(*name);
            let value = value.and_then(|v| v.to_str().ok()).map(str::to_owned);
            into.lock().unwrap_or_else(|p| p.into_inner()).push(value);
        }
        if let Some((left, code)) = &self.fail_first {
            let take = |n: usize| n.checked_sub(1);
            if left.fetch_update(Relaxed, Relaxed, take).is_ok() {
                let status = tonic::Status::new(*code, "failed by the test");
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        }
        let (mut inner, delay) = (self.inner.clone(), self.delay);
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            inner.call(request).await
        })
    }
}

/// `GET path` over HTTP/1.1 (for the admin endpoint): the status line and the body.
///
/// # Panics
/// If nothing answers at `addr` or the answer is not HTTP.
pub async fn http_get(addr: &str, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the HTTP endpoint");
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}
