//! The metrics a known mix of calls leaves, read from the admin endpoint over HTTP.

use std::time::Duration;

use calcmesh_calculator::CalculatorService;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_proto::calculator::{FactorizeRequest, Number, Request};
use calcmesh_runtime::{Server, ServerConfig};
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
    let server = Server::new(config.clone())
        .add_service(calcmesh_calculator::server(
            CalculatorService::new(),
            config.max_message_size,
        ))
        .add_descriptors(calcmesh_proto::FILE_DESCRIPTOR_SET);
    let (metrics, health) = (server.metrics(), server.health());
    let running = Running::start(server);
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap().to_string();
    tokio::spawn(calcmesh_runtime::metrics::serve_admin(
        admin,
        metrics,
        health.clone(),
        std::future::pending(),
    ));

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
