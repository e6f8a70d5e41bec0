//! Generated protobuf messages and gRPC stubs for calcmesh.
//!
//! # Layout
//! - [`calculator`]: package `calculator` from `proto/calculator.proto` — the original
//!   `Calculator/Calculate` contract plus the streaming RPCs.
//! - [`evaluator`]: package `calcmesh.evaluator.v1` from `proto/evaluator.proto`.
//! - [`FILE_DESCRIPTOR_SET`]: every file above, encoded, for server reflection.
//! - [`channelz`] and [`CHANNELZ_DESCRIPTOR_SET`]: package `grpc.channelz.v1` from
//!   `proto/grpc/channelz/v1/channelz.proto`, the part of gRPC's channelz that calcmesh serves.
//! - `grpc_testing` and `INTEROP_DESCRIPTOR_SET` (feature `interop`): gRPC's official interop
//!   test service, from Debian's `grpc-proto`.
//!
//! This is the only crate that generates code from `proto/`; every other crate uses these types.

/// Package `calculator`: the calculator service, its messages, client and server.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod calculator {
    tonic::include_proto!("calculator");
}

/// Package `calcmesh.evaluator.v1`: the evaluator service, its messages, client and server.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod evaluator {
    tonic::include_proto!("calcmesh.evaluator.v1");
}

/// Package `grpc.channelz.v1`: gRPC's channelz debugging service, as far as calcmesh fills it.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod channelz {
    tonic::include_proto!("grpc.channelz.v1");
}

/// The encoded `FileDescriptorSet` of the channelz proto, for server reflection where channelz
/// is served.
pub const CHANNELZ_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/channelz_descriptor.bin"));

/// Package `grpc.testing`: gRPC's interop test service (feature `interop`, from Debian's
/// `grpc-proto`).
#[cfg(feature = "interop")]
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod grpc_testing {
    tonic::include_proto!("grpc.testing");
}

/// The encoded `FileDescriptorSet` of gRPC's interop protos, for server reflection.
#[cfg(feature = "interop")]
pub const INTEROP_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/interop_descriptor.bin"));

/// The encoded `FileDescriptorSet` of every calcmesh proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/calcmesh_descriptor.bin"));

/// Method path prefixes of calcmesh services whose calls are safe to send twice, for
/// `ClientConfig::idempotent`: every `calculator.Calculator` RPC and every
/// `calcmesh.evaluator.v1.Evaluator` RPC is a pure function of its request (no state changes,
/// the same answer every time), and so is `grpc.health.v1.Health`.
pub const IDEMPOTENT_METHODS: &[&str] = &[
    "/calculator.Calculator/",
    "/calcmesh.evaluator.v1.Evaluator/",
    "/grpc.health.v1.Health/",
];

/// [`IDEMPOTENT_METHODS`] as owned strings, the form `ClientConfig::idempotent` takes.
pub fn idempotent_methods() -> Vec<String> {
    IDEMPOTENT_METHODS.iter().map(|m| (*m).to_owned()).collect()
}
