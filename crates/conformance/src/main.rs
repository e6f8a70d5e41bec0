//! `calcmesh-conformance`: the server and client under test that the Connect conformance
//! runner starts.
//!
//! ```text
//! connectconformance --mode server --conf crates/conformance/config/grpc-h2c.yaml -- calcmesh-conformance server
//! connectconformance --mode client --conf crates/conformance/config/grpc-h2c.yaml -- calcmesh-conformance client
//! ```
//! The server reads one `ServerCompatRequest` on stdin, answers its `ServerCompatResponse` on
//! stdout once listening, and serves until SIGTERM. The client reads `ClientCompatRequest`s
//! until the end of stdin, and writes a `ClientCompatResponse` for each.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};
use calcmesh_conformance::proto::{ClientCompatRequest, ServerCompatRequest};
use calcmesh_conformance::{client, server, wire};
use calcmesh_runtime::{bind, shutdown};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALCMESH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,calcmesh::rpc=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mode = std::env::args().nth(1).unwrap_or_default();
    match runtime.block_on(run(&mode)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mode: &str) -> anyhow::Result<()> {
    match mode {
        "server" => serve().await,
        "client" => call().await,
        _ => bail!(
            "usage: calcmesh-conformance server|client (the Connect conformance runner starts it)"
        ),
    }
}

async fn serve() -> anyhow::Result<()> {
    let mut stdin = tokio::io::stdin();
    let request: ServerCompatRequest = wire::read(&mut stdin)
        .await?
        .context("no ServerCompatRequest on stdin: the conformance runner starts this server")?;
    let dir = std::env::temp_dir().join(format!("calcmesh-conformance-{}", std::process::id()));
    let config = server::config(&request, &dir)?;
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), &config)?;
    let addr = listener.local_addr()?;
    let server = server::mesh_server(&config);
    wire::write(&mut tokio::io::stdout(), &server::response(&request, addr)).await?;
    let served = server.serve(listener, shutdown::signal()).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(served?)
}

/// Runs each `ClientCompatRequest` on stdin, several at once, and writes each
/// `ClientCompatResponse` as its call ends.
async fn call() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("calcmesh-conformance-{}", std::process::id()));
    let channels = std::sync::Arc::new(client::Channels::new(dir.clone()));
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(response) = rx.recv().await {
            wire::write(&mut stdout, &response).await?;
        }
        anyhow::Ok(())
    });
    let mut stdin = tokio::io::stdin();
    while let Some(request) = wire::read::<ClientCompatRequest>(&mut stdin).await? {
        let (channels, tx) = (channels.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(client::run(&channels, request).await).await;
        });
    }
    drop(tx);
    let written = writer.await?;
    let _ = std::fs::remove_dir_all(&dir);
    written
}
