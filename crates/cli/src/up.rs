//! `calcmesh up`: a local mesh in one process — calculators on the old project's addresses, an
//! evaluator balancing over them (over mutual TLS unless `--no-tls`), an admin endpoint each —
//! built in the steps a reader would take by hand: certificates, calculators, evaluator, hints.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use calcmesh_calculator::CalculatorService;
use calcmesh_runtime::admin::Admin;
use calcmesh_runtime::server::authz::AuthzPolicy;
use calcmesh_runtime::server::web::GrpcWeb;
use calcmesh_runtime::tls::certs::{self, InitOptions};
use calcmesh_runtime::tls::{ClientTls, ServerTls, ServerTlsFiles};
use calcmesh_runtime::{ClientConfig, ServerConfig, Target, connect, shutdown};

use crate::cli::UpArgs;
use crate::serve::{
    Beside, Running, evaluator_client, evaluator_server, listen, say, until_signal,
};

/// The evaluator → calculator hop's security: the calculators' TLS listeners' config and the
/// evaluator's client certificate.
struct MeshTls {
    server: ServerConfig,
    client: ClientTls,
}

/// What the calculators left running, and where the evaluator should call them.
#[derive(Default)]
struct Calculators {
    plain: Vec<SocketAddr>,
    for_evaluator: Vec<SocketAddr>,
    servers: Vec<Running>,
    admins: Vec<Beside>,
}

/// `calcmesh up`: calculators and an evaluator in one process, until SIGINT/SIGTERM.
pub(crate) async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    // Handlers first: a signal from here on drains instead of killing the process.
    let signal = shutdown::signal();
    // channelz on every server: the evaluator's channelz answers for the whole process, and a
    // server counts its connections only when channelz is served.
    let config = ServerConfig {
        grace_period: args.grace_period.into(),
        channelz: true,
        ..ServerConfig::default()
    };
    let tls = match args.no_tls {
        true => None,
        false => Some(mesh_tls(&args.state_dir.join("certs"), &config)?),
    };
    let mut mesh = start_calculators(&args, &config, tls.as_ref().map(|t| &t.server)).await?;
    let target = Target::Static(mesh.for_evaluator.clone());
    let client = ClientConfig {
        tls: tls.map(|t| t.client),
        ..evaluator_client(&args.balancing)?
    };
    let security = if client.tls.is_some() {
        "mutual TLS"
    } else {
        "plaintext"
    };
    let channel = connect(&target, &client)?;
    let admin_listener = Beside::bind(
        admin_addr(args.admin_port, 0)?,
        "admin endpoint of the evaluator",
    )
    .await?;
    let evaluator_admin = admin_listener.local_addr()?;
    let listener = listen(args.evaluator_listen, &config)?;
    let evaluator_addr = listener.local_addr()?;
    // The dashboard, served by the admin endpoint, calls the evaluator over gRPC-Web; gRPC's
    // debugging tools read the whole process's channelz there.
    let web_config = ServerConfig {
        grpc_web: Some(GrpcWeb {
            allow_origins: vec![format!("http://{evaluator_admin}")],
        }),
        ..config.clone()
    };
    let evaluator = evaluator_server(&web_config, channel.clone(), args.limits.config());
    let admin = Admin::new()
        .name("evaluator")
        .grpc_web(&format!("http://{evaluator_addr}"))
        .server(&evaluator)
        .client(&channel);
    let evaluator = Running::spawn(evaluator, listener);
    say(&format!(
        "evaluator listening on {evaluator_addr} (computing on {target}, {security}; gRPC-Web and channelz too)"
    ))?;
    mesh.admins
        .push(Beside::admin(admin_listener, admin, "evaluator admin")?);
    say(&format!("dashboard on http://{evaluator_admin}/"))?;
    tracing::info!(calculators = %target, evaluator = %evaluator_addr, security, "mesh is up");
    say(&hints(evaluator_addr, mesh.plain[0], evaluator_admin))?;

    let mut all = mesh.servers;
    all.push(evaluator);
    let outcome = until_signal(signal, &mut all).await;
    // Drain the evaluator first (it was pushed last): its calls in flight still need the
    // calculators.
    while let Some(server) = all.pop() {
        server.stop().await?;
    }
    for admin in mesh.admins {
        admin.stop().await?;
    }
    outcome?;
    tracing::info!("mesh stopped");
    Ok(ExitCode::SUCCESS)
}

/// Certificates from a development CA in `dir` (made once, then kept), and a policy that admits
/// the evaluator and admin only.
fn mesh_tls(dir: &Path, config: &ServerConfig) -> anyhow::Result<MeshTls> {
    let options = InitOptions {
        services: vec!["calculator".into(), "evaluator".into()],
        clients: vec!["admin".into()],
        extra_sans: vec![],
        days: 30,
    };
    certs::init(dir, &options)?;
    say(&format!(
        "certificates in {} (call a TLS port as admin: --ca {0}/ca.pem --cert {0}/admin.pem --key {0}/admin.key)",
        dir.display()
    ))?;
    let files = ServerTlsFiles {
        cert: dir.join("calculator.pem"),
        key: dir.join("calculator.key"),
        client_ca: Some(dir.join("ca.pem")),
    };
    let mut policy = AuthzPolicy::default();
    policy.allow("spiffe://calcmesh/evaluator", "/calculator.Calculator/");
    policy.allow("spiffe://calcmesh/admin", "/");
    let server = ServerConfig {
        tls: Some(Arc::new(ServerTls::load(files)?)),
        policy: Some(Arc::new(policy)),
        ..config.clone()
    };
    let (cert, key) = (dir.join("evaluator.pem"), dir.join("evaluator.key"));
    let client = ClientTls::load(&dir.join("ca.pem"), Some((&cert, &key)))?;
    Ok(MeshTls { server, client })
}

/// Starts `--calculators` calculators: each on a plaintext port, on a mutual-TLS port when
/// `tls` is given (one service, so one set of counters and metrics, behind both), and an admin
/// endpoint.
async fn start_calculators(
    args: &UpArgs,
    config: &ServerConfig,
    tls: Option<&ServerConfig>,
) -> anyhow::Result<Calculators> {
    let mut mesh = Calculators::default();
    for i in 0..args.calculators {
        let name = format!("calculator {}", i + 1);
        let service = CalculatorService::new();
        let listener = listen(local(nth_port(args.calculator_port, i)?), config)?;
        let addr = listener.local_addr()?;
        say(&format!("{name} listening on {addr}"))?;
        mesh.plain.push(addr);
        let plain = calcmesh_calculator::mesh_server(config, service.clone());
        let mut admin = Admin::new().server(&plain);
        let metrics = plain.metrics();
        mesh.servers.push(Running::spawn(plain, listener));
        match tls {
            Some(tls_config) => {
                let listener = listen(local(nth_port(args.calculator_tls_port, i)?), tls_config)?;
                let tls_addr = listener.local_addr()?;
                say(&format!("{name} mutual TLS on {tls_addr}"))?;
                mesh.for_evaluator.push(tls_addr);
                let tls =
                    calcmesh_calculator::mesh_server(tls_config, service).with_metrics(metrics);
                admin = admin.server(&tls);
                mesh.servers.push(Running::spawn(tls, listener));
            }
            None => mesh.for_evaluator.push(addr),
        }
        let what = format!("admin endpoint of {name}");
        let listener = Beside::bind(admin_addr(args.admin_port, i + 1)?, &what).await?;
        mesh.admins
            .push(Beside::admin(listener, admin, &format!("{name} admin"))?);
    }
    Ok(mesh)
}

/// What to try next, with `--target` only where the port is not the default.
fn hints(evaluator: SocketAddr, calculator: SocketAddr, admin: SocketAddr) -> String {
    let eval_target = match evaluator.port() {
        50050 => String::new(),
        _ => format!(" --target {evaluator}"),
    };
    let calc_target = match calculator.port() {
        50051 => String::new(),
        _ => format!(" --target {calculator}"),
    };
    format!(
        "try:\n  calcmesh eval{eval_target} --steps \"(2 + 3) * (7 - 1) ^ 2\"\n  calcmesh calc{calc_target} 10 / 4\n  calcmesh factorize{calc_target} 600851475143\n  curl -s http://{admin}/metrics\nstop with Ctrl-C"
    )
}

/// The `i`th port after `first` (0 stays 0: pick a free one).
fn nth_port(first: u16, i: u16) -> anyhow::Result<u16> {
    if first == 0 {
        return Ok(0);
    }
    first
        .checked_add(i)
        .context("calculator ports run past 65535")
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The admin endpoint of instance `i` (0: the evaluator, then each calculator).
fn admin_addr(first: u16, i: u16) -> anyhow::Result<SocketAddr> {
    Ok(local(nth_port(first, i)?))
}
