//! The calcmesh mesh runtime: the one place that builds gRPC servers and the one place that
//! builds gRPC channels. Services plug their tonic service in; everything a production gRPC
//! server needs around it lives here.
//!
//! # Layout
//! - [`server`]: [`Server`] — health, reflection, limits, connection accounting, graceful drain.
//! - [`health`]: `grpc.health.v1` whose Watch streams end when the server drains.
//! - [`limits`]: the max-message-size layer that answers RESOURCE_EXHAUSTED, as the gRPC spec says.
//! - [`client`]: [`Target`] parsing and [`connect`], the one way to get a channel ([`MeshChannel`]).
//! - [`discovery`]: where endpoints come from — static lists, DNS, etcd — as a stream of changes.
//! - `etcd` (feature `etcd`): etcd discovery and server registration, in grpc-go's key layout.
//! - [`balance`]: the health-aware balancer (round_robin, least_request) over those endpoints.
//! - [`retry`]: when a failed call may be sent again, and the body that can be.
//! - [`deadline`]: the caller's deadline, read from `grpc-timeout` and passed downstream.
//! - [`tls`], [`authz`], [`certs`]: TLS and mutual TLS that reload, caller identity, per-method
//!   authorization, and a development CA.
//! - [`metrics`]: go-grpc-prometheus metrics of servers and clients, and each server call's span.
//! - [`trace`]: W3C `traceparent` read from every call and sent on every downstream call.
//! - [`admin`]: the admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
//! - [`shutdown`]: the SIGINT/SIGTERM future that starts a graceful drain.

pub mod admin;
pub mod authz;
pub mod balance;
pub mod certs;
pub mod client;
pub mod deadline;
pub mod discovery;
pub mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod retry;
pub mod server;
pub mod shutdown;
mod sync;
pub mod tls;
pub mod trace;

pub use authz::AuthzPolicy;
pub use balance::{EndpointCounts, LbPolicy};
pub use client::{ClientConfig, ClientError, MeshChannel, Target, connect};
pub use health::HealthState;
pub use server::{
    ENDPOINT_HEADER, ServeError, Server, ServerConfig, ServerStats, bind, serve_health,
};
