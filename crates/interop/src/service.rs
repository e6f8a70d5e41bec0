//! `grpc.testing.TestService`, as `doc/interop-test-descriptions.md` in grpc/grpc specifies the
//! server side: payloads of zeros of the requested sizes, the requested status echoed with its
//! message unchanged, streams paced by `interval_us`, `expect_compressed` checked against the
//! message's compressed flag, `response_compressed` honoured for unary answers (tonic compresses
//! every message of a response stream alike, so `ResponseParameters.compressed` is not).

use std::pin::Pin;
use std::time::Duration;

use calcmesh_proto::grpc_testing::test_service_server::{TestService, TestServiceServer};
use calcmesh_proto::grpc_testing::{
    BoolValue, EchoStatus, Empty, Payload, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::codec::SingleMessageCompressionOverride;
use tonic::{Request, Response, Status, Streaming};

use crate::flags::MessageFlags;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Responses buffered ahead of a slow client.
const STREAM_BUFFER: usize = 16;

/// The interop test service. Stateless: every call stands alone.
#[derive(Debug, Clone, Default)]
pub struct InteropService;

/// The tonic server for the interop service, accepting request messages up to `max_message_size`.
pub fn server(max_message_size: usize) -> TestServiceServer<InteropService> {
    calcmesh_runtime::compressed_server!(TestServiceServer::new(InteropService))
        .max_decoding_message_size(max_message_size)
}

/// A payload of `size` zero bytes (`COMPRESSABLE`, the only type the cases use).
pub fn zeros(size: i32) -> Result<Payload, Status> {
    let size = usize::try_from(size)
        .map_err(|_| Status::invalid_argument(format!("payload size {size} is negative")))?;
    Ok(Payload {
        r#type: 0,
        body: vec![0; size],
    })
}

/// The status a request asks for, if it asks for one other than OK.
fn requested_status(status: Option<&EchoStatus>) -> Option<Status> {
    let status = status.filter(|s| s.code != 0)?;
    Some(Status::new(
        tonic::Code::from_i32(status.code),
        status.message.clone(),
    ))
}

/// INVALID_ARGUMENT when a message that `expect`s to have come compressed did not (the next of
/// `flags` is that message's).
fn expect_compressed(
    expect: Option<&BoolValue>,
    flags: Option<&MessageFlags>,
) -> Result<(), Status> {
    let compressed = flags.and_then(MessageFlags::next);
    if expect.is_some_and(|e| e.value) && compressed != Some(true) {
        return Err(Status::invalid_argument(
            "expect_compressed is set, and the request message was not compressed",
        ));
    }
    Ok(())
}

/// The responses that `parameters` ask for, each after its interval, into `tx`; stops early
/// when the client has gone.
async fn respond(
    parameters: &[ResponseParameters],
    tx: &mpsc::Sender<Result<StreamingOutputCallResponse, Status>>,
) -> bool {
    for p in parameters {
        if p.interval_us > 0 {
            tokio::time::sleep(Duration::from_micros(p.interval_us as u64)).await;
        }
        let response = zeros(p.size).map(|payload| StreamingOutputCallResponse {
            payload: Some(payload),
        });
        if tx.send(response).await.is_err() {
            return false;
        }
    }
    true
}

#[tonic::async_trait]
impl TestService for InteropService {
    async fn empty_call(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let flags = request.extensions().get::<MessageFlags>().cloned();
        let request = request.into_inner();
        expect_compressed(request.expect_compressed.as_ref(), flags.as_ref())?;
        if let Some(status) = requested_status(request.response_status.as_ref()) {
            return Err(status);
        }
        let mut response = Response::new(SimpleResponse {
            payload: Some(zeros(request.response_size)?),
            ..SimpleResponse::default()
        });
        if !request.response_compressed.is_some_and(|c| c.value) {
            response
                .extensions_mut()
                .insert(SingleMessageCompressionOverride::Disable);
        }
        Ok(response)
    }

    async fn cacheable_unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        self.unary_call(request).await
    }

    type StreamingOutputCallStream = BoxStream<StreamingOutputCallResponse>;

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<Self::StreamingOutputCallStream>, Status> {
        let request = request.into_inner();
        if let Some(status) = requested_status(request.response_status.as_ref()) {
            return Err(status);
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move { respond(&request.response_parameters, &tx).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let flags = request.extensions().get::<MessageFlags>().cloned();
        let mut stream = request.into_inner();
        let mut total = 0usize;
        while let Some(message) = stream.next().await {
            let message = message?;
            expect_compressed(message.expect_compressed.as_ref(), flags.as_ref())?;
            total += message.payload.map_or(0, |p| p.body.len());
        }
        let aggregated_payload_size = i32::try_from(total)
            .map_err(|_| Status::resource_exhausted("aggregated payload size overflows int32"))?;
        Ok(Response::new(StreamingInputCallResponse {
            aggregated_payload_size,
        }))
    }

    type FullDuplexCallStream = BoxStream<StreamingOutputCallResponse>;

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::FullDuplexCallStream>, Status> {
        let mut stream = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                let request = match message {
                    Ok(request) => request,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if let Some(status) = requested_status(request.response_status.as_ref()) {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                if !respond(&request.response_parameters, &tx).await {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type HalfDuplexCallStream = BoxStream<StreamingOutputCallResponse>;

    async fn half_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::HalfDuplexCallStream>, Status> {
        let mut stream = request.into_inner();
        let mut requests = Vec::new();
        while let Some(message) = stream.next().await {
            requests.push(message?);
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            for request in requests {
                if !respond(&request.response_parameters, &tx).await {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn unimplemented_call(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented(
            "grpc.testing.TestService/UnimplementedCall is unimplemented, as the interop cases expect",
        ))
    }
}
