//! `calcmesh serve …`: build the service, hand it to the runtime's [`Server`].

use std::io::Write;

use anyhow::Context;
use calcmesh_calculator::CalculatorService;
use calcmesh_runtime::{Server, bind, shutdown};

use crate::cli::{Serve, ServerArgs};

/// Runs the chosen service until SIGINT/SIGTERM, then drains.
pub(crate) async fn run(serve: Serve) -> anyhow::Result<std::process::ExitCode> {
    match serve {
        Serve::Calculator(args) => calculator(args).await?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn calculator(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.config();
    let server = Server::new(config.clone())
        .add_service(calcmesh_calculator::server(
            CalculatorService::new(),
            config.max_message_size,
        ))
        .add_descriptors(calcmesh_proto::FILE_DESCRIPTOR_SET);
    let listener =
        bind(args.listen, &config).with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    announce(addr)?;
    tracing::info!(%addr, service = "calculator.Calculator", ?config, "listening");
    server.serve(listener, shutdown::signal()).await?;
    Ok(())
}

/// Prints the bound address on stdout, the line scripts and tests wait for.
fn announce(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()
}
