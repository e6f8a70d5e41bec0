//! The gRPC ecosystem's own tools as clients of a real `calcmesh serve calculator` process:
//! grpcurl (v1.9.4: `list`, `describe`, a unary call with a JSON body, a server-streaming call,
//! over mutual TLS), grpc_health_probe (v0.4.62: the plaintext health port and the mTLS port
//! SERVING, the health port NOT_SERVING during a drain) and ghz (v0.93.0: a load run through
//! server reflection, every call OK). `./scripts/test` installs them into
//! `target/interop/go/bin`; missing, these tests fail and say how to get them. (How ghz's figures
//! compare with `calcmesh bench`'s is a benchmark, in BENCHMARKS.md, not a test.)

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use calcmesh_runtime::ClientConfig;
use calcmesh_runtime::tls::ClientTls;
use common::{HeldCall, Output, ServerProcess, calcmesh, root, run};

use common::go_tool as tool;

fn grpcurl() -> String {
    tool(
        "grpcurl",
        "github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4",
    )
}

fn health_probe() -> String {
    tool(
        "grpc-health-probe",
        "github.com/grpc-ecosystem/grpc-health-probe@v0.4.62",
    )
}

/// A development CA and certificates in a fresh directory under `target/`.
async fn certs(name: &str) -> PathBuf {
    let dir = root().join("target/tool-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let out = calcmesh(&["certs", "init", "--dir", &dir.display().to_string()], "").await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    dir
}

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// A calculator that serves mutual TLS and admits only `admin`, with a plaintext health port.
async fn mtls_calculator(dir: &Path) -> (ServerProcess, String) {
    let (cert, key, ca) = (
        file(dir, "calculator.pem"),
        file(dir, "calculator.key"),
        file(dir, "ca.pem"),
    );
    let args = [
        "serve",
        "calculator",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--client-ca",
        &ca,
        "--allow",
        "spiffe://calcmesh/admin=/",
        "--health-listen",
        "127.0.0.1:0",
        "--grace-period",
        "5s",
    ];
    let server = ServerProcess::start_until(common::BIN, &args, "health on ").await;
    let grpc = server.lines[0]
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    (server, grpc)
}

fn assert_ok(what: &str, out: &Output) {
    assert_eq!(
        out.code,
        Some(0),
        "{what}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.stdout,
        out.stderr
    );
}

#[tokio::test]
async fn grpcurl_lists_describes_and_calls_over_mutual_tls() {
    let dir = certs("grpcurl").await;
    let (_server, addr) = mtls_calculator(&dir).await;
    let (ca, cert, key) = (
        file(&dir, "ca.pem"),
        file(&dir, "admin.pem"),
        file(&dir, "admin.key"),
    );
    let as_admin = |args: &[&str]| {
        let mut all = vec!["-cacert", &ca, "-cert", &cert, "-key", &key];
        all.extend_from_slice(args);
        all.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
    };
    let grpcurl = async |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(grpcurl(), &args, "").await
    };

    // Reflection: the services, and the original contract's method as declared.
    let out = grpcurl(as_admin(&[&addr, "list"])).await;
    assert_ok("grpcurl list", &out);
    for service in ["calculator.Calculator", "grpc.health.v1.Health"] {
        assert!(out.stdout.lines().any(|l| l == service), "{}", out.stdout);
    }
    let out = grpcurl(as_admin(&[&addr, "describe", "calculator.Calculator"])).await;
    assert_ok("grpcurl describe", &out);
    assert!(
        out.stdout
            .contains("rpc Calculate ( .calculator.Request ) returns ( .calculator.Response );"),
        "{}",
        out.stdout
    );

    // A unary call from JSON, and a server stream.
    let body = r#"{"num1": 6, "num2": 7, "operator": "*"}"#;
    let out = grpcurl(as_admin(&[
        "-d",
        body,
        &addr,
        "calculator.Calculator/Calculate",
    ]))
    .await;
    assert_ok("grpcurl Calculate", &out);
    let answer: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["result"], 42.0);
    let body = r#"{"number": "600851475143"}"#;
    let out = grpcurl(as_admin(&[
        "-d",
        body,
        &addr,
        "calculator.Calculator/Factorize",
    ]))
    .await;
    assert_ok("grpcurl Factorize", &out);
    let factors: Vec<String> = serde_json::Deserializer::from_str(&out.stdout)
        .into_iter::<serde_json::Value>()
        .map(|v| v.unwrap()["prime"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(factors, ["71", "839", "1471", "6857"]);

    // Without the admin certificate the handshake itself fails.
    let out = grpcurl(vec![
        "-cacert".into(),
        ca.clone(),
        addr.clone(),
        "list".into(),
    ])
    .await;
    assert_ne!(out.code, Some(0), "no client certificate: {}", out.stdout);
}

/// The admin's client config: mutual TLS with the certificates in `dir`.
fn as_admin(dir: &Path) -> ClientConfig {
    let tls = ClientTls::load(
        &dir.join("ca.pem"),
        Some((&dir.join("admin.pem"), &dir.join("admin.key"))),
    )
    .unwrap();
    ClientConfig {
        tls: Some(tls),
        ..ClientConfig::default()
    }
}

#[tokio::test]
async fn grpc_health_probe_sees_serving_then_the_drain() {
    let dir = certs("health-probe").await;
    let (mut server, grpc) = mtls_calculator(&dir).await;
    let health = server.addr.clone();
    let probe = async |args: &[&str]| run(health_probe(), args, "").await;

    let out = probe(&[&format!("-addr={health}")]).await;
    assert_ok("plaintext health port", &out);
    assert!(out.stderr.contains("status: SERVING"), "{}", out.stderr);
    let (ca, cert, key) = (
        file(&dir, "ca.pem"),
        file(&dir, "admin.pem"),
        file(&dir, "admin.key"),
    );
    let tls = [
        format!("-addr={grpc}"),
        "-tls".to_owned(),
        format!("-tls-ca-cert={ca}"),
        format!("-tls-client-cert={cert}"),
        format!("-tls-client-key={key}"),
    ];
    let out = probe(&tls.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_ok("mTLS port", &out);
    assert!(out.stderr.contains("status: SERVING"), "{}", out.stderr);

    // A call in flight keeps the drain going: meanwhile the probe sees NOT_SERVING (exit 4).
    let held = HeldCall::open(&grpc, &as_admin(&dir)).await;
    server.terminate().await;
    let addr = format!("-addr={health}");
    common::eventually(
        "the probe sees the drain",
        Duration::from_secs(4),
        || async {
            let out = probe(&[&addr]).await;
            out.code == Some(4) && out.stderr.contains("NOT_SERVING")
        },
    )
    .await;
    held.finish().await;
    let (status, stderr) = server.wait().await;
    assert!(status.success(), "{stderr}");
}

#[tokio::test]
async fn ghz_loads_a_server_through_reflection_and_every_call_is_ok() {
    let server = ServerProcess::calcmesh().await;
    let ghz = tool("ghz", "github.com/bojand/ghz/cmd/ghz@v0.93.0");
    let body = r#"{"num1": 10, "num2": 5, "operator": "*"}"#;
    let args = [
        "--insecure",
        "--call",
        "calculator.Calculator/Calculate",
        "-d",
        body,
        "-n",
        "500",
        "-c",
        "8",
        "--format",
        "json",
        &server.addr,
    ];
    let out = run(ghz, &args, "").await;
    assert_ok("ghz", &out);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["count"], 500, "{report}");
    assert_eq!(
        report["statusCodeDistribution"],
        serde_json::json!({"OK": 500})
    );
}
