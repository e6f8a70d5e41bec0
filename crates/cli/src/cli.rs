//! The command line. Every flag can also be set by the environment variable named in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use calcmesh_evaluator::EvaluatorConfig;
use calcmesh_expr::Limits;
use calcmesh_runtime::client::{Protocol, ServiceConfig};
use calcmesh_runtime::compression::Compression;
use calcmesh_runtime::{ClientConfig, LbPolicy, ServerConfig, Target};
use clap::{Args, Parser, Subcommand};

/// calcmesh: gRPC microservices in Rust — a calculator, its clients, and the runtime around them.
///
/// Quick start:
///   calcmesh up                               # a local mesh: 3 calculators + an evaluator
///   calcmesh eval --steps "(2 + 3) * 4"       # → 20, and which calculator did each step
///   calcmesh calc 10 + 5                      # → 15 (the original contract, on 127.0.0.1:50051)
///   calcmesh factorize 600851475143           # → 71 839 1471 6857, one per line
///
/// Logs go to stderr; set CALCMESH_LOG (e.g. `debug`, `calcmesh_runtime=trace`) to change the level.
#[derive(Debug, Parser)]
#[command(name = "calcmesh", version, verbatim_doc_comment)]
pub(crate) struct Cli {
    /// How logs (on stderr) look: text for people, json (one object per line) for log shippers.
    #[arg(
        long,
        global = true,
        env = "CALCMESH_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,
    /// Threads that run calls. Default: the CPUs this process may use (its affinity and cgroup
    /// quota). With 1, a single-threaded runtime without work stealing, which is faster there.
    #[arg(long, global = true, env = "CALCMESH_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) worker_threads: Option<u16>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a whole local mesh in one process: N calculators and an evaluator balancing over them.
    ///
    /// Needs no external service: the evaluator finds the calculators through a static list.
    /// Prints every endpoint and commands to try, runs until SIGINT/SIGTERM, then drains (the
    /// evaluator first, so its calls in flight can still reach the calculators) and exits 0.
    Up(UpArgs),
    /// Run a service until SIGINT/SIGTERM, then drain gracefully and exit 0.
    #[command(subcommand)]
    Serve(Serve),
    /// Evaluate an arithmetic expression with the evaluator, e.g. "(2 + 3) * -4 ^ 2".
    ///
    /// Prints the value; with --steps, then a table of every operation and the calculator
    /// instance that computed it. Exits 1 with the gRPC status on error, e.g.
    /// `error: INVALID_ARGUMENT: cannot parse the expression: unmatched ')' at character 6`.
    #[command(allow_negative_numbers = true, mut_arg("target", |a| a.default_value("127.0.0.1:50050")))]
    Eval(EvalArgs),
    /// Compute NUM1 OP NUM2 with Calculate (unary), or many lines with CalculateStream (--stream).
    ///
    /// OP is one of + - * / % ^ (quote * and ^ in a shell: '*'). Exits 1 with the gRPC status on
    /// error, e.g. `error: INVALID_ARGUMENT: division by zero in /`.
    #[command(allow_negative_numbers = true)]
    Calc(CalcArgs),
    /// Statistics over numbers with Summarize (client streaming), or after each number with
    /// RunningSummary (bidirectional, --running).
    #[command(allow_negative_numbers = true)]
    Summarize(SummarizeArgs),
    /// The prime factors of N, ascending, one per line as the server streams them (server streaming).
    Factorize(FactorizeArgs),
    /// Generate load and report throughput, latency percentiles and status codes.
    ///
    /// Closed loop (--concurrency calls always in flight) by default; --rps makes it open loop,
    /// measuring each call from when it was due. Works with every target form and TLS option.
    #[command(mut_arg("timeout", |a| a.default_value("10s")))]
    Bench(BenchArgs),
    /// Development certificates: a CA, and per service/client a certificate naming it.
    #[command(subcommand)]
    Certs(Certs),
}

/// Which RPC `bench` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BenchRpc {
    /// calculator.Calculator/Calculate (unary), `N * 5`.
    Calculate,
    /// calculator.Calculator/CalculateStream: one long stream per worker, --pipeline messages
    /// in flight on each.
    CalculateStream,
    /// calcmesh.evaluator.v1.Evaluator/Evaluate with --expression.
    Evaluate,
}

impl BenchRpc {
    pub(crate) fn name(self) -> &'static str {
        match self {
            BenchRpc::Calculate => "calculate",
            BenchRpc::CalculateStream => "calculate-stream",
            BenchRpc::Evaluate => "evaluate",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// The RPC to call.
    #[arg(long, value_enum, default_value = "calculate")]
    pub(crate) rpc: BenchRpc,
    /// Calls in flight at once (workers).
    #[arg(long, short = 'c', default_value_t = 50)]
    pub(crate) concurrency: usize,
    /// Separate channels (HTTP/2 connections per endpoint) the workers share.
    #[arg(long, default_value_t = 1)]
    pub(crate) connections: usize,
    /// Every call on a new connection of its own (TCP, the TLS handshake when configured, the
    /// call, then closed): measures connection set-ups per second. Not for calculate-stream.
    #[arg(long, conflicts_with = "connections")]
    pub(crate) new_connection: bool,
    /// For calculate-stream: messages in flight on each stream.
    #[arg(long, default_value_t = 16)]
    pub(crate) pipeline: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, short = 'd', default_value = "10s")]
    pub(crate) duration: humantime::Duration,
    /// Stop after this many calls instead (the warm-up's included).
    #[arg(long, short = 'n')]
    pub(crate) requests: Option<u64>,
    /// Open loop: start this many calls per second, whatever the answers.
    #[arg(long)]
    pub(crate) rps: Option<f64>,
    /// Calls before this much time are made but not measured.
    #[arg(long, default_value = "1s")]
    pub(crate) warmup: humantime::Duration,
    /// The expression for --rpc evaluate.
    #[arg(long, default_value = "(1 + 2) * (3 + 4) - 5 / 2")]
    pub(crate) expression: String,
    /// One JSON object on stdout instead of text; no progress lines.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Certs {
    /// Create a CA in DIR (unless one is there) and a certificate + key per service and client.
    ///
    /// Service certificates serve and call (SANs: URI spiffe://calcmesh/NAME, DNS localhost,
    /// IP 127.0.0.1, and every --san); client certificates only call. Keys are written 0600.
    Init {
        /// Where to write ca.pem, ca.key, NAME.pem, NAME.key.
        #[arg(long, env = "CALCMESH_CERTS_DIR")]
        dir: PathBuf,
        /// Services to certify (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "calculator,evaluator")]
        services: Vec<String>,
        /// Clients (people, tools) to certify (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "admin")]
        clients: Vec<String>,
        /// Another DNS name or IP address for the service certificates (repeatable).
        #[arg(long)]
        san: Vec<String>,
        /// Validity of the certificates, in days (the CA's is ten times longer).
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Print a certificate's subject, issuer, SANs and validity.
    Show {
        /// A PEM file.
        file: PathBuf,
    },
}

/// TLS options of a client.
#[derive(Debug, Args)]
pub(crate) struct ClientTlsArgs {
    /// Use TLS, trusting this CA (PEM). Without it, calls are plaintext.
    #[arg(long, env = "CALCMESH_CA")]
    pub(crate) ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --key and --ca.
    #[arg(long, env = "CALCMESH_CERT", requires_all = ["key", "ca"])]
    pub(crate) cert: Option<PathBuf>,
    /// Private key of --cert (PEM).
    #[arg(long, env = "CALCMESH_KEY", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Check servers' certificates against this name instead of the address dialled, e.g.
    /// `calculator` when a dns:/// target yields pod IPs that no certificate names.
    #[arg(long, env = "CALCMESH_TLS_SERVER_NAME", requires = "ca")]
    pub(crate) tls_server_name: Option<String>,
}

/// TLS options of the etcd connection (discovery of `etcd://` targets, `--register`).
#[derive(Debug, Args)]
pub(crate) struct EtcdTlsArgs {
    /// Talk to etcd over TLS, trusting this CA (PEM).
    #[arg(long, env = "CALCMESH_ETCD_CA")]
    pub(crate) etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd (PEM), when etcd requires one; needs --etcd-key and --etcd-ca.
    #[arg(long, env = "CALCMESH_ETCD_CERT", requires_all = ["etcd_key", "etcd_ca"])]
    pub(crate) etcd_cert: Option<PathBuf>,
    /// Private key of --etcd-cert (PEM).
    #[arg(long, env = "CALCMESH_ETCD_KEY", requires = "etcd_cert")]
    pub(crate) etcd_key: Option<PathBuf>,
}

impl EtcdTlsArgs {
    pub(crate) fn load(&self) -> anyhow::Result<Option<calcmesh_runtime::tls::ClientTls>> {
        let Some(ca) = &self.etcd_ca else {
            return Ok(None);
        };
        let identity = self.etcd_cert.as_deref().zip(self.etcd_key.as_deref());
        Ok(Some(
            calcmesh_runtime::tls::ClientTls::load(ca, identity).context("etcd TLS")?,
        ))
    }
}

impl ClientTlsArgs {
    pub(crate) fn load(&self) -> anyhow::Result<Option<calcmesh_runtime::tls::ClientTls>> {
        let Some(ca) = &self.ca else { return Ok(None) };
        let identity = self.cert.as_deref().zip(self.key.as_deref());
        let tls = calcmesh_runtime::tls::ClientTls::load(ca, identity).context("client TLS")?;
        Ok(Some(match &self.tls_server_name {
            Some(name) => tls.with_server_name(name),
            None => tls,
        }))
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Serve {
    /// Serve calculator.Calculator (plus grpc.health.v1 and server reflection).
    Calculator(CalculatorArgs),
    /// Serve calcmesh.evaluator.v1.Evaluator, computing every operation on the calculators at
    /// --calculator.
    #[command(mut_arg("listen", |a| a.default_value("127.0.0.1:50050")))]
    Evaluator(EvaluatorArgs),
}

/// Options of the calculator.
#[derive(Debug, Args)]
pub(crate) struct CalculatorArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    #[command(flatten)]
    pub(crate) etcd: EtcdTlsArgs,
}

/// Options of the evaluator.
#[derive(Debug, Args)]
pub(crate) struct EvaluatorArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// Where the calculators are: host:port, a static list ipv4:ADDR:PORT,ADDR:PORT,...,
    /// dns:///NAME:PORT, or etcd://HOST:PORT/calculator.
    #[arg(long, env = "CALCMESH_CALCULATOR", default_value = "127.0.0.1:50051")]
    pub(crate) calculator: Target,
    #[command(flatten)]
    pub(crate) balancing: BalancingArgs,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

/// Limits on expressions.
#[derive(Debug, Args)]
pub(crate) struct LimitArgs {
    /// Longest expression accepted, in bytes; longer → RESOURCE_EXHAUSTED.
    #[arg(long, env = "CALCMESH_MAX_EXPRESSION_LENGTH", default_value_t = Limits::default().max_length)]
    pub(crate) max_expression_length: usize,
    /// Deepest parenthesis nesting accepted; deeper → RESOURCE_EXHAUSTED.
    #[arg(long, env = "CALCMESH_MAX_DEPTH", default_value_t = Limits::default().max_depth)]
    pub(crate) max_depth: usize,
    /// Most operations in one expression; more → RESOURCE_EXHAUSTED.
    #[arg(long, env = "CALCMESH_MAX_OPERATIONS", default_value_t = Limits::default().max_operations)]
    pub(crate) max_operations: usize,
    /// Calculator calls one evaluation may have in flight at once.
    #[arg(long, env = "CALCMESH_MAX_IN_FLIGHT", default_value_t = EvaluatorConfig::default().max_in_flight)]
    pub(crate) max_in_flight: usize,
}

impl LimitArgs {
    pub(crate) fn config(&self) -> EvaluatorConfig {
        EvaluatorConfig {
            limits: Limits {
                max_length: self.max_expression_length,
                max_depth: self.max_depth,
                max_operations: self.max_operations,
            },
            max_in_flight: self.max_in_flight,
            ..EvaluatorConfig::default()
        }
    }
}

/// Options of `calcmesh up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// How many calculator instances to run.
    #[arg(long, env = "CALCMESH_CALCULATORS", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) calculators: u16,
    /// Port of the first calculator on 127.0.0.1 (the original contract's 50051); the others take
    /// the ports after it. 0 gives every instance a free port.
    #[arg(long, env = "CALCMESH_CALCULATOR_PORT", default_value_t = 50051)]
    pub(crate) calculator_port: u16,
    /// Address of the evaluator.
    #[arg(
        long,
        env = "CALCMESH_EVALUATOR_LISTEN",
        default_value = "127.0.0.1:50050"
    )]
    pub(crate) evaluator_listen: SocketAddr,
    /// Port of the first calculator's mutual-TLS listener, which the evaluator uses (the others
    /// take the ports after it; 0: free ports). Its policy admits the evaluator and admin only.
    #[arg(long, env = "CALCMESH_CALCULATOR_TLS_PORT", default_value_t = 50151)]
    pub(crate) calculator_tls_port: u16,
    /// Where `up` keeps its state: the development CA and certificates (created if missing).
    #[arg(long, env = "CALCMESH_STATE_DIR", default_value = ".calcmesh")]
    pub(crate) state_dir: PathBuf,
    /// Run the evaluator → calculator hop in plaintext instead of mutual TLS.
    #[arg(long, env = "CALCMESH_NO_TLS")]
    pub(crate) no_tls: bool,
    /// Port of the evaluator's admin endpoint on 127.0.0.1 (/metrics, /healthz, /readyz); the
    /// calculators' take the ports after it. 0 gives each a free port.
    #[arg(long, env = "CALCMESH_ADMIN_PORT", default_value_t = 50090)]
    pub(crate) admin_port: u16,
    /// Time in-flight calls get to finish after SIGTERM/SIGINT, per tier.
    #[arg(long, env = "CALCMESH_GRACE_PERIOD", default_value_t = ServerConfig::default().grace_period.into())]
    pub(crate) grace_period: humantime::Duration,
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
    #[command(flatten)]
    pub(crate) balancing: BalancingArgs,
}

#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// Also print every step: the operation, its result and the calculator that computed it.
    #[arg(long)]
    pub(crate) steps: bool,
    /// Read one expression per stdin line and send them over one EvaluateStream; print one
    /// value (or `error: CODE: message`) per line, in order.
    #[arg(long, conflicts_with = "expression")]
    pub(crate) stream: bool,
    /// The expression, e.g. "(2 + 3) * 4". Quote it for the shell.
    #[arg(required_unless_present = "stream")]
    pub(crate) expression: Option<String>,
}

/// Options every server takes.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Address to listen on. Port 0 picks a free port; the bound address is printed on stdout as
    /// `listening on ADDR`.
    #[arg(long, env = "CALCMESH_LISTEN", default_value = "127.0.0.1:50051")]
    pub(crate) listen: SocketAddr,
    /// Largest request message accepted, in bytes; larger fails with RESOURCE_EXHAUSTED.
    #[arg(long, env = "CALCMESH_MAX_MESSAGE_SIZE", default_value_t = ServerConfig::default().max_message_size)]
    pub(crate) max_message_size: usize,
    /// Concurrent calls (HTTP/2 streams) allowed on one connection.
    #[arg(long, env = "CALCMESH_MAX_CONCURRENT_STREAMS", default_value_t = ServerConfig::default().max_concurrent_streams)]
    pub(crate) max_concurrent_streams: u32,
    /// Time in-flight calls get to finish after SIGTERM/SIGINT (e.g. 10s, 500ms).
    #[arg(long, env = "CALCMESH_GRACE_PERIOD", default_value_t = ServerConfig::default().grace_period.into())]
    pub(crate) grace_period: humantime::Duration,
    /// How long a connection may be silent before the kernel probes the client (TCP keepalive),
    /// 1s to 9h.
    #[arg(long, env = "CALCMESH_KEEPALIVE_INTERVAL", default_value_t = ServerConfig::default().keepalive_interval.into())]
    pub(crate) keepalive_interval: humantime::Duration,
    /// How long the probes may then go unanswered: a client silent for the interval plus this is
    /// disconnected (TCP keepalive and TCP_USER_TIMEOUT), 1s to 9h.
    #[arg(long, env = "CALCMESH_KEEPALIVE_TIMEOUT", default_value_t = ServerConfig::default().keepalive_timeout.into())]
    pub(crate) keepalive_timeout: humantime::Duration,
    /// The least time a client must leave between HTTP/2 PINGs (gRFC A8, as grpc-go's
    /// MinTime): a client that pings sooner three times gets GOAWAY ENHANCE_YOUR_CALM
    /// "too_many_pings" and its connection is closed. A client keepalive of this or longer is
    /// safe (calcmesh clients default to 5m).
    #[arg(long, env = "CALCMESH_KEEPALIVE_MIN_TIME", default_value_t = ServerConfig::default().ping_policy.min_time.into())]
    pub(crate) keepalive_min_time: humantime::Duration,
    /// Let clients ping while they have no call open (otherwise they may only every 2 hours).
    #[arg(long, env = "CALCMESH_KEEPALIVE_PERMIT_WITHOUT_CALLS")]
    pub(crate) keepalive_permit_without_calls: bool,
    /// Listen backlog: connections the kernel queues before they are accepted.
    #[arg(long, env = "CALCMESH_BACKLOG", default_value_t = ServerConfig::default().backlog)]
    pub(crate) backlog: u32,
    /// The host:port clients reach this server at, reported on every response (header
    /// `calcmesh-endpoint`). Defaults to the bound address unless that is a wildcard.
    #[arg(long, env = "CALCMESH_ADVERTISE")]
    pub(crate) advertise: Option<String>,
    /// Register this server in etcd while it runs: etcd://HOST:PORT[,HOST:PORT...]/SERVICE.
    /// The key SERVICE/ADVERTISE is tied to a lease kept alive; it is deleted before draining
    /// and expires after --register-ttl if the process dies. Needs a build with `--features etcd`.
    #[arg(long, env = "CALCMESH_REGISTER")]
    pub(crate) register: Option<Target>,
    /// Lease time to live of the etcd registration.
    #[arg(long, env = "CALCMESH_REGISTER_TTL", default_value = "10s")]
    pub(crate) register_ttl: humantime::Duration,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key. Reloaded when it changes.
    #[arg(long, env = "CALCMESH_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "CALCMESH_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS); needs --tls-cert.
    #[arg(long, env = "CALCMESH_CLIENT_CA", requires = "tls_cert")]
    pub(crate) client_ca: Option<PathBuf>,
    /// Admit only these identities, per method prefix: IDENTITY=PREFIX, e.g.
    /// spiffe://calcmesh/evaluator=/calculator.Calculator/ (repeatable; needs --client-ca).
    #[arg(
        long,
        env = "CALCMESH_ALLOW",
        value_delimiter = ';',
        requires = "client_ca"
    )]
    pub(crate) allow: Vec<String>,
    /// A policy file: lines `allow IDENTITY METHOD_PREFIX` (needs --client-ca).
    #[arg(long, env = "CALCMESH_POLICY", requires = "client_ca")]
    pub(crate) policy: Option<PathBuf>,
    /// Serve plaintext even on a non-loopback address (logged as a warning).
    #[arg(long, env = "CALCMESH_INSECURE")]
    pub(crate) insecure: bool,
    /// Serve the admin HTTP endpoint here: /metrics (Prometheus), /healthz, /readyz. Off unless
    /// given; port 0 picks a free port (printed as `admin on ADDR`).
    #[arg(long, env = "CALCMESH_ADMIN")]
    pub(crate) admin: Option<SocketAddr>,
    /// Also serve grpc.health.v1, and nothing else, in plaintext here: for probes that cannot
    /// speak TLS, like the kubelet's gRPC probe (printed as `health on ADDR`). Off unless given.
    #[arg(long, env = "CALCMESH_HEALTH_LISTEN")]
    pub(crate) health_listen: Option<SocketAddr>,
    /// Close connections gracefully (GOAWAY) once they are this old, so clients discovering by
    /// DNS spread over new instances (e.g. 5m). Off unless given.
    #[arg(long, env = "CALCMESH_MAX_CONNECTION_AGE")]
    pub(crate) max_connection_age: Option<humantime::Duration>,
    /// How long a new connection may take to finish its TLS handshake and send the HTTP/2
    /// preface before it is closed (a client that connects and sends nothing).
    #[arg(long, env = "CALCMESH_HANDSHAKE_TIMEOUT", default_value_t = ServerConfig::default().handshake_timeout.into())]
    pub(crate) handshake_timeout: humantime::Duration,
    /// After --max-connection-age, how long calls on the old connection may take.
    #[arg(long, env = "CALCMESH_MAX_CONNECTION_AGE_GRACE", default_value_t = ServerConfig::default().max_connection_age_grace.into())]
    pub(crate) max_connection_age_grace: humantime::Duration,
    /// Serve gRPC-Web too (HTTP/1.1 or HTTP/2), so browser pages can call this server's RPCs
    /// (unary and server streaming). Off unless given.
    #[arg(long, env = "CALCMESH_GRPC_WEB")]
    pub(crate) grpc_web: bool,
    /// An origin whose pages may call over gRPC-Web (CORS), e.g. http://127.0.0.1:9090;
    /// repeatable; `*` allows any. Needs --grpc-web.
    #[arg(long, requires = "grpc_web")]
    pub(crate) grpc_web_allow_origin: Vec<String>,
    /// Serve gRPC's channelz (grpc.channelz.v1.Channelz) for gRPC's debugging tools: this
    /// process's servers, channels, endpoints and connections with their calls, states and
    /// addresses. Under a policy, only identities allowed /grpc.channelz.v1.Channelz/ may call
    /// it. Off unless given.
    #[arg(long, env = "CALCMESH_CHANNELZ")]
    pub(crate) channelz: bool,
    /// Inject a fault, for drills (repeatable; off unless given): a share of calls fail with a
    /// status or wait first. KEY=VALUE pairs: method=/SERVICE/METHOD or /SERVICE/ (default: every
    /// method but health and reflection), status=CODE (e.g. UNAVAILABLE), delay=DURATION (e.g.
    /// 200ms), ratio=0..1 (default 1), pushback=MS (sent as grpc-retry-pushback-ms with status;
    /// negative: do not retry). E.g. 'method=/calculator.Calculator/Calculate,status=UNAVAILABLE,ratio=0.3'
    /// or 'delay=200ms,ratio=0.1'. Each hit is counted on /metrics (calcmesh_faults_injected_total).
    #[arg(long)]
    pub(crate) fault: Vec<calcmesh_runtime::server::fault::Fault>,
}

impl ServerArgs {
    /// The server configuration, with TLS files and the policy loaded.
    pub(crate) fn config(&self) -> anyhow::Result<ServerConfig> {
        for (flag, value) in [
            ("--keepalive-interval", self.keepalive_interval),
            ("--keepalive-timeout", self.keepalive_timeout),
        ] {
            anyhow::ensure!(
                calcmesh_runtime::server::KEEPALIVE_RANGE
                    .contains(&std::time::Duration::from(value)),
                "{flag} {value}: expected 1s to 9h 6m 7s, what the kernel takes for TCP keepalive"
            );
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let files = calcmesh_runtime::tls::ServerTlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.client_ca.clone(),
                };
                Some(Arc::new(
                    calcmesh_runtime::tls::ServerTls::load(files).context("server TLS")?,
                ))
            }
            _ => None,
        };
        let mut policy = match &self.policy {
            Some(path) => Some(calcmesh_runtime::server::authz::AuthzPolicy::load(path)?),
            None => None,
        };
        for rule in &self.allow {
            let (identity, prefix) = rule
                .split_once('=')
                .filter(|(_, p)| p.starts_with('/'))
                .with_context(|| format!("--allow {rule:?}: expected IDENTITY=/METHOD_PREFIX"))?;
            policy
                .get_or_insert_with(Default::default)
                .allow(identity, prefix);
        }
        Ok(ServerConfig {
            tls,
            policy: policy.map(Arc::new),
            insecure: self.insecure,
            max_message_size: self.max_message_size,
            max_concurrent_streams: self.max_concurrent_streams,
            keepalive_interval: self.keepalive_interval.into(),
            keepalive_timeout: self.keepalive_timeout.into(),
            grace_period: self.grace_period.into(),
            backlog: self.backlog,
            advertise: self.advertise.clone(),
            max_connection_age: self.max_connection_age.map(Into::into),
            max_connection_age_grace: self.max_connection_age_grace.into(),
            handshake_timeout: self.handshake_timeout.into(),
            faults: self.fault.clone().into(),
            grpc_web: self
                .grpc_web
                .then(|| calcmesh_runtime::server::web::GrpcWeb {
                    allow_origins: self.grpc_web_allow_origin.clone(),
                }),
            ping_policy: calcmesh_runtime::server::keepalive::PingPolicy {
                min_time: self.keepalive_min_time.into(),
                permit_without_calls: self.keepalive_permit_without_calls,
            },
            channelz: self.channelz,
            ..ServerConfig::default()
        })
    }
}

/// Options every client command takes.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// Where to call: host:port, http://host:port, a static list ipv4:ADDR:PORT,ADDR:PORT,
    /// dns:///NAME:PORT (every A/AAAA record) or etcd://HOST:PORT/SERVICE.
    /// Default: the calculator at 127.0.0.1:50051 (for `eval`, the evaluator at 127.0.0.1:50050).
    #[arg(long, env = "CALCMESH_TARGET", default_value = "127.0.0.1:50051")]
    pub(crate) target: Target,
    /// Deadline for the whole call (sent to the server as grpc-timeout).
    #[arg(long, env = "CALCMESH_TIMEOUT", default_value = "30s")]
    pub(crate) timeout: humantime::Duration,
    /// Compress requests with gzip or zstd (identity: not at all). Answers come back compressed
    /// the same way; every calcmesh server reads all three.
    #[arg(long, env = "CALCMESH_COMPRESSION", default_value_t = Compression::Identity)]
    pub(crate) compression: Compression,
    #[command(flatten)]
    pub(crate) balancing: BalancingArgs,
}

impl ClientArgs {
    pub(crate) fn config(&self) -> anyhow::Result<ClientConfig> {
        self.balancing.config()
    }
}

/// How a client reaches a target's endpoints.
#[derive(Debug, Args)]
pub(crate) struct BalancingArgs {
    /// Load-balancing policy: least_request (the less busy of two random endpoints),
    /// round_robin, or pick_first. A --service-config loadBalancingConfig wins over it
    /// (round_robin, pick_first, least_request_experimental map onto these).
    #[arg(long, env = "CALCMESH_LB", default_value_t = LbPolicy::default())]
    pub(crate) lb: LbPolicy,
    /// A gRPC service config (gRFC A2): a JSON file, or the JSON itself if it starts with `{`.
    /// Applied as every gRPC stack applies it: loadBalancingConfig (with
    /// outlier_detection_experimental around a policy), healthCheckConfig.serviceName,
    /// retryThrottling, and each methodConfig's timeout (the longest a call may take),
    /// waitForReady, maxRequestMessageBytes, maxResponseMessageBytes, retryPolicy and
    /// hedgingPolicy (gRFC A6: trailers-only failures retried with backoff,
    /// grpc-retry-pushback-ms obeyed, grpc-previous-rpc-attempts sent). A bad config is
    /// refused with its JSON path. The flags are shorthands: --lb is loadBalancingConfig,
    /// --max-attempts bounds the retries of calls that failed before any response when the method
    /// has no retryPolicy.
    #[arg(long, env = "CALCMESH_SERVICE_CONFIG", value_parser = service_config)]
    pub(crate) service_config: Option<Arc<ServiceConfig>>,
    /// For dns: targets, also take the service config published in DNS as TXT
    /// `_grpc_config.NAME` (gRFC A2; off by default, as in gRPC: whoever controls the zone would
    /// control this client's retries). etcd:// targets always take the one published at
    /// `_grpc_config/SERVICE`. A published config replaces --service-config while it exists; a
    /// bad update is logged and the last good one kept.
    #[arg(long, env = "CALCMESH_DNS_SERVICE_CONFIG")]
    pub(crate) dns_service_config: bool,
    /// What calls travel as: grpc (HTTP/2), grpc-web (gRPC-Web over HTTP/2), or grpc-web-http1
    /// (gRPC-Web over HTTP/1.1, a connection per call, bidirectional streams half duplex): for
    /// servers, or proxies in front of them, that take gRPC-Web only.
    #[arg(long, env = "CALCMESH_PROTOCOL", default_value_t = Protocol::default())]
    pub(crate) protocol: Protocol,
    /// How long to wait for a TCP connection.
    #[arg(long, env = "CALCMESH_CONNECT_TIMEOUT", default_value_t = ClientConfig::default().connect_timeout.into())]
    pub(crate) connect_timeout: humantime::Duration,
    /// Attempts per call, the first included, for calls that fail before any response (a
    /// broken or refused connection). A method with a service-config retryPolicy follows its
    /// maxAttempts instead.
    #[arg(long, env = "CALCMESH_MAX_ATTEMPTS", default_value_t = ClientConfig::default().max_attempts)]
    pub(crate) max_attempts: usize,
    /// How often dns: targets are resolved again.
    #[arg(long, env = "CALCMESH_DNS_INTERVAL", default_value_t = ClientConfig::default().dns_interval.into())]
    pub(crate) dns_interval: humantime::Duration,
    /// How often to PING each endpoint's connection when nothing arrives on it. With
    /// --client-keepalive-timeout, how fast a dead link (a host gone silent) is noticed: calls in
    /// flight on it then fail and idempotent ones go to another endpoint.
    #[arg(long, env = "CALCMESH_CLIENT_KEEPALIVE_INTERVAL", default_value_t = ClientConfig::default().keepalive_interval.into())]
    pub(crate) client_keepalive_interval: humantime::Duration,
    /// How long a PING may go unanswered before the connection is closed.
    #[arg(long, env = "CALCMESH_CLIENT_KEEPALIVE_TIMEOUT", default_value_t = ClientConfig::default().keepalive_timeout.into())]
    pub(crate) client_keepalive_timeout: humantime::Duration,
    #[command(flatten)]
    pub(crate) tls: ClientTlsArgs,
    #[command(flatten)]
    pub(crate) etcd: EtcdTlsArgs,
}

impl BalancingArgs {
    /// The client configuration, with every calcmesh method marked idempotent.
    pub(crate) fn config(&self) -> anyhow::Result<ClientConfig> {
        Ok(ClientConfig {
            tls: self.tls.load()?,
            etcd_tls: self.etcd.load()?,
            connect_timeout: self.connect_timeout.into(),
            policy: self.lb,
            max_attempts: self.max_attempts,
            dns_interval: self.dns_interval.into(),
            keepalive_interval: self.client_keepalive_interval.into(),
            keepalive_timeout: self.client_keepalive_timeout.into(),
            idempotent: calcmesh_proto::idempotent_methods(),
            service_config: self.service_config.clone(),
            dns_service_config: self.dns_service_config,
            protocol: self.protocol,
            ..ClientConfig::default()
        })
    }
}

/// `--service-config`: inline JSON, or a file of it.
fn service_config(value: &str) -> Result<Arc<ServiceConfig>, String> {
    let (name, json) = if value.trim_start().starts_with('{') {
        ("--service-config".to_owned(), value.to_owned())
    } else {
        let json =
            std::fs::read_to_string(value).map_err(|e| format!("cannot read {value}: {e}"))?;
        (value.to_owned(), json)
    };
    ServiceConfig::parse(&name, &json)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub(crate) struct CalcArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// Read `NUM1 OP NUM2` lines from stdin and send them over one CalculateStream; print one
    /// result (or `error: CODE: message`) per line, in order.
    #[arg(long, conflicts_with_all = ["num1", "op", "num2"])]
    pub(crate) stream: bool,
    /// Left operand.
    #[arg(required_unless_present = "stream")]
    pub(crate) num1: Option<f64>,
    /// Operator: + - * / % ^
    #[arg(required_unless_present = "stream")]
    pub(crate) op: Option<String>,
    /// Right operand.
    #[arg(required_unless_present = "stream")]
    pub(crate) num2: Option<f64>,
}

#[derive(Debug, Args)]
pub(crate) struct SummarizeArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// Print the running summary after every number (RunningSummary) instead of one at the end.
    #[arg(long)]
    pub(crate) running: bool,
    /// The numbers; when none are given, whitespace-separated numbers are read from stdin.
    pub(crate) numbers: Vec<f64>,
}

#[derive(Debug, Args)]
pub(crate) struct FactorizeArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// The number to factorize: an integer from 2 to 18446744073709551615.
    pub(crate) number: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
