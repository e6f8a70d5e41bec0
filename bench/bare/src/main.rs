//! The baseline of `bench/run.py`: tonic serving `calculator.Calculator` the way a tonic
//! tutorial would — no health, no reflection, no limits layer, no logging. `Calculate` and
//! `CalculateStream` are implemented (what the benchmark calls); the rest answer UNIMPLEMENTED.
//!
//! Usage: `bare-tonic [ADDR] [--current-thread]` (default 127.0.0.1:0, tokio's multi-thread
//! runtime); prints `listening on ADDR`. `--current-thread` runs tokio's single-threaded runtime,
//! the one calcmesh picks when it has one CPU, so the two compare on equal runtimes.

use std::pin::Pin;

use calcmesh_proto::calculator::calculator_server::{Calculator, CalculatorServer};
use calcmesh_proto::calculator::{Factor, FactorizeRequest, Number, Request, Response, Summary};
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Debug, Default)]
struct Bare;

fn calculate(r: &Request) -> Result<f64, Status> {
    calcmesh_calc::arith::calculate(r.num1, &r.operator, r.num2)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

#[tonic::async_trait]
impl Calculator for Bare {
    async fn calculate(
        &self,
        request: tonic::Request<Request>,
    ) -> Result<tonic::Response<Response>, Status> {
        let result = calculate(request.get_ref())?;
        Ok(tonic::Response::new(Response {
            result,
            error: None,
        }))
    }

    type CalculateStreamStream = Answers<Response>;

    async fn calculate_stream(
        &self,
        request: tonic::Request<Streaming<Request>>,
    ) -> Result<tonic::Response<Self::CalculateStreamStream>, Status> {
        let answers = request.into_inner().map(|r| {
            Ok(Response {
                result: calculate(&r?)?,
                error: None,
            })
        });
        Ok(tonic::Response::new(Box::pin(answers)))
    }

    async fn summarize(
        &self,
        _: tonic::Request<Streaming<Number>>,
    ) -> Result<tonic::Response<Summary>, Status> {
        Err(Status::unimplemented("not in the baseline"))
    }

    type FactorizeStream = Answers<Factor>;

    async fn factorize(
        &self,
        _: tonic::Request<FactorizeRequest>,
    ) -> Result<tonic::Response<Self::FactorizeStream>, Status> {
        Err(Status::unimplemented("not in the baseline"))
    }

    type RunningSummaryStream = Answers<Summary>;

    async fn running_summary(
        &self,
        _: tonic::Request<Streaming<Number>>,
    ) -> Result<tonic::Response<Self::RunningSummaryStream>, Status> {
        Err(Status::unimplemented("not in the baseline"))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let current_thread = args.iter().any(|a| a == "--current-thread");
    let addr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(&addr))
}

async fn serve(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(CalculatorServer::new(Bare))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
