//! `Calculate` on the runtime's lean unary path answers byte for byte as tonic's generated
//! service does: the same request, raw over HTTP/2, to a calculator served as shipped
//! (`mesh_server`) and to one served by tonic's codec alone gets the same headers, message
//! bytes and trailers — for good calls and for each kind of bad one.

use bytes::Bytes;
use calcmesh_calculator::CalculatorService;
use calcmesh_runtime::{Server, ServerConfig};
use calcmesh_testkit::Running;
use tokio::net::TcpStream;

/// What a client reads of an answer: HTTP status, headers, DATA bytes, trailers.
type Answer = (u16, http::HeaderMap, Vec<u8>, http::HeaderMap);
/// A request: its name, its headers, its body's DATA frames.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Vec<Bytes>,
);

/// One `Calculate` request with `headers`, its body sent as `chunks` (one DATA frame each).
async fn raw_call(addr: &str, headers: &[(&str, &str)], chunks: &[Bytes]) -> Answer {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::post(format!("http://{addr}/calculator.Calculator/Calculate"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut send) = client
        .send_request(request.body(()).unwrap(), chunks.is_empty())
        .unwrap();
    for (i, chunk) in chunks.iter().enumerate() {
        send.send_data(chunk.clone(), i + 1 == chunks.len())
            .unwrap();
    }
    let response = response.await.unwrap();
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        data.extend_from_slice(&chunk.unwrap());
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    let mut headers = parts.headers;
    headers.remove("date");
    headers.remove(calcmesh_runtime::ENDPOINT_HEADER);
    (parts.status.as_u16(), headers, data, trailers)
}

fn framed(flag: u8, payload: &[u8]) -> Bytes {
    let mut frame = vec![flag];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

/// `Request{num1, num2, operator}` as protobuf.
fn request(num1: f64, operator: &str, num2: f64) -> Vec<u8> {
    let mut bytes = vec![0x09];
    bytes.extend(num1.to_le_bytes());
    bytes.push(0x11);
    bytes.extend(num2.to_le_bytes());
    bytes.push(0x1a);
    bytes.push(operator.len() as u8);
    bytes.extend(operator.as_bytes());
    bytes
}

#[tokio::test]
async fn the_lean_path_answers_as_tonic_does() {
    let config = ServerConfig::default();
    let shipped = Running::start(calcmesh_calculator::mesh_server(
        &config,
        CalculatorService::new(),
    ));
    // The same runtime server and descriptors (the server checks a unary call's message count
    // from them), with tonic's generated service in place of the lean path.
    let tonic_only = Running::start(
        Server::new(config.clone())
            .add_service(calcmesh_calculator::server(
                CalculatorService::new(),
                config.max_message_size,
            ))
            .add_descriptors(calcmesh_proto::FILE_DESCRIPTOR_SET),
    );
    let times = framed(0, &request(10.0, "*", 5.0));
    let (head, tail) = times.split_at(4);
    let plain: &[(&str, &str)] = &[];
    let cases: Vec<Case> = vec![
        ("10 * 5", plain, vec![times.clone()]),
        (
            "10 * 5 in two DATA frames",
            plain,
            vec![Bytes::copy_from_slice(head), Bytes::copy_from_slice(tail)],
        ),
        (
            "10 * 5, identity, accepting gzip",
            &[
                ("grpc-encoding", "identity"),
                ("grpc-accept-encoding", "gzip"),
            ],
            vec![times.clone()],
        ),
        ("1 / 0", plain, vec![framed(0, &request(1.0, "/", 0.0))]),
        (
            "an unknown operator",
            plain,
            vec![framed(0, &request(1.0, "?", 2.0))],
        ),
        ("an empty message", plain, vec![framed(0, &[])]),
        ("no message", plain, vec![]),
        ("half a message", plain, vec![Bytes::copy_from_slice(head)]),
        ("two messages", plain, vec![times.clone(), times.clone()]),
        (
            "a message that does not decode",
            plain,
            vec![framed(0, &[0x09, 0x00])],
        ),
        (
            "compressed flag, no grpc-encoding",
            plain,
            vec![framed(1, &request(1.0, "+", 2.0))],
        ),
    ];
    for (name, headers, chunks) in cases {
        let lean = raw_call(&shipped.addr.to_string(), headers, &chunks).await;
        let tonic = raw_call(&tonic_only.addr.to_string(), headers, &chunks).await;
        assert_eq!(lean, tonic, "{name}");
    }
    let (_, _, data, trailers) = raw_call(&shipped.addr.to_string(), plain, &[times]).await;
    assert_eq!(
        data,
        framed(0, &[0x09, 0, 0, 0, 0, 0, 0, 0x49, 0x40]),
        "50.0"
    );
    assert_eq!(trailers["grpc-status"], "0");
    shipped.stop().await;
    tonic_only.stop().await;
}
