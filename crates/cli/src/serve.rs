//! `calcmesh serve …` and `calcmesh up`: build services, hand them to the runtime's [`Server`].

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

use crate::cli::{BalancingArgs, CalculatorArgs, EvaluatorArgs, Serve, ServerArgs, UpArgs};

/// A server with the calculator service.
fn calculator_server(config: &ServerConfig) -> Server {
    calculator_server_with(config, CalculatorService::new())
}

/// A server with `service` (clones share their counters).
fn calculator_server_with(config: &ServerConfig, service: CalculatorService) -> Server {
    Server::new(config.clone())
        .add_service(calcmesh_calculator::server(
            service,
            config.max_message_size,
        ))
        .add_descriptors(calcmesh_proto::FILE_DESCRIPTOR_SET)
}

/// A server with the evaluator service, calling the calculators over `calculators`.
fn evaluator_server(
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
fn evaluator_client(balancing: &BalancingArgs) -> anyhow::Result<ClientConfig> {
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
struct Beside {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Beside {
    /// Binds `addr` for `what` (e.g. "admin endpoint of the calculator").
    async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
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
    fn admin(listener: TcpListener, admin: Admin, announce: &str) -> anyhow::Result<Self> {
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

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("a listener task panicked")?
    }
}

fn listen(addr: SocketAddr, config: &ServerConfig) -> anyhow::Result<TcpListener> {
    bind(addr, config).with_context(|| format!("cannot listen on {addr}"))
}

/// Prints a line on stdout at once (scripts and tests wait for `listening on ADDR`).
fn say(line: &str) -> std::io::Result<()> {
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
        use calcmesh_runtime::etcd::{Registration, RegistrationConfig};
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

/// Runs the chosen service until SIGINT/SIGTERM, then drains (deregistering first).
pub(crate) async fn run(serve: Serve) -> anyhow::Result<ExitCode> {
    // Handlers first: a signal from here on drains instead of killing the process.
    let signal = shutdown::signal();
    let health_listen = match &serve {
        Serve::Calculator(args) => args.server.health_listen,
        Serve::Evaluator(args) => args.server.health_listen,
    };
    let (name, server, listener, register, admin) = match serve {
        Serve::Calculator(CalculatorArgs { server: args, etcd }) => {
            let config = args.config()?;
            let listener = listen(args.listen, &config)?;
            let register = Register::from_args(&args, &etcd)?;
            let server = calculator_server(&config);
            let admin = args.admin.map(|addr| (addr, Admin::new().server(&server)));
            ("calculator", server, listener, register, admin)
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
            let admin = args
                .admin
                .map(|addr| (addr, Admin::new().server(&server).client(&channel)));
            let register = Register::from_args(&args, &balancing.etcd)?;
            ("evaluator", server, listener, register, admin)
        }
    };
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
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), calcmesh_runtime::ServeError>>,
}

impl Running {
    fn spawn(server: Server, listener: TcpListener) -> Self {
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

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("server task panicked")??;
        Ok(())
    }
}

/// Waits for `signal`, or for a server to end on its own: then it is removed from `servers`
/// (its task is finished) and the error says why.
async fn until_signal(
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

/// `calcmesh up`: calculators and an evaluator in one process.
pub(crate) async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    // Handlers first: a signal from here on drains instead of killing the process.
    let signal = shutdown::signal();
    let config = ServerConfig {
        grace_period: args.grace_period.into(),
        ..ServerConfig::default()
    };
    let nth_port = |first: u16, i: u16| -> anyhow::Result<u16> {
        if first == 0 {
            Ok(0)
        } else {
            first
                .checked_add(i)
                .context("calculator ports run past 65535")
        }
    };
    // mTLS between the evaluator and the calculators: certificates from a development CA in the
    // state directory, a policy that admits the evaluator and admin only.
    let mtls = if args.no_tls {
        None
    } else {
        let dir = args.state_dir.join("certs");
        let options = calcmesh_runtime::certs::InitOptions {
            services: vec!["calculator".into(), "evaluator".into()],
            clients: vec!["admin".into()],
            extra_sans: vec![],
            days: 30,
        };
        calcmesh_runtime::certs::init(&dir, &options)?;
        say(&format!(
            "certificates in {} (call a TLS port as admin: --ca {0}/ca.pem --cert {0}/admin.pem --key {0}/admin.key)",
            dir.display()
        ))?;
        let files = calcmesh_runtime::tls::ServerTlsFiles {
            cert: dir.join("calculator.pem"),
            key: dir.join("calculator.key"),
            client_ca: Some(dir.join("ca.pem")),
        };
        let mut policy = calcmesh_runtime::authz::AuthzPolicy::default();
        policy.allow("spiffe://calcmesh/evaluator", "/calculator.Calculator/");
        policy.allow("spiffe://calcmesh/admin", "/");
        let server = ServerConfig {
            tls: Some(std::sync::Arc::new(calcmesh_runtime::tls::ServerTls::load(
                files,
            )?)),
            policy: Some(std::sync::Arc::new(policy)),
            ..config.clone()
        };
        let client = calcmesh_runtime::tls::ClientTls::load(
            &dir.join("ca.pem"),
            Some((&dir.join("evaluator.pem"), &dir.join("evaluator.key"))),
        )?;
        Some((server, client))
    };
    let admin_addr = |i: u16| -> anyhow::Result<SocketAddr> {
        Ok(SocketAddr::from((
            [127, 0, 0, 1],
            nth_port(args.admin_port, i)?,
        )))
    };
    let mut plain_addrs = Vec::new();
    let mut evaluator_targets = Vec::new();
    let mut servers = Vec::new();
    let mut admins = Vec::new();
    for i in 0..args.calculators {
        let name = format!("calculator {}", i + 1);
        // One service, so one set of counters and metrics, behind both listeners.
        let service = CalculatorService::new();
        let listener = listen(
            SocketAddr::from(([127, 0, 0, 1], nth_port(args.calculator_port, i)?)),
            &config,
        )?;
        let addr = listener.local_addr()?;
        say(&format!("{name} listening on {addr}"))?;
        plain_addrs.push(addr);
        let plain = calculator_server_with(&config, service.clone());
        let mut admin = Admin::new().server(&plain);
        let metrics = plain.metrics();
        servers.push(Running::spawn(plain, listener));
        match &mtls {
            Some((tls_config, _)) => {
                let listener = listen(
                    SocketAddr::from(([127, 0, 0, 1], nth_port(args.calculator_tls_port, i)?)),
                    tls_config,
                )?;
                let tls_addr = listener.local_addr()?;
                say(&format!("{name} mutual TLS on {tls_addr}"))?;
                evaluator_targets.push(tls_addr);
                let tls = calculator_server_with(tls_config, service).with_metrics(metrics);
                admin = admin.server(&tls);
                servers.push(Running::spawn(tls, listener));
            }
            None => evaluator_targets.push(addr),
        }
        let listener =
            Beside::bind(admin_addr(i + 1)?, &format!("admin endpoint of {name}")).await?;
        admins.push(Beside::admin(listener, admin, &format!("{name} admin"))?);
    }
    let target = Target::Static(evaluator_targets);
    let listener = listen(args.evaluator_listen, &config)?;
    let evaluator_addr = listener.local_addr()?;
    let client = ClientConfig {
        tls: mtls.map(|(_, client)| client),
        ..evaluator_client(&args.balancing)?
    };
    let security = if client.tls.is_some() {
        "mutual TLS"
    } else {
        "plaintext"
    };
    let channel = connect(&target, &client)?;
    let evaluator = evaluator_server(&config, channel.clone(), args.limits.config());
    let admin = Admin::new().server(&evaluator).client(&channel);
    let evaluator = Running::spawn(evaluator, listener);
    say(&format!(
        "evaluator listening on {evaluator_addr} (computing on {target}, {security})"
    ))?;
    let listener = Beside::bind(admin_addr(0)?, "admin endpoint of the evaluator").await?;
    let evaluator_admin = listener.local_addr()?;
    admins.push(Beside::admin(listener, admin, "evaluator admin")?);
    tracing::info!(calculators = %target, evaluator = %evaluator_addr, security, "mesh is up");

    let eval_target = if evaluator_addr.port() == 50050 {
        String::new()
    } else {
        format!(" --target {evaluator_addr}")
    };
    let calc_target = if plain_addrs[0].port() == 50051 {
        String::new()
    } else {
        format!(" --target {}", plain_addrs[0])
    };
    say(&format!(
        "try:\n  calcmesh eval{eval_target} --steps \"(2 + 3) * (7 - 1) ^ 2\"\n  calcmesh calc{calc_target} 10 / 4\n  calcmesh factorize{calc_target} 600851475143\n  curl -s http://{evaluator_admin}/metrics\nstop with Ctrl-C"
    ))?;

    let mut all = servers;
    all.push(evaluator);
    let outcome = until_signal(signal, &mut all).await;
    // Drain the evaluator first (it was pushed last): its calls in flight still need the
    // calculators.
    while let Some(server) = all.pop() {
        server.stop().await?;
    }
    for admin in admins {
        admin.stop().await?;
    }
    outcome?;
    tracing::info!("mesh stopped");
    Ok(ExitCode::SUCCESS)
}

/// `calcmesh certs …`.
pub(crate) fn certs(command: crate::cli::Certs) -> anyhow::Result<ExitCode> {
    use calcmesh_runtime::certs;
    match command {
        crate::cli::Certs::Init {
            dir,
            services,
            clients,
            san,
            days,
        } => {
            let options = certs::InitOptions {
                services,
                clients,
                extra_sans: san,
                days,
            };
            for file in certs::init(&dir, &options)? {
                println!("wrote {}", file.display());
            }
        }
        crate::cli::Certs::Show { file } => print!("{}", certs::show(&file)?),
    }
    Ok(ExitCode::SUCCESS)
}
