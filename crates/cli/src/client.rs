//! The client commands: one per RPC kind of `calculator.Calculator`.

use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use calcmesh_calc::arith::format_number;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_proto::calculator::{FactorizeRequest, Number, Request, Summary};
use calcmesh_proto::evaluator::evaluator_client::EvaluatorClient;
use calcmesh_proto::evaluator::{EvaluateRequest, Evaluation};
use calcmesh_runtime::MeshChannel;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use crate::cli::{CalcArgs, ClientArgs, EvalArgs, FactorizeArgs, SummarizeArgs};

/// The canonical upper-case name of a status code, as gRPC documentation spells it.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `CODE: message`, with the transport's cause (e.g. "Connection refused") when there is one.
fn describe(status: &Status) -> String {
    let text = format!("{}: {}", code_name(status.code()), status.message());
    calcmesh_runtime::error::with_causes(text, status)
}

fn status_error(status: Status) -> anyhow::Error {
    anyhow!(describe(&status))
}

fn channel(args: &ClientArgs) -> anyhow::Result<MeshChannel> {
    Ok(calcmesh_runtime::connect(&args.target, &args.config()?)?)
}

fn client(args: &ClientArgs) -> anyhow::Result<CalculatorClient<MeshChannel>> {
    Ok(calcmesh_runtime::compressed_client!(
        CalculatorClient::new(channel(args)?),
        args.compression
    ))
}

fn request<T>(message: T, args: &ClientArgs) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(args.timeout.into());
    request
}

/// `calcmesh calc`.
pub(crate) async fn calc(args: CalcArgs) -> anyhow::Result<ExitCode> {
    let mut client = client(&args.client)?;
    if args.stream {
        return calc_stream(&mut client, &args.client).await;
    }
    let (Some(num1), Some(operator), Some(num2)) = (args.num1, args.op, args.num2) else {
        bail!("give NUM1 OP NUM2, or --stream");
    };
    let message = Request {
        num1,
        num2,
        operator,
    };
    let response = client
        .calculate(request(message, &args.client))
        .await
        .map_err(status_error)?;
    say!("{}", format_number(response.into_inner().result));
    Ok(ExitCode::SUCCESS)
}

fn parse_line(line: &str) -> Option<Request> {
    let mut words = line.split_whitespace();
    let (num1, operator, num2) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    Some(Request {
        num1: num1.parse().ok()?,
        operator: operator.to_owned(),
        num2: num2.parse().ok()?,
    })
}

/// Reads non-empty stdin lines into `tx`, each turned into a request by `parse`, until EOF or
/// a line `parse` refuses, which ends the stream with an error naming the line.
async fn read_requests<T>(
    tx: mpsc::Sender<T>,
    parse: impl Fn(&str) -> anyhow::Result<T>,
) -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut number = 0;
    while let Some(line) = lines.next_line().await.context("cannot read stdin")? {
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let request = parse(&line).with_context(|| format!("stdin line {number}"))?;
        if tx.send(request).await.is_err() {
            break;
        }
    }
    Ok(())
}

async fn calc_stream(
    client: &mut CalculatorClient<MeshChannel>,
    args: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let (tx, rx) = mpsc::channel(64);
    let reader = tokio::spawn(read_requests(tx, |line: &str| {
        parse_line(line).with_context(|| format!("expected `NUM1 OP NUM2`, got {line:?}"))
    }));
    let mut responses = client
        .calculate_stream(request(ReceiverStream::new(rx), args))
        .await
        .map_err(status_error)?
        .into_inner();
    let mut failed = false;
    while let Some(response) = responses.message().await.map_err(status_error)? {
        match response.error {
            Some(err) => {
                failed = true;
                say!(
                    "error: {}: {}",
                    code_name(Code::from(err.code)),
                    err.message
                );
            }
            None => say!("{}", format_number(response.result)),
        }
    }
    reader.await.context("stdin reader panicked")??;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summary(s: &Summary) {
    say!(
        "count={} sum={} mean={} min={} max={} variance={}",
        s.count,
        s.sum,
        s.mean,
        s.min,
        s.max,
        s.variance
    );
}

/// The numbers from the command line, or else from stdin.
async fn numbers(given: Vec<f64>) -> anyhow::Result<Vec<Number>> {
    let values = if given.is_empty() {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::stdin(), &mut text)
            .await
            .context("cannot read stdin")?;
        text.split_whitespace()
            .map(|word| {
                word.parse::<f64>()
                    .with_context(|| format!("stdin: {word:?} is not a number"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    } else {
        given
    };
    Ok(values.into_iter().map(|value| Number { value }).collect())
}

/// `calcmesh summarize`.
pub(crate) async fn summarize(args: SummarizeArgs) -> anyhow::Result<ExitCode> {
    let mut client = client(&args.client)?;
    let numbers = tokio_stream::iter(numbers(args.numbers).await?);
    if args.running {
        let mut summaries = client
            .running_summary(request(numbers, &args.client))
            .await
            .map_err(status_error)?
            .into_inner();
        while let Some(summary) = summaries.message().await.map_err(status_error)? {
            print_summary(&summary);
        }
    } else {
        let summary = client
            .summarize(request(numbers, &args.client))
            .await
            .map_err(status_error)?;
        print_summary(summary.get_ref());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_evaluation(evaluation: &Evaluation, steps: bool) {
    say!("{}", format_number(evaluation.value));
    if !steps {
        return;
    }
    let rows: Vec<(String, String, &str)> = evaluation
        .steps
        .iter()
        .map(|s| {
            let operation = format!(
                "{} {} {}",
                format_number(s.left),
                s.operator,
                format_number(s.right)
            );
            (
                operation,
                format_number(s.result),
                if s.endpoint.is_empty() {
                    "?"
                } else {
                    &s.endpoint
                },
            )
        })
        .collect();
    let width = |f: fn(&(String, String, &str)) -> usize, title: &str| {
        rows.iter().map(f).max().unwrap_or(0).max(title.len())
    };
    let (w_op, w_res) = (
        width(|r| r.0.len(), "operation"),
        width(|r| r.1.len(), "result"),
    );
    say!(
        "{:>4}  {:<w_op$}  {:>w_res$}  endpoint",
        "step",
        "operation",
        "result"
    );
    for (i, (operation, result, endpoint)) in rows.iter().enumerate() {
        say!(
            "{:>4}  {operation:<w_op$}  {result:>w_res$}  {endpoint}",
            i + 1
        );
    }
}

/// `calcmesh eval`.
pub(crate) async fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let mut client = calcmesh_runtime::compressed_client!(
        EvaluatorClient::new(channel(&args.client)?),
        args.client.compression
    );
    if !args.stream {
        let expression = args.expression.context("give an EXPRESSION, or --stream")?;
        let evaluation = client
            .evaluate(request(EvaluateRequest { expression }, &args.client))
            .await
            .map_err(status_error)?;
        print_evaluation(evaluation.get_ref(), args.steps);
        return Ok(ExitCode::SUCCESS);
    }
    let (tx, rx) = mpsc::channel(64);
    let reader = tokio::spawn(read_requests(tx, |line: &str| {
        Ok(EvaluateRequest {
            expression: line.to_owned(),
        })
    }));
    let mut answers = client
        .evaluate_stream(request(ReceiverStream::new(rx), &args.client))
        .await
        .map_err(status_error)?
        .into_inner();
    let mut failed = false;
    while let Some(evaluation) = answers.message().await.map_err(status_error)? {
        match &evaluation.error {
            Some(err) => {
                failed = true;
                say!(
                    "error: {}: {}",
                    code_name(Code::from(err.code)),
                    err.message
                );
            }
            None => print_evaluation(&evaluation, args.steps),
        }
    }
    reader.await.context("stdin reader panicked")??;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `calcmesh factorize`.
pub(crate) async fn factorize(args: FactorizeArgs) -> anyhow::Result<ExitCode> {
    let mut client = client(&args.client)?;
    let message = FactorizeRequest {
        number: args.number,
    };
    let mut factors = client
        .factorize(request(message, &args.client))
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(factor) = factors.message().await.map_err(status_error)? {
        say!("{}", factor.prime);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_lines() {
        let r = parse_line(" 1.5 *  -2 ").unwrap();
        assert_eq!((r.num1, r.operator.as_str(), r.num2), (1.5, "*", -2.0));
        assert!(parse_line("1 +").is_none());
        assert!(parse_line("1 + 2 3").is_none());
        assert!(parse_line("x + 2").is_none());
    }

    #[test]
    fn code_names() {
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::from(11)), "OUT_OF_RANGE");
    }
}
