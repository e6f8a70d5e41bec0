//! `connectrpc.conformance.v1.ConformanceService` as the suite specifies the server under test
//! (its `docs/testing_servers.md`): every method echoes what it received — headers, timeout and
//! each request message — and answers as the request's response definition says: headers,
//! data, an error, trailers, a delay.

use std::time::Duration;

use prost::Message;
use prost_types::Any;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::headers;
use crate::proto::conformance_payload::RequestInfo;
use crate::proto::conformance_service_server::{ConformanceService, ConformanceServiceServer};
use crate::proto::unary_response_definition::Response as Answer;
use crate::proto::{
    BidiStreamRequest, BidiStreamResponse, ClientStreamRequest, ClientStreamResponse,
    ConformancePayload, Error, IdempotentUnaryRequest, IdempotentUnaryResponse,
    ServerStreamRequest, ServerStreamResponse, StreamResponseDefinition, UnaryRequest,
    UnaryResponse, UnaryResponseDefinition, UnimplementedRequest, UnimplementedResponse,
};

/// The service, reading messages up to `max_message_size` bytes and the encodings every
/// calcmesh server reads.
pub fn server(max_message_size: usize) -> ConformanceServiceServer<Conformance> {
    calcmesh_runtime::compressed_server!(ConformanceServiceServer::new(Conformance))
        .max_decoding_message_size(max_message_size)
        .max_encoding_message_size(usize::MAX)
}

/// The handlers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conformance;

type Answers<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl ConformanceService for Conformance {
    async fn unary(
        &self,
        request: Request<UnaryRequest>,
    ) -> Result<Response<UnaryResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let requests = vec![packed("UnaryRequest", &message)];
        answer_once(&metadata, requests, message.response_definition)
            .await
            .map(|r| r.map(|payload| UnaryResponse { payload }))
    }

    async fn idempotent_unary(
        &self,
        request: Request<IdempotentUnaryRequest>,
    ) -> Result<Response<IdempotentUnaryResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let requests = vec![packed("IdempotentUnaryRequest", &message)];
        answer_once(&metadata, requests, message.response_definition)
            .await
            .map(|r| r.map(|payload| IdempotentUnaryResponse { payload }))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<ClientStreamRequest>>,
    ) -> Result<Response<ClientStreamResponse>, Status> {
        let (metadata, _, mut stream) = request.into_parts();
        let mut requests = Vec::new();
        let mut definition = None;
        while let Some(message) = stream.message().await? {
            requests.push(packed("ClientStreamRequest", &message));
            if requests.len() == 1 {
                definition = message.response_definition;
            }
        }
        answer_once(&metadata, requests, definition)
            .await
            .map(|r| r.map(|payload| ClientStreamResponse { payload }))
    }

    type ServerStreamStream = Answers<ServerStreamResponse>;

    async fn server_stream(
        &self,
        request: Request<ServerStreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        let (metadata, _, message) = request.into_parts();
        let info = request_info(&metadata, vec![packed("ServerStreamRequest", &message)]);
        let definition = message.response_definition.unwrap_or_default();
        let (tx, rx) = mpsc::channel(1);
        let response = stream_response(&definition, rx);
        let plan = Plan::new(definition, info);
        tokio::spawn(plan.send_rest(tx, |payload| ServerStreamResponse { payload }));
        Ok(response)
    }

    type BidiStreamStream = Answers<BidiStreamResponse>;

    async fn bidi_stream(
        &self,
        request: Request<Streaming<BidiStreamRequest>>,
    ) -> Result<Response<Self::BidiStreamStream>, Status> {
        let (metadata, _, mut stream) = request.into_parts();
        let Some(first) = stream.message().await? else {
            return Ok(Response::new(ReceiverStream::new(mpsc::channel(1).1)));
        };
        let mut requests = vec![packed("BidiStreamRequest", &first)];
        let definition = first.response_definition.clone().unwrap_or_default();
        if !first.full_duplex {
            while let Some(message) = stream.message().await? {
                requests.push(packed("BidiStreamRequest", &message));
            }
        }
        let (tx, rx) = mpsc::channel(1);
        let response = stream_response(&definition, rx);
        let plan = Plan::new(definition, request_info(&metadata, requests));
        let wrap = |payload| BidiStreamResponse { payload };
        if first.full_duplex {
            tokio::spawn(plan.full_duplex(stream, tx, wrap));
        } else {
            tokio::spawn(plan.send_rest(tx, wrap));
        }
        Ok(response)
    }

    async fn unimplemented(
        &self,
        _request: Request<UnimplementedRequest>,
    ) -> Result<Response<UnimplementedResponse>, Status> {
        Err(Status::unimplemented(
            "connectrpc.conformance.v1.ConformanceService.Unimplemented is not implemented",
        ))
    }
}

/// A unary answer: the payload echoing `requests`, or the definition's error.
async fn answer_once(
    metadata: &MetadataMap,
    requests: Vec<Any>,
    definition: Option<UnaryResponseDefinition>,
) -> Result<Response<Option<ConformancePayload>>, Status> {
    let info = request_info(metadata, requests);
    let definition = definition.unwrap_or_default();
    let headers = headers::metadata(&definition.response_headers);
    let trailers = headers::metadata(&definition.response_trailers);
    tokio::time::sleep(Duration::from_millis(definition.response_delay_ms.into())).await;
    let data = match definition.response {
        Some(Answer::Error(error)) => {
            let mut both = headers;
            both.as_mut().extend(trailers.into_headers());
            return Err(status(error, Some(info), both));
        }
        Some(Answer::ResponseData(data)) => data,
        None => Vec::new(),
    };
    let payload = ConformancePayload {
        data,
        request_info: Some(info),
    };
    let mut response = Response::new(Some(payload));
    *response.metadata_mut() = headers;
    calcmesh_runtime::server::trailers::set(&mut response, trailers);
    Ok(response)
}

/// A streaming response with the definition's headers and trailers, its messages from `rx`.
fn stream_response<T>(
    definition: &StreamResponseDefinition,
    rx: mpsc::Receiver<Result<T, Status>>,
) -> Response<Answers<T>> {
    let mut response = Response::new(ReceiverStream::new(rx));
    *response.metadata_mut() = headers::metadata(&definition.response_headers);
    calcmesh_runtime::server::trailers::set(
        &mut response,
        headers::metadata(&definition.response_trailers),
    );
    response
}

/// What a streaming call still has to send: the definition's messages, then its error.
struct Plan {
    data: std::vec::IntoIter<Vec<u8>>,
    delay: Duration,
    error: Option<Error>,
    /// The request info, until the first message (or the error) carries it.
    info: Option<RequestInfo>,
}

impl Plan {
    fn new(definition: StreamResponseDefinition, info: RequestInfo) -> Self {
        Self {
            data: definition.response_data.into_iter(),
            delay: Duration::from_millis(definition.response_delay_ms.into()),
            error: definition.error,
            info: Some(info),
        }
    }

    /// The next message, after the delay; `None` when none is left.
    async fn next(&mut self, info: Option<RequestInfo>) -> Option<ConformancePayload> {
        let data = self.data.next()?;
        tokio::time::sleep(self.delay).await;
        Some(ConformancePayload {
            data,
            request_info: self.info.take().or(info),
        })
    }

    /// Sends the messages left, then the error if there is one.
    async fn send_rest<T>(
        mut self,
        tx: mpsc::Sender<Result<T, Status>>,
        wrap: impl Fn(Option<ConformancePayload>) -> T,
    ) {
        while let Some(payload) = self.next(None).await {
            if tx.send(Ok(wrap(Some(payload)))).await.is_err() {
                return; // the call is over (cancelled)
            }
        }
        self.finish(&tx).await;
    }

    /// Full duplex: a message for each request as it comes; once the client is done or the
    /// messages run out, the rest.
    async fn full_duplex<T>(
        mut self,
        mut stream: Streaming<BidiStreamRequest>,
        tx: mpsc::Sender<Result<T, Status>>,
        wrap: impl Fn(Option<ConformancePayload>) -> T,
    ) {
        let mut latest = None;
        loop {
            // The first answer echoes the first request (in the full request info).
            let info = latest.take().map(|request| RequestInfo {
                requests: vec![request],
                ..RequestInfo::default()
            });
            let Some(payload) = self.next(info).await else {
                break;
            };
            if tx.send(Ok(wrap(Some(payload)))).await.is_err() {
                return;
            }
            match stream.message().await {
                Ok(Some(message)) => latest = Some(packed("BidiStreamRequest", &message)),
                Ok(None) => break,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
        self.send_rest(tx, wrap).await;
    }

    /// Ends the stream with the definition's error, if it has one.
    async fn finish<T>(&mut self, tx: &mpsc::Sender<Result<T, Status>>) {
        if let Some(error) = self.error.take() {
            let _ = tx
                .send(Err(status(error, self.info.take(), MetadataMap::new())))
                .await;
        }
    }
}

/// What the server saw of the call: its headers, its timeout and its messages.
fn request_info(metadata: &MetadataMap, requests: Vec<Any>) -> RequestInfo {
    let timeout_ms = calcmesh_runtime::deadline::time_left(metadata)
        .map(|left| i64::try_from(left.as_millis()).unwrap_or(i64::MAX));
    RequestInfo {
        request_headers: headers::listed(metadata),
        timeout_ms,
        requests,
        connect_get_info: None,
    }
}

/// `message` as an `Any` of the suite's type `name`.
fn packed(name: &str, message: &impl Message) -> Any {
    Any {
        type_url: format!("type.googleapis.com/connectrpc.conformance.v1.{name}"),
        value: message.encode_to_vec(),
    }
}

/// The status `error` defines: its code and message, and in `grpc-status-details-bin` a
/// `google.rpc.Status` with its details and, where no message carried it, the request info.
fn status(error: Error, info: Option<RequestInfo>, metadata: MetadataMap) -> Status {
    let code = tonic::Code::from_i32(error.code);
    let message = error.message.unwrap_or_default();
    let mut details = error.details;
    if let Some(info) = info {
        details.push(packed("ConformancePayload.RequestInfo", &info));
    }
    let rich = RpcStatus {
        code: error.code,
        message: message.clone(),
        details,
    };
    Status::with_details_and_metadata(code, message, rich.encode_to_vec().into(), metadata)
}

/// `google.rpc.Status`, the message `grpc-status-details-bin` carries: three fields, written
/// here rather than pulling in a crate of Google's RPC types for them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// The gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The message, as in `grpc-message`.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Details, each a packed message.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}
