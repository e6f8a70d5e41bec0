//! The `calcmesh` client commands and tools as a user runs them, against a real server process:
//! every client command, its errors, `--help`, and `bench`. (Server behaviour — drain, `up`,
//! logs, metrics, traces, the health port — is in `server.rs`.)

mod common;

use common::{ServerProcess, calcmesh};

#[tokio::test]
async fn every_client_command_against_a_server_process() {
    let mut server = ServerProcess::calcmesh().await;
    let t = server.addr.clone();
    let run = async |args: &[&str]| {
        let mut all = vec![args[0], "--target", &t];
        all.extend_from_slice(&args[1..]);
        calcmesh(&all, "").await
    };

    let out = run(&["calc", "10", "+", "5"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "15\n"));
    let out = run(&["calc", "-3", "^", "2"]).await;
    assert_eq!(
        out.stdout, "9\n",
        "negative numbers need no `--`: {}",
        out.stderr
    );

    // The same calls under a service config (a file, as a Go client would take it).
    let file = common::root().join("target/cli-test-service-config.json");
    std::fs::write(&file, r#"{"loadBalancingConfig": [{"pick_first": {}}], "methodConfig": [{"name": [{}], "timeout": "5s"}]}"#).unwrap();
    let config = file.display().to_string();
    let out = run(&["calc", "--service-config", &config, "6", "*", "7"]).await;
    assert_eq!(out.stdout, "42\n", "{}", out.stderr);

    for compression in ["gzip", "zstd", "identity"] {
        let out = run(&["calc", "--compression", compression, "6", "*", "7"]).await;
        assert_eq!(
            out.stdout, "42\n",
            "--compression {compression}: {}",
            out.stderr
        );
        let out = run(&["factorize", "--compression", compression, "600851475143"]).await;
        assert_eq!(out.stdout, "71\n839\n1471\n6857\n", "{}", out.stderr);
    }

    let out = run(&["calc", "1", "/", "0"]).await;
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr,
        "error: INVALID_ARGUMENT: division by zero in /\n"
    );
    let out = run(&["calc", "1e308", "*", "10"]).await;
    assert_eq!(
        out.stderr,
        "error: OUT_OF_RANGE: result of 1e308 * 10 overflows a 64-bit float\n"
    );

    let out = calcmesh(
        &["calc", "--target", &t, "--stream"],
        "1 + 2\n4 / 0\n\n2 ^ 10\n",
    )
    .await;
    assert_eq!(
        out.stdout,
        "3\nerror: INVALID_ARGUMENT: division by zero in /\n1024\n"
    );
    assert_eq!(out.code, Some(1), "a failed item makes the exit status 1");
    let out = calcmesh(&["calc", "--target", &t, "--stream"], "1 + 2\nnot a line\n").await;
    assert!(
        out.stderr.contains("stdin line 2: expected `NUM1 OP NUM2`"),
        "{}",
        out.stderr
    );
    assert_ne!(out.code, Some(0));

    let out = run(&["summarize", "1", "2", "3", "4"]).await;
    assert_eq!(
        out.stdout,
        "count=4 sum=10 mean=2.5 min=1 max=4 variance=1.25\n"
    );
    let out = calcmesh(&["summarize", "--target", &t], "").await;
    assert_eq!(out.stdout, "count=0 sum=0 mean=0 min=0 max=0 variance=0\n");
    let out = calcmesh(&["summarize", "--target", &t, "--running"], "2\n4\n").await;
    assert_eq!(
        out.stdout,
        "count=1 sum=2 mean=2 min=2 max=2 variance=0\ncount=2 sum=6 mean=3 min=2 max=4 variance=1\n"
    );

    let out = run(&["factorize", "600851475143"]).await;
    assert_eq!(out.stdout, "71\n839\n1471\n6857\n");
    let out = run(&["factorize", "1"]).await;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            Some(1),
            "error: INVALID_ARGUMENT: 1 has no prime factorization: give a number >= 2\n"
        )
    );

    server.terminate().await;
    let (status, _) = server.wait().await;
    assert!(status.success());
}

#[tokio::test]
async fn client_errors_are_clear() {
    let out = calcmesh(&["calc", "--target", "nowhere", "1", "+", "1"], "").await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("has no port") && out.stderr.contains("accepted forms"),
        "{}",
        out.stderr
    );

    // Port 1 on loopback: nothing listens there in a test sandbox.
    let out = calcmesh(&["calc", "--target", "127.0.0.1:1", "1", "+", "1"], "").await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.starts_with("error: UNAVAILABLE: ") && out.stderr.contains("onnection refused"),
        "{}",
        out.stderr
    );

    // A service config that cannot be used is refused before any call, naming the JSON path.
    let bad = r#"{"methodConfig": [{"name": [{}], "timeout": "5"}]}"#;
    let out = calcmesh(&["calc", "--service-config", bad, "1", "+", "1"], "").await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains(
            "--service-config: service config at methodConfig[0].timeout: \"5\" is not a duration"
        ),
        "{}",
        out.stderr
    );
    let out = calcmesh(
        &["calc", "--service-config", "/no/such.json", "1", "+", "1"],
        "",
    )
    .await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("cannot read /no/such.json"),
        "{}",
        out.stderr
    );

    let out = calcmesh(&["calc", "--compression", "br", "1", "+", "1"], "").await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr
            .contains("unknown compression \"br\": use gzip, zstd or identity"),
        "{}",
        out.stderr
    );

    let out = calcmesh(&["serve", "calculator", "--listen", "not-an-address"], "").await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("--listen"), "{}", out.stderr);

    let out = calcmesh(
        &[
            "serve",
            "calculator",
            "--listen",
            "127.0.0.1:0",
            "--keepalive-interval",
            "500ms",
        ],
        "",
    )
    .await;
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr
            .contains("--keepalive-interval 500ms: expected 1s to 9h 6m 7s"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn help_names_every_environment_variable() {
    let out = calcmesh(&["serve", "calculator", "--help"], "").await;
    for var in [
        "CALCMESH_LISTEN",
        "CALCMESH_MAX_MESSAGE_SIZE",
        "CALCMESH_GRACE_PERIOD",
        "CALCMESH_MAX_CONCURRENT_STREAMS",
    ] {
        assert!(
            out.stdout.contains(var),
            "{var} missing from:\n{}",
            out.stdout
        );
    }
    let out = calcmesh(&["calc", "--help"], "").await;
    assert!(
        out.stdout.contains("CALCMESH_TARGET") && out.stdout.contains("[default: 127.0.0.1:50051]"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn bench_reports_sane_numbers() {
    let server = ServerProcess::calcmesh().await;
    let run = async |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--target",
            &server.addr,
            "--json",
            "-c",
            "4",
            "-d",
            "1s",
            "--warmup",
            "200ms",
        ];
        args.extend_from_slice(extra);
        let out = calcmesh(&args, "").await;
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()
    };
    for rpc in ["calculate", "calculate-stream"] {
        let report = run(&["--rpc", rpc]).await;
        let requests = report["requests"].as_u64().unwrap();
        assert!(requests > 0, "{report}");
        assert_eq!(report["failed"], 0, "{report}");
        assert_eq!(report["status"]["OK"].as_u64(), Some(requests), "{report}");
        let l = &report["latency_us"];
        let (p50, p99, max) = (
            l["p50"].as_u64().unwrap(),
            l["p99"].as_u64().unwrap(),
            l["max"].as_u64().unwrap(),
        );
        assert!(0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    }
    // Open loop: about the asked rate (a loose bound: this checks the scheduler, not speed).
    let report = run(&["--rps", "200"]).await;
    let requests = report["requests"].as_u64().unwrap();
    assert!(
        (100..=300).contains(&requests),
        "{requests} calls in 1 s at 200/s: {report}"
    );
}

/// `calcmesh … | head` closes stdout early: the command ends quietly with 141 (as SIGPIPE
/// ends other tools), not with a panic. The pipe's reader is closed before the start, so the
/// first line written meets it closed.
#[tokio::test]
async fn a_closed_stdout_ends_a_command_quietly() {
    let server = ServerProcess::calcmesh().await;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = tokio::process::Command::new(common::BIN)
        .args(["calc", "--target", &server.addr, "6", "*", "7"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `bench --new-connection`: every call on a connection of its own, as the server counts them.
#[tokio::test]
async fn bench_with_a_new_connection_per_call() {
    let service = calcmesh_calculator::CalculatorService::new();
    let config = calcmesh_runtime::ServerConfig::default();
    let server =
        calcmesh_testkit::Running::start(calcmesh_calculator::mesh_server(&config, service));
    let addr = server.addr.to_string();
    let args = ["bench", "--target", &addr, "--new-connection", "-c", "2"];
    let fixed = ["-n", "20", "--warmup", "0s", "--json"];
    let out = calcmesh(&[&args[..], &fixed[..]].concat(), "").await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["ok"].as_u64(), Some(20), "{report}");
    assert_eq!(report["new_connection_per_call"], true, "{report}");
    assert_eq!(server.stats.connections_accepted(), 20);
    let stream = calcmesh(
        &[
            "bench",
            "--target",
            &addr,
            "--new-connection",
            "--rpc",
            "calculate-stream",
        ],
        "",
    )
    .await;
    assert_eq!(stream.code, Some(1));
    assert!(
        stream
            .stderr
            .contains("--new-connection makes one connection per call"),
        "{}",
        stream.stderr
    );
    server.stop().await;
}
