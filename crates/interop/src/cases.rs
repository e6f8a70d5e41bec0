//! The client side of the interop cases, each as `doc/interop-test-descriptions.md` in
//! grpc/grpc states it, over a calcmesh [`MeshChannel`]. A case returns `Ok` only when every
//! assertion of the description held; the error says which did not.

use std::time::{Duration, Instant};

use calcmesh_proto::grpc_testing::test_service_client::TestServiceClient;
use calcmesh_proto::grpc_testing::unimplemented_service_client::UnimplementedServiceClient;
use calcmesh_proto::grpc_testing::{
    EchoStatus, Empty, ResponseParameters, SimpleRequest, StreamingInputCallRequest,
    StreamingOutputCallRequest,
};
use calcmesh_runtime::MeshChannel;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Status};

use crate::service::zeros;

/// Every case this client runs, by its name in the descriptions.
pub const CASES: &[&str] = &[
    "empty_unary",
    "large_unary",
    "client_streaming",
    "server_streaming",
    "ping_pong",
    "empty_stream",
    "timeout_on_sleeping_server",
    "cancel_after_begin",
    "cancel_after_first_response",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
    "custom_metadata",
    "rpc_soak",
    "channel_soak",
];

/// Why a case failed: the assertion that did not hold, or the status of a call that should
/// have succeeded.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// An assertion of the description did not hold.
    #[error("{0}")]
    Assertion(String),
    /// A call failed that the case needs to succeed.
    #[error("call failed: {0}")]
    Call(#[from] Status),
    /// The case name is not one of [`CASES`].
    #[error("unknown test case {name:?}; known: {known}", known = CASES.join(", "))]
    Unknown {
        /// The name given.
        name: String,
    },
}

type Client = TestServiceClient<MeshChannel>;
type Outcome = Result<(), CaseError>;

fn check(ok: bool, what: impl FnOnce() -> String) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(CaseError::Assertion(what()))
    }
}

/// How the soak cases run (the flags `--soak_iterations` and friends).
#[derive(Debug, Clone, Copy)]
pub struct Soak {
    /// Calls to make.
    pub iterations: u32,
    /// The slowest a single call may be.
    pub max_latency: Duration,
}

impl Default for Soak {
    fn default() -> Self {
        Self {
            iterations: 10,
            max_latency: Duration::from_secs(1),
        }
    }
}

/// Runs `case` over `channel`; `connect` makes a new channel (for `channel_soak`).
///
/// # Errors
/// The first assertion that failed, or [`CaseError::Unknown`].
pub async fn run(
    case: &str,
    channel: MeshChannel,
    connect: impl Fn() -> MeshChannel,
    soak: Soak,
) -> Outcome {
    let mut client = TestServiceClient::new(channel.clone());
    match case {
        "empty_unary" => empty_unary(&mut client).await,
        "large_unary" => large_unary(&mut client).await,
        "client_streaming" => client_streaming(&mut client).await,
        "server_streaming" => server_streaming(&mut client).await,
        "ping_pong" => ping_pong(&mut client).await,
        "empty_stream" => empty_stream(&mut client).await,
        "timeout_on_sleeping_server" => timeout_on_sleeping_server(&mut client).await,
        "cancel_after_begin" => cancel_after_begin(&mut client).await,
        "cancel_after_first_response" => cancel_after_first_response(&mut client).await,
        "status_code_and_message" => status_code_and_message(&mut client).await,
        "special_status_message" => special_status_message(&mut client).await,
        "unimplemented_method" => unimplemented_method(&mut client).await,
        "unimplemented_service" => unimplemented_service(channel).await,
        "custom_metadata" => custom_metadata(&mut client).await,
        "rpc_soak" => soak_case(soak, || client.clone()).await,
        "channel_soak" => soak_case(soak, || TestServiceClient::new(connect())).await,
        other => Err(CaseError::Unknown {
            name: other.to_owned(),
        }),
    }
}

async fn empty_unary(client: &mut Client) -> Outcome {
    client.empty_call(Empty {}).await?;
    Ok(())
}

fn large_request() -> Result<SimpleRequest, Status> {
    Ok(SimpleRequest {
        response_size: 314_159,
        payload: Some(zeros(271_828)?),
        ..SimpleRequest::default()
    })
}

async fn large_unary(client: &mut Client) -> Outcome {
    let response = client.unary_call(large_request()?).await?.into_inner();
    let body = response.payload.map(|p| p.body).unwrap_or_default();
    check(
        body.len() == 314_159 && body.iter().all(|b| *b == 0),
        || format!("expected 314159 zero bytes, got {} bytes", body.len()),
    )
}

async fn client_streaming(client: &mut Client) -> Outcome {
    let requests = [27_182, 8, 1_828, 45_904]
        .into_iter()
        .map(|size| {
            zeros(size).map(|p| StreamingInputCallRequest {
                payload: Some(p),
                ..StreamingInputCallRequest::default()
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let response = client
        .streaming_input_call(tokio_stream::iter(requests))
        .await?
        .into_inner();
    check(response.aggregated_payload_size == 74_922, || {
        format!(
            "aggregated_payload_size {} instead of 74922",
            response.aggregated_payload_size
        )
    })
}

fn parameters(sizes: &[i32]) -> Vec<ResponseParameters> {
    sizes
        .iter()
        .map(|&size| ResponseParameters {
            size,
            ..ResponseParameters::default()
        })
        .collect()
}

async fn server_streaming(client: &mut Client) -> Outcome {
    let sizes = [31_415, 9, 2_653, 58_979];
    let request = StreamingOutputCallRequest {
        response_parameters: parameters(&sizes),
        ..StreamingOutputCallRequest::default()
    };
    let mut stream = client.streaming_output_call(request).await?.into_inner();
    let mut got = Vec::new();
    while let Some(response) = stream.message().await? {
        got.push(response.payload.map_or(0, |p| p.body.len()) as i32);
    }
    check(got == sizes, || {
        format!("response sizes {got:?} instead of {sizes:?}")
    })
}

/// A FullDuplexCall request for one response of `response` bytes, carrying `request` bytes.
fn duplex_request(request: i32, response: i32) -> Result<StreamingOutputCallRequest, Status> {
    Ok(StreamingOutputCallRequest {
        response_parameters: parameters(&[response]),
        payload: Some(zeros(request)?),
        ..StreamingOutputCallRequest::default()
    })
}

/// Opens a FullDuplexCall with `first` already queued: a server may send its response headers
/// only with its first message (grpc-go does), so the call cannot wait for them first.
async fn open_duplex(
    client: &mut Client,
    first: StreamingOutputCallRequest,
) -> Result<
    (
        mpsc::Sender<StreamingOutputCallRequest>,
        tonic::Streaming<calcmesh_proto::grpc_testing::StreamingOutputCallResponse>,
    ),
    CaseError,
> {
    let (tx, rx) = mpsc::channel(1);
    check(tx.send(first).await.is_ok(), || {
        "the stream closed early".into()
    })?;
    let stream = client
        .full_duplex_call(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, stream))
}

async fn ping_pong(client: &mut Client) -> Outcome {
    let pairs = [(27_182, 31_415), (8, 9), (1_828, 2_653), (45_904, 58_979)];
    let (tx, mut stream) = open_duplex(client, duplex_request(pairs[0].0, pairs[0].1)?).await?;
    for (i, (request, response)) in pairs.into_iter().enumerate() {
        if i > 0 {
            let sent = tx.send(duplex_request(request, response)?).await;
            check(sent.is_ok(), || "the stream closed early".into())?;
        }
        let got = stream.message().await?.and_then(|r| r.payload);
        let size = got.map_or(0, |p| p.body.len());
        check(size == response as usize, || {
            format!("a response of {size} bytes instead of {response}")
        })?;
    }
    drop(tx);
    check(stream.message().await?.is_none(), || {
        "a response after the last request".into()
    })
}

async fn empty_stream(client: &mut Client) -> Outcome {
    let mut stream = client
        .full_duplex_call(tokio_stream::empty())
        .await?
        .into_inner();
    check(stream.message().await?.is_none(), || {
        "a response to an empty stream".into()
    })
}

fn expect_code(result: Result<impl Sized, Status>, code: Code) -> Outcome {
    match result {
        Err(status) if status.code() == code => Ok(()),
        Err(status) => Err(CaseError::Assertion(format!(
            "expected {code:?}, got {:?}: {}",
            status.code(),
            status.message()
        ))),
        Ok(_) => Err(CaseError::Assertion(format!(
            "expected {code:?}, the call succeeded"
        ))),
    }
}

async fn timeout_on_sleeping_server(client: &mut Client) -> Outcome {
    let (tx, rx) = mpsc::channel(1);
    let mut request = Request::new(ReceiverStream::new(rx));
    request.set_timeout(Duration::from_millis(1));
    let message = StreamingOutputCallRequest {
        payload: Some(zeros(27_182)?),
        ..StreamingOutputCallRequest::default()
    };
    let _ = tx.send(message).await;
    let result = async {
        let mut stream = client.full_duplex_call(request).await?.into_inner();
        stream.message().await
    }
    .await;
    drop(tx);
    expect_code(result, Code::DeadlineExceeded)
}

/// Cancelling a Rust call is dropping it: the call is started (its request is on the wire),
/// then dropped before any answer, which resets the stream with CANCEL.
async fn cancel_after_begin(client: &mut Client) -> Outcome {
    let (_tx, rx) = mpsc::channel::<StreamingInputCallRequest>(1);
    let call = client.streaming_input_call(ReceiverStream::new(rx));
    tokio::pin!(call);
    tokio::select! {
        biased;
        result = &mut call => {
            return Err(CaseError::Assertion(format!(
                "the call ended before it was cancelled: {:?}",
                result.map(|_| ())
            )));
        }
        () = std::future::ready(()) => {}
    }
    Ok(())
}

async fn cancel_after_first_response(client: &mut Client) -> Outcome {
    let (_tx, mut stream) = open_duplex(client, duplex_request(27_182, 31_415)?).await?;
    let first = stream.message().await?;
    check(first.is_some(), || "no first response".into())?;
    // Dropping the call cancels it: the stream is reset with CANCEL.
    drop(stream);
    Ok(())
}

fn echo_status(message: &str) -> EchoStatus {
    EchoStatus {
        code: 2,
        message: message.to_owned(),
    }
}

async fn expect_status(client: &mut Client, message: &str) -> Outcome {
    let request = SimpleRequest {
        response_status: Some(echo_status(message)),
        ..SimpleRequest::default()
    };
    match client.unary_call(request).await {
        Err(s) if s.code() == Code::Unknown && s.message() == message => Ok(()),
        other => Err(CaseError::Assertion(format!(
            "UnaryCall: expected UNKNOWN {message:?}, got {:?}",
            other.map(|_| ())
        ))),
    }
}

async fn status_code_and_message(client: &mut Client) -> Outcome {
    let message = "test status message";
    expect_status(client, message).await?;
    let request = StreamingOutputCallRequest {
        response_status: Some(echo_status(message)),
        ..StreamingOutputCallRequest::default()
    };
    let result = async {
        let mut stream = client
            .full_duplex_call(tokio_stream::iter([request]))
            .await?
            .into_inner();
        stream.message().await
    }
    .await;
    match result {
        Err(s) if s.code() == Code::Unknown && s.message() == message => Ok(()),
        other => Err(CaseError::Assertion(format!(
            "FullDuplexCall: expected UNKNOWN {message:?}, got {:?}",
            other.map(|_| ())
        ))),
    }
}

async fn special_status_message(client: &mut Client) -> Outcome {
    expect_status(
        client,
        "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n",
    )
    .await
}

async fn unimplemented_method(client: &mut Client) -> Outcome {
    expect_code(
        client.unimplemented_call(Empty {}).await,
        Code::Unimplemented,
    )
}

async fn unimplemented_service(channel: MeshChannel) -> Outcome {
    let mut client = UnimplementedServiceClient::new(channel);
    expect_code(
        client.unimplemented_call(Empty {}).await,
        Code::Unimplemented,
    )
}

const INITIAL_KEY: &str = "x-grpc-test-echo-initial";
const INITIAL_VALUE: &str = "test_initial_metadata_value";
const TRAILING_KEY: &str = "x-grpc-test-echo-trailing-bin";
const TRAILING_VALUE: &[u8] = &[0xab, 0xab, 0xab];

fn add_echo_metadata(metadata: &mut MetadataMap) {
    metadata.insert(INITIAL_KEY, MetadataValue::from_static(INITIAL_VALUE));
    metadata.insert_bin(TRAILING_KEY, MetadataValue::from_bytes(TRAILING_VALUE));
}

fn check_echo(what: &str, headers: &MetadataMap, trailers: &MetadataMap) -> Outcome {
    let initial = headers.get(INITIAL_KEY).and_then(|v| v.to_str().ok());
    check(initial == Some(INITIAL_VALUE), || {
        format!("{what}: initial metadata {INITIAL_KEY} = {initial:?}")
    })?;
    let trailing = trailers
        .get_bin(TRAILING_KEY)
        .and_then(|v| v.to_bytes().ok());
    check(trailing.as_deref() == Some(TRAILING_VALUE), || {
        format!("{what}: trailing metadata {TRAILING_KEY} = {trailing:?}")
    })
}

async fn custom_metadata(client: &mut Client) -> Outcome {
    // Unary: tonic merges the trailers into the response's metadata.
    let mut request = Request::new(large_request()?);
    add_echo_metadata(request.metadata_mut());
    let response = client.unary_call(request).await?;
    check_echo("UnaryCall", response.metadata(), response.metadata())?;

    let message = StreamingOutputCallRequest {
        response_parameters: parameters(&[314_159]),
        payload: Some(zeros(271_828)?),
        ..StreamingOutputCallRequest::default()
    };
    let mut request = Request::new(tokio_stream::iter([message]));
    add_echo_metadata(request.metadata_mut());
    let response = client.full_duplex_call(request).await?;
    let headers = response.metadata().clone();
    let mut stream = response.into_inner();
    while stream.message().await?.is_some() {}
    let trailers = stream.trailers().await?.unwrap_or_default();
    check_echo("FullDuplexCall", &headers, &trailers)
}

async fn soak_case(soak: Soak, mut client: impl FnMut() -> Client) -> Outcome {
    for i in 0..soak.iterations {
        let started = Instant::now();
        large_unary(&mut client()).await.map_err(|e| {
            CaseError::Assertion(format!("iteration {i} of {}: {e}", soak.iterations))
        })?;
        let took = started.elapsed();
        check(took <= soak.max_latency, || {
            format!(
                "iteration {i} took {took:?}, over the {:?} allowed",
                soak.max_latency
            )
        })?;
    }
    Ok(())
}
