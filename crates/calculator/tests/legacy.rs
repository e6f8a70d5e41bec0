//! A client that knows only the original contract (proto/legacy/calculator.proto: package
//! `calculator`, one RPC, two messages) gets the right answers and statuses from calcmesh.
//!
//! Its message types are written here from that file's text, not taken from calcmesh-proto, so
//! this test fails if the served contract drifts from the original on the wire.

use calcmesh_calculator::CalculatorService;
use calcmesh_runtime::ServerConfig;
use calcmesh_testkit::Running;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

/// `message Request { double num1 = 1; double num2 = 2; string operator = 3; }`
#[derive(Clone, PartialEq, prost::Message)]
struct LegacyRequest {
    #[prost(double, tag = "1")]
    num1: f64,
    #[prost(double, tag = "2")]
    num2: f64,
    #[prost(string, tag = "3")]
    operator: String,
}

/// `message Response { double result = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct LegacyResponse {
    #[prost(double, tag = "1")]
    result: f64,
}

#[tokio::test]
async fn a_client_of_the_original_contract_works_unchanged() {
    let config = ServerConfig::default();
    let server = calcmesh_calculator::mesh_server(&config, CalculatorService::new());
    let running = Running::start(server);
    let mut grpc = tonic::client::Grpc::new(running.channel());
    let path = PathAndQuery::from_static("/calculator.Calculator/Calculate");
    let mut call = async |num1, operator: &str, num2| {
        grpc.ready().await.unwrap();
        let request = LegacyRequest {
            num1,
            num2,
            operator: operator.into(),
        };
        grpc.unary(
            tonic::Request::new(request),
            path.clone(),
            tonic_prost::ProstCodec::<LegacyRequest, LegacyResponse>::default(),
        )
        .await
        .map(|r| r.into_inner().result)
    };
    assert_eq!(call(10.0, "+", 5.0).await.unwrap(), 15.0);
    assert_eq!(call(10.0, "-", 5.0).await.unwrap(), 5.0);
    assert_eq!(call(10.0, "*", 5.0).await.unwrap(), 50.0);
    assert_eq!(call(10.0, "/", 5.0).await.unwrap(), 2.0);
    assert_eq!(
        call(1.0, "/", 0.0).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        call(1.0, "?", 0.0).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        call(1e308, "*", 1e308).await.unwrap_err().code(),
        Code::OutOfRange
    );

    running.stop().await;
}
