//! `calcmesh bench`: a load generator for calcmesh services, in the spirit of ghz.
//!
//! Closed loop by default (`--concurrency` calls always in flight); with `--rps` open loop: call
//! k is due at `start + k / rps`, and a call that could not start on time is measured from when
//! it was *due*, not from when it was sent, so a stalled server cannot hide its stall
//! (coordinated omission).
//! Latencies go into an HDR histogram (µs, 3 significant digits).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use calcmesh_proto::calculator::Request;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_proto::evaluator::EvaluateRequest;
use calcmesh_proto::evaluator::evaluator_client::EvaluatorClient;
use calcmesh_runtime::{ClientConfig, MeshChannel};
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::cli::{BenchArgs, BenchRpc};

/// What one worker saw.
struct Tally {
    latency: Histogram<u64>,
    status: BTreeMap<&'static str, u64>,
    /// The first message seen for each failing code.
    errors: BTreeMap<&'static str, String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("static histogram bounds are valid"),
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    /// Keeps `message` if it is the first for its code.
    fn note(&mut self, code: Code, message: impl FnOnce() -> String) {
        if code != Code::Ok {
            self.errors
                .entry(crate::client::code_name(code))
                .or_insert_with(message);
        }
    }

    fn record(&mut self, latency: Duration, code: Code) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 60_000_000);
        self.latency.saturating_record(micros);
        *self
            .status
            .entry(crate::client::code_name(code))
            .or_default() += 1;
    }

    fn merge(&mut self, other: &Tally) {
        let _ = self.latency.add(&other.latency);
        for (code, n) in &other.status {
            *self.status.entry(code).or_default() += n;
        }
        for (code, message) in &other.errors {
            self.errors.entry(code).or_insert_with(|| message.clone());
        }
    }
}

/// One call kind, as a reusable caller.
enum Caller {
    Unary(CalculatorClient<MeshChannel>, Duration),
    Evaluate(EvaluatorClient<MeshChannel>, String, Duration),
}

fn request(i: u64) -> Request {
    Request {
        num1: (i % 1000) as f64,
        num2: 5.0,
        operator: "*".into(),
    }
}

impl Caller {
    /// A caller of `rpc` whose every call has `timeout` as its deadline.
    fn new(rpc: BenchRpc, channel: MeshChannel, expression: &str, timeout: Duration) -> Self {
        match rpc {
            BenchRpc::Evaluate => Caller::Evaluate(
                EvaluatorClient::new(channel),
                expression.to_owned(),
                timeout,
            ),
            BenchRpc::Calculate | BenchRpc::CalculateStream => {
                Caller::Unary(CalculatorClient::new(channel), timeout)
            }
        }
    }

    async fn call(&mut self, i: u64) -> Result<(), tonic::Status> {
        match self {
            Caller::Unary(client, timeout) => {
                let mut call = tonic::Request::new(request(i));
                call.set_timeout(*timeout);
                client.calculate(call).await.map(drop)
            }
            Caller::Evaluate(client, expression, timeout) => {
                let mut request = tonic::Request::new(EvaluateRequest {
                    expression: expression.clone(),
                });
                request.set_timeout(*timeout);
                client.evaluate(request).await.map(drop)
            }
        }
    }
}

struct Plan {
    start: Instant,
    measure_from: Instant,
    stop_at: Option<Instant>,
    max_requests: Option<u64>,
    interval: Option<Duration>,
    issued: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    stopped: AtomicBool,
}

impl Plan {
    /// The next call's number and when it is due, or `None` when the run is over.
    fn next(&self) -> Option<(u64, Instant)> {
        let k = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.max_requests.is_some_and(|max| k >= max) || self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let due = match self.interval {
            Some(interval) => self.start + interval.mul_f64(k as f64),
            None => Instant::now(),
        };
        if self.stop_at.is_some_and(|stop| due >= stop) {
            return None;
        }
        Some((k, due))
    }
}

/// Waits until `due`. On schedule, a call is timed from when it is sent (the timer's own
/// lateness is ours, not the server's); behind schedule, from when it was due, so the wait a
/// slow server caused is counted (coordinated omission).
async fn start_at(due: Instant) -> Instant {
    if Instant::now() < due {
        tokio::time::sleep_until(due).await;
        Instant::now()
    } else {
        due
    }
}

/// How a worker gets a channel for a call: made once, or (`--new-connection`) afresh for each
/// call, so that each call makes its own connection.
enum Channels {
    Shared(Caller),
    PerCall {
        make: Box<dyn Fn() -> anyhow::Result<Caller> + Send>,
        /// The last call's; replacing it closes its connection.
        last: Option<Caller>,
    },
}

impl Channels {
    fn caller(&mut self) -> anyhow::Result<&mut Caller> {
        match self {
            Channels::Shared(caller) => Ok(caller),
            Channels::PerCall { make, last } => Ok(last.insert(make()?)),
        }
    }
}

/// A new channel, and so a new connection, for every call of `rpc`.
fn per_call_channels(args: &BenchArgs, config: &ClientConfig, rpc: BenchRpc) -> Channels {
    let (target, config) = (args.client.target.clone(), config.clone());
    let (expression, timeout) = (args.expression.clone(), args.client.timeout.into());
    Channels::PerCall {
        make: Box::new(move || {
            let channel = calcmesh_runtime::connect(&target, &config)?;
            Ok(Caller::new(rpc, channel, &expression, timeout))
        }),
        last: None,
    }
}

async fn worker(mut channels: Channels, plan: Arc<Plan>) -> anyhow::Result<Tally> {
    let mut tally = Tally::new();
    while let Some((k, due)) = plan.next() {
        let caller = channels.caller()?;
        let from = start_at(due).await;
        let result = caller.call(k).await;
        let now = Instant::now();
        let code = result
            .as_ref()
            .map_or_else(tonic::Status::code, |()| Code::Ok);
        if let Err(status) = &result {
            tally.note(code, || status.message().to_owned());
        }
        plan.done.fetch_add(1, Ordering::Relaxed);
        if code != Code::Ok {
            plan.failed.fetch_add(1, Ordering::Relaxed);
        }
        if due >= plan.measure_from {
            tally.record(now - from, code);
        }
    }
    Ok(tally)
}

/// One CalculateStream with up to `window` messages in flight: a sender task feeds it as the
/// plan allows, this loop times each answer against its send (answers come in order).
///
/// The sender starts before the call is opened: a server may hold its response headers back
/// until its first answer (grpc-go does), and so until the first request has arrived.
async fn stream_worker(
    channel: MeshChannel,
    plan: Arc<Plan>,
    window: usize,
) -> anyhow::Result<Tally> {
    let (tx, rx) = mpsc::channel(window);
    let slots = Arc::new(tokio::sync::Semaphore::new(window));
    let (sent_tx, mut sent) = mpsc::unbounded_channel::<(Instant, bool)>();
    let sender = {
        let (plan, slots) = (plan.clone(), slots.clone());
        tokio::spawn(async move {
            while let Some((k, due)) = plan.next() {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                slot.forget();
                let from = start_at(due).await;
                if sent_tx.send((from, due >= plan.measure_from)).is_err()
                    || tx.send(request(k)).await.is_err()
                {
                    break;
                }
            }
            // Dropping `tx` ends the request stream; the server then ends its answers.
        })
    };
    let opened = CalculatorClient::new(channel)
        .calculate_stream(ReceiverStream::new(rx))
        .await;
    let mut responses = match opened {
        Ok(responses) => responses.into_inner(),
        Err(status) => {
            slots.close();
            sender.abort();
            return Err(anyhow::Error::new(status).context("cannot open CalculateStream"));
        }
    };
    let mut tally = Tally::new();
    loop {
        let (code, done) = match responses.message().await {
            Ok(Some(r)) => match r.error {
                Some(e) => {
                    let code = Code::from(e.code);
                    tally.note(code, || e.message);
                    (code, false)
                }
                None => (Code::Ok, false),
            },
            Ok(None) => break,
            Err(status) => {
                tally.note(status.code(), || status.message().to_owned());
                (status.code(), true)
            }
        };
        let Some((from, measured)) = sent.recv().await else {
            break;
        };
        slots.add_permits(1);
        plan.done.fetch_add(1, Ordering::Relaxed);
        if code != Code::Ok {
            plan.failed.fetch_add(1, Ordering::Relaxed);
        }
        if measured {
            tally.record(from.elapsed(), code);
        }
        if done {
            plan.stopped.store(true, Ordering::Relaxed);
            break;
        }
    }
    slots.close();
    sender.await.context("the stream sender panicked")?;
    Ok(tally)
}

fn ms(micros: u64) -> String {
    format!("{:.3} ms", micros as f64 / 1000.0)
}

/// The flags that cannot go together, or are out of range.
fn check(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.concurrency >= 1 && args.connections >= 1,
        "--concurrency and --connections must be at least 1"
    );
    anyhow::ensure!(
        args.rps.is_none_or(|r| r > 0.0 && r.is_finite()),
        "--rps must be a positive number"
    );
    anyhow::ensure!(
        !(args.new_connection && matches!(args.rpc, BenchRpc::CalculateStream)),
        "--new-connection makes one connection per call; calculate-stream keeps its streams open"
    );
    Ok(())
}

/// `calcmesh bench`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    check(&args)?;
    let config = args.client.config()?;
    // With --new-connection every call makes its own.
    let shared = if args.new_connection {
        0
    } else {
        args.connections
    };
    let channels = (0..shared)
        .map(|_| calcmesh_runtime::connect(&args.client.target, &config))
        .collect::<Result<Vec<_>, _>>()?;
    let warmup: Duration = args.warmup.into();
    let duration: Duration = args.duration.into();
    let start = Instant::now();
    let plan = Arc::new(Plan {
        start,
        measure_from: start + warmup,
        stop_at: args.requests.is_none().then(|| start + warmup + duration),
        max_requests: args.requests,
        interval: args.rps.map(|rps| Duration::from_secs_f64(1.0 / rps)),
        issued: AtomicU64::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stopped: AtomicBool::new(false),
    });
    let workers: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let plan = plan.clone();
            let shared = || channels[i % channels.len()].clone();
            match args.rpc {
                BenchRpc::CalculateStream => {
                    tokio::spawn(stream_worker(shared(), plan, args.pipeline.max(1)))
                }
                rpc if args.new_connection => {
                    tokio::spawn(worker(per_call_channels(&args, &config, rpc), plan))
                }
                rpc => {
                    let timeout = args.client.timeout.into();
                    let caller = Caller::new(rpc, shared(), &args.expression, timeout);
                    tokio::spawn(worker(Channels::Shared(caller), plan))
                }
            }
        })
        .collect();

    let progress = tokio::spawn(progress(plan.clone(), args.json));
    let interrupted = tokio::spawn({
        let plan = plan.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                plan.stopped.store(true, Ordering::Relaxed);
            }
        }
    });
    let mut total = Tally::new();
    for w in workers {
        total.merge(&w.await.context("a bench worker panicked")??);
    }
    let elapsed = start
        .elapsed()
        .saturating_sub(warmup)
        .max(Duration::from_millis(1));
    progress.abort();
    interrupted.abort();

    report(&args, &total, elapsed, warmup)
}

/// Prints the report; success when any call succeeded.
fn report(
    args: &BenchArgs,
    total: &Tally,
    elapsed: Duration,
    warmup: Duration,
) -> anyhow::Result<ExitCode> {
    let ok = total.status.get("OK").copied().unwrap_or(0);
    if args.json {
        say!("{}", json_report(args, total, elapsed));
    } else {
        print_report(args, total, elapsed, warmup);
    }
    Ok(if ok > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

/// The report as one JSON object (`--json`).
fn json_report(args: &BenchArgs, total: &Tally, elapsed: Duration) -> serde_json::Value {
    let h = &total.latency;
    let measured = h.len();
    let ok = total.status.get("OK").copied().unwrap_or(0);
    let mut latency = serde_json::Map::new();
    for (name, q) in QUANTILES {
        latency.insert(name.to_owned(), h.value_at_quantile(q).into());
    }
    latency.insert("max".into(), h.max().into());
    latency.insert("mean".into(), h.mean().into());
    serde_json::json!({
        "target": args.client.target.to_string(),
        "rpc": args.rpc.name(),
        "concurrency": args.concurrency,
        "connections": args.connections,
        "new_connection_per_call": args.new_connection,
        "seconds": elapsed.as_secs_f64(),
        "requests": measured,
        "ok": ok,
        "failed": measured - ok,
        "requests_per_second": measured as f64 / elapsed.as_secs_f64(),
        "latency_us": latency,
        "status": total.status,
        "errors": total.errors,
    })
}

/// The report for a person: what ran, throughput, latency percentiles, codes, first errors.
fn print_report(args: &BenchArgs, total: &Tally, elapsed: Duration, warmup: Duration) {
    let h = &total.latency;
    let measured = h.len();
    let ok = total.status.get("OK").copied().unwrap_or(0);
    let rate = measured as f64 / elapsed.as_secs_f64();
    let mode = args.rps.map_or_else(
        || "closed loop".to_owned(),
        |r| format!("open loop at {r}/s"),
    );
    let connections = if args.new_connection {
        "a new connection per call".to_owned()
    } else {
        format!("{} connection(s)", args.connections)
    };
    say!(
        "{} {} · {} concurrent on {connections} · {mode} · {:.1} s measured after {:?} warm-up",
        args.rpc.name(),
        args.client.target,
        args.concurrency,
        elapsed.as_secs_f64(),
        warmup
    );
    say!(
        "requests:  {measured} ({ok} ok, {} failed), {rate:.0}/s",
        measured - ok
    );
    let percentiles: Vec<String> = QUANTILES
        .iter()
        .map(|(n, q)| format!("{n} {}", ms(h.value_at_quantile(*q))))
        .collect();
    say!("latency:   {}  max {}", percentiles.join("  "), ms(h.max()));
    let status: Vec<String> = total
        .status
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    say!("status:    {}", status.join(", "));
    for (code, message) in &total.errors {
        say!("first {code}: {message}");
    }
}

/// Once a second: a progress line, redrawn in place on a terminal, plain lines otherwise.
async fn progress(plan: Arc<Plan>, quiet: bool) {
    if quiet {
        return;
    }
    let terminal = std::io::stderr().is_terminal();
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let done = plan.done.load(Ordering::Relaxed);
        let failed = plan.failed.load(Ordering::Relaxed);
        let line = format!(
            "{:>4.0} s  {done} calls, {failed} failed, {}/s",
            plan.start.elapsed().as_secs_f64(),
            done - last
        );
        last = done;
        let mut err = std::io::stderr().lock();
        let _ = if terminal {
            write!(err, "\r{line}   ")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}
