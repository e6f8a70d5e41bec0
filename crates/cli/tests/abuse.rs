//! Bad input over the wire, against a real `calcmesh serve calculator` process: each case gets
//! its exact outcome, and after each the server still answers a normal call.
//!
//! Requests that a gRPC library would never send are written with the `h2` crate (to read the
//! status) or as raw HTTP/2 frames (to break the protocol's rules on purpose).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::ServerProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const CALCULATE: &str = "/calculator.Calculator/Calculate";

/// The arguments of a calculator process with a small stream limit and a short handshake timeout.
const CALCULATOR: &[&str] = &[
    "serve",
    "calculator",
    "--listen",
    "127.0.0.1:0",
    "--max-concurrent-streams",
    "8",
    "--handshake-timeout",
    "300ms",
    "--grace-period",
    "2s",
];

/// A calculator process with a small stream limit and a short handshake timeout.
async fn calculator() -> ServerProcess {
    ServerProcess::start(common::BIN, CALCULATOR).await
}

/// The server still computes `2 + 3`.
async fn still_answers(addr: &str) {
    let out = common::calcmesh(&["calc", "--target", addr, "2", "+", "3"], "").await;
    assert_eq!(
        out.stdout, "5\n",
        "the server still answers: {}",
        out.stderr
    );
}

/// Stops the server and checks it drained and exited 0 (it did not crash along the way).
async fn stops_cleanly(mut server: ServerProcess) {
    server.terminate().await;
    let (status, stderr) = server.wait().await;
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// One gRPC request with the `h2` crate: `content_type`, `body` as the whole request body.
/// Returns the HTTP status and the `grpc-status` and `grpc-message` (from headers or trailers).
async fn h2_call(addr: &str, content_type: &str, body: Bytes) -> (u16, String, String) {
    let (status, headers) = h2_request(addr, &[("content-type", content_type)], body).await;
    (
        status,
        text(&headers, "grpc-status"),
        text(&headers, "grpc-message"),
    )
}

/// An HTTP/2 connection to `addr` made with the `h2` crate, driven in the background.
async fn h2_client(addr: &str) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client
}

/// One request of `Calculate` with `headers`, `body` as the whole request body. Returns the
/// HTTP status, and the response's headers and trailers in one map.
async fn h2_request(addr: &str, headers: &[(&str, &str)], body: Bytes) -> (u16, http::HeaderMap) {
    let mut client = h2_client(addr).await;
    let mut request =
        http::Request::post(format!("http://{addr}{CALCULATE}")).header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut send) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    send.send_data(body, true).unwrap();
    let response = response.await.unwrap();
    let status = response.status().as_u16();
    let mut headers = response.headers().clone();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk.unwrap();
    }
    if let Some(trailers) = body.trailers().await.unwrap() {
        headers.extend(trailers);
    }
    (status, headers)
}

/// A header's text, or "" without it.
fn text(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A gRPC message frame around `payload`.
fn grpc_frame(payload: &[u8]) -> Bytes {
    framed(0, payload)
}

/// A gRPC message frame with the compressed flag `flag`.
fn framed(flag: u8, payload: &[u8]) -> Bytes {
    let mut frame = vec![flag];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

#[tokio::test]
async fn malformed_protobuf_is_a_clean_error() {
    let server = calculator().await;
    // Field 1 claims a 64-bit double but the message ends after 2 bytes; then a bad wire type.
    for payload in [&[0x09, 0x00][..], &[0x0f, 0xff, 0xff, 0xff]] {
        let (http, code, message) =
            h2_call(&server.addr, "application/grpc", grpc_frame(payload)).await;
        assert_eq!(http, 200);
        assert_eq!(
            code, "13",
            "INTERNAL, as grpc-go answers an undecodable request"
        );
        assert!(message.contains("decode"), "{message}");
    }
    // A frame that says 100 bytes follow, then the stream ends.
    let mut short = vec![0, 0, 0, 0, 100];
    short.extend_from_slice(b"abc");
    let (_, code, message) = h2_call(&server.addr, "application/grpc", Bytes::from(short)).await;
    assert_eq!(code, "13", "{message}");
    still_answers(&server.addr).await;
    stops_cleanly(server).await;
}

#[tokio::test]
async fn a_wrong_content_type_is_refused() {
    let server = calculator().await;
    let ok = grpc_frame(&[]);
    // The gRPC over HTTP/2 spec: a server should answer 415 to a non-gRPC content type; the
    // status lets a gRPC client say why.
    for content_type in ["text/plain", "application/json", "application/grpcx"] {
        let (http, code, message) = h2_call(&server.addr, content_type, ok.clone()).await;
        assert_eq!(
            (http, code.as_str()),
            (415, "3"),
            "{content_type}: {message}"
        );
        assert!(message.contains("expected%20application/grpc"), "{message}");
    }
    let (http, code, _) = h2_call(&server.addr, "application/grpc+proto", ok).await;
    assert_eq!(
        (http, code.as_str()),
        (200, "3"),
        "served: an empty Request has no operator"
    );
    still_answers(&server.addr).await;
    stops_cleanly(server).await;
}

#[tokio::test]
async fn a_request_that_is_not_grpc_is_told_so_in_words() {
    let server = calculator().await;
    let mut client = h2_client(&server.addr).await;
    // What curl sends: a GET without a content type, its body a DATA frame after the headers.
    let request = http::Request::get(format!("http://{}/", server.addr))
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(Bytes::from_static(b"hello"), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.headers()["grpc-status"], "3", "for a gRPC client");
    let mut body = response.into_body();
    let mut words = Vec::new();
    while let Some(chunk) = body.data().await {
        words.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(
        String::from_utf8(words).unwrap(),
        "content-type none is not a gRPC request: expected application/grpc\n"
    );
    still_answers(&server.addr).await;
    stops_cleanly(server).await;
}

/// Writes `bytes`, then reads until the server closes the connection (at most 5 s); returns
/// what it sent.
async fn send_and_read_to_end(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closes the connection");
    answer
}

#[tokio::test]
async fn garbage_and_http1_are_dropped_and_the_server_carries_on() {
    let server = calculator().await;
    let mut garbage = vec![0u8; 64 * 1024];
    for (i, b) in garbage.iter_mut().enumerate() {
        *b = (i * 7919 % 251) as u8;
    }
    send_and_read_to_end(&server.addr, &garbage).await;
    let answer = send_and_read_to_end(
        &server.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    // hyper, HTTP/2 only, answers an HTTP/1 request with a GOAWAY (PROTOCOL_ERROR) or nothing.
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    still_answers(&server.addr).await;
    stops_cleanly(server).await;
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_closed_after_the_handshake_timeout() {
    // The plaintext health port accepts connections as the gRPC port does.
    let args = [CALCULATOR, &["--health-listen", "127.0.0.1:0"]].concat();
    let server = ServerProcess::start_until(common::BIN, &args, "health on ").await;
    let grpc = server.lines[0].strip_prefix("listening on ").unwrap();
    for addr in [grpc, &server.addr] {
        let started = std::time::Instant::now();
        // Connects and says nothing; then one that stops half-way through the preface.
        for bytes in [&b""[..], &PREFACE[..10]] {
            send_and_read_to_end(addr, bytes).await;
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(600) && elapsed < Duration::from_secs(5),
            "{addr} closed after the 300 ms timeout, each: {elapsed:?}"
        );
    }
    still_answers(grpc).await;
    stops_cleanly(server).await;
}

/// Raw HTTP/2 frames, for breaking the rules on purpose.
mod raw {
    pub(crate) const SETTINGS: u8 = 4;
    pub(crate) const HEADERS: u8 = 1;
    pub(crate) const RST_STREAM: u8 = 3;
    pub(crate) const PING: u8 = 6;
    pub(crate) const GOAWAY: u8 = 7;
    pub(crate) const END_HEADERS: u8 = 0x4;

    pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An HPACK header block of literal fields (no indexing, no Huffman).
    pub(crate) fn headers(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        for (name, value) in fields {
            block.push(0);
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        }
        block
    }

    /// A request's HEADERS frame for a bidirectional call that stays open.
    pub(crate) fn open_call(stream: u32) -> Vec<u8> {
        let block = headers(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/calculator.Calculator/RunningSummary"),
            (":authority", "calcmesh"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]);
        frame(HEADERS, END_HEADERS, stream, &block)
    }

    /// Splits `bytes` into frames: (type, stream, payload).
    pub(crate) fn parse(mut bytes: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
        let mut frames = Vec::new();
        while bytes.len() >= 9 {
            let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            if bytes.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff;
            frames.push((bytes[3], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        frames
    }
}

/// Opens a connection and completes the HTTP/2 handshake with raw frames.
async fn raw_connection(addr: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(raw::frame(raw::SETTINGS, 0, 0, &[]));
    tcp.write_all(&hello).await.unwrap();
    tcp
}

/// Reads frames until `done` says so or the connection ends (at most 5 s).
async fn read_frames(
    tcp: &mut TcpStream,
    mut done: impl FnMut(&[(u8, u32, Vec<u8>)]) -> bool,
) -> Vec<(u8, u32, Vec<u8>)> {
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let frames = raw::parse(&bytes);
        if done(&frames) {
            return frames;
        }
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return raw::parse(&bytes),
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no expected frame within 5 s: {frames:?}"),
        }
    }
}

#[tokio::test]
async fn streams_over_the_limit_are_refused() {
    let server = calculator().await;
    let mut tcp = raw_connection(&server.addr).await;
    // 12 calls at once where the server allows 8 (it said so in its SETTINGS).
    let mut calls = Vec::new();
    for i in 0..12u32 {
        calls.extend(raw::open_call(1 + 2 * i));
    }
    tcp.write_all(&calls).await.unwrap();
    let refused = |frames: &[(u8, u32, Vec<u8>)]| -> Vec<u32> {
        frames
            .iter()
            .filter(|(kind, _, payload)| *kind == raw::RST_STREAM && payload == &[0, 0, 0, 7])
            .map(|(_, stream, _)| *stream)
            .collect()
    };
    let frames = read_frames(&mut tcp, |f| refused(f).len() >= 4).await;
    let mut streams = refused(&frames);
    streams.sort();
    assert_eq!(
        streams,
        [17, 19, 21, 23],
        "REFUSED_STREAM for the 9th to 12th"
    );
    drop(tcp);
    still_answers(&server.addr).await;
    stops_cleanly(server).await;
}

#[tokio::test]
async fn rapid_resets_end_the_connection_not_the_server() {
    let server = calculator().await;
    let mut tcp = raw_connection(&server.addr).await;
    // The HTTP/2 "rapid reset" attack: open a stream and cancel it at once, thousands of times.
    let mut burst = Vec::new();
    for i in 0..5_000u32 {
        let stream = 1 + 2 * i;
        burst.extend(raw::open_call(stream));
        burst.extend(raw::frame(raw::RST_STREAM, 0, stream, &[0, 0, 0, 8]));
    }
    // The server may close the connection before it has read everything.
    let _ = tcp.write_all(&burst).await;
    let frames = read_frames(&mut tcp, |f| f.iter().any(|(k, _, _)| *k == raw::GOAWAY)).await;
    let (_, _, goaway) = frames
        .iter()
        .find(|(k, _, _)| *k == raw::GOAWAY)
        .expect("a GOAWAY ends the connection");
    let code = u32::from_be_bytes([goaway[4], goaway[5], goaway[6], goaway[7]]);
    assert_eq!(code, 11, "ENHANCE_YOUR_CALM");
    drop(tcp);
    still_answers(&server.addr).await;
    stops_cleanly(server).await;
}

#[tokio::test]
async fn an_unknown_encoding_is_unimplemented_and_names_the_known_ones() {
    let server = calculator().await;
    let headers = [
        ("content-type", "application/grpc"),
        ("grpc-encoding", "br"),
    ];
    let (status, answer) = h2_request(&server.addr, &headers, framed(1, b"\x0b\x0b")).await;
    assert_eq!(status, 200);
    assert_eq!(text(&answer, "grpc-status"), "12", "{answer:?}");
    let status = tonic::Status::from_header_map(&answer).unwrap();
    assert_eq!(
        status.message(),
        "grpc-encoding \"br\" is not supported: this server reads gzip, zstd, identity"
    );
    assert_eq!(text(&answer, "grpc-accept-encoding"), "gzip,zstd,identity");
    still_answers(&server.addr).await;
    stops_cleanly(server).await;
}

/// The server holds a call to the caller's `grpc-timeout` itself. A gRPC library would enforce
/// its own deadline first; here `h2` sends the header on a Summarize whose request stream never
/// ends, so only the server's deadline can end the call.
#[tokio::test]
async fn the_server_answers_deadline_exceeded_once_the_callers_grpc_timeout_passes() {
    let server = calculator().await;
    let mut client = h2_client(&server.addr).await;
    let request = http::Request::post(format!(
        "http://{}/calculator.Calculator/Summarize",
        server.addr
    ))
    .header("te", "trailers")
    .header("content-type", "application/grpc")
    .header("grpc-timeout", "200m")
    .body(())
    .unwrap();
    let started = std::time::Instant::now();
    let (response, mut send) = client.send_request(request, false).unwrap();
    // One number (`value = 1`), and the stream left open.
    send.send_data(grpc_frame(b"\x09\x00\x00\x00\x00\x00\x00\xf0\x3f"), false)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("no answer 10 s after a 200 ms deadline")
        .unwrap();
    let status = tonic::Status::from_header_map(response.headers()).unwrap();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status.message(),
        "the caller's deadline (grpc-timeout 200ms) passed before the server answered"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    drop(send);
    still_answers(&server.addr).await;
    stops_cleanly(server).await;
}

/// The most memory the process has held, from `/proc/PID/status` (VmHWM, in KiB).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `size` zero bytes, compressed by `compress` a megabyte at a time (nothing of `size` is held).
fn bomb(size: usize, mut write: impl FnMut(&[u8])) {
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..size / chunk.len() {
        write(&chunk);
    }
}

#[tokio::test]
async fn compressed_bombs_stop_at_the_size_limit_without_being_inflated() {
    use std::io::Write as _;
    let server = calculator().await;
    let pid = server.child.id().unwrap();
    let before = peak_rss_kib(pid);
    // 1 GiB of zeros in well under 1 MiB of zstd, and 256 MiB in under 1 MiB of gzip: both far
    // under the 4 MiB wire limit, both far over it once inflated.
    let mut zstd = zstd::Encoder::new(Vec::new(), 3).unwrap();
    bomb(1 << 30, |chunk| zstd.write_all(chunk).unwrap());
    let zstd = zstd.finish().unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    bomb(256 << 20, |chunk| gzip.write_all(chunk).unwrap());
    let gzip = gzip.finish().unwrap();
    for (encoding, payload) in [("zstd", zstd), ("gzip", gzip)] {
        assert!(
            payload.len() < 1 << 20,
            "{encoding}: {} bytes",
            payload.len()
        );
        let headers = [
            ("content-type", "application/grpc"),
            ("grpc-encoding", encoding),
        ];
        let (_, answer) = h2_request(&server.addr, &headers, framed(1, &payload)).await;
        assert_eq!(text(&answer, "grpc-status"), "8", "{encoding}: {answer:?}");
    }
    let grown_mib = (peak_rss_kib(pid) - before) / 1024;
    assert!(
        grown_mib < 64,
        "the server's peak memory grew by {grown_mib} MiB"
    );
    still_answers(&server.addr).await;
    stops_cleanly(server).await;
}

/// gRFC A8's keepalive enforcement: the server (default: pings at most every 5 min, and every
/// 2 hours without a call open) takes the first ping, forgives two more that come too soon, and
/// answers the next with GOAWAY ENHANCE_YOUR_CALM "too_many_pings", as grpc-go's server does.
#[tokio::test]
async fn pings_sooner_than_the_server_allows_get_goaway_too_many_pings() {
    let server = calculator().await;
    let mut tcp = raw_connection(&server.addr).await;
    let is_ack = |(k, _, _): &(u8, u32, Vec<u8>)| *k == raw::PING;
    for i in 0..3u8 {
        tcp.write_all(&raw::frame(raw::PING, 0, 0, &[i; 8]))
            .await
            .unwrap();
        let frames = read_frames(&mut tcp, |f| f.iter().any(is_ack)).await;
        assert!(
            frames.iter().any(is_ack),
            "ping {i} is answered: {frames:?}"
        );
    }
    tcp.write_all(&raw::frame(raw::PING, 0, 0, &[3; 8]))
        .await
        .unwrap();
    let frames = read_frames(&mut tcp, |f| f.iter().any(|(k, _, _)| *k == raw::GOAWAY)).await;
    let (_, _, goaway) = frames
        .iter()
        .find(|(k, _, _)| *k == raw::GOAWAY)
        .expect("a GOAWAY ends the connection");
    let code = u32::from_be_bytes([goaway[4], goaway[5], goaway[6], goaway[7]]);
    assert_eq!(code, 11, "ENHANCE_YOUR_CALM");
    assert_eq!(&goaway[8..], b"too_many_pings");
    drop(tcp);
    still_answers(&server.addr).await;
    stops_cleanly(server).await;
}
