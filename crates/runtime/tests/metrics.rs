//! The metrics a known mix of calls leaves, read from the admin endpoint over HTTP.

use std::time::Duration;

use calcmesh_calculator::CalculatorService;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_proto::calculator::{FactorizeRequest, Number, Request};
use std::sync::Arc;

use calcmesh_runtime::admin::Admin;
use calcmesh_runtime::client::ClientMetrics;
use calcmesh_runtime::{ClientConfig, LbPolicy, Server, ServerConfig, Target};
use calcmesh_testkit::{Running, http_get};

/// The sum of the samples of `name` whose labels include every pair in `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[tokio::test]
async fn a_known_mix_of_calls_shows_exactly() {
    let config = ServerConfig::default();
    let server = calcmesh_calculator::mesh_server(&config, CalculatorService::new());
    let admin = Admin::new().server(&server);
    let health = server.health();
    let running = Running::start(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(admin.serve(listener, std::future::pending()));

    let mut client = CalculatorClient::new(running.channel());
    let calc = |a: f64, op: &str, b: f64| Request {
        num1: a,
        num2: b,
        operator: op.into(),
    };
    for r in [
        calc(1.0, "+", 1.0),
        calc(2.0, "*", 3.0),
        calc(9.0, "-", 1.0),
    ] {
        client.calculate(r).await.unwrap();
    }
    for r in [
        calc(1.0, "/", 0.0),
        calc(1.0, "?", 1.0),
        calc(1e308, "*", 10.0),
    ] {
        client.calculate(r).await.unwrap_err();
    }
    let numbers =
        |v: &[f64]| tokio_stream::iter(v.iter().map(|&value| Number { value }).collect::<Vec<_>>());
    client
        .summarize(numbers(&[1.0, 2.0, 3.0, 4.0]))
        .await
        .unwrap();
    let mut factors = client
        .factorize(FactorizeRequest { number: 12 })
        .await
        .unwrap()
        .into_inner();
    while factors.message().await.unwrap().is_some() {}

    let (status, text) = http_get(&admin_addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let calculate = [
        ("grpc_service", "calculator.Calculator"),
        ("grpc_method", "Calculate"),
        ("grpc_type", "unary"),
    ];
    assert_eq!(
        sample(&text, "grpc_server_started_total", &calculate),
        6.0,
        "{text}"
    );
    let with = |code| {
        [
            calculate[0],
            calculate[1],
            calculate[2],
            ("grpc_code", code),
        ]
    };
    assert_eq!(sample(&text, "grpc_server_handled_total", &with("OK")), 3.0);
    assert_eq!(
        sample(&text, "grpc_server_handled_total", &with("InvalidArgument")),
        2.0
    );
    assert_eq!(
        sample(&text, "grpc_server_handled_total", &with("OutOfRange")),
        1.0
    );
    assert_eq!(
        sample(&text, "grpc_server_msg_received_total", &calculate),
        6.0
    );
    assert_eq!(sample(&text, "grpc_server_msg_sent_total", &calculate), 3.0);
    assert_eq!(
        sample(&text, "grpc_server_handling_seconds_count", &calculate),
        6.0,
        "the histogram counts every call"
    );

    let summarize = [("grpc_method", "Summarize"), ("grpc_type", "client_stream")];
    assert_eq!(
        sample(&text, "grpc_server_msg_received_total", &summarize),
        4.0
    );
    assert_eq!(sample(&text, "grpc_server_msg_sent_total", &summarize), 1.0);
    let factorize = [("grpc_method", "Factorize"), ("grpc_type", "server_stream")];
    assert_eq!(
        sample(&text, "grpc_server_msg_sent_total", &factorize),
        3.0,
        "2, 2, 3"
    );
    assert_eq!(
        sample(
            &text,
            "grpc_server_handled_total",
            &[factorize[0], ("grpc_code", "OK")]
        ),
        1.0
    );

    assert!(http_get(&admin_addr, "/healthz").await.0.contains("200"));
    assert!(http_get(&admin_addr, "/readyz").await.0.contains("200"));
    health.drain();
    assert!(
        http_get(&admin_addr, "/readyz").await.0.contains("503"),
        "not ready while draining"
    );
    tokio::time::timeout(Duration::from_secs(10), running.stop())
        .await
        .unwrap();
}

fn calculator() -> Server {
    calcmesh_calculator::mesh_server(&ServerConfig::default(), CalculatorService::new())
}

async fn serve_admin(admin: Admin) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(admin.serve(listener, std::future::pending()));
    addr
}

#[tokio::test]
async fn client_metrics_count_calls_by_code_and_eject_a_dead_endpoint() {
    let running = Running::start(calculator());
    // A port with nobody listening: bind one, then let it go.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let target = Target::Static(vec![dead, running.addr]);
    let metrics = Arc::new(ClientMetrics::new(&[calcmesh_proto::FILE_DESCRIPTOR_SET]));
    let channel = calcmesh_runtime::connect(
        &target,
        &ClientConfig {
            metrics: Some(metrics),
            policy: LbPolicy::RoundRobin,
            idempotent: calcmesh_proto::idempotent_methods(),
            ..ClientConfig::default()
        },
    )
    .unwrap();
    let admin = serve_admin(Admin::new().client(&channel)).await;

    let mut client = CalculatorClient::new(channel.clone());
    let calc = |a: f64, op: &str, b: f64| Request {
        num1: a,
        num2: b,
        operator: op.into(),
    };
    for _ in 0..4 {
        client.calculate(calc(1.0, "+", 1.0)).await.unwrap();
    }
    client.calculate(calc(1.0, "/", 0.0)).await.unwrap_err();
    tokio::time::timeout(
        Duration::from_secs(10),
        channel.wait_for_endpoints(|c| c.down == 1),
    )
    .await
    .expect("the dead endpoint is marked down");

    let (status, text) = http_get(&admin, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let calculate = [("grpc_method", "Calculate"), ("grpc_type", "unary")];
    assert_eq!(sample(&text, "grpc_client_started_total", &calculate), 5.0);
    let with = |code| [calculate[0], calculate[1], ("grpc_code", code)];
    assert_eq!(
        sample(&text, "grpc_client_handled_total", &with("OK")),
        4.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "grpc_client_handled_total", &with("InvalidArgument")),
        1.0
    );
    assert_eq!(sample(&text, "grpc_client_msg_sent_total", &calculate), 5.0);
    assert_eq!(
        sample(&text, "grpc_client_handling_seconds_count", &calculate),
        5.0
    );
    let dead = dead.to_string();
    assert_eq!(
        sample(
            &text,
            "calcmesh_client_endpoint_ejections_total",
            &[("endpoint", &dead)]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "calcmesh_client_endpoints", &[("state", "down")]),
        1.0
    );
    assert_eq!(
        sample(&text, "calcmesh_client_endpoints", &[("state", "eligible")]),
        1.0
    );
    assert_eq!(
        sample(&text, "calcmesh_client_endpoint_outstanding", &[]),
        0.0,
        "nothing in flight"
    );
    assert!(sample(&text, "calcmesh_client_discovery_updates_total", &[]) >= 1.0);
    // One endpoint still takes calls: ready.
    assert!(http_get(&admin, "/readyz").await.0.contains("200"));
    tokio::time::timeout(Duration::from_secs(10), running.stop())
        .await
        .unwrap();
}

#[tokio::test]
async fn readyz_fails_while_a_client_has_no_endpoint_that_takes_calls() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let channel = calcmesh_runtime::connect(
        &Target::Endpoint(dead.to_string()),
        &ClientConfig::default(),
    )
    .unwrap();
    let server = calculator();
    let admin = serve_admin(Admin::new().server(&server).client(&channel)).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        channel.wait_for_endpoints(|c| c.down == 1),
    )
    .await
    .expect("the only endpoint is marked down");
    let (status, body) = http_get(&admin, "/readyz").await;
    assert!(status.contains("503"), "{status}");
    assert!(
        body.contains(&format!("no endpoint of {dead} can take calls: 1 known")),
        "{body}"
    );
    assert!(
        http_get(&admin, "/healthz").await.0.contains("200"),
        "the process is still alive"
    );
}

/// A client inventing method paths cannot grow the server's metrics without bound: past 64
/// paths no descriptor describes, calls count under `other`, and every call is still counted.
#[tokio::test]
async fn invented_paths_share_one_other_series_after_the_first_64() {
    use tower::ServiceExt;
    let server = calculator();
    let admin_addr = serve_admin(Admin::new().server(&server)).await;
    let running = Running::start(server);
    let channel = running.channel();
    let invented = 200;
    for i in 0..invented {
        let request = http::Request::post(format!("http://calcmesh/invented.Service{i}/Method"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::empty())
            .unwrap();
        let response = channel.clone().oneshot(request).await.unwrap();
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    }
    let (_, text) = http_get(&admin_addr, "/metrics").await;
    let series = text
        .lines()
        .filter(|l| l.starts_with("grpc_server_started_total{") && l.contains("invented.Service"))
        .count();
    assert_eq!(
        series, 64,
        "one series each for the first 64 invented paths"
    );
    let other = sample(
        &text,
        "grpc_server_started_total",
        &[("grpc_service", "other")],
    );
    assert_eq!(other, f64::from(invented - 64), "the rest counted as other");
    tokio::time::timeout(Duration::from_secs(10), running.stop())
        .await
        .unwrap();
}
