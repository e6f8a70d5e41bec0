//! Test helpers shared by the crates' integration tests.
//!
//! # Layout
//! - [`Running`]: a [`Server`] serving on `127.0.0.1:0` in a task, with its address, counters,
//!   health, a channel to it, and an explicit [`Running::stop`].

use std::net::SocketAddr;
use std::sync::Arc;

use calcmesh_runtime::{ClientConfig, HealthState, MeshChannel, ServeError, Server, ServerStats};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
