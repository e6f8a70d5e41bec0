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
//! The old flat paths (`calcmesh_runtime::balance`, `::authz`, `::metrics`, …) stay as re-exports.

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

#[cfg(feature = "etcd")]
pub use client::etcd;
pub use client::{balance, discovery, retry};
pub use server::{authz, health, limits};
pub use telemetry::{metrics, trace};
pub use tls::certs;

pub use authz::AuthzPolicy;
pub use balance::{EndpointCounts, LbPolicy};
pub use client::{ClientConfig, ClientError, MeshChannel, Target, connect};
pub use health::HealthState;
pub use server::{
    ENDPOINT_HEADER, GrpcService, ServeError, Server, ServerConfig, ServerStats, bind, serve_health,
};
