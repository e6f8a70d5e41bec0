//! The client side of the benchmark: `N` Calculate(`10 * 5`) calls, one after another on one
//! connection, through calcmesh's `MeshChannel` or through a plain tonic `Channel` — the same
//! generated client, the same request, tokio's current-thread runtime. Run under callgrind twice
//! with two call counts, the difference of the totals divided by the difference of the counts is
//! what one call costs the client (connection set-up and process start cancel out).
//!
//! Usage: `client-calls ADDR mesh|tonic N`. Exits non-zero if any call fails.

use calcmesh_proto::calculator::Request;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_runtime::{ClientConfig, Target};
use tonic::codegen::{Body, Bytes, StdError};
use tonic::transport::Channel;

fn usage() -> ! {
    eprintln!("usage: client-calls ADDR mesh|tonic N");
    std::process::exit(2);
}

async fn calls<T>(mut client: CalculatorClient<T>, n: u64) -> Result<(), tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    for _ in 0..n {
        let request = Request {
            num1: 10.0,
            num2: 5.0,
            operator: "*".to_owned(),
        };
        let answer = client.calculate(request).await?.into_inner();
        if answer.result != 50.0 {
            return Err(tonic::Status::internal(format!(
                "10 * 5 = {}?",
                answer.result
            )));
        }
    }
    Ok(())
}

async fn run(addr: &str, via: &str, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    match via {
        "mesh" => {
            let target: Target = addr.parse()?;
            let channel = calcmesh_runtime::connect(&target, &ClientConfig::default())?;
            calls(CalculatorClient::new(channel), n).await?;
        }
        "tonic" => {
            let channel = Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await?;
            calls(CalculatorClient::new(channel), n).await?;
        }
        _ => usage(),
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, via, n] = args.as_slice() else {
        usage()
    };
    let Ok(n) = n.parse::<u64>() else { usage() };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    match runtime.block_on(run(addr, via, n)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client-calls: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
