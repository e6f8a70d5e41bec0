//! Every way a connection can fail, one case per row, each against a real server over a real
//! socket (our own calculators with TLS or without, an HTTP/1 server, a port that closes at
//! once, an HTTP/2 server that answers 404 or GOAWAY): `calcmesh calc` must print the cause and
//! what fixes it — never only "connection closed" — and, where the server is ours, its log must
//! say its side of the same failure, with the peer's address.

mod common;

use std::path::{Path, PathBuf};

use common::{BIN, ServerProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Certificates made by `calcmesh certs init` (`--days=-1` for expired ones).
async fn certs(name: &str, days: Option<&str>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("calcmesh-connerr-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_arg = dir.to_str().unwrap();
    let init = common::calcmesh(&["certs", "init", "--dir", dir_arg], "").await;
    assert_eq!(init.code, Some(0), "{}", init.stderr);
    if let Some(days) = days {
        let args = ["certs", "init", "--dir", dir_arg, days];
        let expired = common::calcmesh(&args, "").await;
        assert_eq!(expired.code, Some(0), "{}", expired.stderr);
    }
    dir
}

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// A calculator serving mutual TLS with `server`'s certificate, trusting clients of `clients`.
async fn tls_calculator(server: &Path, clients: &Path, extra: &[&str]) -> ServerProcess {
    let (cert, key, ca) = (
        file(server, "calculator.pem"),
        file(server, "calculator.key"),
        file(clients, "ca.pem"),
    );
    let mut args = vec![
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
    ];
    args.extend_from_slice(extra);
    ServerProcess::launch(BIN, &args, "listening on ", &[("CALCMESH_LOG", "info")]).await
}

/// `calcmesh calc --target ADDR ARGS… 1 + 1`: what it printed on stderr, once it failed.
async fn calc(addr: &str, args: &[&str]) -> String {
    let mut all = vec!["calc", "--target", addr, "--connect-timeout", "2s"];
    all.extend_from_slice(args);
    all.extend(["1", "+", "1"]);
    let out = common::calcmesh(&all, "").await;
    assert_ne!(out.code, Some(0), "the call succeeded: {}", out.stdout);
    out.stderr
}

/// The client said `message` about `addr`, and nothing vaguer.
fn says(stderr: &str, addr: &str, message: &str) {
    assert!(
        stderr.contains(&format!("{addr}: {message}")),
        "expected `{addr}: {message}` in:\n{stderr}"
    );
    for vague in ["connection closed", "operation was canceled", "broken pipe"] {
        assert!(!stderr.contains(vague), "`{vague}` in:\n{stderr}");
    }
    in_docs(message);
}

/// The table "When the connection fails" of `docs/errors.md` shows `message` as the CLI prints
/// it.
fn in_docs(message: &str) {
    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md");
    let page = std::fs::read_to_string(page).expect("docs/errors.md");
    let table = page
        .split("## When the connection fails")
        .nth(1)
        .and_then(|rest| rest.split("\n#").next())
        .expect("docs/errors.md has a section `## When the connection fails`");
    assert!(
        table.contains(message),
        "docs/errors.md's table `When the connection fails` should show `{message}` as the CLI prints it"
    );
}

/// The server logged `why` for a peer on loopback (at info, as its handshake failed).
async fn logged(server: &ServerProcess, why: &str) {
    common::eventually_explained(
        "the server's side in its log",
        std::time::Duration::from_secs(5),
        || async { server.logs().contains(why) && server.logs().contains("peer=127.0.0.1:") },
        || format!("expected {why:?} in:\n{}", server.logs()),
    )
    .await;
}

/// `--ca` of `ca`, and the `admin` client certificate of `dir`.
fn with_client(dir: &Path, ca: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec!["--ca".into(), file(ca, "ca.pem")];
    args.extend(["--cert".into(), file(dir, "admin.pem")]);
    args.extend(["--key".into(), file(dir, "admin.key")]);
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn a_plaintext_client_at_a_tls_server_is_told_to_pass_ca() {
    let pki = certs("plain-to-tls", None).await;
    let server = tls_calculator(&pki, &pki, &[]).await;
    let stderr = calc(&server.addr, &[]).await;
    says(
        &stderr,
        &server.addr,
        "the server requires TLS, and this client connected without it: pass --ca FILE (and --cert and --key where the server asks for a client certificate)",
    );
    logged(
        &server,
        "a client without TLS (it sent the HTTP/2 preface in plaintext)",
    )
    .await;
}

#[tokio::test]
async fn a_tls_client_at_a_plaintext_server_is_told_to_leave_out_ca() {
    let pki = certs("tls-to-plain", None).await;
    let args = [
        "serve",
        "calculator",
        "--listen",
        "127.0.0.1:0",
        "--insecure",
    ];
    let server = ServerProcess::launch(BIN, &args, "listening on ", &[]).await;
    let stderr = calc(&server.addr, &["--ca", &file(&pki, "ca.pem")]).await;
    says(
        &stderr,
        &server.addr,
        "the server answered the TLS handshake with something that is not TLS: it serves without TLS, so leave out --ca, --cert and --key",
    );
    logged(&server, "a TLS client on a port without TLS").await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_told_to_pass_cert_and_key() {
    let pki = certs("no-client-cert", None).await;
    let server = tls_calculator(&pki, &pki, &[]).await;
    let stderr = calc(&server.addr, &["--ca", &file(&pki, "ca.pem")]).await;
    says(
        &stderr,
        &server.addr,
        "the server requires a client certificate and none was sent: pass --cert FILE --key FILE (mutual TLS)",
    );
    logged(
        &server,
        "the client sent no certificate, and this server requires one",
    )
    .await;
}

#[tokio::test]
async fn a_client_certificate_of_another_ca_is_refused_and_said_so() {
    let (pki, other) = (certs("ca-a", None).await, certs("ca-b", None).await);
    let server = tls_calculator(&pki, &pki, &[]).await;
    let stderr = calc(&server.addr, &strs(&with_client(&other, &pki))).await;
    says(
        &stderr,
        &server.addr,
        "the server refused this client's certificate (TLS alert DecryptError): it is not signed by a CA the server trusts (the server's --client-ca)",
    );
    logged(
        &server,
        "the client's certificate is not signed by a CA in --client-ca",
    )
    .await;
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused_and_said_so() {
    let (pki, expired) = (
        certs("good", None).await,
        certs("expired-client", Some("--days=-1")).await,
    );
    let server = tls_calculator(&pki, &expired, &[]).await;
    let stderr = calc(&server.addr, &strs(&with_client(&expired, &pki))).await;
    says(
        &stderr,
        &server.addr,
        "the server refused this client's certificate: it has expired (make a new one: calcmesh certs)",
    );
    logged(&server, "the client's certificate has expired").await;
}

#[tokio::test]
async fn a_server_certificate_of_another_ca_is_refused_and_said_so() {
    let (pki, other) = (
        certs("server-ca", None).await,
        certs("other-ca", None).await,
    );
    let server = tls_calculator(&pki, &pki, &[]).await;
    let stderr = calc(&server.addr, &strs(&with_client(&pki, &other))).await;
    says(
        &stderr,
        &server.addr,
        "the server's certificate is not signed by the CA this client trusts (--ca): pass the CA that signed it",
    );
    logged(&server, "the client refused this server's certificate").await;
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused_and_said_so() {
    let expired = certs("expired-server", Some("--days=-1")).await;
    let server = tls_calculator(&expired, &expired, &[]).await;
    let stderr = calc(&server.addr, &strs(&with_client(&expired, &expired))).await;
    says(
        &stderr,
        &server.addr,
        "the server's certificate has expired: the server needs a new one (calcmesh certs)",
    );
    logged(
        &server,
        "the client refused this server's certificate: it has expired (--tls-cert)",
    )
    .await;
}

#[tokio::test]
async fn a_server_certificate_for_other_names_lists_its_names() {
    let pki = certs("names", None).await;
    let server = tls_calculator(&pki, &pki, &[]).await;
    let mut args = with_client(&pki, &pki);
    args.extend(["--tls-server-name".into(), "calculator.example".into()]);
    let stderr = calc(&server.addr, &strs(&args)).await;
    says(
        &stderr,
        &server.addr,
        "the server's certificate names localhost, 127.0.0.1, not calculator.example: connect by one of those names, or pass --tls-server-name NAME",
    );
}

#[tokio::test]
async fn an_identity_the_policy_does_not_admit_is_named_with_the_method() {
    let pki = certs("policy", None).await;
    let allow = [
        "--allow",
        "spiffe://calcmesh/evaluator=/calculator.Calculator/",
    ];
    let server = tls_calculator(&pki, &pki, &allow).await;
    let stderr = calc(&server.addr, &strs(&with_client(&pki, &pki))).await;
    let denied =
        "PERMISSION_DENIED: spiffe://calcmesh/admin may not call /calculator.Calculator/Calculate";
    assert!(stderr.contains(denied), "{stderr}");
    in_docs(denied);
}

/// A loopback listener that answers every connection with `answer` (after reading what the
/// client sent first), then closes it.
async fn answering(answer: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !answer.is_empty() {
                    let mut first = [0; 64];
                    let _ = conn.read(&mut first).await;
                    let _ = conn.write_all(answer).await;
                }
                let _ = conn.shutdown().await;
                let mut rest = [0; 1024];
                while matches!(conn.read(&mut rest).await, Ok(1..)) {}
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_http1_server_is_named_as_such() {
    let addr =
        answering(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
    let stderr = calc(&addr, &[]).await;
    says(
        &stderr,
        &addr,
        "the server is an HTTP/1 server, not gRPC (which needs HTTP/2): check the port",
    );
}

#[tokio::test]
async fn a_port_that_closes_at_once_is_said_to() {
    let addr = answering(b"").await;
    let stderr = calc(&addr, &[]).await;
    says(
        &stderr,
        &addr,
        "the server closed the connection before the HTTP/2 handshake: not a gRPC server? (if it serves TLS, pass --ca FILE)",
    );
}

#[tokio::test]
async fn a_server_that_says_goaway_is_quoted() {
    // SETTINGS, then GOAWAY ENHANCE_YOUR_CALM with debug data, as an overloaded server might.
    const GOAWAY: &[u8] = b"\0\0\0\x04\0\0\0\0\0\0\0\x11\x07\0\0\0\0\0\0\0\0\0\0\0\0\x0bslow down";
    let addr = answering(GOAWAY).await;
    let stderr = calc(&addr, &[]).await;
    says(
        &stderr,
        &addr,
        r#"the server closed the connection with GOAWAY ENHANCE_YOUR_CALM: "slow down""#,
    );
}

#[tokio::test]
async fn a_refused_connection_says_nothing_listens() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let stderr = calc(&addr, &[]).await;
    says(
        &stderr,
        &addr,
        "connection refused: nothing listens there (is the server running, on this port?)",
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_says_so() {
    // `.invalid` never resolves (RFC 2606).
    let addr = "calculator.invalid:50051";
    let stderr = calc(addr, &[]).await;
    says(
        &stderr,
        addr,
        "the host name does not resolve (DNS): check the host in --target",
    );
}

/// An HTTP/2 server that answers every request with `status` and an HTML body, as a proxy or a
/// web server on the wrong port does.
async fn http2_answering(status: u16) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut h2) = h2::server::handshake(conn).await else {
                    return;
                };
                while let Some(Ok((_, mut respond))) = h2.accept().await {
                    let response = http::Response::builder()
                        .status(status)
                        .header("content-type", "text/html")
                        .body(())
                        .unwrap();
                    if let Ok(mut body) = respond.send_response(response, false) {
                        let _ = body.send_data(bytes::Bytes::from_static(b"<html></html>"), true);
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_http_status_instead_of_grpc_maps_as_the_spec_says() {
    for (status, reason, code) in [
        (404, "Not Found", "UNIMPLEMENTED"),
        (503, "Service Unavailable", "UNAVAILABLE"),
        (403, "Forbidden", "PERMISSION_DENIED"),
    ] {
        let addr = http2_answering(status).await;
        let stderr = calc(&addr, &[]).await;
        let message = format!(
            "the server answered HTTP {status} {reason} (text/html), not gRPC: is a proxy or a web server at this address, or does the server not serve this method?"
        );
        assert!(
            stderr.contains(&format!("error: {code}: ")) && stderr.contains(&message),
            "HTTP {status}: expected {code} and `{message}` in:\n{stderr}"
        );
        if status == 404 {
            in_docs(&message); // the table's row shows the first
        }
    }
}

/// The evaluator's channel says the same: its log once per connection, `/api/mesh` (what the
/// dashboard shows), `calcmesh_client_endpoint_down` with the reason, and channelz (the
/// subchannel's trace, as grpc-go's own channelz client reads it).
#[tokio::test]
async fn the_evaluators_channel_shows_the_cause_in_its_log_api_and_metrics() {
    let pki = certs("evaluator", None).await;
    let server = tls_calculator(&pki, &pki, &[]).await;
    let args = [
        "serve",
        "evaluator",
        "--listen",
        "127.0.0.1:0",
        "--insecure",
        "--admin",
        "127.0.0.1:0",
        "--channelz",
        "--calculator",
        &server.addr,
    ];
    let log = [("CALCMESH_LOG", "info")];
    let evaluator = ServerProcess::launch(BIN, &args, "admin on ", &log).await;
    let message = "the server requires TLS, and this client connected without it: pass --ca FILE";
    let down = format!(
        "calcmesh_client_endpoint_down{{target=\"{}\",endpoint=\"{}\",reason=\"tls_required\"}} 1",
        server.addr, server.addr
    );
    common::eventually_explained(
        "the endpoint down, with its reason, in /metrics and /api/mesh",
        std::time::Duration::from_secs(10),
        || async {
            let (_, metrics) = calcmesh_testkit::http_get(&evaluator.addr, "/metrics").await;
            let (_, mesh) = calcmesh_testkit::http_get(&evaluator.addr, "/api/mesh").await;
            metrics.contains(&down)
                && mesh.contains(r#""reason":"tls_required""#)
                && mesh.contains(message)
        },
        || evaluator.logs(),
    )
    .await;
    assert!(evaluator.logs().contains(message), "{}", evaluator.logs());
    let grpc = (evaluator.lines.iter())
        .find_map(|l| l.strip_prefix("listening on "))
        .expect("the evaluator's address");
    let reader = common::root().join("target/interop/go/bin/calc-channelz");
    let out = common::run(reader, &["-target", grpc], "").await;
    assert_eq!(out.code, Some(0), "calc-channelz: {}", out.stderr);
    let z: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let sub = &z["channels"][0]["subchannels"][0]["subchannel"]["data"];
    assert_eq!(sub["state"]["state"], "TRANSIENT_FAILURE", "{z}");
    let event = &sub["trace"]["events"][0];
    assert_eq!(event["severity"], "CT_ERROR", "{z}");
    let description = event["description"].as_str().unwrap_or_default();
    assert!(
        description.starts_with(&format!("connection failed: {message}")),
        "{z}"
    );
}

#[tokio::test]
async fn a_server_that_takes_no_connection_in_time_is_a_connect_timeout() {
    // A listener with a backlog of one that never accepts, its backlog taken: the kernel leaves
    // further connections unanswered, as a host behind a firewall that drops packets does.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut held = Vec::new();
    while let Ok(Ok(conn)) = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    {
        held.push(conn);
        assert!(held.len() < 10, "the backlog never filled");
    }
    let mut all = vec!["calc", "--target", &addr, "--connect-timeout", "1s"];
    all.extend(["1", "+", "1"]);
    let out = common::calcmesh(&all, "").await;
    says(
        &out.stderr,
        &addr,
        "no connection within the connect timeout (--connect-timeout): a host down, or a firewall dropping packets",
    );
    drop((held, listener));
}

/// A calculator serving gRPC only (no `--grpc-web`), in plaintext on loopback.
async fn grpc_only_calculator() -> ServerProcess {
    let args = ["serve", "calculator", "--listen", "127.0.0.1:0"];
    ServerProcess::launch(BIN, &args, "listening on ", &[]).await
}

#[tokio::test]
async fn grpc_web_over_http1_to_a_grpc_only_server_is_told_to_use_http2() {
    let server = grpc_only_calculator().await;
    let stderr = calc(&server.addr, &["--protocol", "grpc-web-http1"]).await;
    says(
        &stderr,
        &server.addr,
        "the server speaks HTTP/2 only, not the HTTP/1.1 of --protocol grpc-web-http1: call it with --protocol grpc-web or grpc (a calcmesh server takes HTTP/1.1 with --grpc-web)",
    );
}

#[tokio::test]
async fn grpc_web_to_a_grpc_only_server_is_told_to_use_grpc() {
    let server = grpc_only_calculator().await;
    let stderr = calc(&server.addr, &["--protocol", "grpc-web"]).await;
    let message = "the server answered a gRPC-Web call with HTTP 415 Unsupported Media Type as gRPC, not gRPC-Web: it does not serve gRPC-Web; call it with --protocol grpc, or serve gRPC-Web there (calcmesh serve … --grpc-web)";
    assert!(
        stderr.contains(&format!("error: UNKNOWN: {message}")),
        "expected UNKNOWN and `{message}` in:\n{stderr}"
    );
    in_docs(message);
}
