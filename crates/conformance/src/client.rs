//! The client under test: each `ClientCompatRequest` the runner sends becomes one call over a
//! [`MeshChannel`] — the channel every calcmesh client uses, TLS, compression, deadlines and
//! message limits included — and its `ClientCompatResponse` says what came back: headers,
//! messages, the status with its details, trailers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use calcmesh_runtime::client::Protocol;
use calcmesh_runtime::client::ServiceConfig;
use calcmesh_runtime::client::reply::one_message;
use calcmesh_runtime::tls::ClientTls;
use calcmesh_runtime::{ClientConfig, MeshChannel, Target, connect};
use prost::Message;
use prost_types::Any;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::{Status, Streaming};

use crate::headers;
use crate::proto::client_compat_request::cancel::CancelTiming;
use crate::proto::client_compat_response::Result as Outcome;
use crate::proto::{
    self, ClientCompatRequest, ClientCompatResponse, ClientErrorResult, ClientResponseResult,
    Compression, ConformancePayload, Error, HttpVersion, StreamType,
};
use crate::service::RpcStatus;

/// Every response message of the service: `{ ConformancePayload payload = 1; }` (the empty
/// `UnimplementedResponse` reads as one without it).
#[derive(Clone, PartialEq, prost::Message)]
struct Answer {
    #[prost(message, optional, tag = "1")]
    payload: Option<ConformancePayload>,
}

/// Channels by what makes them differ (address, TLS, receive limit), made once each.
pub struct Channels {
    made: Mutex<HashMap<Vec<u8>, MeshChannel>>,
    dir: PathBuf,
}

impl Channels {
    /// Channels whose TLS files are written under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            made: Mutex::default(),
            dir,
        }
    }

    fn get(&self, request: &ClientCompatRequest) -> anyhow::Result<MeshChannel> {
        let key = ClientCompatRequest {
            host: request.host.clone(),
            port: request.port,
            server_tls_cert: request.server_tls_cert.clone(),
            client_tls_creds: request.client_tls_creds.clone(),
            message_receive_limit: request.message_receive_limit,
            protocol: request.protocol,
            http_version: request.http_version,
            ..ClientCompatRequest::default()
        }
        .encode_to_vec();
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = made.get(&key) {
            return Ok(channel.clone());
        }
        let dir = self.dir.join(made.len().to_string());
        let channel = channel(request, &dir)?;
        made.insert(key, channel.clone());
        Ok(channel)
    }
}

/// A channel to the runner's server, as `request` configures it.
fn channel(request: &ClientCompatRequest, dir: &Path) -> anyhow::Result<MeshChannel> {
    let target: Target = format!("{}:{}", request.host, request.port)
        .parse()
        .context("the runner's host and port")?;
    let mut config = ClientConfig {
        max_attempts: 1,
        protocol: protocol(request)?,
        // The runner's reference servers have no health service, and connect-go's answers
        // every call without an `x-test-case-name` header INVALID_ARGUMENT, which a health
        // check rightly takes as the endpoint refusing: check nothing, as grpc-go's channels
        // do unless the service config asks.
        health_service: None,
        ..ClientConfig::default()
    };
    if !request.server_tls_cert.is_empty() {
        config.tls = Some(tls(request, dir)?);
    }
    if request.message_receive_limit > 0 {
        // The runtime's limit on response messages: the service config's, for every method.
        let json = format!(
            r#"{{"methodConfig":[{{"name":[{{}}],"maxResponseMessageBytes":{}}}]}}"#,
            request.message_receive_limit
        );
        config.service_config = Some(Arc::new(ServiceConfig::parse(
            "message_receive_limit",
            &json,
        )?));
    }
    Ok(connect(&target, &config)?)
}

/// gRPC, or gRPC-Web over HTTP/1.1 or HTTP/2, as the case asks.
fn protocol(request: &ClientCompatRequest) -> anyhow::Result<Protocol> {
    let http1 = request.http_version() == HttpVersion::HttpVersion1;
    Ok(match request.protocol() {
        proto::Protocol::Grpc if !http1 => Protocol::Grpc,
        proto::Protocol::GrpcWeb if http1 => Protocol::GrpcWebHttp1,
        proto::Protocol::GrpcWeb => Protocol::GrpcWebHttp2,
        other => bail!(
            "calcmesh's client speaks gRPC over HTTP/2 and gRPC-Web; not {other:?} over {:?}",
            request.http_version()
        ),
    })
}

/// The server's certificate as the CA, and the client certificate if the runner sent one.
fn tls(request: &ClientCompatRequest, dir: &Path) -> anyhow::Result<ClientTls> {
    let write = |name: &str, bytes: &[u8]| crate::wire::pem_file(dir, name, bytes);
    let ca = write("server-ca.pem", &request.server_tls_cert)?;
    let identity = match &request.client_tls_creds {
        Some(creds) => Some((
            write("client.pem", &creds.cert)?,
            write("client.key", &creds.key)?,
        )),
        None => None,
    };
    let identity = identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    Ok(ClientTls::load(&ca, identity)?)
}

/// Runs `request`'s call and says what came back.
pub async fn run(channels: &Channels, request: ClientCompatRequest) -> ClientCompatResponse {
    let test_name = request.test_name.clone();
    let result = match call(channels, request).await {
        Ok(result) => Outcome::Response(result),
        Err(err) => Outcome::Error(ClientErrorResult {
            message: format!("{err:#}"),
        }),
    };
    ClientCompatResponse {
        test_name,
        result: Some(result),
    }
}

async fn call(
    channels: &Channels,
    request: ClientCompatRequest,
) -> anyhow::Result<ClientResponseResult> {
    let service = request.service.as_deref().unwrap_or_default();
    if service != "connectrpc.conformance.v1.ConformanceService" {
        bail!(
            "service {service:?}: this client calls only connectrpc.conformance.v1.ConformanceService"
        );
    }
    let method = request.method.clone().unwrap_or_default();
    let expected = match method.as_str() {
        "Unary" | "ServerStream" | "ClientStream" | "BidiStream" | "Unimplemented"
        | "IdempotentUnary" => {
            format!("connectrpc.conformance.v1.{method}Request")
        }
        other => bail!("method {other:?} is not one of ConformanceService's"),
    };
    let messages = request
        .request_messages
        .iter()
        .map(|any| unpack(any, &expected))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let channel = channels.get(&request)?;
    let path = format!("/{service}/{method}");
    let call = Call::start(channel, &request, path)?;
    Ok(call.run(messages).await)
}

/// The bytes of `any`, when it holds a `expected`.
fn unpack(any: &Any, expected: &str) -> anyhow::Result<Vec<u8>> {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    if name != expected {
        bail!("a request message of type {name:?} where the method takes {expected:?}");
    }
    Ok(any.value.clone())
}

/// One call being made: its requests go out through `tx`, its answer comes from `response`.
struct Call {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    response: tokio::task::JoinHandle<Result<tonic::Response<Streaming<Answer>>, Status>>,
    stream_type: StreamType,
    delay: Duration,
    cancel: Option<CancelTiming>,
    result: ClientResponseResult,
}

/// Why a call ended before its answer did.
enum Ended {
    /// The call failed with this status.
    Failed(Status),
    /// The client cancelled it, as the request said to.
    Cancelled,
}

impl Call {
    fn start(
        channel: MeshChannel,
        request: &ClientCompatRequest,
        path: String,
    ) -> anyhow::Result<Self> {
        let mut grpc = tonic::client::Grpc::new(channel)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        grpc = match request.compression() {
            Compression::Identity | Compression::Unspecified => grpc,
            Compression::Gzip => grpc.send_compressed(CompressionEncoding::Gzip),
            Compression::Zstd => grpc.send_compressed(CompressionEncoding::Zstd),
            other => bail!("compression {other:?}: this client sends identity, gzip or zstd"),
        };
        let path: http::uri::PathAndQuery = path.parse().context("the method's path")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut call = tonic::Request::new(UnboundedReceiverStream::new(rx));
        *call.metadata_mut() = headers::metadata(&request.request_headers);
        if let Some(ms) = request.timeout_ms {
            call.set_timeout(Duration::from_millis(ms.into()));
        }
        let response = tokio::spawn(async move { grpc.streaming(call, path, BytesCodec).await });
        Ok(Self {
            tx: Some(tx),
            response,
            stream_type: request.stream_type(),
            delay: Duration::from_millis(request.request_delay_ms.into()),
            cancel: request.cancel.as_ref().and_then(|c| c.cancel_timing),
            result: ClientResponseResult::default(),
        })
    }

    /// Sends `messages`, reads the answer, and says what happened.
    async fn run(mut self, messages: Vec<Vec<u8>>) -> ClientResponseResult {
        let ended = match self.stream_type {
            StreamType::FullDuplexBidiStream => self.full_duplex(messages).await,
            _ => self.send_then_read(messages).await,
        };
        match ended {
            Ok(()) => {}
            Err(Ended::Failed(status)) => self.failed(&status),
            Err(Ended::Cancelled) => {
                self.response.abort();
                self.failed(&Status::cancelled(
                    "the client cancelled the call (as the ClientCompatRequest's cancel said)",
                ));
            }
        }
        self.result
    }

    /// Every stream type but full duplex: all requests, the end of them, then the answer.
    async fn send_then_read(&mut self, messages: Vec<Vec<u8>>) -> Result<(), Ended> {
        let total = messages.len();
        for (i, message) in messages.into_iter().enumerate() {
            self.pause().await;
            if !self.send(message) {
                self.result.num_unsent_requests = i32::try_from(total - i).unwrap_or(i32::MAX);
                break;
            }
        }
        let left = self.close()?;
        within(left, async {
            let mut stream = self.headers().await?;
            self.read_rest(&mut stream).await
        })
        .await
    }

    /// Full duplex: a request, then an answer, in turn; then the end of the requests and the
    /// answers left.
    async fn full_duplex(&mut self, messages: Vec<Vec<u8>>) -> Result<(), Ended> {
        let total = messages.len();
        let mut stream = None;
        for (i, message) in messages.into_iter().enumerate() {
            self.pause().await;
            if !self.send(message) {
                self.result.num_unsent_requests = i32::try_from(total - i).unwrap_or(i32::MAX);
                break;
            }
            if stream.is_none() {
                stream = Some(self.headers().await?);
            }
            let Some(stream) = stream.as_mut() else { break };
            if !self.read_one(stream).await? {
                break;
            }
        }
        let left = self.close()?;
        within(left, async {
            let mut stream = match stream {
                Some(stream) => stream,
                None => self.headers().await?,
            };
            self.read_rest(&mut stream).await
        })
        .await
    }

    /// The request's delay before each message, for the streams that send several.
    async fn pause(&self) {
        if matches!(
            self.stream_type,
            StreamType::ClientStream
                | StreamType::HalfDuplexBidiStream
                | StreamType::FullDuplexBidiStream
        ) {
            tokio::time::sleep(self.delay).await;
        }
    }

    /// Queues `message`; false once the call no longer takes requests.
    fn send(&self, message: Vec<u8>) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(message).is_ok())
    }

    /// Ends the requests — or cancels the call instead, where the request says to cancel
    /// before the close — and says how long the call may then go on before it is cancelled.
    fn close(&mut self) -> Result<Option<Duration>, Ended> {
        if matches!(self.cancel, Some(CancelTiming::BeforeCloseSend(_))) {
            return Err(Ended::Cancelled);
        }
        self.tx = None;
        Ok(match self.cancel {
            Some(CancelTiming::AfterCloseSendMs(ms)) => Some(Duration::from_millis(ms.into())),
            _ => None,
        })
    }

    /// The response headers, once they came.
    async fn headers(&mut self) -> Result<Streaming<Answer>, Ended> {
        let response = match (&mut self.response).await {
            Ok(response) => response.map_err(Ended::Failed)?,
            Err(err) => return Err(Ended::Failed(Status::unknown(err.to_string()))),
        };
        self.result.response_headers = headers::listed(response.metadata());
        Ok(response.into_inner())
    }

    /// The next answer into the result; false at the end of them.
    async fn read_one(&mut self, stream: &mut Streaming<Answer>) -> Result<bool, Ended> {
        self.cancel_after_responses()?;
        match stream.message().await.map_err(Ended::Failed)? {
            Some(answer) => {
                self.result
                    .payloads
                    .push(answer.payload.unwrap_or_default());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Cancelled, once as many answers came as the request said to cancel after.
    fn cancel_after_responses(&self) -> Result<(), Ended> {
        match self.cancel {
            Some(CancelTiming::AfterNumResponses(n))
                if self.result.payloads.len() >= n as usize =>
            {
                Err(Ended::Cancelled)
            }
            _ => Ok(()),
        }
    }

    /// The answers left (one, exactly, for unary and client-streaming calls), then the trailers.
    async fn read_rest(&mut self, stream: &mut Streaming<Answer>) -> Result<(), Ended> {
        match self.stream_type {
            StreamType::Unary | StreamType::ClientStream => {
                let answer = one_message(stream).await.map_err(Ended::Failed)?;
                self.result
                    .payloads
                    .push(answer.payload.unwrap_or_default());
            }
            _ => while self.read_one(stream).await? {},
        }
        if let Ok(Some(trailers)) = stream.trailers().await {
            self.result.response_trailers = headers::listed(&trailers);
        }
        Ok(())
    }

    /// The result of a call that ended with `status`: its code, message and details, and its
    /// metadata as the trailers (for a trailers-only answer, the only header block).
    fn failed(&mut self, status: &Status) {
        let details = RpcStatus::decode(status.details())
            .map(|s| s.details)
            .unwrap_or_default();
        self.result.error = Some(Error {
            code: status.code() as i32,
            message: Some(status.message().to_owned()),
            details,
        });
        self.result.response_trailers = headers::listed(status.metadata());
    }
}

/// `work`, cancelled if it takes longer than `left`.
async fn within(
    left: Option<Duration>,
    work: impl Future<Output = Result<(), Ended>>,
) -> Result<(), Ended> {
    let Some(left) = left else {
        return work.await;
    };
    tokio::select! {
        result = work => result,
        () = tokio::time::sleep(left) => Err(Ended::Cancelled),
    }
}

/// The codec of the calls: requests go as the runner's bytes, answers are read as [`Answer`].
#[derive(Debug, Clone, Copy, Default)]
struct BytesCodec;

impl tonic::codec::Codec for BytesCodec {
    type Encode = Vec<u8>;
    type Decode = Answer;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl tonic::codec::Encoder for BytesCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for BytesCodec {
    type Item = Answer;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Answer>, Status> {
        Answer::decode(src).map(Some).map_err(|err| {
            Status::internal(format!("a response message that is not protobuf: {err}"))
        })
    }
}
