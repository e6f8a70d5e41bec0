//! Compiles `proto/*.proto` with protox (no system `protoc`), generates tonic code and writes the
//! encoded descriptor set that server reflection serves.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "../../proto/calculator.proto",
        "../../proto/evaluator.proto",
    ];
    let fds = protox::compile(protos, ["../../proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("calcmesh_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // Its own descriptor set: reflection lists channelz only where it is served.
    let channelz = "../../proto/grpc/channelz/v1/channelz.proto";
    let fds = protox::compile([channelz], ["../../proto"])?;
    std::fs::write(out.join("channelz_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed={channelz}");
    if std::env::var_os("CARGO_FEATURE_INTEROP").is_some() {
        compile_interop(&out)?;
    }
    Ok(())
}

/// gRPC's interop test service from Debian's `grpc-proto` (feature `interop`).
fn compile_interop(out: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=GRPC_PROTO_DIR");
    let root = std::env::var("GRPC_PROTO_DIR").unwrap_or_else(|_| "/usr/share/grpc-proto".into());
    let test = std::path::Path::new(&root).join("grpc/testing/test.proto");
    if !test.exists() {
        return Err(format!(
            "the `interop` feature compiles gRPC's official test protos, and {} is missing: \
             install Debian's grpc-proto (apt-get install grpc-proto; ./scripts/test does), or \
             point GRPC_PROTO_DIR at a copy of grpc/grpc's src/proto",
            test.display()
        )
        .into());
    }
    println!("cargo:rerun-if-changed={}", test.display());
    let fds = protox::compile([&test], [&root])?;
    std::fs::write(out.join("interop_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
