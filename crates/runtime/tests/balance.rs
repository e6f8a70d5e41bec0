//! The balancer against real servers on 127.0.0.1:0: how calls spread, and how health moves
//! endpoints in and out of rotation.

use std::time::Duration;

use calcmesh_calculator::CalculatorService;
use calcmesh_proto::calculator::Request;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_runtime::{ClientConfig, LbPolicy, MeshChannel, Server, ServerConfig, Target};
use calcmesh_testkit::{Intercept, Running};

struct Instance {
    running: Running,
    service: CalculatorService,
}

fn instance(delay: Option<Duration>) -> Instance {
    let config = ServerConfig::default();
    let service = CalculatorService::new();
    let grpc = calcmesh_calculator::server(service.clone(), config.max_message_size);
    let server = match delay {
        Some(delay) => Server::new(config).add_service(Intercept::new(grpc).delay(delay)),
        None => Server::new(config).add_service(grpc),
    };
    Instance {
        running: Running::start(server),
        service,
    }
}

fn channel(instances: &[Instance], policy: LbPolicy) -> MeshChannel {
    let target = Target::Static(instances.iter().map(|i| i.running.addr).collect());
    let config = ClientConfig {
        policy,
        idempotent: calcmesh_proto::idempotent_methods(),
        ..ClientConfig::default()
    };
    calcmesh_runtime::connect(&target, &config).unwrap()
}

fn add(i: usize) -> Request {
    Request {
        num1: i as f64,
        num2: 1.0,
        operator: "+".into(),
    }
}

/// `calls` calls from `workers` concurrent tasks; every one must succeed.
async fn load(channel: &MeshChannel, calls: usize, workers: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let mut client = CalculatorClient::new(channel.clone());
        tasks.spawn(async move {
            for i in (w..calls).step_by(workers) {
                let r = client.calculate(add(i)).await.expect("every call succeeds");
                assert_eq!(r.into_inner().result, i as f64 + 1.0);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

async fn stop(instances: Vec<Instance>) {
    for i in instances {
        i.running.stop().await;
    }
}

#[tokio::test]
async fn round_robin_gives_each_instance_a_third() {
    let instances: Vec<_> = (0..3).map(|_| instance(None)).collect();
    let channel = channel(&instances, LbPolicy::RoundRobin);
    load(&channel, 3_000, 1).await;
    for i in &instances {
        let n = i.service.calculations();
        assert!(
            (990..=1010).contains(&n),
            "{}: {n} of 3000 calls, expected 1000 ± 1 %",
            i.running.addr
        );
        assert_eq!(
            i.running.stats.connections_accepted(),
            1,
            "one connection per endpoint"
        );
    }
    stop(instances).await;
}

#[tokio::test]
async fn least_request_sends_less_to_a_slow_instance() {
    let instances = vec![
        instance(None),
        instance(None),
        // 20 ms: well above what a loaded 2-core machine adds to every call (with 5 ms, the
        // other tests of this binary running beside it made the fast ones nearly as slow, and
        // one run in a fresh clone gave the slow one 688 calls to the fast ones' 1 156).
        instance(Some(Duration::from_millis(20))),
    ];
    let channel = channel(&instances, LbPolicy::LeastRequest);
    load(&channel, 3_000, 16).await;
    let counts: Vec<u64> = instances.iter().map(|i| i.service.calculations()).collect();
    let fast = (counts[0] + counts[1]) / 2;
    assert_eq!(counts.iter().sum::<u64>(), 3_000);
    // Round robin would give each 1 000; P2C over outstanding calls gives the slow one far
    // less.
    assert!(
        counts[2] * 2 < fast,
        "the instance 20 ms slower gets under half a fast one's calls: {counts:?}"
    );
    stop(instances).await;
}

#[tokio::test]
async fn not_serving_leaves_the_rotation_within_a_second() {
    let instances: Vec<_> = (0..3).map(|_| instance(None)).collect();
    let channel = channel(&instances, LbPolicy::RoundRobin);
    load(&channel, 30, 1).await;
    assert!(instances.iter().all(|i| i.service.calculations() > 0));

    instances[0].running.health.set_serving("", false);
    // Readiness: the client's endpoint-change signal, bounded by the 1 s the issue allows.
    let seen = tokio::time::timeout(
        Duration::from_secs(1),
        channel.wait_for_endpoints(|c| c.not_serving == 1),
    )
    .await;
    assert!(
        seen.is_ok(),
        "NOT_SERVING seen within 1 s: {:?}",
        channel.endpoints()
    );
    let before = instances[0].service.calculations();
    load(&channel, 300, 4).await;
    assert_eq!(
        instances[0].service.calculations(),
        before,
        "no calls to a NOT_SERVING instance"
    );

    instances[0].running.health.set_serving("", true);
    let back = tokio::time::timeout(
        Duration::from_secs(5),
        channel.wait_for_endpoints(|c| c.eligible == 3),
    )
    .await;
    assert!(back.is_ok(), "SERVING again: {:?}", channel.endpoints());
    load(&channel, 30, 1).await;
    assert!(
        instances[0].service.calculations() > before,
        "back in rotation"
    );
    stop(instances).await;
}

#[tokio::test]
async fn a_stopped_instance_costs_no_failed_call() {
    let mut instances: Vec<_> = (0..3).map(|_| instance(None)).collect();
    let channel = channel(&instances, LbPolicy::LeastRequest);
    load(&channel, 300, 4).await;
    // Drain one instance: its health turns NOT_SERVING and its listener closes.
    let gone = instances.remove(1);
    gone.running.stop().await;
    load(&channel, 1_000, 8).await;
    assert_eq!(channel.endpoints().eligible, 2, "{:?}", channel.endpoints());
    stop(instances).await;
}

#[tokio::test]
async fn nothing_to_call_is_unavailable_and_says_why() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let channel =
        calcmesh_runtime::connect(&Target::Static(vec![addr]), &ClientConfig::default()).unwrap();
    let status = CalculatorClient::new(channel)
        .calculate(add(1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("onnection refused") || status.source_chain_has_refused(),
        "{status:?}"
    );
}

trait RefusedInChain {
    fn source_chain_has_refused(&self) -> bool;
}

impl RefusedInChain for tonic::Status {
    fn source_chain_has_refused(&self) -> bool {
        calcmesh_runtime::error::chain(self)
            .skip(1)
            .any(|e| e.to_string().contains("onnection refused"))
    }
}

/// A channel configured by a gRPC service config instead of flags.
fn configured(instances: &[Instance], json: &str) -> MeshChannel {
    let target = Target::Static(instances.iter().map(|i| i.running.addr).collect());
    let config = ClientConfig {
        service_config: Some(std::sync::Arc::new(
            calcmesh_runtime::client::ServiceConfig::parse("test", json).unwrap(),
        )),
        ..ClientConfig::default()
    };
    calcmesh_runtime::connect(&target, &config).unwrap()
}

#[tokio::test]
async fn a_service_config_chooses_the_policy_over_the_flags() {
    let instances: Vec<_> = (0..3).map(|_| instance(None)).collect();
    // pick_first: every call to the first endpoint of the list.
    let json = r#"{"loadBalancingConfig": [{"unknown_policy": {}}, {"pick_first": {}}]}"#;
    load(&configured(&instances, json), 300, 4).await;
    let counts: Vec<u64> = instances.iter().map(|i| i.service.calculations()).collect();
    assert_eq!(counts, [300, 0, 0]);
    // round_robin: each in turn.
    let json = r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#;
    load(&configured(&instances, json), 300, 1).await;
    let counts: Vec<u64> = instances.iter().map(|i| i.service.calculations()).collect();
    assert_eq!(counts, [400, 100, 100]);
    stop(instances).await;
}

#[tokio::test]
async fn a_method_timeout_from_the_service_config_bounds_calls_without_a_deadline() {
    // An instance that takes 300 ms per call, and a config that gives Calculate 50 ms.
    let instances = vec![instance(Some(Duration::from_millis(300)))];
    let json = r#"{"methodConfig": [
        {"name": [{"service": "calculator.Calculator", "method": "Calculate"}], "timeout": "0.05s"},
        {"name": [{}], "timeout": "10s"}]}"#;
    let mut client = CalculatorClient::new(configured(&instances, json));
    let started = std::time::Instant::now();
    let status = client.calculate(add(1)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // A caller's own deadline, shorter still, stands.
    let mut request = tonic::Request::new(add(1));
    request.set_timeout(Duration::from_millis(10));
    let status = client.calculate(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    stop(instances).await;
}

#[tokio::test]
async fn wait_for_ready_waits_for_a_server_that_starts_later() {
    // A port with nothing on it yet (bound to learn a free one, then let go).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let connect = |json: &str| {
        let config = ClientConfig {
            service_config: Some(std::sync::Arc::new(
                calcmesh_runtime::client::ServiceConfig::parse("test", json).unwrap(),
            )),
            ..ClientConfig::default()
        };
        calcmesh_runtime::connect(&Target::Static(vec![addr]), &config).unwrap()
    };
    let request = || {
        let mut request = tonic::Request::new(add(1));
        request.set_timeout(Duration::from_secs(10));
        request
    };
    // Without waitForReady the call fails at once: nothing listens.
    let mut plain = CalculatorClient::new(connect("{}"));
    let status = plain.calculate(request()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    // With it, the call waits for the endpoint, through the server's start.
    let json = r#"{"methodConfig": [{"name": [{}], "waitForReady": true}]}"#;
    let mut waiting = CalculatorClient::new(connect(json));
    let mut call = tokio::spawn(async move { waiting.calculate(request()).await });
    let early = tokio::time::timeout(Duration::from_millis(300), &mut call).await;
    assert!(
        early.is_err(),
        "the call waited instead of failing: {early:?}"
    );
    let server =
        calcmesh_calculator::mesh_server(&ServerConfig::default(), CalculatorService::new());
    let running = Running::start_on(server, addr);
    let answer = call.await.unwrap().expect("answered once the server is up");
    assert_eq!(answer.into_inner().result, 2.0);
    running.stop().await;
}

/// A health service that refuses every watch after its response headers (the status in the
/// trailers, no update before it), as connect-go's reference server answers a call it does not
/// expect.
struct RefusingHealth;

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for RefusingHealth {
    async fn check(
        &self,
        _: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        Err(tonic::Status::permission_denied("no health for you"))
    }

    type WatchStream = futures_util::stream::Once<
        std::future::Ready<Result<tonic_health::pb::HealthCheckResponse, tonic::Status>>,
    >;

    async fn watch(
        &self,
        _: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        let refusal = Err(tonic::Status::permission_denied("no health for you"));
        Ok(tonic::Response::new(futures_util::stream::once(
            std::future::ready(refusal),
        )))
    }
}

#[tokio::test]
async fn a_health_watch_refused_in_its_trailers_takes_the_endpoint_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(tonic_health::pb::health_server::HealthServer::new(
                RefusingHealth,
            ))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel =
        calcmesh_runtime::connect(&Target::Static(vec![addr]), &ClientConfig::default()).unwrap();
    let down = tokio::time::timeout(
        Duration::from_secs(5),
        channel.wait_for_endpoints(|c| c.down == 1),
    )
    .await;
    assert!(
        down.is_ok(),
        "refused health: down {:?}",
        channel.endpoints()
    );
    let status = CalculatorClient::new(channel)
        .calculate(add(1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("no health for you"), "{status:?}");
    server.abort();
}
