//! The Connect conformance suite's runner (`connectconformance` v1.0.7, installed by
//! `./scripts/test` into `target/interop/go/bin`) judging calcmesh: each configuration in
//! `config/`, server mode (its reference client calls our server) and client mode (our client
//! calls its reference server). A run passes when every case does, but those listed in
//! `known-failing.txt` (which must then fail).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One run at a time: the suite's timeout and cancellation cases measure milliseconds, and
/// two runs side by side on a 2-core machine would be judging the scheduler.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the suite in `mode` with `config/NAME.yaml`, and fails with its report unless every
/// case passed.
fn judge(mode: &str, name: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runner = workspace().join("target/interop/go/bin/connectconformance");
    assert!(
        runner.exists(),
        "{} is missing: ./scripts/test installs it (go install connectrpc.com/conformance/cmd/connectconformance@v1.0.7)",
        runner.display()
    );
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = crate_dir.join(format!("config/{name}.yaml"));
    let known_failing = crate_dir.join("known-failing.txt");
    let output = Command::new(&runner)
        .args(["--mode", mode, "--conf"])
        .arg(&config)
        .arg(format!("--known-failing=@{}", known_failing.display()))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_calcmesh-conformance"))
        .arg(mode)
        .output()
        .expect("the conformance runner starts");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = report
        .lines()
        .rev()
        .find(|line| line.contains("passed") || line.contains("failed"))
        .unwrap_or("no summary");
    assert!(
        output.status.success(),
        "connectconformance --mode {mode} --conf {}: {summary}\n{report}",
        config.display()
    );
    // The run did run cases: a config that matched none would pass too.
    assert!(
        report.contains("Total cases: ") && !report.contains("Total cases: 0\n"),
        "no case ran:\n{report}"
    );
    println!("{mode} {name}: {summary}");
}

#[test]
fn server_grpc_over_h2c() {
    judge("server", "grpc-h2c");
}

#[test]
fn server_grpc_over_tls_with_client_certificates() {
    judge("server", "grpc-tls");
}

#[test]
fn server_grpc_web_over_http1_and_h2c() {
    judge("server", "grpc-web-h2c");
}

#[test]
fn server_grpc_web_over_tls_with_client_certificates() {
    judge("server", "grpc-web-tls");
}

#[test]
fn client_grpc_over_h2c() {
    judge("client", "grpc-h2c");
}

#[test]
fn client_grpc_over_tls_with_client_certificates() {
    judge("client", "grpc-tls");
}

#[test]
fn client_grpc_web_over_http1_and_h2c() {
    judge("client", "grpc-web-h2c");
}

#[test]
fn client_grpc_web_over_tls_with_client_certificates() {
    judge("client", "grpc-web-tls");
}
