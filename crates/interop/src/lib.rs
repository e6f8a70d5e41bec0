//! gRPC's official interop test service, `grpc.testing.TestService`, on the calcmesh runtime:
//! the server the reference clients judge, and a client of the cases on calcmesh's own channel.
//!
//! # Layout
//! - [`service`]: the `TestService` handlers, as the interop descriptions specify the server.
//! - [`echo`]: the metadata echo every method does (`custom_metadata`).
//! - [`flags`]: which request messages came compressed (`expect_compressed`).
//! - [`cases`]: the client side of each case, over a [`calcmesh_runtime::MeshChannel`].
//! - [`mesh_server`]: the service on a runtime [`Server`] — health, reflection, limits,
//!   metrics, TLS and drain included, since those layers are what the reference clients judge.
//!
//! The protos are gRPC's own (`grpc/testing/*.proto` from Debian's `grpc-proto`), compiled by
//! `calcmesh-proto` with its `interop` feature; nothing in the `calcmesh` binary needs them.

pub mod cases;
pub mod echo;
pub mod flags;
pub mod service;

use calcmesh_runtime::{Server, ServerConfig};

/// A runtime [`Server`] with the interop service (and its descriptors, for reflection). Give it
/// a config with `compress_answers: CompressAnswers::WhenAccepted`, as the cases expect a
/// server to compress on request (`response_compressed`) whatever the request was.
pub fn mesh_server(config: &ServerConfig) -> Server {
    Server::new(config.clone())
        .add_service(echo::EchoMetadata(flags::RecordFlags(service::server(
            config.max_message_size,
        ))))
        .add_descriptors(calcmesh_proto::INTEROP_DESCRIPTOR_SET)
}
