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
    Ok(())
}
