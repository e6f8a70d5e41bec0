//! The interop cases against grpc-go's reference interop client and server (v1.85.0), both
//! ways, in plaintext and over TLS: one test per case × direction × transport.
//!
//! - `go_client_*`: grpc-go's `interop/client` runs the case against `calcmesh-interop server`.
//! - `calcmesh_client_*`: `calcmesh-interop client` runs it against grpc-go's `interop/server`.
//!
//! TLS uses the interop test certificates as grpc-go ships them (`testdata/` in its module:
//! `server1.pem` for `*.test.google.fr`, signed by `ca.pem`), which its client trusts with
//! `--use_test_ca`; the server name override is `foo.test.google.fr`. Each server is ready when
//! it says where it listens: calcmesh's on stdout, grpc-go's in its info log. The Go binaries come from `./scripts/test`
//! (`go install google.golang.org/grpc/interop/{client,server}@v1.85.0` into
//! `target/interop/go/bin`); missing, these tests fail and say how to get them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const GRPC_GO: &str = "v1.85.0";
const SERVER_NAME: &str = "foo.test.google.fr";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// grpc-go's interop binary `name` (`client` or `server`).
fn go_binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("CALCMESH_GRPC_GO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/interop/go/bin"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test, or GOBIN={} go install google.golang.org/grpc/interop/{name}@{GRPC_GO}",
        path.display(),
        dir.display()
    );
    path
}

/// grpc-go's test certificates, in its module as `go install` downloaded it.
fn testdata(file: &str) -> PathBuf {
    let out = std::process::Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .expect("go env GOMODCACHE: is Go installed?");
    let cache = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let path = PathBuf::from(cache)
        .join(format!("google.golang.org/grpc@{GRPC_GO}/testdata"))
        .join(file);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// A server process, killed when dropped.
struct Peer {
    child: Child,
    port: u16,
}

/// `calcmesh-interop server`, ready once it printed `listening on ADDR` on stdout.
async fn calcmesh_server(tls: bool) -> Peer {
    let mut command = Command::new(env!("CARGO_BIN_EXE_calcmesh-interop"));
    command.args(["server", "--port=0"]);
    if tls {
        command.arg("--use_tls=true");
        command.arg(format!(
            "--tls_cert_file={}",
            testdata("server1.pem").display()
        ));
        command.arg(format!(
            "--tls_key_file={}",
            testdata("server1.key").display()
        ));
    }
    command.stdout(Stdio::piped());
    let mut child = command
        .kill_on_drop(true)
        .spawn()
        .expect("start calcmesh-interop server");
    let stdout = child.stdout.take().expect("piped stdout");
    let port = announced_port(stdout, "listening on ").await;
    Peer { child, port }
}

/// grpc-go's `interop/server` on a free port. With grpc-go's log at info it says
/// `interop server listening on [::]:PORT` on stderr once it has bound: its readiness signal.
async fn go_server(tls: bool) -> Peer {
    let mut command = Command::new(go_binary("server"));
    command.args(["--port=0", &format!("--use_tls={tls}")]);
    command.env("GRPC_GO_LOG_SEVERITY_LEVEL", "info");
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command
        .kill_on_drop(true)
        .spawn()
        .expect("start grpc-go's interop server");
    let stderr = child.stderr.take().expect("piped stderr");
    let port = announced_port(stderr, "interop server listening on ").await;
    Peer { child, port }
}

/// Reads `output` until a line contains `announcement` followed by an address, and returns the
/// address's port (30 s at most); keeps draining the rest so the process never blocks on it.
async fn announced_port(
    output: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    announcement: &str,
) -> u16 {
    let mut lines = BufReader::new(output).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no `{announcement}` line within 30 s"))
            .expect("read the server's output")
            .unwrap_or_else(|| panic!("the server exited before `{announcement}`"));
        if let Some((_, addr)) = line.split_once(announcement) {
            let port = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok());
            break port.unwrap_or_else(|| panic!("no port in {line:?}"));
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    port
}

/// Runs `command` to the end (2 minutes at most) and fails the test with its output unless it
/// exits 0.
async fn expect_success(what: &str, mut command: Command) {
    command.kill_on_drop(true);
    let run = tokio::time::timeout(Duration::from_secs(120), command.output());
    let out = run
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in 2 minutes"));
    let out = out.unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}).\n--- its stdout:\n{}\n--- its stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// grpc-go's client runs `case` against calcmesh's server.
async fn go_client(case: &str, tls: bool) {
    let mut server = calcmesh_server(tls).await;
    let mut command = Command::new(go_binary("client"));
    command.args([
        "--server_host=127.0.0.1".to_owned(),
        format!("--server_port={}", server.port),
        format!("--test_case={case}"),
        format!("--use_tls={tls}"),
        "--soak_iterations=10".to_owned(),
    ]);
    if tls {
        command.args([
            "--use_test_ca=true".to_owned(),
            format!("--server_host_override={SERVER_NAME}"),
        ]);
    }
    expect_success(&format!("grpc-go's interop client, case {case}"), command).await;
    assert!(
        server.child.try_wait().expect("poll the server").is_none(),
        "calcmesh's server exited during {case}"
    );
}

/// calcmesh's client runs `case` against grpc-go's server.
async fn calcmesh_client(case: &str, tls: bool) {
    let server = go_server(tls).await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_calcmesh-interop"));
    command.args([
        "client".to_owned(),
        "--server_host=127.0.0.1".to_owned(),
        format!("--server_port={}", server.port),
        format!("--test_case={case}"),
    ]);
    if tls {
        command.args([
            "--use_tls=true".to_owned(),
            "--use_test_ca=true".to_owned(),
            format!("--ca_file={}", testdata("ca.pem").display()),
            format!("--server_host_override={SERVER_NAME}"),
        ]);
    }
    expect_success(&format!("calcmesh's interop client, case {case}"), command).await;
    drop(server);
}

macro_rules! matrix {
    ($($case:ident),* $(,)?) => {
        mod go_client_calcmesh_server_plaintext {
            $(#[tokio::test] async fn $case() { super::go_client(stringify!($case), false).await })*
        }
        mod go_client_calcmesh_server_tls {
            $(#[tokio::test] async fn $case() { super::go_client(stringify!($case), true).await })*
        }
        mod calcmesh_client_go_server_plaintext {
            $(#[tokio::test] async fn $case() { super::calcmesh_client(stringify!($case), false).await })*
        }
        mod calcmesh_client_go_server_tls {
            $(#[tokio::test] async fn $case() { super::calcmesh_client(stringify!($case), true).await })*
        }
    };
}

matrix!(
    empty_unary,
    large_unary,
    client_streaming,
    server_streaming,
    ping_pong,
    empty_stream,
    timeout_on_sleeping_server,
    cancel_after_begin,
    cancel_after_first_response,
    status_code_and_message,
    special_status_message,
    unimplemented_method,
    unimplemented_service,
    custom_metadata,
    rpc_soak,
    channel_soak,
);

/// Every case the client knows is in the matrix above, and no other.
#[test]
fn the_matrix_covers_every_case() {
    let source = include_str!("grpc_go.rs");
    let start = source.find("\nmatrix!(").expect("the matrix invocation") + 1;
    let listed: Vec<&str> = source[start + 8..]
        .split(')')
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(listed, calcmesh_interop::cases::CASES);
}
