//! etcd discovery and registration with a real etcd (Debian's etcd-server) and real
//! `calcmesh serve calculator --register …` processes. Built with `--features etcd`
//! (`./scripts/test` builds everything with all features).
#![cfg(feature = "etcd")]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use calcmesh_runtime::{ClientConfig, LbPolicy, Target};
use tokio::time::Instant;

use common::{BIN, Etcd, ServerProcess, Tally, eventually, load};

const TTL: &str = "2s";

async fn registered_calculator(etcd: &Etcd) -> ServerProcess {
    registered_calculator_with(etcd, &[]).await
}

/// A calculator registered in `etcd` (lease TTL 2 s), with `extra` arguments.
async fn registered_calculator_with(etcd: &Etcd, extra: &[&str]) -> ServerProcess {
    let target = etcd.target("calculator");
    let mut args = vec![
        "serve",
        "calculator",
        "--listen",
        "127.0.0.1:0",
        "--register",
        &target,
        "--register-ttl",
        TTL,
        "--grace-period",
        "5s",
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(BIN, &args).await
}

async fn keys(etcd: &Etcd) -> Vec<String> {
    etcd.get_prefix("calculator/")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

fn client(etcd: &Etcd) -> calcmesh_runtime::MeshChannel {
    let target: Target = etcd.target("calculator").parse().unwrap();
    let config = ClientConfig {
        policy: LbPolicy::RoundRobin,
        idempotent: calcmesh_proto::idempotent_methods(),
        ..ClientConfig::default()
    };
    calcmesh_runtime::connect(&target, &config).unwrap()
}

/// Three registered calculators, once etcd lists all three.
async fn three_registered(etcd: &Etcd) -> Vec<ServerProcess> {
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(registered_calculator(etcd).await);
    }
    eventually("three registrations", Duration::from_secs(10), || async {
        keys(etcd).await.len() == 3
    })
    .await;
    servers
}

/// Continuous load through an etcd-discovered channel for `length`, in the background.
fn load_through_etcd(
    etcd: &Etcd,
    length: Duration,
) -> (
    calcmesh_runtime::MeshChannel,
    Arc<Tally>,
    tokio::task::JoinHandle<Option<String>>,
) {
    let channel = client(etcd);
    let tally = Arc::new(Tally::default());
    let run = tokio::spawn(load(
        channel.clone(),
        8,
        Instant::now() + length,
        tally.clone(),
    ));
    (channel, tally, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_discovery_and_instances_that_come_and_go() {
    let etcd = Etcd::start().await;
    let mut servers = three_registered(&etcd).await;
    // grpc-go's etcd resolver layout, as etcdctl shows it.
    for (key, value) in etcd.get_prefix("calculator/").await {
        let addr = key.strip_prefix("calculator/").unwrap();
        assert_eq!(
            value,
            format!(r#"{{"Op":0,"Addr":"{addr}","Metadata":null}}"#)
        );
        assert!(servers.iter().any(|s| s.addr == addr), "{key}");
    }

    let (channel, tally, run) = load_through_etcd(&etcd, Duration::from_secs(12));
    eventually(
        "load flowing to all three",
        Duration::from_secs(5),
        || async { servers.iter().all(|s| tally.answered_by(&s.addr) > 0) },
    )
    .await;

    // A fourth instance gets traffic within 1 s of registering.
    let fourth = registered_calculator(&etcd).await;
    eventually("the fourth key", Duration::from_secs(5), || async {
        keys(&etcd)
            .await
            .contains(&format!("calculator/{}", fourth.addr))
    })
    .await;
    let registered = std::time::Instant::now();
    eventually(
        "the fourth instance answering",
        Duration::from_secs(1),
        || async { tally.answered_by(&fourth.addr) > 0 },
    )
    .await;
    eprintln!(
        "4th instance answered {:?} after its key appeared",
        registered.elapsed()
    );
    servers.push(fourth);

    // SIGTERM: the key is gone by the time the process has drained and exited.
    let drained = servers.remove(0);
    let drained_key = format!("calculator/{}", drained.addr);
    drained.signal("-TERM").await;
    let (status, _) = drained.wait().await;
    assert!(status.success());
    assert!(
        !keys(&etcd).await.contains(&drained_key),
        "deregistered before exiting"
    );

    // SIGKILL: the key expires with its lease.
    let killed = servers.remove(0);
    let killed_key = format!("calculator/{}", killed.addr);
    killed.signal("-KILL").await;
    let died = std::time::Instant::now();
    eventually(
        "the crashed instance's key to expire",
        Duration::from_secs(5),
        || async { !keys(&etcd).await.contains(&killed_key) },
    )
    .await;
    eprintln!(
        "crashed instance's key expired {:?} after SIGKILL (TTL {TTL})",
        died.elapsed()
    );
    assert!(
        died.elapsed() <= Duration::from_millis(3_500),
        "within the 2 s TTL and etcd's expiry granularity"
    );

    let first_failure = run.await.unwrap();
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    eprintln!("{ok} calls, {failed} failed");
    assert_eq!(failed, 0, "first failure: {first_failure:?}");
    assert_eq!(channel.endpoints().total, 2, "{:?}", channel.endpoints());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_under_load_fails_no_call_and_servers_register_again() {
    let mut etcd = Etcd::start().await;
    let servers = three_registered(&etcd).await;
    let (channel, tally, run) = load_through_etcd(&etcd, Duration::from_secs(20));
    eventually("load flowing", Duration::from_secs(5), || async {
        tally.ok.load(Ordering::Relaxed) > 500
    })
    .await;

    etcd.stop().await;
    let before = tally.ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(10)).await; // the outage: 10 s, longer than the TTL
    assert!(
        tally.ok.load(Ordering::Relaxed) > before + 1_000,
        "calls go on while etcd is away"
    );
    etcd.run().await;

    // After etcd returns, every server is registered again and stays so past its old lease.
    tokio::time::sleep(Duration::from_secs(3)).await; // longer than the TTL: old leases are gone
    eventually(
        "all three registered again",
        Duration::from_secs(10),
        || async { keys(&etcd).await.len() == 3 },
    )
    .await;
    assert_eq!(channel.endpoints().eligible, 3, "{:?}", channel.endpoints());

    let first_failure = run.await.unwrap();
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    eprintln!("{ok} calls across the outage, {failed} failed");
    assert_eq!(failed, 0, "first failure: {first_failure:?}");
    drop(servers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_discovery_through_an_etcd_that_requires_mutual_tls() {
    let pki = std::env::temp_dir().join(format!("calcmesh-etcd-pki-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&pki);
    let init = common::calcmesh(
        &[
            "certs",
            "init",
            "--dir",
            pki.to_str().unwrap(),
            "--services",
            "etcd,calculator",
        ],
        "",
    )
    .await;
    assert_eq!(init.code, Some(0), "{}", init.stderr);
    let file = |f: &str| pki.join(f).display().to_string();
    let etcd = Etcd::start_tls(&pki).await;
    let target = etcd.target("calculator");
    let (ca, cert, key) = (
        file("ca.pem"),
        file("calculator.pem"),
        file("calculator.key"),
    );
    let server = ServerProcess::start(
        BIN,
        &[
            "serve",
            "calculator",
            "--listen",
            "127.0.0.1:0",
            "--register",
            &target,
            "--etcd-ca",
            &ca,
            "--etcd-cert",
            &cert,
            "--etcd-key",
            &key,
        ],
    )
    .await;
    eventually("the registration", Duration::from_secs(10), || async {
        keys(&etcd).await.len() == 1
    })
    .await;

    let (admin_cert, admin_key) = (file("admin.pem"), file("admin.key"));
    let tls_args = [
        "--etcd-ca",
        ca.as_str(),
        "--etcd-cert",
        admin_cert.as_str(),
        "--etcd-key",
        admin_key.as_str(),
    ];
    let mut args = vec!["calc", "--target", &target];
    args.extend(tls_args);
    args.extend(["6", "*", "7"]);
    let out = common::calcmesh(&args, "").await;
    assert_eq!(out.stdout, "42\n", "{}", out.stderr);

    // Without the TLS options, discovery cannot read etcd: the call fails, it does not hang.
    let out = common::calcmesh(
        &[
            "calc",
            "--timeout",
            "3s",
            "--target",
            &target,
            "6",
            "*",
            "7",
        ],
        "",
    )
    .await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    drop(server);
    let _ = std::fs::remove_dir_all(&pki);
}

/// Evaluations through the evaluator at `addr` until `until`; (ok, failed, first failure).
async fn evaluations(addr: String, until: Instant) -> (u64, u64, Option<String>) {
    use calcmesh_proto::evaluator::EvaluateRequest;
    use calcmesh_proto::evaluator::evaluator_client::EvaluatorClient;
    let config = ClientConfig {
        idempotent: calcmesh_proto::idempotent_methods(),
        ..ClientConfig::default()
    };
    let channel = calcmesh_runtime::connect(&addr.parse().unwrap(), &config).unwrap();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..4u64 {
        let mut client = EvaluatorClient::new(channel.clone());
        workers.spawn(async move {
            let (mut ok, mut failed, mut first) = (0, 0, None);
            let mut i = w;
            while Instant::now() < until {
                let x = (i % 100) as f64;
                let mut request = tonic::Request::new(EvaluateRequest {
                    expression: format!("({x} + 1) * ({x} - 1) + 2 ^ 3"),
                });
                request.set_timeout(Duration::from_secs(2));
                match client.evaluate(request).await {
                    Ok(r) if r.get_ref().value == (x + 1.0) * (x - 1.0) + 8.0 => ok += 1,
                    other => {
                        failed += 1;
                        first.get_or_insert(format!("{other:?}"));
                    }
                }
                i += 4;
            }
            (ok, failed, first)
        });
    }
    let (mut ok, mut failed, mut first) = (0, 0, None);
    while let Some(done) = workers.join_next().await {
        let (o, f, e) = done.unwrap();
        ok += o;
        failed += f;
        first = first.or(e);
    }
    (ok, failed, first)
}

/// Chaos: under continuous load — Calculate through etcd discovery, and evaluations through an
/// evaluator that finds the calculators in etcd — a calculator is SIGKILLed and a new one
/// started every 1.5 s, and etcd itself is restarted half-way. No call may fail.
/// `CALCMESH_CHAOS_SECONDS` sets the length (20 s in the test command; 60 s by hand).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_and_restart_instances_and_etcd_under_load_fails_no_call() {
    let seconds: u64 = std::env::var("CALCMESH_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut etcd = Etcd::start().await;
    let mut servers = three_registered(&etcd).await;
    let target = etcd.target("calculator");
    let evaluator = ServerProcess::start(
        BIN,
        &[
            "serve",
            "evaluator",
            "--listen",
            "127.0.0.1:0",
            "--calculator",
            &target,
        ],
    )
    .await;
    let length = Duration::from_secs(seconds);
    let (channel, tally, run) = load_through_etcd(&etcd, length);
    let evals = tokio::spawn(evaluations(evaluator.addr.clone(), Instant::now() + length));
    eventually("load flowing", Duration::from_secs(5), || async {
        tally.ok.load(Ordering::Relaxed) > 500
    })
    .await;

    let started = Instant::now();
    let (mut kills, mut etcd_restarted) = (0, false);
    while started.elapsed() + Duration::from_secs(3) < length {
        // Kill the oldest instance; a new one takes its place.
        let victim = servers.remove(0);
        victim.signal("-KILL").await;
        drop(victim);
        kills += 1;
        if !etcd_restarted && started.elapsed() * 2 >= length {
            etcd.stop().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            etcd.run().await;
            etcd_restarted = true;
        }
        servers.push(registered_calculator(&etcd).await);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let first_failure = run.await.unwrap();
    let (eval_ok, eval_failed, eval_first) = evals.await.unwrap();
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "chaos {seconds} s: {kills} instances SIGKILLed and replaced, etcd restarted once; \
         Calculate: {ok} ok, {failed} failed; Evaluate: {eval_ok} ok, {eval_failed} failed"
    );
    assert!(etcd_restarted && kills >= 3, "{kills} kills");
    assert_eq!(failed, 0, "first failure: {first_failure:?}");
    assert_eq!(eval_failed, 0, "first failure: {eval_first:?}");
    assert!(eval_ok > 100, "{eval_ok} evaluations: the load ran");
    drop(channel);
}

/// etcd's own Go naming packages (`interop/go/etcd-peer`, on go.etcd.io/etcd/client/v3 v3.7.3
/// and grpc-go v1.85.0), built by `./scripts/test`.
fn etcd_peer() -> std::path::PathBuf {
    let path = common::root().join("target/interop/go/bin/etcd-peer");
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test (cd interop/go/etcd-peer && go build -o {0} .)",
        path.display()
    );
    path
}

/// `etcd-peer watch`: grpc-go with etcd's resolver and round_robin, printing after every 100
/// calls which endpoints answered them.
struct GoWatch {
    _child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    last: String,
}

impl GoWatch {
    fn start(etcd: &Etcd, service: &str) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(etcd_peer())
            .args(["-etcd", &etcd.addr, "-service", service, "watch"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start etcd-peer watch");
        let stdout = child.stdout.take().unwrap();
        let lines = tokio::io::BufReader::new(stdout).lines();
        Self {
            _child: child,
            lines,
            last: String::new(),
        }
    }

    /// Reads reports until one names exactly `endpoints` (within `limit`).
    async fn until(&mut self, endpoints: &[&str], limit: Duration) {
        let mut want: Vec<&str> = endpoints.to_vec();
        want.sort_unstable();
        let want = want.join(",");
        let deadline = Instant::now() + limit;
        while self.last != want {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| {
                    panic!("grpc-go never used exactly {want} (last: {:?})", self.last)
                })
                .unwrap()
                .expect("etcd-peer watch exited");
            self.last = line;
        }
    }
}

/// grpc-go, through etcd's own resolver, finds the calculators that registered with
/// `--register`, spreads calls over all of them, drops one that stops (its key deleted on
/// SIGTERM), drops one that is killed (its key expired with the lease), and picks up a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcds_go_resolver_follows_calcmesh_registrations() {
    let etcd = Etcd::start().await;
    let mut servers = three_registered(&etcd).await;
    let mut go = GoWatch::start(&etcd, "calculator");
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
    let all: Vec<&str> = addrs.iter().map(String::as_str).collect();
    go.until(&all, Duration::from_secs(15)).await;

    // SIGTERM: the key goes before the drain, and grpc-go stops using the instance.
    let mut drained = servers.remove(0);
    drained.terminate().await;
    go.until(&all[1..], Duration::from_secs(10)).await;
    assert!(drained.wait().await.0.success());

    // SIGKILL: nothing deletes the key; the lease expires it, and grpc-go stops using it.
    let killed = servers.remove(0);
    killed.signal("-KILL").await;
    let killed_key = format!("calculator/{}", killed.addr);
    eventually(
        "the killed key expires",
        Duration::from_secs(10),
        || async { !keys(&etcd).await.contains(&killed_key) },
    )
    .await;
    go.until(&all[2..], Duration::from_secs(10)).await;

    // A new instance: registered, and used.
    let fourth = registered_calculator(&etcd).await;
    go.until(&[all[2], &fourth.addr], Duration::from_secs(15))
        .await;
}

/// The other way: an instance registered by etcd's Go endpoints manager is found by calcmesh's
/// `etcd://` target, and gone once the manager deletes it.
#[tokio::test]
async fn calcmesh_finds_instances_registered_by_etcds_go_endpoints_manager() {
    use tokio::io::AsyncBufReadExt;
    let etcd = Etcd::start().await;
    let server = ServerProcess::calcmesh().await;
    let mut go = tokio::process::Command::new(etcd_peer())
        .args([
            "-etcd",
            &etcd.addr,
            "-service",
            "gocalc",
            "register",
            &server.addr,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start etcd-peer register");
    let stdout = go.stdout.take().unwrap();
    let first = tokio::io::BufReader::new(stdout).lines().next_line().await;
    assert_eq!(first.unwrap().as_deref(), Some("registered"));

    let target = etcd.target("gocalc");
    let out = common::calcmesh(&["calc", "--target", &target, "6", "*", "7"], "").await;
    assert_eq!(out.stdout, "42\n", "{}", out.stderr);

    drop(go.stdin.take());
    assert!(go.wait().await.unwrap().success());
    assert!(etcd.get_prefix("gocalc/").await.is_empty());
}

/// The service config published at `_grpc_config/calculator` reaches a running client within a
/// second; a bad update is refused (counted, logged) and the last good one kept; deleting the
/// key gives the client back the config it was given (none here).
#[tokio::test]
async fn a_service_config_published_in_etcd_reaches_running_clients() {
    use calcmesh_proto::calculator::Request;
    use calcmesh_proto::calculator::calculator_client::CalculatorClient;

    let etcd = Etcd::start().await;
    let fault = [
        "--fault",
        "method=/calculator.Calculator/Calculate,delay=300ms",
    ];
    let _slow = registered_calculator_with(&etcd, &fault).await;
    eventually("the registration", Duration::from_secs(10), || async {
        keys(&etcd).await.len() == 1
    })
    .await;
    let channel = client(&etcd);
    let code = || {
        let mut client = CalculatorClient::new(channel.clone());
        async move {
            let request = Request {
                num1: 6.0,
                num2: 7.0,
                operator: "*".into(),
            };
            match client.calculate(request).await {
                Ok(_) => tonic::Code::Ok,
                Err(status) => status.code(),
            }
        }
    };
    assert_eq!(
        code().await,
        tonic::Code::Ok,
        "no timeout yet: the call waits 300 ms"
    );

    let key = calcmesh_runtime::client::etcd::EtcdDiscovery::config_key("calculator");
    let timeout = r#"{"methodConfig": [{"name": [{"service": "calculator.Calculator"}], "timeout": "0.1s"}]}"#;
    assert!(etcd.etcdctl(&["put", &key, timeout]).await.0);
    eventually(
        "the published timeout applies",
        Duration::from_secs(1),
        || async { code().await == tonic::Code::DeadlineExceeded },
    )
    .await;
    assert_eq!(channel.service_config_updates().applied, 1);

    assert!(
        etcd.etcdctl(&["put", &key, r#"{"methodConfig": [{"timeout": "soon"}]}"#])
            .await
            .0
    );
    eventually(
        "the bad update is refused",
        Duration::from_secs(1),
        || async { channel.service_config_updates().refused == 1 },
    )
    .await;
    assert_eq!(
        code().await,
        tonic::Code::DeadlineExceeded,
        "the last good config stays"
    );

    assert!(etcd.etcdctl(&["del", &key]).await.0);
    eventually(
        "the given config is back",
        Duration::from_secs(1),
        || async { code().await == tonic::Code::Ok },
    )
    .await;
}

/// An evaluator discovering the calculators through the etcd `members`, in that order, logging
/// its etcd sessions.
async fn discovering_evaluator(members: &[&Etcd]) -> ServerProcess {
    let addrs: Vec<&str> = members.iter().map(|m| m.addr.as_str()).collect();
    let target = format!("etcd://{}/calculator", addrs.join(","));
    ServerProcess::launch(
        BIN,
        &[
            "serve",
            "evaluator",
            "--listen",
            "127.0.0.1:0",
            "--insecure",
            "--calculator",
            &target,
        ],
        "listening on ",
        &[("CALCMESH_LOG", "info")],
    )
    .await
}

/// The etcd members the evaluator's discovery sessions read the endpoints from, in order.
fn sessions(evaluator: &ServerProcess) -> Vec<String> {
    evaluator
        .logs()
        .lines()
        .filter(|l| l.contains("etcd: current endpoints"))
        .filter_map(|l| Some(l.split("member=[\"").nth(1)?.split('"').next()?.to_owned()))
        .collect()
}

/// A discovery session stays on its etcd member while nothing changes, and leaves a member that
/// froze within the probe's bound.
/// - Idle: etcd takes a PING no more often than every 5 s and closes, with GOAWAY
///   "too_many_pings", a connection that pings more often while it sends nothing; with PINGs
///   every 2 s the session's connection was closed every 8 s. Here: one session for 10 s.
/// - Frozen (SIGSTOP: its connections stay open, nothing answers): the session's watch leaves a
///   progress request unanswered, which is noticed within 1.5 s; the session on the next member
///   starts within 2 s of the freeze (the backoff's first step and a connection later), and sees
///   a new registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_session_keeps_its_etcd_member_and_leaves_a_frozen_one_within_2_s() {
    let cluster = Etcd::cluster(3).await;
    // The member to freeze must follow: a frozen leader would cost an election first.
    let mut order: Vec<&Etcd> = Vec::new();
    for member in &cluster {
        if member.leads().await {
            order.push(member);
        } else {
            order.insert(0, member);
        }
    }
    let (frozen, next) = (order[0], order[1]);
    let evaluator = discovering_evaluator(&order).await;
    eventually("a discovery session", Duration::from_secs(10), || async {
        !sessions(&evaluator).is_empty()
    })
    .await;

    // Idle for 10 s, watched all along: still the first session.
    common::always(
        "one session on the first member",
        Duration::from_secs(10),
        || async { sessions(&evaluator) == [frozen.addr.clone()] },
        || evaluator.logs(),
    )
    .await;

    // Frozen: the session moves on.
    frozen.signal("-STOP").await;
    let stopped = Instant::now();
    common::eventually_explained(
        "a session on the next member",
        Duration::from_secs(10),
        || async { sessions(&evaluator).len() == 2 },
        || evaluator.logs(),
    )
    .await;
    let moved = stopped.elapsed();
    assert_eq!(sessions(&evaluator)[1], next.addr, "{}", evaluator.logs());
    assert!(
        moved < Duration::from_secs(2),
        "the session left the frozen member after {moved:?}\n{}",
        evaluator.logs()
    );
    let value = calcmesh_runtime::client::etcd::registration_value("127.0.0.1:1");
    let (put, _) = next
        .etcdctl(&["put", "calculator/127.0.0.1:1", &value])
        .await;
    assert!(put, "etcdctl put");
    common::eventually_explained(
        "the new registration seen",
        Duration::from_secs(1),
        || async { evaluator.logs().contains(r#"Insert("127.0.0.1:1")"#) },
        || evaluator.logs(),
    )
    .await;
    eprintln!("the discovery session left the frozen etcd member after {moved:?}");
    frozen.signal("-CONT").await;
}

/// What one discovery session knows: the endpoints its changes add up to, kept by a task.
fn follow(etcd: &Etcd, service: &str) -> Arc<std::sync::Mutex<BTreeSet<String>>> {
    use calcmesh_runtime::client::discovery::{Change, Discover};
    use futures_util::StreamExt;
    let discovery = calcmesh_runtime::client::etcd::EtcdDiscovery::new(
        vec![etcd.addr.clone()],
        service.to_owned(),
        None,
    );
    let mut changes = Box::new(discovery).changes(Arc::default());
    let known = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let set = known.clone();
    tokio::spawn(async move {
        while let Some(change) = changes.next().await {
            let mut set = set.lock().unwrap();
            match change {
                Change::Reset(all) => *set = all.into_iter().collect(),
                Change::Insert(addr) => drop(set.insert(addr)),
                Change::Remove(addr) => drop(set.remove(&addr)),
                Change::ServiceConfig { .. } => {}
            }
        }
    });
    known
}

/// A discovery session reads the endpoints and the service config, then watches both from the
/// revision after that read: a registration that lands while a session starts is neither
/// missed nor lost. Here sessions start one after another while 150 registrations land, one
/// every few milliseconds; each session must end up knowing all 150.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_sessions_started_while_instances_register_miss_none() {
    use calcmesh_runtime::client::etcd::{Registration, RegistrationConfig};
    const N: u16 = 150;
    let etcd = Etcd::start().await;
    let register = |i: u16| {
        Registration::start(RegistrationConfig {
            endpoints: vec![etcd.addr.clone()],
            service: "race".into(),
            addr: format!("127.0.0.1:{}", 20_000 + i),
            ttl: Duration::from_secs(30),
            tls: None,
        })
    };
    let (mut registrations, mut sessions) = (Vec::new(), Vec::new());
    let mut pace = tokio::time::interval(Duration::from_millis(3));
    for i in 0..N {
        pace.tick().await;
        registrations.push(register(i));
        sessions.push(follow(&etcd, "race"));
    }
    eventually("150 registrations", Duration::from_secs(20), || async {
        etcd.get_prefix("race/").await.len() == usize::from(N)
    })
    .await;
    let all: BTreeSet<String> = (0..N)
        .map(|i| format!("127.0.0.1:{}", 20_000 + i))
        .collect();
    for (i, known) in sessions.iter().enumerate() {
        common::eventually_explained(
            &format!("session {i} knows all {N}"),
            Duration::from_secs(3),
            || async { *known.lock().unwrap() == all },
            || {
                let known = known.lock().unwrap();
                format!("it misses {:?}", all.difference(&known).collect::<Vec<_>>())
            },
        )
        .await;
    }
    futures_util::future::join_all(registrations.into_iter().map(Registration::deregister)).await;
}
