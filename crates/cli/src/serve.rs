//! `calcmesh serve …` and `calcmesh up`: build services, hand them to the runtime's [`Server`].

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use calcmesh_calculator::CalculatorService;
use calcmesh_evaluator::{EvaluatorConfig, EvaluatorService};
use calcmesh_runtime::{
    ClientConfig, MeshChannel, Server, ServerConfig, Target, bind, connect, shutdown,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
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

/// The evaluator's client of the calculators: health checked on `calculator.Calculator`.
fn evaluator_client(balancing: &BalancingArgs) -> anyhow::Result<ClientConfig> {
    Ok(ClientConfig {
        health_service: Some("calculator.Calculator".to_owned()),
        ..balancing.config()?
    })
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
    let admin;
    let (name, server, listener, register) = match serve {
        Serve::Calculator(CalculatorArgs { server: args, etcd }) => {
            admin = args.admin;
            let config = args.config()?;
            let listener = listen(args.listen, &config)?;
            let register = Register::from_args(&args, &etcd)?;
            (
                "calculator.Calculator",
                calculator_server(&config),
                listener,
                register,
            )
        }
        Serve::Evaluator(EvaluatorArgs {
            server,
            calculator,
            balancing,
            limits,
        }) => {
            admin = server.admin;
            let config = server.config()?;
            let channel = connect(&calculator, &evaluator_client(&balancing)?)?;
            tracing::info!(%calculator, "evaluator computes on these calculators");
            let listener = listen(server.listen, &config)?;
            let evaluator = evaluator_server(&config, channel, limits.config());
            (
                "calcmesh.evaluator.v1.Evaluator",
                evaluator,
                listener,
                Register::from_args(&server, &balancing.etcd)?,
            )
        }
    };
    let addr = listener.local_addr()?;
    server.check_listen(addr)?;
    let deregister = register.map(|r| r.start(addr)).transpose()?;
    let admin = match admin {
        Some(admin) => Some(
            tokio::net::TcpListener::bind(admin)
                .await
                .with_context(|| format!("cannot listen on {admin} (--admin)"))?,
        ),
        None => None,
    };
    say(&format!("listening on {addr}"))?;
    // The admin endpoint outlives the drain, so /readyz can say 503 while it runs.
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = match admin {
        Some(listener) => {
            let admin_addr = listener.local_addr()?;
            say(&format!("admin on {admin_addr}"))?;
            tracing::info!(%admin_addr, "admin endpoint: /metrics /healthz /readyz");
            let stopped = async {
                let _ = admin_stopped.await;
            };
            Some(tokio::spawn(calcmesh_runtime::metrics::serve_admin(
                listener,
                server.metrics(),
                server.health(),
                stopped,
            )))
        }
        None => None,
    };
    tracing::info!(%addr, service = name, config = ?server.config(), "listening");
    let shutdown = async {
        signal.await;
        // Leave discovery before draining, so clients stop picking this server.
        if let Some(deregister) = deregister {
            deregister.await;
        }
    };
    let served = server.serve(listener, shutdown).await;
    let _ = admin_stop.send(());
    if let Some(task) = admin_task {
        task.await.context("admin endpoint panicked")??;
    }
    served?;
    Ok(ExitCode::SUCCESS)
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
        let mut policy = calcmesh_runtime::authz::Policy::default();
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
    let mut plain_addrs = Vec::new();
    let mut evaluator_targets = Vec::new();
    let mut servers = Vec::new();
    for i in 0..args.calculators {
        // One service, so one set of counters, behind both listeners.
        let service = CalculatorService::new();
        let listener = listen(
            SocketAddr::from(([127, 0, 0, 1], nth_port(args.calculator_port, i)?)),
            &config,
        )?;
        let addr = listener.local_addr()?;
        say(&format!("calculator {} listening on {addr}", i + 1))?;
        plain_addrs.push(addr);
        servers.push(Running::spawn(
            calculator_server_with(&config, service.clone()),
            listener,
        ));
        match &mtls {
            Some((tls_config, _)) => {
                let listener = listen(
                    SocketAddr::from(([127, 0, 0, 1], nth_port(args.calculator_tls_port, i)?)),
                    tls_config,
                )?;
                let tls_addr = listener.local_addr()?;
                say(&format!("calculator {} mutual TLS on {tls_addr}", i + 1))?;
                evaluator_targets.push(tls_addr);
                servers.push(Running::spawn(
                    calculator_server_with(tls_config, service),
                    listener,
                ));
            }
            None => evaluator_targets.push(addr),
        }
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
    let evaluator = Running::spawn(
        evaluator_server(&config, channel, args.limits.config()),
        listener,
    );
    say(&format!(
        "evaluator listening on {evaluator_addr} (computing on {target}, {security})"
    ))?;
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
        "try:\n  calcmesh eval{eval_target} --steps \"(2 + 3) * (7 - 1) ^ 2\"\n  calcmesh calc{calc_target} 10 / 4\n  calcmesh factorize{calc_target} 600851475143\nstop with Ctrl-C"
    ))?;

    let mut all = servers;
    all.push(evaluator);
    let outcome = until_signal(signal, &mut all).await;
    // Drain the evaluator first (it was pushed last): its calls in flight still need the
    // calculators.
    while let Some(server) = all.pop() {
        server.stop().await?;
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
