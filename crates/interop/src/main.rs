//! `calcmesh-interop`: the interop server and client with the flags gRPC's interop runners pass.
//!
//! ```text
//! calcmesh-interop server --port=50052 [--use_tls=true --tls_cert_file=F --tls_key_file=F]
//! calcmesh-interop client --server_port=50052 --test_case=large_unary
//!     [--server_host=127.0.0.1 --use_tls=true --use_test_ca=true --ca_file=F
//!      --server_host_override=x.test.example.com --soak_iterations=10]
//! ```
//! The client exits 0 when the case passed, 1 with the failed assertion on stderr otherwise.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use calcmesh_interop::cases::{self, CASES, Soak};
use calcmesh_runtime::compression::CompressAnswers;
use calcmesh_runtime::tls::{ClientTls, ServerTls, ServerTlsFiles};
use calcmesh_runtime::{ClientConfig, MeshChannel, ServerConfig, Target, bind, connect, shutdown};
use clap::{ArgAction, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "gRPC's interop test server and client on the calcmesh runtime"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve grpc.testing.TestService until SIGINT/SIGTERM; prints `listening on ADDR`.
    Server {
        /// Port to listen on (0: a free one).
        #[arg(long, default_value_t = 10000)]
        port: u16,
        /// Address to listen on. Plaintext is refused off loopback.
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// Serve TLS with --tls_cert_file and --tls_key_file.
        #[arg(long = "use_tls", action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
        use_tls: bool,
        /// The server certificate chain (PEM), for --use_tls.
        #[arg(long = "tls_cert_file")]
        tls_cert_file: Option<PathBuf>,
        /// Its private key (PEM), for --use_tls.
        #[arg(long = "tls_key_file")]
        tls_key_file: Option<PathBuf>,
    },
    /// Run one interop case against a server.
    Client {
        /// The server's host.
        #[arg(long = "server_host", default_value = "127.0.0.1")]
        server_host: String,
        /// The server's port.
        #[arg(long = "server_port", default_value_t = 10000)]
        server_port: u16,
        /// The case to run (see the list in --help's long form).
        #[arg(long = "test_case", default_value = "large_unary", long_help = format!("The case to run, one of: {}", CASES.join(", ")))]
        test_case: String,
        /// Use TLS.
        #[arg(long = "use_tls", action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
        use_tls: bool,
        /// Verify the server against the interop test CA. Accepted for the runners' sake: this
        /// client always verifies against --ca_file and trusts no system roots.
        #[arg(long = "use_test_ca", action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
        use_test_ca: bool,
        /// The CA certificate (PEM) that signed the server's certificate.
        #[arg(long = "ca_file")]
        ca_file: Option<PathBuf>,
        /// The name to verify the server's certificate against.
        #[arg(long = "server_host_override")]
        server_host_override: Option<String>,
        /// Calls in rpc_soak and channel_soak.
        #[arg(long = "soak_iterations", default_value_t = 10)]
        soak_iterations: u32,
        /// The slowest one soak call may be, in milliseconds.
        #[arg(
            long = "soak_per_iteration_max_acceptable_latency_ms",
            default_value_t = 1000
        )]
        soak_max_latency_ms: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALCMESH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
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
    match runtime.block_on(run(Args::parse().command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Server {
            port,
            host,
            use_tls,
            tls_cert_file,
            tls_key_file,
        } => {
            let tls = match (use_tls, tls_cert_file, tls_key_file) {
                (false, _, _) => None,
                (true, Some(cert), Some(key)) => Some(Arc::new(ServerTls::load(ServerTlsFiles {
                    cert,
                    key,
                    client_ca: None,
                })?)),
                (true, _, _) => bail!("--use_tls needs --tls_cert_file and --tls_key_file"),
            };
            serve(SocketAddr::new(host, port), tls).await
        }
        Command::Client {
            server_host,
            server_port,
            test_case,
            use_tls,
            use_test_ca,
            ca_file,
            server_host_override,
            soak_iterations,
            soak_max_latency_ms,
        } => {
            let tls = match (use_tls, ca_file) {
                (false, _) => None,
                (true, Some(ca)) => {
                    let tls = ClientTls::load(&ca, None)?;
                    Some(match server_host_override {
                        Some(name) => tls.with_server_name(name),
                        None => tls,
                    })
                }
                (true, None) => bail!(
                    "--use_tls needs --ca_file (with --use_test_ca={use_test_ca}): the CA that signed the server's certificate"
                ),
            };
            let target: Target = format!("{server_host}:{server_port}")
                .parse()
                .context("--server_host and --server_port")?;
            let config = ClientConfig {
                tls,
                max_attempts: 1,
                ..ClientConfig::default()
            };
            let channel = connect(&target, &config)?;
            let soak = Soak {
                iterations: soak_iterations,
                max_latency: Duration::from_millis(soak_max_latency_ms),
            };
            let fresh = || -> MeshChannel {
                // The target and config were accepted above; a second connect cannot fail.
                connect(&target, &config).expect("the same target connected before")
            };
            match cases::run(&test_case, channel, fresh, soak).await {
                Ok(()) => {
                    println!("{test_case}: passed");
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => {
                    eprintln!("{test_case}: FAILED: {err}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

async fn serve(addr: SocketAddr, tls: Option<Arc<ServerTls>>) -> anyhow::Result<ExitCode> {
    let signal = shutdown::signal();
    let config = ServerConfig {
        tls,
        compress_answers: CompressAnswers::WhenAccepted,
        ..ServerConfig::default()
    };
    let listener = bind(addr, &config).with_context(|| format!("cannot listen on {addr}"))?;
    let server = calcmesh_interop::mesh_server(&config);
    server.check_listen(listener.local_addr()?)?;
    println!("listening on {}", listener.local_addr()?);
    server.serve(listener, signal).await?;
    Ok(ExitCode::SUCCESS)
}
