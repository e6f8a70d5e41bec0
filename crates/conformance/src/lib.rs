//! The Connect conformance suite (`connectconformance`, connectrpc.com/conformance) judging
//! calcmesh's gRPC and gRPC-Web, server and client, case by case against its reference client
//! and server.
//!
//! # Layout
//! - [`proto`]: the suite's messages and `ConformanceService`, compiled from the suite's own
//!   module (see `build.rs`).
//! - [`wire`]: the runner's stdin/stdout protocol (size-prefixed messages).
//! - [`headers`]: the suite's header lists as gRPC metadata, and back.
//! - [`service`]: `ConformanceService` as the suite specifies the server under test.
//! - [`client`]: the client under test — each of the runner's requests a call over a runtime
//!   [`calcmesh_runtime::MeshChannel`].
//! - [`server`]: the server under test — the service on a runtime [`calcmesh_runtime::Server`],
//!   configured from the runner's `ServerCompatRequest`.

pub mod client;
pub mod headers;
pub mod server;
pub mod service;
pub mod wire;

/// The suite's messages (`connectrpc.conformance.v1`).
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("connectrpc.conformance.v1");

    /// The encoded `FileDescriptorSet` of the suite's protos.
    pub const DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/conformance_descriptor.bin"));
}
