//! `calculator.Calculator`, implemented.

use calcmesh_runtime::server::unary::Unary;
use calcmesh_runtime::{Server, ServerConfig};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use calcmesh_calc::{arith, factor, stats::RunningStats};
use calcmesh_proto::calculator::calculator_server::{Calculator, CalculatorServer};
use calcmesh_proto::calculator::{
    Error as ItemError, Factor, FactorizeRequest, Number, Request as CalcRequest,
    Response as CalcResponse, Summary,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::ServiceError;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Factors buffered between the factorizing thread and the response stream; a slow or departed
/// client stops the work after at most this many.
const FACTOR_BUFFER: usize = 8;

/// The calculator service. Cheap to clone; clones share their counters.
#[derive(Debug, Clone)]
pub struct CalculatorService {
    factorizations: watch::Sender<usize>,
    calculations: Arc<AtomicU64>,
}

impl Default for CalculatorService {
    fn default() -> Self {
        Self::new()
    }
}

impl CalculatorService {
    /// A new service.
    pub fn new() -> Self {
        Self {
            factorizations: watch::Sender::new(0),
            calculations: Arc::default(),
        }
    }

    /// Operations computed so far by `Calculate` and `CalculateStream`, failed ones included.
    pub fn calculations(&self) -> u64 {
        self.calculations.load(Ordering::Relaxed)
    }

    /// Factorizations running right now; it drops as soon as one finishes or its client leaves.
    pub fn factorizations(&self) -> watch::Receiver<usize> {
        self.factorizations.subscribe()
    }

    /// `Calculate`'s answer, computed at once: the trait method and the lean path's handler
    /// both give this.
    fn answer(&self, request: &Request<CalcRequest>) -> Result<Response<CalcResponse>, Status> {
        self.calculations.fetch_add(1, Ordering::Relaxed);
        let result = calculate(request.get_ref())?;
        Ok(Response::new(CalcResponse {
            result,
            error: None,
        }))
    }
}

/// A [`Server`] of the mesh runtime with `service` on it (and the descriptors reflection lists):
/// the one way a calculator is served, by the binary, by `up`, and by every test that needs a
/// real one. Clones of `service` share their counters.
///
/// `Calculate`'s plain calls take the runtime's lean unary path ([`Unary`]); the same handler
/// answers every other `Calculate` call through tonic's codec.
pub fn mesh_server(config: &ServerConfig, service: CalculatorService) -> Server {
    let handler = service.clone();
    let calculate = move |request| std::future::ready(handler.answer(&request));
    Server::new(config.clone())
        .add_service(Unary::new(
            server(service, config.max_message_size),
            "/calculator.Calculator/Calculate",
            calculate,
        ))
        .add_descriptors(calcmesh_proto::FILE_DESCRIPTOR_SET)
}

/// The tonic server for `service`, accepting request messages up to `max_message_size` bytes.
pub fn server(
    service: CalculatorService,
    max_message_size: usize,
) -> CalculatorServer<CalculatorService> {
    calcmesh_runtime::compressed_server!(CalculatorServer::new(service))
        .max_decoding_message_size(max_message_size)
}

fn calculate(req: &CalcRequest) -> Result<f64, ServiceError> {
    Ok(arith::calculate(req.num1, &req.operator, req.num2)?)
}

fn summary(s: calcmesh_calc::stats::Summary) -> Summary {
    Summary {
        count: s.count,
        sum: s.sum,
        mean: s.mean,
        min: s.min,
        max: s.max,
        variance: s.variance,
    }
}

/// Decrements the running-factorizations gauge when the work ends, however it ends.
struct InProgress(watch::Sender<usize>);

impl InProgress {
    fn start(gauge: &watch::Sender<usize>) -> Self {
        gauge.send_modify(|n| *n += 1);
        Self(gauge.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

#[tonic::async_trait]
impl Calculator for CalculatorService {
    async fn calculate(
        &self,
        request: Request<CalcRequest>,
    ) -> Result<Response<CalcResponse>, Status> {
        self.answer(&request)
    }

    type CalculateStreamStream = BoxStream<CalcResponse>;

    async fn calculate_stream(
        &self,
        request: Request<Streaming<CalcRequest>>,
    ) -> Result<Response<Self::CalculateStreamStream>, Status> {
        // Mapping the inbound stream keeps responses in request order, one for one, with no task
        // or buffer in between; a transport error on the inbound side ends the call with it.
        let calculations = self.calculations.clone();
        let responses = request.into_inner().map(move |item| {
            let req = item?;
            calculations.fetch_add(1, Ordering::Relaxed);
            Ok(match calculate(&req) {
                Ok(result) => CalcResponse {
                    result,
                    error: None,
                },
                Err(err) => CalcResponse {
                    result: 0.0,
                    error: Some(ItemError {
                        code: err.code() as i32,
                        message: err.to_string(),
                    }),
                },
            })
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn summarize(
        &self,
        request: Request<Streaming<Number>>,
    ) -> Result<Response<Summary>, Status> {
        let mut numbers = request.into_inner();
        let mut stats = RunningStats::new();
        while let Some(number) = numbers.message().await? {
            stats.push(number.value).map_err(ServiceError::from)?;
        }
        Ok(Response::new(summary(stats.summary())))
    }

    type FactorizeStream = ReceiverStream<Result<Factor, Status>>;

    async fn factorize(
        &self,
        request: Request<FactorizeRequest>,
    ) -> Result<Response<Self::FactorizeStream>, Status> {
        let n = request.get_ref().number;
        if n < 2 {
            return Err(ServiceError::from(factor::FactorError::NoFactorization(n)).into());
        }
        let (tx, rx) = mpsc::channel(FACTOR_BUFFER);
        let in_progress = InProgress::start(&self.factorizations);
        tokio::task::spawn_blocking(move || {
            let _in_progress = in_progress;
            let flow =
                factor::factorize_with(n, |prime| match tx.blocking_send(Ok(Factor { prime })) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                });
            if let Ok(ControlFlow::Break(())) = flow {
                tracing::debug!(n, "factorization stopped: the client went away");
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type RunningSummaryStream = BoxStream<Summary>;

    async fn running_summary(
        &self,
        request: Request<Streaming<Number>>,
    ) -> Result<Response<Self::RunningSummaryStream>, Status> {
        let mut stats = RunningStats::new();
        let summaries = request.into_inner().map(move |item| {
            stats.push(item?.value).map_err(ServiceError::from)?;
            Ok(summary(stats.summary()))
        });
        Ok(Response::new(Box::pin(summaries)))
    }
}
