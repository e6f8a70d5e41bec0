//! `calcmesh serve …`: build a service, hand it to the runtime's [`Server`]; and the pieces
//! `up` shares (listeners, the admin and health endpoints beside a server, the drain order).

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use calcmesh_calculator::CalculatorService;
use calcmesh_evaluator::{EvaluatorConfig, EvaluatorService};
use calcmesh_runtime::admin::Admin;
use calcmesh_runtime::client::ClientMetrics;
use calcmesh_runtime::{
    ClientConfig, HealthState, MeshChannel, Server, ServerConfig, Target, bind, connect, shutdown,
};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::cli::{BalancingArgs, CalculatorArgs, EvaluatorArgs, Serve, ServerArgs};

/// A server with the evaluator service, calling the calculators over `calculators`.
pub(crate) fn evaluator_server(
    config: &ServerConfig,
    calculators: MeshChannel,
    evaluator: EvaluatorConfig,
) -> Server {
    let service = EvaluatorService::new(calculators, evaluator);
    Server::new(config.clone())
        .add_service(calcmesh_evaluator::server(service, config.max_message_size))
        .add_descriptors(calcmesh_proto::FILE_DESCRIPTOR_SET)
}

/// The evaluator's client of the calculators: health checked on `calculator.Calculator`, with
/// client metrics for the admin endpoint.
pub(crate) fn evaluator_client(balancing: &BalancingArgs) -> anyhow::Result<ClientConfig> {
    Ok(ClientConfig {
        health_service: Some("calculator.Calculator".to_owned()),
        metrics: Some(Arc::new(ClientMetrics::new(&[
            calcmesh_proto::FILE_DESCRIPTOR_SET,
        ]))),
        ..balancing.config()?
    })
}

/// A listener beside a server — its admin endpoint or its plaintext health port — serving in a
/// task until [`Beside::stop`]. It outlives the server's drain, so probes see the drain.
pub(crate) struct Beside {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Beside {
    /// Binds `addr` for `what` (e.g. "admin endpoint of the calculator").
    pub(crate) async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
        TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} ({what})"))
    }

    /// Announces `{announce} on ADDR` and serves `serve(listener, stopped)` in a task.
    fn spawn<F, E>(
        listener: TcpListener,
        announce: &str,
        serve: impl FnOnce(TcpListener, futures_util::future::BoxFuture<'static, ()>) -> F,
    ) -> anyhow::Result<Self>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<anyhow::Error>,
    {
        let addr = listener.local_addr()?;
        say(&format!("{announce} on {addr}"))?;
        tracing::info!(%addr, "{announce}");
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = Box::pin(async {
            let _ = stopped.await;
        });
        let served = serve(listener, stopped);
        Ok(Self {
            stop,
            task: tokio::spawn(async move { served.await.map_err(Into::into) }),
        })
    }

    /// The admin endpoint: /metrics, /healthz, /readyz.
    pub(crate) fn admin(
        listener: TcpListener,
        admin: Admin,
        announce: &str,
    ) -> anyhow::Result<Self> {
        Self::spawn(listener, announce, |l, stopped| admin.serve(l, stopped))
    }

    /// `grpc.health.v1` alone, in plaintext, its connections accepted as `config` says.
    fn health(
        listener: TcpListener,
        health: HealthState,
        config: ServerConfig,
    ) -> anyhow::Result<Self> {
        Self::spawn(listener, "health", |l, stopped| async move {
            calcmesh_runtime::serve_health(health, l, &config, stopped).await
        })
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("a listener task panicked")?
    }
}

pub(crate) fn listen(addr: SocketAddr, config: &ServerConfig) -> anyhow::Result<TcpListener> {
    bind(addr, config).with_context(|| format!("cannot listen on {addr}"))
}

/// Prints a line on stdout at once (scripts and tests wait for `listening on ADDR`).
pub(crate) fn say(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// What `--register` asks for: `None` when not asked.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))] // without etcd, only the target is reported
struct Register {
    target: Target,
    ttl: std::time::Duration,
    advertise: Option<String>,
    tls: Option<calcmesh_runtime::tls::ClientTls>,
}

impl Register {
    fn from_args(
        args: &ServerArgs,
        etcd: &crate::cli::EtcdTlsArgs,
    ) -> anyhow::Result<Option<Self>> {
        let Some(target) = args.register.clone() else {
            return Ok(None);
        };
        Ok(Some(Self {
            target,
            ttl: args.register_ttl.into(),
            advertise: args.advertise.clone(),
            tls: etcd.load()?,
        }))
    }

    /// Registers `addr` (or the advertised address); the returned future deregisters.
    #[cfg(feature = "etcd")]
    fn start(self, addr: SocketAddr) -> anyhow::Result<impl Future<Output = ()>> {
        use calcmesh_runtime::client::etcd::{Registration, RegistrationConfig};
        let Target::Etcd { endpoints, service } = self.target else {
            anyhow::bail!(
                "--register takes an etcd://HOST:PORT/SERVICE target, not {}",
                self.target
            );
        };
        let addr = match self.advertise {
            Some(advertise) => advertise,
            None if addr.ip().is_unspecified() => {
                anyhow::bail!(
                    "--register with a wildcard --listen ({addr}) needs --advertise HOST:PORT"
                )
            }
            None => addr.to_string(),
        };
        let registration = Registration::start(RegistrationConfig {
            endpoints,
            service,
            addr,
            ttl: self.ttl,
            tls: self.tls,
        });
        Ok(registration.deregister())
    }

    #[cfg(not(feature = "etcd"))]
    fn start(self, _: SocketAddr) -> anyhow::Result<std::future::Ready<()>> {
        anyhow::bail!(
            "--register {} needs etcd support: build calcmesh with `--features etcd`",
            self.target
        )
    }
}

/// Tells the dashboard where this evaluator answers gRPC-Web, when it does.
fn with_grpc_web(admin: Admin, config: &ServerConfig, listener: &TcpListener) -> Admin {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    match (&config.grpc_web, listener.local_addr()) {
        (Some(_), Ok(addr)) => admin.grpc_web(&format!("{scheme}://{addr}")),
        _ => admin,
    }
}

/// Runs the chosen service until SIGINT/SIGTERM, then drains (deregistering first).
/// A server built from its command line, not yet serving.
struct Built {
    name: &'static str,
    server: calcmesh_runtime::Server,
    listener: tokio::net::TcpListener,
    register: Option<Register>,
    admin: Option<(std::net::SocketAddr, Admin)>,
}

/// The server `serve` asks for, bound to its address.
fn build(serve: Serve) -> anyhow::Result<Built> {
    Ok(match serve {
        Serve::Calculator(CalculatorArgs { server: args, etcd }) => {
            let config = args.config()?;
            let listener = listen(args.listen, &config)?;
            let register = Register::from_args(&args, &etcd)?;
            let server = calcmesh_calculator::mesh_server(&config, CalculatorService::new());
            let admin = args
                .admin
                .map(|addr| (addr, Admin::new().name("calculator").server(&server)));
            Built {
                name: "calculator",
                server,
                listener,
                register,
                admin,
            }
        }
        Serve::Evaluator(EvaluatorArgs {
            server: args,
            calculator,
            balancing,
            limits,
        }) => {
            let config = args.config()?;
            let channel = connect(&calculator, &evaluator_client(&balancing)?)?;
            tracing::info!(%calculator, lb = %balancing.lb, "evaluator computes on these calculators");
            let listener = listen(args.listen, &config)?;
            let server = evaluator_server(&config, channel.clone(), limits.config());
            let admin = args.admin.map(|addr| {
                let admin = Admin::new()
                    .name("evaluator")
                    .server(&server)
                    .client(&channel);
                (addr, with_grpc_web(admin, &config, &listener))
            });
            let register = Register::from_args(&args, &balancing.etcd)?;
            Built {
                name: "evaluator",
                server,
                listener,
                register,
                admin,
            }
        }
    })
}

pub(crate) async fn run(serve: Serve) -> anyhow::Result<ExitCode> {
    // Handlers first: a signal from here on drains instead of killing the process.
    let signal = shutdown::signal();
    let health_listen = match &serve {
        Serve::Calculator(args) => args.server.health_listen,
        Serve::Evaluator(args) => args.server.health_listen,
    };
    let Built {
        name,
        server,
        listener,
        register,
        admin,
    } = build(serve)?;
    let addr = listener.local_addr()?;
    server.check_listen(addr)?;
    let deregister = register.map(|r| r.start(addr)).transpose()?;
    let admin = match admin {
        Some((admin_addr, admin)) => {
            let what = format!("admin endpoint of the {name}");
            Some((Beside::bind(admin_addr, &what).await?, admin))
        }
        None => None,
    };
    let health = match health_listen {
        Some(addr) => Some(Beside::bind(addr, "--health-listen").await?),
        None => None,
    };
    say(&format!("listening on {addr}"))?;
    let mut beside = Vec::new();
    if let Some((listener, admin)) = admin {
        beside.push(Beside::admin(listener, admin, "admin")?);
    }
    if let Some(listener) = health {
        beside.push(Beside::health(
            listener,
            server.health(),
            server.config().clone(),
        )?);
    }
    let config = server.config();
    tracing::info!(
        %addr,
        service = name,
        tls = tls_mode(config),
        policy = config.policy.as_ref().map(|p| format!("{p:?}")),
        ?config,
        "listening"
    );
    let shutdown = async {
        signal.await;
        // Leave discovery before draining, so clients stop picking this server.
        if let Some(deregister) = deregister {
            deregister.await;
        }
    };
    let served = server.serve(listener, shutdown).await;
    for task in beside {
        task.stop().await?;
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// The security of a server's listener, for its startup log line.
fn tls_mode(config: &ServerConfig) -> &'static str {
    match &config.tls {
        None => "plaintext",
        Some(tls) if tls.mutual() => "mutual TLS",
        Some(_) => "TLS",
    }
}

/// A server running in a task, stopped by flipping its watch to `true`.
pub(crate) struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), calcmesh_runtime::ServeError>>,
}

impl Running {
    pub(crate) fn spawn(server: Server, listener: TcpListener) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let shutdown = async move {
            // A dropped sender also means stop.
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        Self {
            stop,
            task: tokio::spawn(server.serve(listener, shutdown)),
        }
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("server task panicked")??;
        Ok(())
    }
}

/// Waits for `signal`, or for a server to end on its own: then it is removed from `servers`
/// (its task is finished) and the error says why.
pub(crate) async fn until_signal(
    signal: impl Future<Output = ()>,
    servers: &mut Vec<Running>,
) -> anyhow::Result<()> {
    let ended = futures_util::future::select_all(servers.iter_mut().map(|s| &mut s.task));
    let (result, index) = tokio::select! {
        () = signal => return Ok(()),
        (result, index, _) = ended => (result, index),
    };
    servers.remove(index);
    let cause = match result {
        Ok(Ok(())) => "stopped".to_owned(),
        Ok(Err(err)) => err.to_string(),
        Err(err) => err.to_string(),
    };
    anyhow::bail!(
        "server {} of the mesh ended unexpectedly: {cause}",
        index + 1
    )
}
