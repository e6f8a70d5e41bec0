//! Outlier detection (gRFC A50) against real servers on 127.0.0.1:0: three calculators, one
//! SERVING but failing half its calls (a `--fault`, as `calcmesh serve --fault` injects it).
//! With `outlier_detection_experimental` its share of calls falls under 5 % within three
//! intervals, and a healthy instance in its place gets calls again once the ejection is over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use calcmesh_calculator::CalculatorService;
use calcmesh_proto::calculator::Request;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_runtime::client::ServiceConfig;
use calcmesh_runtime::server::fault::Fault;
use calcmesh_runtime::telemetry::metrics::ServerMetrics;
use calcmesh_runtime::{ClientConfig, MeshChannel, ServerConfig, Target};
use calcmesh_testkit::Running;

struct Calculator {
    running: Running,
    metrics: Arc<ServerMetrics>,
}

fn calculator(faults: &[&str], addr: &str) -> Calculator {
    let faults: Vec<Fault> = faults.iter().map(|f| f.parse().unwrap()).collect();
    let config = ServerConfig {
        faults: faults.into(),
        ..ServerConfig::default()
    };
    let server = calcmesh_calculator::mesh_server(&config, CalculatorService::new());
    let metrics = server.metrics();
    Calculator {
        running: Running::start_on(server, addr.parse().unwrap()),
        metrics,
    }
}

impl Calculator {
    /// Calculate calls this server has seen.
    fn calls(&self) -> u64 {
        let text = self.metrics.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("grpc_server_started_total") && l.contains("\"Calculate\""))
            .expect("Calculate is counted");
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }
}

const CONFIG: &str = r#"{"loadBalancingConfig": [{"outlier_detection_experimental": {
    "interval": "0.3s", "baseEjectionTime": "1s", "maxEjectionTime": "3s", "maxEjectionPercent": 34,
    "failurePercentageEjection": {"threshold": 20, "minimumHosts": 3, "requestVolume": 10},
    "childPolicy": [{"round_robin": {}}]}}]}"#;

fn channel(calculators: &[&Calculator]) -> MeshChannel {
    let target = Target::Static(calculators.iter().map(|c| c.running.addr).collect());
    let config = ClientConfig {
        service_config: Some(Arc::new(ServiceConfig::parse("test", CONFIG).unwrap())),
        ..ClientConfig::default()
    };
    calcmesh_runtime::connect(&target, &config).unwrap()
}

/// Calls in a loop from two tasks until `stop`.
fn load(channel: &MeshChannel, stop: Arc<AtomicBool>) {
    for _ in 0..2 {
        let mut client = CalculatorClient::new(channel.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = client.calculate(six_times_seven()).await;
            }
        });
    }
}

fn six_times_seven() -> Request {
    Request {
        num1: 6.0,
        num2: 7.0,
        operator: "*".into(),
    }
}

/// `n` calls, one after another: how many failed.
async fn calls(channel: &MeshChannel, n: usize) -> usize {
    let mut client = CalculatorClient::new(channel.clone());
    let mut failed = 0;
    for _ in 0..n {
        failed += usize::from(client.calculate(six_times_seven()).await.is_err());
    }
    failed
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_then_taken_back_once_healthy() {
    let healthy = [
        calculator(&[], "127.0.0.1:0"),
        calculator(&[], "127.0.0.1:0"),
    ];
    let faulty = calculator(&["status=INTERNAL,ratio=0.5"], "127.0.0.1:0");
    let channel = channel(&[&healthy[0], &healthy[1], &faulty]);
    let stop = Arc::new(AtomicBool::new(false));
    load(&channel, stop.clone());
    let ejected = channel.wait_for_endpoints(|c| c.ejected == 1);
    tokio::time::timeout(Duration::from_millis(900 + 300), ejected)
        .await
        .expect("ejected within three intervals (and one of slack)");
    stop.store(true, Ordering::Relaxed);

    // The next 300 calls, within the ejection (1 s): the faulty endpoint gets none of them.
    let before = [healthy[0].calls(), healthy[1].calls(), faulty.calls()];
    let failed = calls(&channel, 300).await;
    let share = faulty.calls() - before[2];
    assert!(
        (share as f64) < 0.05 * 300.0,
        "the ejected endpoint got {share} of 300 calls"
    );
    assert!(
        failed <= share as usize,
        "only its calls could fail: {failed}"
    );

    // The same address, healthy now: back in rotation once the ejection is over.
    let addr = faulty.running.addr.to_string();
    faulty.running.stop().await;
    let replacement = calculator(&[], &addr);
    let back = channel.wait_for_endpoints(|c| c.eligible == 3 && c.ejected == 0);
    tokio::time::timeout(Duration::from_secs(10), back)
        .await
        .expect("back in rotation after the ejection time");
    assert_eq!(calls(&channel, 30).await, 0);
    assert!(replacement.calls() > 0, "the replacement takes calls");
    for c in healthy.into_iter().chain([replacement]) {
        c.running.stop().await;
    }
}
