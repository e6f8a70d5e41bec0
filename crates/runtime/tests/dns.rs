//! DNS discovery against a real DNS server: dnsmasq on a free loopback port serving several
//! A records for one name, each pointing at a calculator on its own loopback address, and a
//! service config in TXT `_grpc_config.NAME` (gRFC A2).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use calcmesh_calculator::CalculatorService;
use calcmesh_proto::calculator::Request;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_runtime::{ClientConfig, LbPolicy, MeshChannel, ServerConfig, Target};
use calcmesh_testkit::Running;

const NAME: &str = "calculator.calcmesh.test";

/// dnsmasq serving the A records in a hosts file; killed on drop.
struct Dnsmasq {
    child: Child,
    port: u16,
    hosts: tempfile_path::TempHosts,
}

mod tempfile_path {
    /// A hosts file in the system's temp dir, removed on drop.
    pub(super) struct TempHosts(pub(super) std::path::PathBuf);
    impl Drop for TempHosts {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl Dnsmasq {
    fn start(ips: &[IpAddr]) -> Self {
        Self::start_with(ips, &[])
    }

    /// dnsmasq with `extra` arguments (e.g. a `--txt-record`).
    fn start_with(ips: &[IpAddr], extra: &[&str]) -> Self {
        assert!(
            Command::new("dnsmasq")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "dnsmasq is missing: ./scripts/test installs Debian's dnsmasq-base"
        );
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port, ips, extra)
    }

    /// dnsmasq on 127.0.0.1:`port`.
    fn start_on(port: u16, ips: &[IpAddr], extra: &[&str]) -> Self {
        let hosts = tempfile_path::TempHosts(
            std::env::temp_dir().join(format!("calcmesh-dns-{port}.hosts")),
        );
        // The records are in place before dnsmasq starts: it reads them at startup.
        write_hosts(&hosts.0, ips);
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--user=root",
                "--local-ttl=0",
                &format!("--port={port}"),
                &format!("--addn-hosts={}", hosts.0.display()),
                "--pid-file=",
            ])
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        Dnsmasq { child, port, hosts }
    }

    /// Replaces the records and makes the running dnsmasq reload them (SIGHUP). Only called
    /// once dnsmasq has answered, so its SIGHUP handler is installed.
    fn serve(&mut self, ips: &[IpAddr]) {
        write_hosts(&self.hosts.0, ips);
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success(), "dnsmasq is running");
    }

    fn target(&self, port: u16) -> Target {
        Target::Dns {
            server: Some(SocketAddr::from(([127, 0, 0, 1], self.port))),
            host: NAME.to_owned(),
            port,
        }
    }
}

fn write_hosts(path: &std::path::Path, ips: &[IpAddr]) {
    let text: String = ips.iter().map(|ip| format!("{ip} {NAME}\n")).collect();
    std::fs::write(path, text).unwrap();
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calculators on 127.0.0.2, .3, .4, all on one port (DNS gives addresses, the target the port).
fn calculators() -> (Vec<(Running, CalculatorService)>, u16) {
    let start = |ip: [u8; 4], port| {
        let config = ServerConfig::default();
        let service = CalculatorService::new();
        let server = calcmesh_calculator::mesh_server(&config, service.clone());
        (
            Running::start_on(server, SocketAddr::from((ip, port))),
            service,
        )
    };
    let first = start([127, 0, 0, 2], 0);
    let port = first.0.addr.port();
    let rest = [[127, 0, 0, 3], [127, 0, 0, 4]].map(|ip| start(ip, port));
    let mut all = vec![first];
    all.extend(rest);
    (all, port)
}

async fn calls(channel: &MeshChannel, n: usize) {
    let mut client = CalculatorClient::new(channel.clone());
    for i in 0..n {
        let request = Request {
            num1: i as f64,
            num2: 1.0,
            operator: "+".into(),
        };
        client
            .calculate(request)
            .await
            .expect("every call succeeds");
    }
}

/// Waits, on the channel's endpoint-change signal, until it knows exactly `n` endpoints.
async fn wait_for_total(channel: &MeshChannel, n: usize, what: &str) {
    let done = tokio::time::timeout(
        Duration::from_secs(10),
        channel.wait_for_endpoints(|c| c.total == n),
    )
    .await;
    assert!(
        done.is_ok(),
        "{what} within 10 s: {:?}",
        channel.endpoints()
    );
}

#[tokio::test]
async fn every_record_is_used_and_a_removed_one_is_drained() {
    let (calculators, port) = calculators();
    let ips: Vec<IpAddr> = calculators.iter().map(|(r, _)| r.addr.ip()).collect();
    let mut dns = Dnsmasq::start(&ips);
    let config = ClientConfig {
        policy: LbPolicy::RoundRobin,
        dns_interval: Duration::from_millis(1_500),
        ..ClientConfig::default()
    };
    // dnsmasq may take a moment to answer: the channel waits for discovery's first answer.
    let channel = calcmesh_runtime::connect(&dns.target(port), &config).unwrap();
    wait_for_total(&channel, 3, "three endpoints resolved").await;
    calls(&channel, 30).await;
    for (running, service) in &calculators {
        assert_eq!(service.calculations(), 10, "{} got a third", running.addr);
    }

    dns.serve(&ips[..2]);
    wait_for_total(
        &channel,
        2,
        "the removed record drained after re-resolution",
    )
    .await;
    let before = calculators[2].1.calculations();
    calls(&channel, 30).await;
    assert_eq!(
        calculators[2].1.calculations(),
        before,
        "no calls to the removed address"
    );

    for (running, _) in calculators {
        running.stop().await;
    }
}

/// A TXT `_grpc_config.NAME` record of `grpc_config=` and `choices`. dnsmasq splits a
/// `--txt-record` at every comma (no quoting keeps one), so the configs here have none.
fn txt_record(choices: &str) -> String {
    format!("--txt-record=_grpc_config.{NAME},grpc_config={choices}")
}

const PICK_FIRST: &str = r#"[{"serviceConfig":{"loadBalancingConfig":[{"pick_first":{}}]}}]"#;

/// Calls per calculator after `n` more calls.
async fn spread(
    channel: &MeshChannel,
    calculators: &[(Running, CalculatorService)],
    n: usize,
) -> Vec<u64> {
    let before: Vec<u64> = calculators.iter().map(|(_, s)| s.calculations()).collect();
    calls(channel, n).await;
    calculators
        .iter()
        .zip(before)
        .map(|((_, s), b)| s.calculations() - b)
        .collect()
}

#[tokio::test]
async fn a_service_config_in_dns_txt_is_taken_only_when_asked_for() {
    let (calculators, port) = calculators();
    let ips: Vec<IpAddr> = calculators.iter().map(|(r, _)| r.addr.ip()).collect();
    let dns = Dnsmasq::start_with(&ips, &[&txt_record(PICK_FIRST)]);
    let channel = |dns_service_config| {
        let config = ClientConfig {
            policy: LbPolicy::RoundRobin,
            dns_service_config,
            ..ClientConfig::default()
        };
        calcmesh_runtime::connect(&dns.target(port), &config).unwrap()
    };

    let off = channel(false);
    wait_for_total(&off, 3, "three endpoints resolved").await;
    assert_eq!(
        spread(&off, &calculators, 30).await,
        [10, 10, 10],
        "round_robin, as given"
    );
    assert_eq!(
        off.service_config_updates().applied,
        0,
        "TXT not read unless asked"
    );

    let on = channel(true);
    wait_for_total(&on, 3, "three endpoints resolved").await;
    let counts = spread(&on, &calculators, 30).await;
    assert_eq!(on.service_config_updates().applied, 1);
    assert!(
        counts.contains(&30),
        "pick_first from DNS: one endpoint takes every call: {counts:?}"
    );
    for (running, _) in calculators {
        running.stop().await;
    }
}

#[tokio::test]
async fn a_bad_service_config_in_dns_is_refused_and_the_given_one_kept() {
    let (calculators, port) = calculators();
    let ips: Vec<IpAddr> = calculators.iter().map(|(r, _)| r.addr.ip()).collect();
    let bad = r#"[{"serviceConfig":{"loadBalancingConfig":[{"pick_first":{"shuffleAddressList":"yes"}}]}}]"#;
    let dns = Dnsmasq::start_with(&ips, &[&txt_record(bad)]);
    let config = ClientConfig {
        policy: LbPolicy::RoundRobin,
        dns_service_config: true,
        ..ClientConfig::default()
    };
    let channel = calcmesh_runtime::connect(&dns.target(port), &config).unwrap();
    wait_for_total(&channel, 3, "three endpoints resolved").await;
    assert_eq!(spread(&channel, &calculators, 30).await, [10, 10, 10]);
    let updates = channel.service_config_updates();
    assert_eq!((updates.applied, updates.refused), (0, 1));
    for (running, _) in calculators {
        running.stop().await;
    }
}

/// Answers every DNS query on `socket` with SERVFAIL, sending when each one came.
fn servfail(socket: UdpSocket) -> tokio::sync::mpsc::UnboundedReceiver<tokio::time::Instant> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    socket.set_nonblocking(true).unwrap();
    let socket = tokio::net::UdpSocket::from_std(socket).unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if n < 12 || tx.send(tokio::time::Instant::now()).is_err() {
                return;
            }
            buf[2] |= 0x80; // a response (QR), to the same query id and question
            buf[3] = 0x80 | 0x02; // recursion available, RCODE 2: SERVFAIL
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    rx
}

/// A channel whose DNS server fails at first asks again within seconds (backoff from 100 ms,
/// as gRPC's resolvers do), not after the whole re-resolution interval (30 s by default), and
/// has its endpoints as soon as the server answers.
#[tokio::test]
async fn a_failed_resolution_is_retried_with_backoff() {
    let (calculators, port) = calculators();
    let ips: Vec<IpAddr> = calculators.iter().map(|(r, _)| r.addr.ip()).collect();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns_port = socket.local_addr().unwrap().port();
    let mut queries = servfail(socket.try_clone().unwrap());
    let target = Target::Dns {
        server: Some(SocketAddr::from(([127, 0, 0, 1], dns_port))),
        host: NAME.to_owned(),
        port,
    };
    let channel = calcmesh_runtime::connect(&target, &ClientConfig::default()).unwrap();
    let ten_s = Duration::from_secs(10);
    let first = tokio::time::timeout(ten_s, queries.recv())
        .await
        .expect("a first query")
        .unwrap();
    // Answered SERVFAIL, the resolution fails; the channel must ask again, later than the
    // resolver's own immediate retries but long before 30 s.
    loop {
        let next = tokio::time::timeout(ten_s, queries.recv())
            .await
            .expect("a query again within 10 s")
            .unwrap();
        if next - first >= Duration::from_millis(50) {
            break;
        }
    }
    drop((queries, socket));
    let _dns = Dnsmasq::start_on(dns_port, &ips, &[]);
    wait_for_total(&channel, 3, "three endpoints once dnsmasq answers").await;
    calls(&channel, 3).await;
    for (running, _) in calculators {
        running.stop().await;
    }
}
