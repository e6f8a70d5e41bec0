//! The service config, applied, judged against grpc-go (v1.85.0): the same JSON is given to
//! calcmesh's client (`calcmesh bench`) and to a grpc-go client (`interop/go/calculator/calls`),
//! both calling the same `calcmesh serve calculator --fault …`. Both must make the same number of
//! attempts — counted by the server, `grpc_server_started_total` — and end with the same
//! statuses: retryPolicy, maxAttempts capped at 5, retryThrottling, pushback (stop, and retry
//! after N ms), per-method timeout and waitForReady. grpc-go has no hedging, so hedgingPolicy is
//! judged against grpc-java (`interop/java`'s `CalcCalls`) the same way.

mod common;

use std::collections::BTreeMap;

use calcmesh_testkit::http_get;
use common::{ServerProcess, root, run};
use serde_json::Value;

/// `calcmesh serve calculator` with faults, and its admin endpoint.
struct FaultyServer {
    process: ServerProcess,
    grpc: String,
    admin: String,
}

impl FaultyServer {
    async fn start(faults: &[&str]) -> Self {
        let mut args = vec![
            "serve",
            "calculator",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ];
        for fault in faults {
            args.extend(["--fault", fault]);
        }
        let process = ServerProcess::start_until(common::BIN, &args, "admin on ").await;
        let grpc = process.lines[0]
            .strip_prefix("listening on ")
            .expect("the gRPC address comes first")
            .to_owned();
        let admin = process.addr.clone();
        Self {
            process,
            grpc,
            admin,
        }
    }

    /// A counter's value on `/metrics`: the sample line starting with `prefix`.
    async fn counter(&self, prefix: &str) -> u64 {
        let (_, text) = http_get(&self.admin, "/metrics").await;
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0, |v| v.parse().unwrap())
    }

    /// Calculate attempts the server has seen.
    async fn attempts(&self) -> u64 {
        self.counter(r#"grpc_server_started_total{grpc_type="unary",grpc_service="calculator.Calculator",grpc_method="Calculate"}"#).await
    }
}

/// What one client's calls came to.
#[derive(Debug, PartialEq)]
struct Run {
    /// Calls by final status.
    status: BTreeMap<String, u64>,
    /// Attempts the server saw for them.
    attempts: u64,
    seconds: f64,
}

fn statuses(report: &Value) -> BTreeMap<String, u64> {
    report["status"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

/// `n` calls, one at a time, by calcmesh's client (`calcmesh bench`).
async fn calcmesh_calls(server: &FaultyServer, target: &str, config: &str, n: u64) -> Run {
    let before = server.attempts().await;
    let n = n.to_string();
    let args = [
        "bench",
        "--target",
        target,
        "-n",
        &n,
        "-c",
        "1",
        "--warmup",
        "0s",
        "--timeout",
        "3s",
        "--json",
        "--service-config",
        config,
    ];
    let out = common::calcmesh(&args, "").await;
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("bench --json: {e}: {}{}", out.stdout, out.stderr));
    Run {
        status: statuses(&report),
        attempts: server.attempts().await - before,
        seconds: report["seconds"].as_f64().unwrap(),
    }
}

/// `n` calls, one at a time, by grpc-go with the same config.
async fn go_calls(server: &FaultyServer, target: &str, config: &str, n: u64) -> Run {
    let program = root().join("target/interop/go/bin/calc-calls");
    assert!(
        program.exists(),
        "{} is missing: run ./scripts/test (it builds interop/go/calculator)",
        program.display()
    );
    let program = program.display().to_string();
    peer_calls(&[&program, "-timeout", "3s"], server, target, config, n).await
}

/// `n` calls, one at a time, by grpc-java with the same config (`CalcCalls`).
async fn java_calls(server: &FaultyServer, target: &str, config: &str, n: u64) -> Run {
    let jar = root().join("target/interop/java/calc-java.jar");
    assert!(
        jar.exists(),
        "{} is missing: run ./interop/setup",
        jar.display()
    );
    let jar = jar.display().to_string();
    let command = [
        "java",
        "-cp",
        &jar,
        "calcmesh.interop.CalcCalls",
        "-timeout",
        "3",
    ];
    peer_calls(&command, server, target, config, n).await
}

/// A peer's `calls` program (`command`, then the flags both peers take): its run.
async fn peer_calls(
    command: &[&str],
    server: &FaultyServer,
    target: &str,
    config: &str,
    n: u64,
) -> Run {
    let before = server.attempts().await;
    let n = n.to_string();
    let mut args = command[1..].to_vec();
    args.extend(["-target", target, "-n", &n, "-service-config", config]);
    let out = run(command[0], &args, "").await;
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{command:?}: {e}: {}{}", out.stdout, out.stderr));
    Run {
        status: statuses(&report),
        attempts: server.attempts().await - before,
        seconds: report["seconds"].as_f64().unwrap(),
    }
}

/// Both clients, `n` calls each with `config`: their runs, calcmesh's first.
async fn both(server: &FaultyServer, config: &str, n: u64) -> (Run, Run) {
    let ours = calcmesh_calls(server, &server.grpc, config, n).await;
    let go = go_calls(server, &server.grpc, config, n).await;
    (ours, go)
}

fn retry_config(max_attempts: u32, codes: &str, extra: &str) -> String {
    format!(
        r#"{{"methodConfig": [{{"name": [{{"service": "calculator.Calculator"}}],
          "retryPolicy": {{"maxAttempts": {max_attempts}, "initialBackoff": "0.001s",
            "maxBackoff": "0.002s", "backoffMultiplier": 2, "retryableStatusCodes": [{codes}]}}}}]{extra}}}"#
    )
}

fn status(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

const CALCULATE: &str = "method=/calculator.Calculator/Calculate";

#[tokio::test]
async fn retry_policy_attempts_and_statuses_match_grpc_go() {
    let server = FaultyServer::start(&[&format!("{CALCULATE},status=UNAVAILABLE")]).await;
    let cases = [
        // (config, calls, attempts the server must see for them)
        (retry_config(3, r#""UNAVAILABLE""#, ""), 4, 12),
        (retry_config(3, r#""ABORTED""#, ""), 4, 4),
        (retry_config(9, "14", ""), 2, 10), // maxAttempts is capped at 5
        // Throttling: 10 tokens, each failed attempt takes one, retries stop at 5 or fewer:
        // 3 + 2 attempts, then 1 per call.
        (
            retry_config(
                3,
                r#""UNAVAILABLE""#,
                r#", "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}"#,
            ),
            10,
            13,
        ),
    ];
    for (config, calls, attempts) in cases {
        let (ours, go) = both(&server, &config, calls).await;
        let want = status(&[("UNAVAILABLE", calls)]);
        assert_eq!(
            (&ours.status, ours.attempts),
            (&want, attempts),
            "calcmesh with {config}"
        );
        assert_eq!(
            (&go.status, go.attempts),
            (&want, attempts),
            "grpc-go with {config}"
        );
    }
}

#[tokio::test]
async fn pushback_is_obeyed_like_grpc_go() {
    let stop = FaultyServer::start(&[&format!("{CALCULATE},status=UNAVAILABLE,pushback=-1")]).await;
    let config = retry_config(4, r#""UNAVAILABLE""#, "");
    let (ours, go) = both(&stop, &config, 3).await;
    assert_eq!(ours.attempts, 3, "a negative pushback means no retry");
    assert_eq!(go.attempts, 3);
    assert_eq!(ours.status, go.status);

    let later =
        FaultyServer::start(&[&format!("{CALCULATE},status=UNAVAILABLE,pushback=150")]).await;
    let config = retry_config(3, r#""UNAVAILABLE""#, "");
    let (ours, go) = both(&later, &config, 2).await;
    assert_eq!((ours.attempts, go.attempts), (6, 6));
    // The backoff alone is at most 2 ms: four waits of 150 ms are the pushback's.
    for (who, run) in [("calcmesh", &ours), ("grpc-go", &go)] {
        assert!(run.seconds >= 0.6, "{who} waited as pushed back: {run:?}");
    }
}

#[tokio::test]
async fn a_partly_failing_server_is_hidden_by_retries_in_both() {
    let server = FaultyServer::start(&[&format!("{CALCULATE},status=UNAVAILABLE,ratio=0.5")]).await;
    let config = retry_config(5, r#""UNAVAILABLE""#, "");
    let (ours, go) = both(&server, &config, 40).await;
    // A call fails only if 5 attempts in a row do: 1 in 32.
    for (who, run) in [("calcmesh", &ours), ("grpc-go", &go)] {
        assert!(
            run.status.get("OK").copied().unwrap_or(0) >= 34,
            "{who}: {run:?}"
        );
        assert!(run.attempts > 40, "{who} retried: {run:?}");
    }
}

#[tokio::test]
async fn method_timeout_and_wait_for_ready_match_grpc_go() {
    let slow = FaultyServer::start(&[&format!("{CALCULATE},delay=400ms")]).await;
    let timeout = r#"{"methodConfig": [{"name": [{"service": "calculator.Calculator", "method": "Calculate"}], "timeout": "0.1s"}]}"#;
    let (ours, go) = both(&slow, timeout, 2).await;
    let want = status(&[("DEADLINE_EXCEEDED", 2)]);
    assert_eq!((ours.status, go.status), (want.clone(), want));

    // Nothing listens on `closed`: without waitForReady a call fails at once, UNAVAILABLE;
    // with it, the call waits for the endpoint until its deadline.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let wait = |on: bool| {
        format!(
            r#"{{"methodConfig": [{{"name": [{{}}], "timeout": "0.3s", "waitForReady": {on}}}]}}"#
        )
    };
    for (on, code) in [(false, "UNAVAILABLE"), (true, "DEADLINE_EXCEEDED")] {
        let config = wait(on);
        let ours = calcmesh_calls(&slow, &closed, &config, 1).await;
        let go = go_calls(&slow, &closed, &config, 1).await;
        assert_eq!(
            ours.status,
            status(&[(code, 1)]),
            "calcmesh, waitForReady {on}"
        );
        assert_eq!(
            go.status,
            status(&[(code, 1)]),
            "grpc-go, waitForReady {on}"
        );
    }
}

fn hedging_config(max_attempts: u32, delay: &str, non_fatal: &str) -> String {
    format!(
        r#"{{"methodConfig": [{{"name": [{{"service": "calculator.Calculator"}}],
          "hedgingPolicy": {{"maxAttempts": {max_attempts}, "hedgingDelay": "{delay}",
            "nonFatalStatusCodes": [{non_fatal}]}}}}]}}"#
    )
}

/// grpc-go has no hedging; grpc-java has. The same hedging configs given to calcmesh's client and
/// to grpc-java (`interop/java`'s `CalcCalls`) make the same copies, counted by the server, and
/// end with the same statuses.
#[tokio::test]
async fn hedging_attempts_and_statuses_match_grpc_java() {
    let slow = FaultyServer::start(&[&format!("{CALCULATE},delay=300ms")]).await;
    let failing = FaultyServer::start(&[&format!("{CALCULATE},status=UNAVAILABLE")]).await;
    let cases = [
        // (server, config, calls, attempts, final status)
        (&slow, hedging_config(3, "0.05s", ""), 4, 12, "OK"),
        (
            &failing,
            hedging_config(3, "10s", r#""ABORTED""#),
            2,
            2,
            "UNAVAILABLE",
        ),
    ];
    for (server, config, calls, attempts, code) in cases {
        let ours = calcmesh_calls(server, &server.grpc, &config, calls).await;
        let java = java_calls(server, &server.grpc, &config, calls).await;
        let want = status(&[(code, calls)]);
        assert_eq!(
            (&ours.status, ours.attempts),
            (&want, attempts),
            "calcmesh with {config}"
        );
        assert_eq!(
            (&java.status, java.attempts),
            (&want, attempts),
            "grpc-java with {config}"
        );
    }
    // The one difference, where calcmesh follows gRFC A6 ("Retryable/Non-Fatal Status Code:
    // immediately send next scheduled hedged request"): after a non-fatal status grpc-java 1.85.1
    // waits for the next hedgingDelay instead, so with a 10 s delay and a 3 s deadline its calls
    // end DEADLINE_EXCEEDED after one copy each. CONFORMANCE.md records it.
    let non_fatal = hedging_config(3, "10s", r#""UNAVAILABLE""#);
    let ours = calcmesh_calls(&failing, &failing.grpc, &non_fatal, 2).await;
    assert_eq!(
        (ours.status, ours.attempts),
        (status(&[("UNAVAILABLE", 2)]), 6)
    );
    assert!(ours.seconds < 5.0, "no copy waited out the 10 s delay");
}

#[tokio::test]
async fn hedging_sends_at_most_max_attempts_copies_and_cancels_the_losers() {
    let server = FaultyServer::start(&[&format!("{CALCULATE},delay=300ms")]).await;
    let run = calcmesh_calls(&server, &server.grpc, &hedging_config(3, "0.05s", ""), 4).await;
    assert_eq!(run.status, status(&[("OK", 4)]));
    assert_eq!(run.attempts, 12, "three copies per call, no more");
    let cancelled = r#"grpc_server_handled_total{grpc_type="unary",grpc_service="calculator.Calculator",grpc_method="Calculate",grpc_code="Canceled"}"#;
    common::eventually(
        "the losing copies end cancelled",
        std::time::Duration::from_secs(5),
        || async { server.counter(cancelled).await == 8 },
    )
    .await;

    // A non-fatal status sends the next copy at once; a fatal one ends the call.
    let failing = FaultyServer::start(&[&format!("{CALCULATE},status=UNAVAILABLE")]).await;
    let run = calcmesh_calls(
        &failing,
        &failing.grpc,
        &hedging_config(3, "10s", r#""UNAVAILABLE""#),
        2,
    )
    .await;
    assert_eq!(
        (run.status, run.attempts),
        (status(&[("UNAVAILABLE", 2)]), 6)
    );
    assert!(
        run.seconds < 5.0,
        "no copy waited for the 10 s delay: {}",
        run.seconds
    );
    let run = calcmesh_calls(
        &failing,
        &failing.grpc,
        &hedging_config(3, "10s", r#""ABORTED""#),
        2,
    )
    .await;
    assert_eq!(
        (run.status, run.attempts),
        (status(&[("UNAVAILABLE", 2)]), 2)
    );
    drop(server.process);
}

/// An evaluator over three calculators, calling them with `config` (or none).
async fn evaluator(calculators: &[FaultyServer], config: Option<&str>) -> ServerProcess {
    let target = common::ipv4_target(calculators.iter().map(|c| c.grpc.as_str()));
    let mut args = vec![
        "serve",
        "evaluator",
        "--listen",
        "127.0.0.1:0",
        "--calculator",
        &target,
        "--lb",
        "round_robin",
    ];
    if let Some(config) = config {
        args.extend(["--service-config", config]);
    }
    ServerProcess::start(common::BIN, &args).await
}

/// `calcmesh bench --rpc evaluate` against `evaluator` for `seconds`: the JSON report.
async fn bench_evaluate(evaluator: &ServerProcess, seconds: &str) -> Value {
    let args = [
        "bench",
        "--rpc",
        "evaluate",
        "--target",
        &evaluator.addr,
        "-c",
        "16",
        "-d",
        seconds,
        "--warmup",
        "0s",
        "--json",
    ];
    let out = common::calcmesh(&args, "").await;
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stderr))
}

/// The issue's worst case, exactly: under `bench --rpc evaluate -c 16`, one of three calculators
/// is frozen (SIGSTOP) for 2 s. Without hedging, the calls already sent to it wait the whole
/// freeze; with hedging (3 copies, 50 ms apart) no evaluation waits for it — none takes even
/// half the freeze — and none fails.
#[tokio::test]
async fn with_hedging_no_evaluation_waits_for_a_frozen_calculator() {
    let hedged = r#"{"methodConfig": [{"name": [{"service": "calculator.Calculator"}],
      "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.05s"}}]}"#;
    for (config, frozen_wait) in [(Some(hedged), false), (None, true)] {
        let calculators = [
            FaultyServer::start(&[]).await,
            FaultyServer::start(&[]).await,
            FaultyServer::start(&[]).await,
        ];
        let evaluator = evaluator(&calculators, config).await;
        let frozen = &calculators[0];
        let load = bench_evaluate(&evaluator, "3s");
        let chaos = async {
            let busy = || async { frozen.attempts().await > 0 };
            common::eventually(
                "load reaches the calculator",
                std::time::Duration::from_secs(5),
                busy,
            )
            .await;
            frozen.process.signal("-STOP").await;
            tokio::time::sleep(std::time::Duration::from_secs(2)).await; // the freeze itself
            frozen.process.signal("-CONT").await;
        };
        let (report, ()) = tokio::join!(load, chaos);
        let slowest_ms = report["latency_us"]["max"].as_u64().unwrap() / 1000;
        assert_eq!(report["failed"], 0, "no evaluation fails: {report}");
        if frozen_wait {
            assert!(
                slowest_ms >= 1900,
                "without hedging a call waits out the freeze: {slowest_ms} ms"
            );
        } else {
            assert!(
                slowest_ms < 1000,
                "with hedging none waits for the frozen one: {slowest_ms} ms"
            );
        }
    }
}

/// Keepalive enforcement (gRFC A8) judged by grpc-go: a grpc-go client pinging every 10 s (the
/// least it allows) with no call open is sent GOAWAY ENHANCE_YOUR_CALM "too_many_pings" by a
/// calcmesh server on its defaults (pings every 5 min at most, every 2 hours without a call),
/// and grpc-go recognises it for what it is (it says so, and doubles its keepalive time).
#[tokio::test]
async fn an_aggressive_grpc_go_keepalive_is_told_too_many_pings() {
    let server = FaultyServer::start(&[]).await;
    let program = root().join("target/interop/go/bin/calc-calls");
    let args = [
        "-target",
        server.grpc.as_str(),
        "-n",
        "1",
        "-keepalive",
        "10s",
        "-linger",
        "35s",
    ];
    let out = run(program, &args, "").await;
    assert!(
        out.stderr.contains(
            r#"Client received GoAway with error code ENHANCE_YOUR_CALM and debug data equal to ASCII "too_many_pings""#
        ),
        "grpc-go: {}",
        out.stderr
    );
}

/// A calcmesh channel pinging every second a server that allows a ping every 1.5 s, with a call
/// open that the server never answers, is sent GOAWAY ENHANCE_YOUR_CALM "too_many_pings" (the
/// call fails), doubles its keepalive time for new connections to 2 s, and on its new
/// connection is left alone: the same call held open longer than four early pings would take
/// is not ended. Then a call works.
async fn a_calcmesh_channel_told_too_many_pings_doubles_its_keepalive(server: &ServerProcess) {
    use calcmesh_proto::calculator::Request;
    use calcmesh_proto::calculator::calculator_client::CalculatorClient;
    use std::time::Duration;

    let config = calcmesh_runtime::ClientConfig {
        keepalive_interval: Duration::from_secs(1),
        ..Default::default()
    };
    let channel = calcmesh_runtime::connect(&server.addr.parse().unwrap(), &config).unwrap();
    // A stream the server never answers: only the keepalive PINGs cross the connection.
    let quiet_call = || {
        let mut client = CalculatorClient::new(channel.clone());
        async move {
            let pending = futures_util::stream::pending::<Request>();
            let mut answers = client.calculate_stream(pending).await?.into_inner();
            answers.message().await
        }
    };
    let ended = tokio::time::timeout(Duration::from_secs(20), quiet_call())
        .await
        .expect("the server ends the connection within 20 s");
    assert!(
        ended.is_err(),
        "the call ends with the connection: {ended:?}"
    );
    assert_eq!(channel.status().keepalive_time, Duration::from_secs(2));
    // At 2 s, four early pings would take 8 s.
    let held = tokio::time::timeout(Duration::from_secs(9), quiet_call()).await;
    assert!(held.is_err(), "the call is still open: {held:?}");
    assert_eq!(channel.status().keepalive_time, Duration::from_secs(2));
    let mut client = CalculatorClient::new(channel.clone());
    let request = Request {
        num1: 2.0,
        num2: 3.0,
        operator: "+".into(),
    };
    assert_eq!(
        client.calculate(request).await.unwrap().get_ref().result,
        5.0
    );
}

/// The client half of gRFC A8, judged by grpc-go's server (`-keepalive-min-time 1500ms`).
#[tokio::test]
async fn told_too_many_pings_by_grpc_go_a_calcmesh_channel_doubles_its_keepalive() {
    let program = root().join("target/interop/go/bin/calc-server");
    let args = [
        "-port",
        "0",
        "-keepalive-min-time",
        "1500ms",
        "-keepalive-permit-without-stream",
    ];
    let server = ServerProcess::start(program, &args).await;
    a_calcmesh_channel_told_too_many_pings_doubles_its_keepalive(&server).await;
}

/// Both halves of gRFC A8 in calcmesh: its client against its server
/// (`--keepalive-min-time 1500ms`).
#[tokio::test]
async fn told_too_many_pings_by_calcmesh_a_calcmesh_channel_doubles_its_keepalive() {
    let args = [
        "serve",
        "calculator",
        "--listen",
        "127.0.0.1:0",
        "--keepalive-min-time",
        "1500ms",
        "--keepalive-permit-without-calls",
    ];
    let server = ServerProcess::start(common::BIN, &args).await;
    a_calcmesh_channel_told_too_many_pings_doubles_its_keepalive(&server).await;
}
