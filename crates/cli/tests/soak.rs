//! Soak: mixed load of every RPC kind on a `calcmesh up` mesh, then the process's memory, file
//! descriptors and tasks compared with what they were after warm-up.
//!
//! 30 s in the test command; the long run is
//! `CALCMESH_SOAK_SECONDS=300 cargo test -p calcmesh-cli --test soak -- --nocapture`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_proto::calculator::{FactorizeRequest, Number, Request};
use calcmesh_proto::evaluator::EvaluateRequest;
use calcmesh_proto::evaluator::evaluator_client::EvaluatorClient;
use calcmesh_runtime::{ClientConfig, MeshChannel, Target};
use calcmesh_testkit::http_get;
use common::ServerProcess;

fn channel(target: &str) -> MeshChannel {
    let config = ClientConfig {
        idempotent: calcmesh_proto::idempotent_methods(),
        ..ClientConfig::default()
    };
    calcmesh_runtime::connect(&target.parse::<Target>().unwrap(), &config).unwrap()
}

/// One round of every RPC kind; the number of calls made, or the first unexpected error.
async fn one_of_each(
    calc: &mut CalculatorClient<MeshChannel>,
    eval: &mut EvaluatorClient<MeshChannel>,
    i: u64,
) -> Result<u64, String> {
    let x = (i % 1000) as f64;
    let err = |what: &str| {
        let what = what.to_owned();
        move |e: tonic::Status| format!("{what}: {e}")
    };
    let answer = calc
        .calculate(Request {
            num1: x,
            num2: 2.0,
            operator: "*".into(),
        })
        .await
        .map_err(err("Calculate"))?;
    assert_eq!(answer.into_inner().result, x * 2.0);
    let requests = (0..16).map(move |k| Request {
        num1: x,
        num2: k as f64,
        operator: if k == 0 { "/" } else { "+" }.into(),
    });
    let mut stream = calc
        .calculate_stream(tokio_stream::iter(requests))
        .await
        .map_err(err("CalculateStream"))?
        .into_inner();
    let mut answers = 0;
    while let Some(r) = stream.message().await.map_err(err("CalculateStream"))? {
        // The first item divides by zero: an error for that item, and the stream goes on.
        assert_eq!(r.error.is_some(), answers == 0);
        answers += 1;
    }
    assert_eq!(answers, 16);
    let numbers = (0..100).map(|v| Number { value: v as f64 });
    let summary = calc
        .summarize(tokio_stream::iter(numbers.clone()))
        .await
        .map_err(err("Summarize"))?;
    assert_eq!(summary.into_inner().count, 100);
    let mut factors = calc
        .factorize(FactorizeRequest {
            number: 600_851_475_143 + 2 * i,
        })
        .await
        .map_err(err("Factorize"))?
        .into_inner();
    while factors.message().await.map_err(err("Factorize"))?.is_some() {}
    let mut running = calc
        .running_summary(tokio_stream::iter(numbers.take(10)))
        .await
        .map_err(err("RunningSummary"))?
        .into_inner();
    while running
        .message()
        .await
        .map_err(err("RunningSummary"))?
        .is_some()
    {}
    let value = eval
        .evaluate(EvaluateRequest {
            expression: format!("({x} + 1) * (2 ^ 3) - {x} % 7"),
        })
        .await
        .map_err(err("Evaluate"))?
        .into_inner()
        .value;
    assert_eq!(value, (x + 1.0) * 8.0 - x % 7.0);
    let expressions = ["1 + 1", "2 * (3 + 4)", "1 / 0"].map(|e| EvaluateRequest {
        expression: e.into(),
    });
    let mut evaluations = eval
        .evaluate_stream(tokio_stream::iter(expressions))
        .await
        .map_err(err("EvaluateStream"))?
        .into_inner();
    while evaluations
        .message()
        .await
        .map_err(err("EvaluateStream"))?
        .is_some()
    {}
    Ok(7)
}

/// The value of a metric without labels in an exposition.
fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// Memory, file descriptors and tasks of the mesh process, from its evaluator's admin endpoint.
async fn footprint(admin: &str) -> (f64, f64, f64) {
    let (_, text) = http_get(admin, "/metrics").await;
    (
        gauge(&text, "process_resident_memory_bytes") / 1048576.0,
        gauge(&text, "process_open_fds"),
        gauge(&text, "calcmesh_runtime_alive_tasks"),
    )
}

/// Runs 8 workers of [`one_of_each`] until `seconds` pass; returns (calls, failures).
async fn load(calc: &MeshChannel, eval: &MeshChannel, seconds: u64) -> (u64, Vec<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..8u64 {
        let (stop, calls) = (stop.clone(), calls.clone());
        let mut c = CalculatorClient::new(calc.clone());
        let mut e = EvaluatorClient::new(eval.clone());
        workers.spawn(async move {
            let mut failures = Vec::new();
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                match one_of_each(&mut c, &mut e, i).await {
                    Ok(n) => calls.fetch_add(n, Ordering::Relaxed),
                    Err(failure) => {
                        failures.push(failure);
                        0
                    }
                };
                i += 8;
            }
            failures
        });
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    while let Some(done) = workers.join_next().await {
        failures.extend(done.unwrap());
    }
    (calls.load(Ordering::Relaxed), failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_leaks_nothing() {
    let seconds: u64 = std::env::var("CALCMESH_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let state = std::env::temp_dir().join(format!("calcmesh-soak-{}", std::process::id()));
    let mut mesh = ServerProcess::mesh_until(&state, "evaluator admin on ").await;
    let admin = mesh.addr.clone();
    let after = |prefix: &str| {
        mesh.lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{prefix} in {:?}", mesh.lines))
            .to_owned()
    };
    // The same connections all along, so the two footprints are comparable.
    let calculator = channel(&after("calculator 1 listening on "));
    let evaluator = channel(&after("evaluator listening on "));

    // Warm-up: a sixth of the run, at least 5 s; then the baseline, at rest.
    let warm_up = (seconds / 6).max(5);
    let (warm_calls, warm_failures) = load(&calculator, &evaluator, warm_up).await;
    assert!(warm_failures.is_empty(), "{warm_failures:?}");
    let (rss0, fds0, tasks0) = footprint(&admin).await;
    let (calls, failures) = load(&calculator, &evaluator, seconds).await;
    let (rss1, fds1, tasks1) = footprint(&admin).await;
    println!(
        "soak {seconds} s after {warm_up} s warm-up ({warm_calls} calls): {calls} calls, {} failed; \
         RSS {rss0:.1} -> {rss1:.1} MiB; open fds {fds0} -> {fds1}; tasks {tasks0} -> {tasks1}",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(calls > 100, "{calls} calls: the load ran");
    assert!(rss1 < rss0 * 1.10, "RSS grew {rss0:.1} -> {rss1:.1} MiB");
    assert!(fds1 <= fds0, "open fds grew {fds0} -> {fds1}");
    assert!(tasks1 <= tasks0, "tasks grew {tasks0} -> {tasks1}");
    mesh.terminate().await;
    let (status, _) = mesh.wait().await;
    assert!(status.success());
    let _ = std::fs::remove_dir_all(state);
}
