//! `calcmesh.evaluator.v1.Evaluator`, implemented.

use std::pin::Pin;

use calcmesh_calc::arith::Op;
use calcmesh_expr::{Limits, Step, parse};
use calcmesh_proto::calculator::Request as CalcRequest;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_proto::evaluator::evaluator_server::{Evaluator, EvaluatorServer};
use calcmesh_proto::evaluator::{
    Error as ItemError, EvaluateRequest, Evaluation, Step as WireStep,
};
use calcmesh_runtime::compression::Compression;
use calcmesh_runtime::{ENDPOINT_HEADER, MeshChannel, deadline};
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use crate::EvaluateError;

/// Evaluator limits. [`Default`] gives production defaults.
#[derive(Debug, Clone)]
pub struct EvaluatorConfig {
    /// Expression length, nesting and operation limits.
    pub limits: Limits,
    /// Calculator calls one evaluation may have in flight at once. Default 64.
    pub max_in_flight: usize,
    /// Evaluations one EvaluateStream works on at once (answers stay in order). Default 16.
    pub stream_concurrency: usize,
}

impl Default for EvaluatorConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_in_flight: 64,
            stream_concurrency: 16,
        }
    }
}

/// The evaluator service. Cheap to clone; clones share the calculator channel.
#[derive(Debug, Clone)]
pub struct EvaluatorService {
    calculators: CalculatorClient<MeshChannel>,
    config: EvaluatorConfig,
}

/// The tonic server for `service`, accepting request messages up to `max_message_size` bytes.
pub fn server(
    service: EvaluatorService,
    max_message_size: usize,
) -> EvaluatorServer<EvaluatorService> {
    calcmesh_runtime::compressed_server!(EvaluatorServer::new(service))
        .max_decoding_message_size(max_message_size)
}

fn wire_step(step: Step<String>) -> WireStep {
    WireStep {
        left: step.lhs,
        operator: step.op.symbol().to_owned(),
        right: step.rhs,
        result: step.result,
        endpoint: step.by,
    }
}

impl EvaluatorService {
    /// An evaluator that sends its operations over `calculators` (from
    /// [`calcmesh_runtime::connect`]).
    pub fn new(calculators: MeshChannel, config: EvaluatorConfig) -> Self {
        Self {
            // Reads compressed answers; asks plainly (the calculators then answer plainly).
            calculators: calcmesh_runtime::compressed_client!(
                CalculatorClient::new(calculators),
                Compression::Identity
            ),
            config,
        }
    }

    /// One `Calculate` call, bounded by the caller's deadline; returns the result and the
    /// endpoint that computed it.
    async fn calculate(
        mut client: CalculatorClient<MeshChannel>,
        op: Op,
        num1: f64,
        num2: f64,
        deadline: Option<Instant>,
    ) -> Result<(f64, String), Status> {
        let request = || {
            let mut request = Request::new(CalcRequest {
                num1,
                num2,
                operator: op.symbol().to_owned(),
            });
            deadline::propagate(&mut request, deadline);
            request
        };
        // The channel retries calls that failed before any answer; one whose connection broke
        // mid-answer is UNAVAILABLE, and Calculate is pure, so it is sent once more.
        let response = match client.calculate(request()).await {
            Err(status)
                if status.code() == tonic::Code::Unavailable
                    && deadline.is_none_or(|d| Instant::now() < d) =>
            {
                client.calculate(request()).await?
            }
            other => other?,
        };
        let endpoint = response
            .metadata()
            .get(ENDPOINT_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok((response.into_inner().result, endpoint))
    }

    /// Parses and evaluates `expression` within `deadline`.
    ///
    /// # Errors
    /// See [`EvaluateError`].
    pub async fn evaluate_expression(
        &self,
        expression: &str,
        deadline: Option<Instant>,
    ) -> Result<Evaluation, EvaluateError> {
        let program = parse(expression, &self.config.limits)?;
        let steps = program.operations();
        let client = &self.calculators;
        let evaluation = program.evaluate(
            |op, a, b| Self::calculate(client.clone(), op, a, b, deadline),
            self.config.max_in_flight,
        );
        let (value, steps) = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, evaluation)
                .await
                .map_err(|_| EvaluateError::Deadline { steps })??,
            None => evaluation.await?,
        };
        Ok(Evaluation {
            value,
            steps: steps.into_iter().map(wire_step).collect(),
            error: None,
        })
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Evaluator for EvaluatorService {
    async fn evaluate(
        &self,
        request: Request<EvaluateRequest>,
    ) -> Result<Response<Evaluation>, Status> {
        let deadline = deadline::deadline(request.metadata());
        let expression = &request.get_ref().expression;
        let evaluation = self
            .evaluate_expression(expression, deadline)
            .await
            .inspect_err(|err| {
                tracing::debug!(%err, "evaluation failed");
            })?;
        Ok(Response::new(evaluation))
    }

    type EvaluateStreamStream = BoxStream<Evaluation>;

    async fn evaluate_stream(
        &self,
        request: Request<Streaming<EvaluateRequest>>,
    ) -> Result<Response<Self::EvaluateStreamStream>, Status> {
        let deadline = deadline::deadline(request.metadata());
        let this = self.clone();
        let answers = request
            .into_inner()
            .map(move |item| {
                let this = this.clone();
                async move {
                    let expression = item?.expression;
                    Ok(
                        match this.evaluate_expression(&expression, deadline).await {
                            Ok(evaluation) => evaluation,
                            Err(err) => Evaluation {
                                error: Some(ItemError {
                                    code: err.code() as i32,
                                    message: err.to_string(),
                                }),
                                ..Evaluation::default()
                            },
                        },
                    )
                }
            })
            .buffered(self.config.stream_concurrency.max(1));
        Ok(Response::new(Box::pin(answers)))
    }
}
