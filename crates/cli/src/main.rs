//! `calcmesh`: the calcmesh servers, clients and tools in one binary.
//!
//! # Layout
//! - [`cli`]: the command line (clap): every flag, its environment variable and its default.
//! - [`serve`]: `calcmesh serve …` — build a service, hand it to the runtime.
//! - [`up`]: `calcmesh up` — a local mesh in one process, in steps.
//! - [`certs`]: `calcmesh certs …` — a development CA.
//! - [`client`]: `calcmesh calc | summarize | factorize | eval` — the clients.
//! - [`bench`](mod@bench): `calcmesh bench` — the load generator.
//!
//! The binary only parses arguments and calls the libraries; exit status 0 is success, 1 a
//! failed call or server error, 2 bad usage.

// The argument enums are parsed once per process; boxing their variants would only obscure
// clap's derive.
#![allow(clippy::large_enum_variant)]

/// `println!` for results on stdout, except that a closed stdout (`calcmesh … | head`) ends
/// the process quietly, as other command-line tools end, where `println!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::stdout_line(format_args!($($arg)*))
    };
}

mod bench;
mod certs;
mod cli;
mod client;
mod serve;
mod up;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};

fn init_logging(default: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("CALCMESH_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only for a person at a terminal, never in a file or a log shipper's pipe.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        // One JSON object per line, fields flattened: what log shippers expect.
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// The async runtime: multi-threaded, or single-threaded where one thread is all there is.
fn runtime(worker_threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = worker_threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_) | Command::Up(_));
    init_logging(if serving { "info" } else { "warn" }, cli.log_format);
    let runtime = match runtime(cli.worker_threads) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up::up(args).await,
            Command::Serve(serve) => serve::run(serve).await,
            Command::Eval(args) => client::eval(args).await,
            Command::Calc(args) => client::calc(args).await,
            Command::Summarize(args) => client::summarize(args).await,
            Command::Factorize(args) => client::factorize(args).await,
            Command::Certs(command) => certs::run(command),
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes one line to stdout; a reader gone away (EPIPE) ends the process with status 141, as
/// SIGPIPE would.
fn stdout_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(err) = writeln!(std::io::stdout().lock(), "{line}") {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: cannot write to stdout: {err}");
        std::process::exit(1);
    }
}
