//! The server side of the interop compression cases, as the descriptions specify it. grpc-go
//! has none of these cases (CONFORMANCE.md), so they are checked here against calcmesh's own
//! server: with tonic clients for the request side, and with raw HTTP/2 (`h2`) where the
//! compressed flag of a response message has to be read.

use calcmesh_proto::grpc_testing::test_service_client::TestServiceClient;
use calcmesh_proto::grpc_testing::{BoolValue, SimpleRequest, StreamingInputCallRequest};
use calcmesh_runtime::compression::CompressAnswers;
use calcmesh_runtime::{MeshChannel, ServerConfig};
use calcmesh_testkit::Running;
use prost::Message;
use tonic::Code;
use tonic::codec::CompressionEncoding::Gzip;

/// The interop server as `calcmesh-interop server` configures it, on 127.0.0.1:0.
fn server() -> Running {
    let config = ServerConfig {
        compress_answers: CompressAnswers::WhenAccepted,
        ..ServerConfig::default()
    };
    Running::start(calcmesh_interop::mesh_server(&config))
}

fn expecting(compressed: bool) -> Option<BoolValue> {
    Some(BoolValue { value: compressed })
}

fn large(expect_compressed: bool) -> SimpleRequest {
    SimpleRequest {
        response_size: 314_159,
        payload: calcmesh_interop::service::zeros(271_828).ok(),
        expect_compressed: expecting(expect_compressed),
        ..SimpleRequest::default()
    }
}

fn client(running: &Running) -> TestServiceClient<MeshChannel> {
    TestServiceClient::new(running.channel())
}

#[tokio::test]
async fn client_compressed_unary() {
    let running = server();
    // The probe: a plain message that claims to expect compression is refused.
    let probe = client(&running).unary_call(large(true)).await.unwrap_err();
    assert_eq!(probe.code(), Code::InvalidArgument, "{probe:?}");
    // Compressed and expected, then plain and not expected: both answered in full.
    let mut gzip = client(&running).send_compressed(Gzip);
    let response = gzip.unary_call(large(true)).await.unwrap().into_inner();
    assert_eq!(response.payload.unwrap().body.len(), 314_159);
    let response = client(&running).unary_call(large(false)).await.unwrap();
    assert_eq!(response.into_inner().payload.unwrap().body.len(), 314_159);
    running.stop().await;
}

fn input(size: i32, expect_compressed: bool) -> StreamingInputCallRequest {
    StreamingInputCallRequest {
        payload: calcmesh_interop::service::zeros(size).ok(),
        expect_compressed: expecting(expect_compressed),
    }
}

#[tokio::test]
async fn client_compressed_streaming() {
    let running = server();
    let probe = client(&running)
        .streaming_input_call(tokio_stream::iter([input(27_182, true)]))
        .await
        .unwrap_err();
    assert_eq!(probe.code(), Code::InvalidArgument, "{probe:?}");
    let mut gzip = client(&running).send_compressed(Gzip);
    let messages = tokio_stream::iter([input(27_182, true), input(45_904, true)]);
    let response = gzip.streaming_input_call(messages).await.unwrap();
    assert_eq!(response.into_inner().aggregated_payload_size, 73_086);
    running.stop().await;
}

/// One UnaryCall, plain, from a client that accepts gzip; the compressed flag of the answer.
async fn answer_flag(addr: std::net::SocketAddr, response_compressed: bool) -> u8 {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{addr}/grpc.testing.TestService/UnaryCall"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-accept-encoding", "gzip")
        .body(())
        .unwrap();
    let message = SimpleRequest {
        response_size: 1_000,
        response_compressed: expecting(response_compressed),
        ..SimpleRequest::default()
    }
    .encode_to_vec();
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let (response, mut send) = h2.send_request(request, false).unwrap();
    send.send_data(frame.into(), true).unwrap();
    let mut body = response.await.unwrap().into_body();
    let first = body.data().await.unwrap().unwrap();
    first[0]
}

#[tokio::test]
async fn server_compressed_unary() {
    let running = server();
    assert_eq!(answer_flag(running.addr, true).await, 1, "asked compressed");
    assert_eq!(answer_flag(running.addr, false).await, 0, "asked plain");
    running.stop().await;
}
