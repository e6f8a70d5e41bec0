//! The service config's retryPolicy and hedgingPolicy against real servers on 127.0.0.1:0: what
//! each attempt carries, and when the call is answered. (Parity with grpc-go, with faults
//! injected into a real calcmesh process, is in `crates/cli/tests/service_config.rs`.)

use std::sync::Arc;
use std::time::Duration;

use calcmesh_calculator::CalculatorService;
use calcmesh_proto::calculator::Request;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_runtime::client::ServiceConfig;
use calcmesh_runtime::{ClientConfig, MeshChannel, Server, ServerConfig, Target};
use calcmesh_testkit::{Intercept, Recorded, Running};

/// A calculator whose first `failures` calls fail with `code`, recording every call's
/// `grpc-previous-rpc-attempts`.
fn failing_at_first(failures: usize, code: tonic::Code) -> (Running, Recorded) {
    let config = ServerConfig::default();
    let grpc = calcmesh_calculator::server(CalculatorService::new(), config.max_message_size);
    let seen = Recorded::default();
    let service = Intercept::new(grpc)
        .fail_first(failures, code)
        .record_header("grpc-previous-rpc-attempts", seen.clone());
    (
        Running::start(Server::new(config).add_service(service)),
        seen,
    )
}

fn configured(running: &[&Running], json: &str) -> MeshChannel {
    let target = Target::Static(running.iter().map(|r| r.addr).collect());
    let config = ClientConfig {
        service_config: Some(Arc::new(ServiceConfig::parse("test", json).unwrap())),
        ..ClientConfig::default()
    };
    calcmesh_runtime::connect(&target, &config).unwrap()
}

const RETRY_UNAVAILABLE: &str = r#"{"methodConfig": [{"name": [{"service": "calculator.Calculator"}],
  "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.01s",
                  "backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#;

fn ten_times_five() -> Request {
    Request {
        num1: 10.0,
        num2: 5.0,
        operator: "*".into(),
    }
}

fn seen(recorded: &Recorded) -> Vec<Option<String>> {
    recorded.lock().unwrap().clone()
}

#[tokio::test]
async fn a_retryable_failure_is_tried_again_saying_how_many_attempts_went_before() {
    let (server, recorded) = failing_at_first(2, tonic::Code::Unavailable);
    let mut client = CalculatorClient::new(configured(&[&server], RETRY_UNAVAILABLE));
    let answer = client.calculate(ten_times_five()).await.unwrap();
    assert_eq!(answer.into_inner().result, 50.0);
    assert_eq!(
        seen(&recorded),
        [None, Some("1".into()), Some("2".into())],
        "grpc-previous-rpc-attempts on every retry (gRFC A6)"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_status_the_policy_does_not_name_is_final_at_once() {
    let (server, recorded) = failing_at_first(1, tonic::Code::Internal);
    let mut client = CalculatorClient::new(configured(&[&server], RETRY_UNAVAILABLE));
    let status = client.calculate(ten_times_five()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal);
    assert_eq!(status.message(), "failed by the test");
    assert_eq!(seen(&recorded).len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn retries_stop_at_max_attempts_with_the_last_failure() {
    let (server, recorded) = failing_at_first(10, tonic::Code::Unavailable);
    let mut client = CalculatorClient::new(configured(&[&server], RETRY_UNAVAILABLE));
    let status = client.calculate(ten_times_five()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "failed by the test");
    assert_eq!(seen(&recorded).len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn a_hedged_call_is_answered_by_the_fast_endpoint_without_waiting_for_the_slow_copy() {
    let config = ServerConfig::default();
    let slow_service = CalculatorService::new();
    let grpc = calcmesh_calculator::server(slow_service.clone(), config.max_message_size);
    let slow = Running::start(
        Server::new(config.clone()).add_service(Intercept::new(grpc).delay(Duration::from_secs(5))),
    );
    let (fast, recorded) = failing_at_first(0, tonic::Code::Ok);
    let json = r#"{"loadBalancingConfig": [{"pick_first": {}}],
      "methodConfig": [{"name": [{"service": "calculator.Calculator"}],
      "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "0.05s"}}]}"#;
    // pick_first sends the first copy to the slow endpoint; the hedge goes to the other.
    let mut client = CalculatorClient::new(configured(&[&slow, &fast], json));
    let started = std::time::Instant::now();
    let answer = client.calculate(ten_times_five()).await.unwrap();
    assert_eq!(answer.into_inner().result, 50.0);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the hedge answered, not the slow copy: {:?}",
        started.elapsed()
    );
    assert_eq!(
        seen(&recorded),
        [Some("1".into())],
        "the hedge says it is the second"
    );
    slow.stop().await;
    fast.stop().await;
}

/// maxRequestMessageBytes and maxResponseMessageBytes, per method, as gRPC applies them: the
/// call fails RESOURCE_EXHAUSTED naming the size and the limit, and is not retried; a method the
/// limit does not name is not limited.
#[tokio::test]
async fn message_size_limits_from_the_service_config_fail_the_call() {
    use calcmesh_proto::calculator::{FactorizeRequest, Number};
    let (server, recorded) = failing_at_first(0, tonic::Code::Ok);
    let json = r#"{"methodConfig": [
      {"name": [{"service": "calculator.Calculator", "method": "Calculate"}], "maxRequestMessageBytes": 10},
      {"name": [{"service": "calculator.Calculator", "method": "Factorize"}], "maxResponseMessageBytes": "1"}]}"#;
    let mut client = CalculatorClient::new(configured(&[&server], json));
    let status = client.calculate(ten_times_five()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "request message of 21 bytes is over the service config's maxRequestMessageBytes (10 bytes)"
    );
    assert!(
        seen(&recorded).len() <= 1,
        "not retried: {:?}",
        seen(&recorded)
    );
    let mut stream = client
        .factorize(FactorizeRequest { number: 12 })
        .await
        .unwrap()
        .into_inner();
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("maxResponseMessageBytes (1 bytes)"),
        "{status:?}"
    );
    let numbers = tokio_stream::iter([Number { value: 1.0 }]);
    let summary = client.summarize(numbers).await.unwrap().into_inner();
    assert_eq!(summary.count, 1, "Summarize has no limit");
    server.stop().await;
}
