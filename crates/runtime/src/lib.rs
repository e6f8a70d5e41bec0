//! The calcmesh mesh runtime: the one place that builds gRPC servers and the one place that
//! builds gRPC channels. Services plug their tonic service in; everything a production gRPC
//! server needs around it lives here.
//!
//! # Layout
//! Folders by job. `server/` and `client/` never import each other; `telemetry/` imports
//! neither; the small modules at the top are shared by all.
//! - [`server`]: [`Server`] — accept and TCP options, health, reflection, limits, drain.
//!   - [`server::health`]: `grpc.health.v1` whose Watch streams end when the server drains.
//!   - [`server::limits`]: the max-message-size layer that answers RESOURCE_EXHAUSTED.
//!   - [`server::authz`]: per-method authorization of the caller's identity.
//!   - [`server::fault`]: `--fault` injection for drills (a share of calls fail or wait).
//! - [`client`]: [`Target`] parsing and [`connect`], the one way to get a channel ([`MeshChannel`]).
//!   - [`client::discovery`]: where endpoints come from — static lists, DNS, etcd — as changes.
//!   - `client::etcd` (feature `etcd`): etcd discovery and registration, in grpc-go's layout.
//!   - [`client::balance`]: the health-aware balancer (round_robin, least_request).
//!   - [`client::reply`]: an answer's headers, messages and trailers apart, its cardinality checked.
//!   - [`client::retry`]: when a failed call may be sent again, and the body that can be.
//! - [`tls`]: TLS and mutual TLS that reload, the caller's identity; [`tls::certs`]: a development CA.
//! - [`telemetry`]: go-grpc-prometheus metrics and each call's span ([`telemetry::metrics`]), W3C
//!   `traceparent` across services ([`telemetry::trace`]).
//! - [`admin`]: the admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`, the dashboard) over
//!   servers and clients.
//! - [`channelz`]: gRPC's channelz — every server, channel and connection of the process, served
//!   as `grpc.channelz.v1.Channelz` (`ServerConfig::channelz`).
//! - Shared: [`codes`] (status codes by their spec names), [`compression`] (gzip, zstd, identity; servers answer in kind), [`deadline`] (the
//!   caller's deadline, passed downstream), `descriptors` (what the services' descriptors say of each method), [`error`] (the error-chain
//!   walker), [`diagnose`] (what a failed connection means, for both sides), [`shutdown`] (SIGINT/SIGTERM), `backoff`, [`framing`] (gRPC message boundaries), `sync`,
//!   `h2` (HTTP/2 frame headers read in passing: the server's ping policing, the client's
//!   connection watch).
//!
//! Each module has one path (`calcmesh_runtime::client::balance`, `::server::authz`, …); the
//! crate's root re-exports only the types a service needs first (below).
//!
//! # A server and a channel
//! A [`Server`] serves your tonic services (`add_service`) with everything above around them;
//! [`connect`] gives a [`MeshChannel`] that generated clients take. Both in one process:
//! ```
//! use calcmesh_runtime::{ClientConfig, Server, ServerConfig, Target, bind, connect};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ServerConfig::default();
//! let listener = bind("127.0.0.1:0".parse()?, &config)?; // port 0: any free port
//! let addr = listener.local_addr()?;
//! let server = Server::new(config); // .add_service(YourServiceServer::new(handlers))
//! let health = server.health();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = tokio::spawn(server.serve(listener, async {
//!     let _ = stopped.await; // serves until this completes, then drains
//! }));
//!
//! let target: Target = addr.to_string().parse()?; // or dns:///host:port, etcd:///name
//! let channel = connect(&target, &ClientConfig::default())?;
//! // YourServiceClient::new(channel.clone()).your_method(request).await?
//! channel.wait_for_endpoints(|endpoints| endpoints.eligible > 0).await;
//! assert_eq!(health.is_serving(""), Some(true));
//!
//! stop.send(()).ok();
//! serving.await??;
//! # Ok(())
//! # }
//! ```

pub mod admin;
mod backoff;
pub mod channelz;
pub mod client;
pub mod codes;
pub mod compression;
pub mod deadline;
mod descriptors;
pub mod diagnose;
pub mod error;
pub mod framing;
mod h2;
mod headers;
pub mod server;
pub mod shutdown;
mod sync;
pub mod telemetry;
pub mod tls;

pub use client::balance::{EndpointCounts, LbPolicy};
pub use client::{ClientConfig, ClientError, MeshChannel, Target, connect};
pub use server::authz::AuthzPolicy;
pub use server::health::HealthState;
pub use server::{
    ENDPOINT_HEADER, GrpcService, ServeError, Server, ServerConfig, ServerStats, bind, serve_health,
};
