//! Compiles the Connect conformance suite's protos (`connectrpc/conformance/v1/*.proto`) from
//! the suite's own Go module, as `go mod download connectrpc.com/conformance@v1.0.7` leaves it
//! (`./scripts/test` does): they are never copied into this repository.

use std::path::PathBuf;

use prost::Message;

/// The suite's version: the runner the test command installs, and the protos it speaks.
const VERSION: &str = "v1.0.7";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = proto_dir()?;
    let files = [
        "client_compat",
        "server_compat",
        "service",
        "config",
        "suite",
    ]
    .map(|name| root.join(format!("connectrpc/conformance/v1/{name}.proto")));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // The descriptors tell the server which methods take one message, and feed reflection.
    std::fs::write(out.join("conformance_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}

/// `CONNECT_CONFORMANCE_PROTO_DIR`, or `proto/` of the module in Go's module cache.
fn proto_dir() -> Result<PathBuf, String> {
    println!("cargo:rerun-if-env-changed=CONNECT_CONFORMANCE_PROTO_DIR");
    if let Some(dir) = std::env::var_os("CONNECT_CONFORMANCE_PROTO_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let cache = std::process::Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let dir = cache.map(|cache| {
        PathBuf::from(cache).join(format!("connectrpc.com/conformance@{VERSION}/proto"))
    });
    match dir {
        Some(dir) if dir.join("connectrpc/conformance/v1/service.proto").exists() => Ok(dir),
        _ => Err(format!(
            "calcmesh-conformance compiles the Connect conformance suite's protos, which are not \
             here: run `go mod download connectrpc.com/conformance@{VERSION}` (./scripts/test \
             does), or point CONNECT_CONFORMANCE_PROTO_DIR at the suite's proto/ folder"
        )),
    }
}
