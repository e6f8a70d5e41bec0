//! Every calculator RPC over a real socket: a server on 127.0.0.1:0, real tonic clients.

use std::time::Duration;

use calcmesh_calculator::CalculatorService;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_proto::calculator::{FactorizeRequest, Number, Request, Response, Summary};
use calcmesh_runtime::{ClientConfig, MeshChannel, ServerConfig, Target};
use calcmesh_testkit::Running;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A calculator server on 127.0.0.1:0, with the service handle for its counters.
struct TestServer {
    service: CalculatorService,
    running: Running,
}

impl TestServer {
    async fn start(config: ServerConfig) -> Self {
        let service = CalculatorService::new();
        let server = calcmesh_calculator::mesh_server(&config, service.clone());
        Self {
            service,
            running: Running::start(server),
        }
    }

    fn channel(&self) -> MeshChannel {
        self.running.channel()
    }

    fn client(&self) -> CalculatorClient<MeshChannel> {
        CalculatorClient::new(self.channel())
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

fn req(num1: f64, operator: &str, num2: f64) -> Request {
    Request {
        num1,
        num2,
        operator: operator.into(),
    }
}

fn numbers(values: impl IntoIterator<Item = f64>) -> impl tokio_stream::Stream<Item = Number> {
    tokio_stream::iter(
        values
            .into_iter()
            .map(|value| Number { value })
            .collect::<Vec<_>>(),
    )
}

#[tokio::test]
async fn calculate_results_and_statuses() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client();
    for (r, want) in [
        (req(10.0, "+", 5.0), 15.0),
        (req(10.0, "/", 4.0), 2.5),
        (req(2.0, "^", 0.5), 2f64.sqrt()),
        (req(7.0, "%", -3.0), 1.0),
    ] {
        assert_eq!(client.calculate(r).await.unwrap().into_inner().result, want);
    }
    for (r, code, needle) in [
        (
            req(1.0, "/", 0.0),
            Code::InvalidArgument,
            "division by zero",
        ),
        (
            req(1.0, "%", 0.0),
            Code::InvalidArgument,
            "division by zero",
        ),
        (
            req(1.0, "plus", 2.0),
            Code::InvalidArgument,
            "expected one of + - * / % ^",
        ),
        (req(f64::NAN, "+", 2.0), Code::InvalidArgument, "NaN"),
        (req(1e308, "*", 10.0), Code::OutOfRange, "overflows"),
        (
            req(-8.0, "^", 1.0 / 3.0),
            Code::InvalidArgument,
            "no real result",
        ),
    ] {
        let status = client.calculate(r).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn compressed_requests_get_answers_in_kind_and_plain_ones_plain_answers() {
    let server = TestServer::start(ServerConfig::default()).await;
    // Every client accepts both encodings; only what it sends decides the answer's.
    let accepting = || {
        server
            .client()
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
    };
    for (send, answer) in [
        (Some(CompressionEncoding::Gzip), Some("gzip")),
        (Some(CompressionEncoding::Zstd), Some("zstd")),
        (None, None),
    ] {
        let mut client = match send {
            Some(encoding) => accepting().send_compressed(encoding),
            None => accepting(),
        };
        let response = client.calculate(req(6.0, "*", 7.0)).await.unwrap();
        let encoding = response.metadata().get("grpc-encoding");
        assert_eq!(
            encoding.and_then(|v| v.to_str().ok()),
            answer,
            "sent {send:?}"
        );
        assert_eq!(response.into_inner().result, 42.0);
    }
    // Streams too: every message of a gzip stream is read.
    let mut client = accepting().send_compressed(CompressionEncoding::Gzip);
    let summary = client
        .summarize(numbers((1..=1000).map(f64::from)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.count, summary.sum), (1000, 500_500.0));
    server.stop().await;
}

#[tokio::test]
async fn responses_name_the_instance_that_answered() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client();
    let response = client.calculate(req(1.0, "+", 1.0)).await.unwrap();
    let endpoint = response
        .metadata()
        .get(calcmesh_runtime::ENDPOINT_HEADER)
        .unwrap();
    assert_eq!(endpoint.to_str().unwrap(), server.running.addr.to_string());
    let status = client.calculate(req(1.0, "/", 0.0)).await.unwrap_err();
    assert_eq!(
        status
            .metadata()
            .get(calcmesh_runtime::ENDPOINT_HEADER)
            .unwrap()
            .to_str()
            .unwrap(),
        server.running.addr.to_string()
    );
    server.stop().await;
}

#[tokio::test]
async fn an_expired_deadline_is_deadline_exceeded() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client();
    // A client stream that never ends: only the deadline can finish the call.
    let (tx, rx) = mpsc::channel::<Number>(1);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.set_timeout(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let status = client.summarize(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(tx);
    server.stop().await;
}

#[tokio::test]
async fn calculate_stream_keeps_order_and_answers_errors_per_item() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client();
    let (tx, rx) = mpsc::channel(16);
    let sender = tokio::spawn(async move {
        for i in 0..2_000 {
            let r = if i % 7 == 3 {
                req(i as f64, "/", 0.0)
            } else {
                req(i as f64, "*", 2.0)
            };
            tx.send(r).await.unwrap();
        }
    });
    let mut responses = client
        .calculate_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut i = 0;
    while let Some(Response { result, error }) = responses.message().await.unwrap() {
        if i % 7 == 3 {
            let error = error.expect("division by zero answers with an item error");
            assert_eq!(error.code, Code::InvalidArgument as i32);
            assert!(error.message.contains("division by zero"));
        } else {
            assert_eq!((result, error), (i as f64 * 2.0, None), "item {i}");
        }
        i += 1;
    }
    assert_eq!(i, 2_000, "one response per request");
    sender.await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn summarize_streams_of_every_size() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client();
    let s = client
        .summarize(numbers((1..=100_000).map(f64::from)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (s.count, s.sum, s.mean, s.min, s.max),
        (100_000, 5_000_050_000.0, 50_000.5, 1.0, 100_000.0)
    );
    let want_variance = (100_000f64 * 100_000.0 - 1.0) / 12.0;
    assert!(
        (s.variance - want_variance).abs() < 1e-6 * want_variance,
        "{}",
        s.variance
    );

    let empty = client.summarize(numbers([])).await.unwrap().into_inner();
    assert_eq!(
        empty,
        Summary::default(),
        "an empty stream is a count-0 summary"
    );

    let status = client
        .summarize(numbers([1.0, 2.0, f64::NAN]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("value #3 is NaN"), "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn factorize_streams_ascending_primes() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client();
    let factors = |n| {
        let mut client = client.clone();
        async move {
            let mut stream = client
                .factorize(FactorizeRequest { number: n })
                .await?
                .into_inner();
            let mut out = Vec::new();
            while let Some(f) = stream.message().await? {
                out.push(f.prime);
            }
            Ok::<_, tonic::Status>(out)
        }
    };
    assert_eq!(
        factors(600_851_475_143).await.unwrap(),
        [71, 839, 1471, 6857]
    );
    assert_eq!(
        factors(4_294_967_291 * 4_294_967_279).await.unwrap(),
        [4_294_967_279, 4_294_967_291]
    );
    assert_eq!(
        factors(18_446_744_073_709_551_557).await.unwrap(),
        [18_446_744_073_709_551_557]
    );
    assert_eq!(factors(1 << 63).await.unwrap(), [2; 63]);
    for n in [0, 1] {
        let status = client
            .factorize(FactorizeRequest { number: n })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{n}");
    }
    server.stop().await;
}

#[tokio::test]
async fn cancelled_factorize_leaves_no_work_behind() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client();
    let mut running = server.service.factorizations();
    let mut stream = client
        .factorize(FactorizeRequest { number: 1 << 63 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().prime, 2);
    drop(stream);
    tokio::time::timeout(Duration::from_secs(5), running.wait_for(|n| *n == 0))
        .await
        .expect("the factorization ends once its client has gone")
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn running_summary_after_each_number() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client();
    let mut stream = client
        .running_summary(numbers([4.0, 8.0, 6.0]))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(s) = stream.message().await.unwrap() {
        seen.push((s.count, s.mean, s.min, s.max));
    }
    assert_eq!(
        seen,
        [(1, 4.0, 4.0, 4.0), (2, 6.0, 4.0, 8.0), (3, 6.0, 4.0, 8.0)]
    );

    let mut stream = client
        .running_summary(numbers([1.0, f64::INFINITY, 2.0]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().count, 1);
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn a_thousand_concurrent_calls_share_one_connection() {
    let server = TestServer::start(ServerConfig::default()).await;
    let client = server.client();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..1_000 {
        let mut client = client.clone();
        calls.spawn(async move { (i, client.calculate(req(i as f64, "+", 1.0)).await) });
    }
    let mut ok = 0;
    while let Some(joined) = calls.join_next().await {
        let (i, response) = joined.unwrap();
        assert_eq!(response.unwrap().into_inner().result, i as f64 + 1.0);
        ok += 1;
    }
    assert_eq!(ok, 1_000);
    assert_eq!(
        server.running.stats.connections_accepted(),
        1,
        "every call multiplexed on one HTTP/2 connection"
    );
    server.stop().await;
}

#[tokio::test]
async fn old_connections_are_closed_gracefully_and_clients_reconnect() {
    let server = TestServer::start(ServerConfig {
        max_connection_age: Some(Duration::from_millis(200)),
        max_connection_age_grace: Duration::from_secs(1),
        ..ServerConfig::default()
    })
    .await;
    // As every calcmesh client is configured: idempotent calls may be sent again. tonic keeps
    // sending on a connection after its GOAWAY, so a call can meet the hard close at the end of
    // the grace period (the health Watch holds the old connection open until then).
    let config = ClientConfig {
        idempotent: calcmesh_proto::idempotent_methods(),
        ..ClientConfig::default()
    };
    let target = Target::Endpoint(server.running.addr.to_string());
    let mut client = CalculatorClient::new(calcmesh_runtime::connect(&target, &config).unwrap());
    let stats = server.running.stats.clone();
    let mut calls = 0;
    // Each GOAWAY makes the channel connect again; no call fails across it.
    tokio::time::timeout(Duration::from_secs(10), async {
        while stats.connections_accepted() < 3 {
            let answer = client.calculate(req(calls as f64, "+", 1.0)).await.unwrap();
            assert_eq!(answer.into_inner().result, calls as f64 + 1.0);
            calls += 1;
        }
    })
    .await
    .expect("two reconnects within 10 s at a 200 ms connection age");
    assert!(calls > 2, "{calls}");
    server.stop().await;
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted() {
    let config = ServerConfig {
        max_message_size: 1024,
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let mut client = server.client();
    // Under the limit: reaches the service, which rejects the operator.
    let status = client
        .calculate(req(1.0, &"x".repeat(900), 2.0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = client
        .calculate(req(1.0, &"x".repeat(2000), 2.0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("larger than max"), "{status:?}");
    // Also inside a stream, after good items.
    let items = vec![req(1.0, "+", 1.0), req(1.0, &"y".repeat(5000), 1.0)];
    let mut stream = client
        .calculate_stream(tokio_stream::iter(items))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().result, 2.0);
    assert_eq!(
        stream.message().await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    // And the server still answers.
    assert_eq!(
        client
            .calculate(req(2.0, "*", 3.0))
            .await
            .unwrap()
            .into_inner()
            .result,
        6.0
    );
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut health = HealthClient::new(server.channel());
    for service in ["", "calculator.Calculator"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(
            status.into_inner().status(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    server
        .running
        .health
        .set_serving("calculator.Calculator", false);
    let status = health
        .check(HealthCheckRequest {
            service: "calculator.Calculator".into(),
        })
        .await
        .unwrap();
    assert_eq!(status.into_inner().status(), ServingStatus::NotServing);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(server.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "calculator.Calculator",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }

    use tonic_reflection::pb::v1alpha::ServerReflectionRequest as AlphaReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    let mut alpha = AlphaClient::new(server.channel());
    let request = AlphaReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol(
            "calculator.Calculator".into(),
        )),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert!(
        format!("{response:?}").contains("FileDescriptorResponse"),
        "{response:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_calls_in_flight() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut client = server.client();
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

    // A bidirectional call is open when the drain starts; its first answer proves the server
    // is handling it.
    let (tx, rx) = mpsc::channel(4);
    tx.send(Number { value: 1.0 }).await.unwrap();
    let mut summaries = client
        .running_summary(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summaries.message().await.unwrap().unwrap().count, 1);

    let stats = server.running.stats.clone();
    let (stop, task) = server.running.split();
    stop();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );
    assert!(
        watch.message().await.unwrap().is_none(),
        "watch streams end when the drain starts"
    );

    for value in [2.0, 3.0] {
        tx.send(Number { value }).await.unwrap();
        let summary = summaries.message().await.unwrap().unwrap();
        assert_eq!(
            summary.max, value,
            "the in-flight call keeps being served while draining"
        );
    }
    drop(tx);
    assert!(
        summaries.message().await.unwrap().is_none(),
        "the call ends cleanly"
    );
    task.await.unwrap().unwrap();
    assert_eq!(stats.connections_accepted(), 2);
}
