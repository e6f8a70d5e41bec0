//! `calcmesh serve` and `calcmesh up` as processes: the drain on SIGTERM, a whole mesh, what
//! the logs may and must say, the admin endpoint's metrics and readiness, one trace across
//! services, and the plaintext health port.

mod common;

use calcmesh_proto::calculator::Number;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_proto::evaluator::EvaluateRequest;
use calcmesh_proto::evaluator::evaluator_client::EvaluatorClient;
use tokio_stream::wrappers::ReceiverStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use calcmesh_testkit::http_get;
use common::{HeldCall, ServerProcess, calcmesh};

#[tokio::test]
async fn sigterm_drains_calls_in_flight_then_exits_zero() {
    let mut server = ServerProcess::calcmesh().await;
    let mut health = HealthClient::new(server.channel());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "calculator.Calculator".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    let mut client = CalculatorClient::new(server.channel());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(Number { value: 1.0 }).await.unwrap();
    let mut summaries = client
        .running_summary(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        summaries.message().await.unwrap().unwrap().count,
        1,
        "the call is in flight"
    );

    server.terminate().await;
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::NotServing,
        "health says NOT_SERVING while draining"
    );
    for value in [2.0, 3.0] {
        tx.send(Number { value }).await.unwrap();
        assert_eq!(summaries.message().await.unwrap().unwrap().max, value);
    }
    drop(tx);
    assert!(summaries.message().await.unwrap().is_none());

    let (status, stderr) = server.wait().await;
    assert!(status.success(), "exit status {status:?}\n{stderr}");
    assert!(
        stderr.contains("SIGTERM received") && stderr.contains("drained"),
        "{stderr}"
    );
}

#[tokio::test]
async fn up_runs_a_mesh_that_answers_then_stops_cleanly() {
    let state = std::env::temp_dir().join(format!("calcmesh-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let mut mesh = ServerProcess::mesh(&state).await;
    let addrs = |marker: &str| -> Vec<String> {
        mesh.lines
            .iter()
            .filter_map(|l| {
                l.strip_prefix("calculator ")?
                    .split_once(marker)
                    .map(|(_, a)| a.to_owned())
            })
            .collect()
    };
    let (plain, tls) = (addrs(" listening on "), addrs(" mutual TLS on "));
    assert_eq!((plain.len(), tls.len()), (3, 3), "{:?}", mesh.lines);
    let e = mesh.addr.clone();

    let out = calcmesh(
        &["eval", "--target", &e, "--steps", "(2 + 3) * (7 - 1) ^ 2"],
        "",
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "180");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["step", "operation", "result", "endpoint"]
    );
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    for row in &lines[2..] {
        let endpoint = row.split_whitespace().last().unwrap();
        assert!(
            tls.iter().any(|c| c == endpoint),
            "the evaluator calls the mutual-TLS ports: {row}"
        );
    }
    // The original contract, in plaintext on the first calculator.
    let out = calcmesh(&["calc", "--target", &plain[0], "10", "+", "5"], "").await;
    assert_eq!(out.stdout, "15\n");
    // The TLS ports: admin gets in with the certificates `up` made; a plaintext client does not.
    let certs = state.join("certs");
    let file = |f: &str| certs.join(f).display().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("admin.pem"), file("admin.key"));
    let out = calcmesh(
        &[
            "calc", "--target", &tls[1], "--ca", &ca, "--cert", &cert, "--key", &key, "6", "*", "7",
        ],
        "",
    )
    .await;
    assert_eq!(out.stdout, "42\n", "{}", out.stderr);
    let out = calcmesh(&["calc", "--target", &tls[1], "6", "*", "7"], "").await;
    assert!(
        out.stderr.starts_with("error: UNAVAILABLE"),
        "{}",
        out.stderr
    );

    let out = calcmesh(&["eval", "--target", &e, "1 / (2 - 2)"], "").await;
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "error: INVALID_ARGUMENT: step 2 (1 / 0) failed: division by zero in /\n"
    );
    let out = calcmesh(&["eval", "--target", &e, "--stream"], "1 + 1\n(2\n3 * 3\n").await;
    assert_eq!(
        out.stdout,
        "2\nerror: INVALID_ARGUMENT: cannot parse the expression: '(' at character 1 is never closed\n9\n"
    );

    mesh.terminate().await;
    let (status, stderr) = mesh.wait().await;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("mesh stopped"), "{stderr}");
    let _ = std::fs::remove_dir_all(&state);
}

#[tokio::test]
async fn no_private_key_material_reaches_the_logs() {
    let pki = std::env::temp_dir().join(format!("calcmesh-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&pki);
    let out = calcmesh(&["certs", "init", "--dir", pki.to_str().unwrap()], "").await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!out.stdout.contains("PRIVATE KEY") && !out.stderr.contains("PRIVATE KEY"));
    let file = |f: &str| pki.join(f).display().to_string();
    let (ca, cert, key) = (
        file("ca.pem"),
        file("calculator.pem"),
        file("calculator.key"),
    );
    let mut calculator = ServerProcess::start_with_env(
        common::BIN,
        &[
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
        ],
        &[("CALCMESH_LOG", "debug")],
    )
    .await;
    let (ecert, ekey) = (file("evaluator.pem"), file("evaluator.key"));
    let target = calculator.addr.clone();
    let mut evaluator = ServerProcess::start_with_env(
        common::BIN,
        &[
            "serve",
            "evaluator",
            "--listen",
            "127.0.0.1:0",
            "--calculator",
            &target,
            "--ca",
            &ca,
            "--cert",
            &ecert,
            "--key",
            &ekey,
        ],
        &[("CALCMESH_LOG", "debug")],
    )
    .await;
    let out = calcmesh(&["eval", "--target", &evaluator.addr, "1 + 2"], "").await;
    assert_eq!(out.stdout, "3\n", "{}", out.stderr);
    let key_body: String = std::fs::read_to_string(pki.join("evaluator.key"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    for server in [&mut evaluator, &mut calculator] {
        server.terminate().await;
    }
    for server in [evaluator, calculator] {
        let (_, logs) = server.wait().await;
        assert!(logs.contains("listening"), "debug logs were captured");
        assert!(
            !logs.contains("PRIVATE KEY") && !logs.contains(&key_body),
            "key material in the logs:\n{logs}"
        );
    }
    let _ = std::fs::remove_dir_all(&pki);
}

#[tokio::test]
async fn admin_endpoint_metrics_parse_and_readyz_fails_while_draining() {
    let mut server = ServerProcess::start_until(
        common::BIN,
        &[
            "serve",
            "calculator",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--grace-period",
            "5s",
        ],
        "admin on ",
    )
    .await;
    let grpc = server.lines[0]
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let admin = server.addr.clone();
    calcmesh(&["calc", "--target", &grpc, "1", "+", "1"], "").await;
    calcmesh(&["calc", "--target", &grpc, "1", "/", "0"], "").await;

    let (status, text) = http_get(&admin, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert!(text.contains(r#"grpc_code="InvalidArgument""#), "{text}");
    // A real parser (Python's prometheus_client, OpenMetrics flavour) reads it all.
    let names = metric_families(&text).await;
    for name in [
        "grpc_server_started",
        "grpc_server_handled",
        "grpc_server_msg_received",
        "grpc_server_msg_sent",
        "grpc_server_handling_seconds",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert!(http_get(&admin, "/readyz").await.0.contains("200"));

    // A call in flight keeps the drain going; meanwhile /readyz says 503.
    let held = HeldCall::open_plain(&grpc).await;
    server.terminate().await;
    let admin_addr = admin.clone();
    common::eventually(
        "/readyz turns 503 while draining",
        std::time::Duration::from_secs(5),
        || {
            let admin = admin_addr.clone();
            async move { http_get(&admin, "/readyz").await.0.contains("503") }
        },
    )
    .await;
    held.finish().await;
    let (status, _) = server.wait().await;
    assert!(status.success());
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let mut server = ServerProcess::start(
        common::BIN,
        &[
            "--log-format",
            "json",
            "serve",
            "calculator",
            "--listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    server.terminate().await;
    let (status, stderr) = server.wait().await;
    assert!(status.success());
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "listening" && l["level"] == "INFO"),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("drained"))),
        "{stderr}"
    );
}

/// The metric families in an exposition, as a real parser reads it (Python's
/// prometheus_client, OpenMetrics flavour); fails if it does not parse.
async fn metric_families(text: &str) -> Vec<String> {
    let script = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\nprint(' '.join(sorted({f.name for f in parse(sys.stdin.read())})))";
    let python = common::root().join(".venv/bin/python");
    let out = common::run(&python, &["-c", script], text).await;
    assert_eq!(out.code, Some(0), "{}\n{text}", out.stderr);
    out.stdout.split_whitespace().map(str::to_owned).collect()
}

/// Every JSON log line of a finished server process.
async fn json_lines(server: ServerProcess) -> Vec<serde_json::Value> {
    let (status, stderr) = server.wait().await;
    assert!(status.success(), "{stderr}");
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The trace ids of the `calcmesh::rpc` spans in `lines` that served `method`.
fn trace_ids(lines: &[serde_json::Value], method: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l["spans"].as_array())
        .flatten()
        .filter(|s| s["name"] == "rpc" && s["method"] == method)
        .filter_map(|s| s["trace_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn one_trace_id_across_the_evaluator_and_every_calculator() {
    let rpc_logs = [
        ("CALCMESH_LOG", "info,calcmesh::rpc=debug"),
        ("CALCMESH_LOG_FORMAT", "json"),
    ];
    let calculator = async || {
        ServerProcess::start_with_env(
            common::BIN,
            &["serve", "calculator", "--listen", "127.0.0.1:0"],
            &rpc_logs,
        )
        .await
    };
    let (mut a, mut b) = (calculator().await, calculator().await);
    let target = format!("ipv4:{},{}", a.addr, b.addr);
    let mut evaluator = ServerProcess::launch(
        common::BIN,
        &[
            "serve",
            "evaluator",
            "--listen",
            "127.0.0.1:0",
            "--calculator",
            &target,
            "--lb",
            "round_robin",
            "--admin",
            "127.0.0.1:0",
        ],
        "admin on ",
        &rpc_logs,
    )
    .await;
    let admin = evaluator.addr.clone();
    evaluator.addr = evaluator.lines[0]
        .strip_prefix("listening on ")
        .expect("`listening on` comes first")
        .to_owned();

    let channel = evaluator.channel();
    let mut client = EvaluatorClient::new(channel);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(EvaluateRequest {
        expression: "(1 + 2) * (3 + 4) - 5".into(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let evaluation = client.evaluate(request).await.unwrap().into_inner();
    assert_eq!(evaluation.value, 16.0);
    // A second evaluation without trace context starts a trace of its own.
    client
        .evaluate(EvaluateRequest {
            expression: "2 * 2".into(),
        })
        .await
        .unwrap();

    // The evaluator's exposition, client metrics and endpoint metrics included, parses with a
    // real OpenMetrics parser.
    let (_, text) = http_get(&admin, "/metrics").await;
    let names = metric_families(&text).await;
    for name in [
        "grpc_client_handled",
        "grpc_server_handled",
        "calcmesh_client_endpoints",
        "calcmesh_client_endpoint_ejections",
        "calcmesh_client_discovery_last_update_timestamp_seconds",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }

    for server in [&mut evaluator, &mut a, &mut b] {
        server.terminate().await;
    }
    let evaluator = json_lines(evaluator).await;
    let evaluations = trace_ids(&evaluator, "/calcmesh.evaluator.v1.Evaluator/Evaluate");
    assert!(evaluations.iter().any(|t| t == trace), "{evaluations:?}");
    let other = evaluations
        .iter()
        .find(|t| *t != trace)
        .expect("the second evaluation has its own trace id")
        .clone();
    let mut seen = Vec::new();
    for calculator in [a, b] {
        let ids = trace_ids(
            &json_lines(calculator).await,
            "/calculator.Calculator/Calculate",
        );
        // Round robin over two: each computed part of the first evaluation.
        assert!(ids.iter().any(|t| t == trace), "{ids:?}");
        seen.extend(ids);
    }
    // 4 steps under the caller's trace, 1 under the second evaluation's, and nothing else.
    assert_eq!(seen.iter().filter(|t| *t == trace).count(), 4, "{seen:?}");
    assert_eq!(seen.iter().filter(|t| **t == other).count(), 1, "{seen:?}");
    assert_eq!(seen.len(), 5, "{seen:?}");
}

#[tokio::test]
async fn a_plaintext_health_port_reports_serving_then_the_drain() {
    let mut server = ServerProcess::start_until(
        common::BIN,
        &[
            "serve",
            "calculator",
            "--listen",
            "127.0.0.1:0",
            "--health-listen",
            "127.0.0.1:0",
            "--grace-period",
            "5s",
        ],
        "health on ",
    )
    .await;
    let grpc = server.lines[0]
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let health_channel =
        calcmesh_runtime::connect(&server.addr.parse().unwrap(), &Default::default()).unwrap();
    let mut health = HealthClient::new(health_channel.clone());
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    let status = health.check(check("calculator.Calculator")).await.unwrap();
    assert_eq!(status.into_inner().status(), ServingStatus::Serving);
    // Nothing but health there.
    let calc = CalculatorClient::new(health_channel)
        .calculate(calcmesh_proto::calculator::Request {
            num1: 1.0,
            num2: 1.0,
            operator: "+".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(calc.code(), tonic::Code::Unimplemented, "{calc}");

    // A call in flight keeps the drain going; the health port says NOT_SERVING meanwhile.
    let mut watch = health.watch(check("")).await.unwrap().into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    let held = HeldCall::open_plain(&grpc).await;
    server.terminate().await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), watch.message())
        .await
        .expect("the health port reports the drain")
        .unwrap()
        .unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    held.finish().await;
    let (status, _) = server.wait().await;
    assert!(status.success());
}
