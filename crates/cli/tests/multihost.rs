//! Several hosts on one machine: Linux network namespaces joined by veth pairs on a bridge of
//! their own, each host with its own address in 198.18.0.0/24 (the range set aside for
//! benchmarking networks, RFC 2544). Nothing leaves the namespaces: no address outside them is
//! used, and everything is torn down when the test ends, even when it fails.
//!
//! ```text
//!  h1 198.18.0.1  etcd member 1, calculator A (mTLS, registered in etcd)
//!  h2 198.18.0.2  etcd member 2, calculator B (mTLS, registered in etcd)
//!  h3 198.18.0.3  etcd member 3, evaluator (discovers the calculators in etcd)
//!  h4 198.18.0.4  the clients: calcmesh bench, etcdctl
//! ```
//!
//! A second test needs three hosts only: a calculator on h1, idle clients on h2 and h3, and h2
//! cut off, to see the server close the connection of a client that vanished.
//!
//! Needs root (`ip netns`) and `--features etcd`; `./scripts/test` runs it as root in CI.
#![cfg(feature = "etcd")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{BIN, ServerProcess};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const PREFIX: &str = "cmt";

/// Runs `ip args…`, panicking with its error output if it fails.
fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces left by a test run that died before its cleanup (its process is gone).
fn remove_stale_namespaces() {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", name])
                .status();
        }
    }
}

/// A switch namespace with a bridge, and hosts wired to it.
struct Network {
    switch: String,
    hosts: Vec<String>,
}

impl Network {
    fn new(hosts: usize) -> Self {
        assert!(
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
            "the multi-host tests need root for `ip netns` (CI runs them as root)"
        );
        remove_stale_namespaces();
        // Tests run in parallel in one process: the pid (for stale-namespace cleanup) and a count.
        static NETWORKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NETWORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{PREFIX}{}-{n}", std::process::id());
        let mut net = Network {
            switch: format!("{id}-sw"),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &net.switch]);
        ip(&["-n", &net.switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &net.switch, "link", "set", "br0", "up"]);
        for i in 1..=hosts {
            let host = format!("{id}-h{i}");
            ip(&["netns", "add", &host]);
            net.hosts.push(host.clone());
            let port = format!("h{i}");
            ip(&[
                "link",
                "add",
                "eth0",
                "netns",
                &host,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &net.switch,
            ]);
            ip(&["-n", &net.switch, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &net.switch, "link", "set", &port, "up"]);
            let addr = format!("{}/24", Self::addr(i));
            ip(&["-n", &host, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &host, "link", "set", "eth0", "up"]);
            ip(&["-n", &host, "link", "set", "lo", "up"]);
        }
        net
    }

    /// Host `i`'s address (1-based).
    fn addr(i: usize) -> String {
        format!("198.18.0.{i}")
    }

    /// Host `i`'s namespace.
    fn host(&self, i: usize) -> &str {
        &self.hosts[i - 1]
    }

    /// Cuts host `i` off the network, or connects it again.
    fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.switch, "link", "set", &format!("h{i}"), state]);
    }

    /// `program args…` inside host `i`, as `ip netns exec` runs it.
    fn command(&self, i: usize, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.host(i), program])
            .args(args)
            .kill_on_drop(true);
        command
    }

    /// A calcmesh server in host `i`, once it says `ready`. Its etcd sessions log each watch
    /// response (debug), so that a failure's log shows what etcd sent and when.
    async fn serve(&self, i: usize, args: &[&str], ready: &str) -> ServerProcess {
        let mut all = vec!["netns", "exec", self.host(i), BIN];
        all.extend_from_slice(args);
        let log = [("CALCMESH_LOG", "info,calcmesh_runtime::client::etcd=debug")];
        ServerProcess::launch("ip", &all, ready, &log).await
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of every veth pair, and so the pair.
        for ns in self.hosts.iter().chain([&self.switch]) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// A three-member etcd cluster, one member on each of hosts 1–3.
struct Cluster {
    members: Vec<Option<Child>>,
    dirs: Vec<PathBuf>,
}

const ETCD: &str = "198.18.0.1:2379,198.18.0.2:2379,198.18.0.3:2379";

impl Cluster {
    async fn start(net: &Network) -> Self {
        let initial = (1..=3)
            .map(|i| format!("e{i}=http://{}:2380", Network::addr(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            members: Vec::new(),
            dirs: Vec::new(),
        };
        for i in 1..=3 {
            let addr = Network::addr(i);
            let dir = std::env::temp_dir().join(format!("{}-etcd{i}", net.host(i)));
            let _ = std::fs::remove_dir_all(&dir);
            let child = net
                .command(
                    i,
                    "etcd",
                    &[
                        &format!("--name=e{i}"),
                        &format!("--data-dir={}", dir.display()),
                        &format!("--listen-client-urls=http://{addr}:2379"),
                        &format!("--advertise-client-urls=http://{addr}:2379"),
                        &format!("--listen-peer-urls=http://{addr}:2380"),
                        &format!("--initial-advertise-peer-urls=http://{addr}:2380"),
                        &format!("--initial-cluster={initial}"),
                        "--initial-cluster-state=new",
                        "--initial-cluster-token=calcmesh-test",
                    ],
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("etcd (Debian's etcd-server) starts");
            cluster.members.push(Some(child));
            cluster.dirs.push(dir);
        }
        common::eventually(
            "a healthy etcd cluster",
            Duration::from_secs(20),
            || async {
                // Exits 0 only when every member is healthy.
                etcdctl(net, &["endpoint", "health", "--cluster"])
                    .await
                    .is_some()
            },
        )
        .await;
        cluster
    }

    /// Stops member `i` (1-based) as a crash would.
    async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i - 1].take() {
            child.kill().await.unwrap();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// etcdctl from the client host against every member; its stdout, or `None` if it failed.
async fn etcdctl(net: &Network, args: &[&str]) -> Option<String> {
    etcdctl_at(net, ETCD, args).await
}

/// etcdctl from the client host against `members`.
async fn etcdctl_at(net: &Network, members: &str, args: &[&str]) -> Option<String> {
    let endpoints = format!("--endpoints={members}");
    let mut all = vec![endpoints.as_str(), "--command-timeout=2s"];
    all.extend_from_slice(args);
    let out = net
        .command(4, "etcdctl", &all)
        .env("ETCDCTL_API", "3")
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The calculators registered in etcd, as the client host sees them.
async fn registered(net: &Network) -> Vec<String> {
    registered_at(net, ETCD).await
}

/// The calculators registered in etcd, asking `members` only.
async fn registered_at(net: &Network, members: &str) -> Vec<String> {
    etcdctl_at(
        net,
        members,
        &["get", "--prefix", "calculator/", "--keys-only"],
    )
    .await
    .unwrap_or_default()
    .lines()
    .filter_map(|l| l.strip_prefix("calculator/").map(str::to_owned))
    .collect()
}

/// What `calcmesh bench --json` reported.
struct Report {
    requests: u64,
    failed: u64,
    status: String,
}

/// `calcmesh bench` from the client host, running in the background.
fn bench(net: &Network, certs: &Path, target: &str, rpc: &str, seconds: u64) -> Child {
    let file = |f: &str| certs.join(f).display().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("admin.pem"), file("admin.key"));
    let duration = format!("{seconds}s");
    let mut command = net.command(
        4,
        BIN,
        &[
            "bench",
            "--target",
            target,
            "--rpc",
            rpc,
            "-c",
            "8",
            "-d",
            &duration,
            "--warmup",
            "0s",
            "--timeout",
            "5s",
            "--connect-timeout",
            "1s",
            "--client-keepalive-interval",
            "1s",
            "--client-keepalive-timeout",
            "1s",
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--json",
        ],
    );
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn report(child: Child) -> Report {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the bench ends")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    Report {
        requests: json["requests"].as_u64().unwrap(),
        failed: json["failed"].as_u64().unwrap(),
        status: format!("{} {}", json["status"], json["errors"]),
    }
}

/// A calculator on host `i` at `port`, with mutual TLS and registered in the etcd cluster.
async fn calculator(net: &Network, certs: &Path, i: usize, port: u16) -> ServerProcess {
    let file = |f: &str| certs.join(f).display().to_string();
    let listen = format!("{}:{port}", Network::addr(i));
    let register = format!("etcd://{ETCD}/calculator");
    let (cert, key, ca) = (
        file("calculator.pem"),
        file("calculator.key"),
        file("ca.pem"),
    );
    net.serve(
        i,
        &[
            "serve",
            "calculator",
            "--listen",
            &listen,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--client-ca",
            &ca,
            "--allow",
            "spiffe://calcmesh/evaluator=/calculator.Calculator/;spiffe://calcmesh/admin=/",
            "--register",
            &register,
            "--register-ttl",
            "2s",
            "--grace-period",
            "2s",
            // The evaluator pings every second to notice a host gone silent: allowed here.
            "--keepalive-min-time",
            "1s",
        ],
        "listening on ",
    )
    .await
}

/// The evaluator's `/metrics`, fetched from the client host.
async fn evaluator_metrics(net: &Network) -> String {
    let script = "import urllib.request\nprint(urllib.request.urlopen('http://198.18.0.3:9090/metrics', timeout=2).read().decode())";
    let python = common::root().join(".venv/bin/python");
    let out = net
        .command(4, python.to_str().unwrap(), &["-c", script])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Evaluations the evaluator has answered OK.
fn handled(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("grpc_server_handled_total{")
                && l.contains("grpc_method=\"Evaluate\"")
                && l.contains("grpc_code=\"OK\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

fn eligible(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|l| l.starts_with("calcmesh_client_endpoints{") && l.contains("state=\"eligible\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits until `n` calculators are registered in etcd and `evaluator` uses all `n`; returns how
/// long the evaluator took after the registrations.
async fn in_use(net: &Network, evaluator: &ServerProcess, n: usize) -> Duration {
    common::eventually(
        &format!("{n} calculators registered"),
        Duration::from_secs(15),
        || async { registered(net).await.len() == n },
    )
    .await;
    let registered_at = Instant::now();
    common::eventually_explained(
        &format!("the evaluator uses {n} calculators"),
        Duration::from_secs(15),
        || async { eligible(&evaluator_metrics(net).await) == Some(n as u64) },
        || format!("the evaluator's log:\n{}", evaluator.logs()),
    )
    .await;
    registered_at.elapsed()
}

/// Makes the etcd member on host `leader` the leader, cuts host 2 off the network until its
/// key has expired and 3 s more, then connects it again and waits until it is registered and
/// used again. Returns how long after the cut its key expired.
async fn cut_off_host_2(net: &Network, evaluator: &ServerProcess, leader: usize) -> Duration {
    let status = etcdctl_at(
        net,
        &format!("{}:2379", Network::addr(leader)),
        &["endpoint", "status", "-w", "json"],
    )
    .await
    .expect("the etcd member answers");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let member = status[0]["Status"]["header"]["member_id"].as_u64().unwrap();
    if status[0]["Status"]["leader"].as_u64() != Some(member) {
        // Refused while the cluster is still settling after the last cut: asked again.
        let to = format!("{member:x}");
        common::eventually("leadership moves", Duration::from_secs(10), || async {
            etcdctl(net, &["move-leader", &to]).await.is_some()
        })
        .await;
        // A new leader renews every lease for the TTL plus an election timeout; the next
        // keepalive (every TTL/3) brings host 2's back to the TTL. Cut after that.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    // Its lease cannot be kept alive, so its key expires. (Asking the two members still
    // reachable, so that no query waits on the cut one.)
    net.link(2, false);
    let cut = Instant::now();
    common::eventually("host 2's key expired", Duration::from_secs(8), || async {
        registered_at(net, "198.18.0.1:2379,198.18.0.3:2379").await == ["198.18.0.1:50051"]
    })
    .await;
    let expired_after = cut.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Back on the network: it registers again and takes calls again.
    net.link(2, true);
    in_use(net, evaluator, 2).await;
    expired_after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_across_hosts_survives_a_cut_host_and_a_lost_etcd_member() {
    let net = Network::new(4);
    let certs = std::env::temp_dir().join(format!("{}-certs", net.host(1)));
    let _ = std::fs::remove_dir_all(&certs);
    let init = common::calcmesh(
        &[
            "certs",
            "init",
            "--dir",
            certs.to_str().unwrap(),
            "--san",
            "198.18.0.1",
            "--san",
            "198.18.0.2",
            "--san",
            "198.18.0.3",
        ],
        "",
    )
    .await;
    assert_eq!(init.code, Some(0), "{}", init.stderr);
    let mut cluster = Cluster::start(&net).await;

    // Calculators on hosts 1 and 2, the evaluator on host 3: mutual TLS with certificates that
    // name each host's address, discovery through the etcd cluster.
    let a = calculator(&net, &certs, 1, 50051).await;
    let b = calculator(&net, &certs, 2, 50051).await;
    let file = |f: &str| certs.join(f).display().to_string();
    let calculators = format!("etcd://{ETCD}/calculator");
    let evaluator = net
        .serve(
            3,
            &[
                "serve",
                "evaluator",
                "--listen",
                "198.18.0.3:50050",
                "--admin",
                "198.18.0.3:9090",
                // bench pings every second to notice a host gone silent: allowed here.
                "--keepalive-min-time",
                "1s",
                "--calculator",
                &calculators,
                "--connect-timeout",
                "1s",
                "--client-keepalive-interval",
                "1s",
                "--client-keepalive-timeout",
                "1s",
                "--ca",
                &file("ca.pem"),
                "--cert",
                &file("evaluator.pem"),
                "--key",
                &file("evaluator.key"),
                "--tls-cert",
                &file("evaluator.pem"),
                "--tls-key",
                &file("evaluator.key"),
                "--client-ca",
                &file("ca.pem"),
            ],
            "admin on ",
        )
        .await;
    in_use(&net, &evaluator, 2).await;

    // Load from host 4: Calculate through etcd discovery, and evaluations through the evaluator.
    let direct = bench(&net, &certs, &calculators, "calculate", 30);
    let evaluations = bench(&net, &certs, "198.18.0.3:50050", "evaluate", 30);
    common::eventually("evaluations flowing", Duration::from_secs(10), || async {
        handled(&evaluator_metrics(&net).await) >= 200
    })
    .await;

    // Host 2 cut off twice under the same load: first while another member leads etcd, then
    // while host 2's own member leads it.
    let follower = cut_off_host_2(&net, &evaluator, 1).await;
    let leader = cut_off_host_2(&net, &evaluator, 2).await;
    let (direct, evaluations) = (report(direct).await, report(evaluations).await);
    eprintln!(
        "host 2 cut off for 3 s, twice: its key expired {follower:?} after the cut (TTL 2 s), and \
         {leader:?} when it held the etcd leader; Calculate {} calls, {} failed {}; Evaluate {} calls, {} failed {}",
        direct.requests,
        direct.failed,
        direct.status,
        evaluations.requests,
        evaluations.failed,
        evaluations.status
    );
    // Within the TTL (2 s), give or take etcd's lease checks (every 500 ms) and our polling (a
    // process per query). When the leader is cut off, the TTL starts again at the next leader:
    // an election (1 to 2 s), after which etcd renews every lease for the TTL plus one election
    // timeout (1 s).
    assert!(
        follower < Duration::from_millis(2_000 + 1_000),
        "{follower:?}"
    );
    assert!(
        leader < Duration::from_millis(2_000 + 2_000 + 1_000 + 1_500),
        "{leader:?}"
    );
    assert_eq!(direct.failed, 0, "{}", direct.status);
    assert_eq!(evaluations.failed, 0, "{}", evaluations.status);
    assert!(direct.requests > 1_000 && evaluations.requests > 100);

    // One etcd member lost: registration and discovery go on through the other two.
    cluster.kill(1).await;
    let c = calculator(&net, &certs, 1, 50052).await;
    // (etcd member 1 is down: a new calculator on host 1 registers through the others, and the
    // evaluator's discovery, which may have been using member 1, moves to another at once.)
    let taken_up = in_use(&net, &evaluator, 3).await;
    assert!(
        taken_up < Duration::from_secs(2),
        "the evaluator took {taken_up:?} to use the new calculator\nthe evaluator's log:\n{}\nthe new calculator's log:\n{}",
        evaluator.logs(),
        c.logs()
    );
    let after = report(bench(&net, &certs, "198.18.0.3:50050", "evaluate", 2)).await;
    eprintln!(
        "etcd member 1 down: 3 calculators registered and used ({taken_up:?} after the registration); Evaluate {} calls, {} failed",
        after.requests, after.failed
    );
    assert_eq!(after.failed, 0, "{}", after.status);
    drop((a, b, c, evaluator));
    let _ = std::fs::remove_dir_all(&certs);
}

/// A client in host `i` that opens an HTTP/2 connection to `addr` (the preface and SETTINGS,
/// answered by the server's) and then holds it, idle, until it is killed.
async fn idle_client(net: &Network, i: usize, addr: &str) -> ServerProcess {
    const CLIENT: &str = r#"
import signal, socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0\0\0\x04\0\0\0\0\0")
s.recv(64)
print("connected", s.getsockname()[0], flush=True)
signal.pause()
"#;
    ServerProcess::launch(
        "ip",
        &["netns", "exec", net.host(i), "python3", "-c", CLIENT, addr],
        "connected ",
        &[],
    )
    .await
}

/// The peers of host `i`'s established TCP connections on `port`, as `ss` lists them.
async fn peers(net: &Network, i: usize, port: u16) -> String {
    let sport = format!("sport = :{port}");
    let out = net
        .command(i, "ss", &["-Htn", "state", "established", &sport])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "ss: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Servers find dead clients through the kernel (TCP keepalive and TCP_USER_TIMEOUT, set from
/// --keepalive-interval/-timeout): the connection of a client whose host is cut off is closed
/// once it has been silent for interval + timeout, and that of a client idle as long but alive
/// is kept.
#[tokio::test]
async fn a_server_closes_the_connection_of_a_client_whose_host_vanished() {
    let net = Network::new(3);
    let server = net
        .serve(
            1,
            &[
                "serve",
                "calculator",
                "--listen",
                "198.18.0.1:50051",
                "--insecure",
                "--keepalive-interval",
                "2s",
                "--keepalive-timeout",
                "3s",
            ],
            "listening on ",
        )
        .await;
    let gone = idle_client(&net, 2, &server.addr).await;
    let alive = idle_client(&net, 3, &server.addr).await;
    let before = peers(&net, 1, 50051).await;
    assert!(
        before.contains("198.18.0.2:") && before.contains("198.18.0.3:"),
        "{before}"
    );

    net.link(2, false);
    let cut = Instant::now();
    common::eventually(
        "the server closes the connection of the client cut off",
        Duration::from_secs(20),
        || async { !peers(&net, 1, 50051).await.contains("198.18.0.2:") },
    )
    .await;
    let closed_after = cut.elapsed();
    let after = peers(&net, 1, 50051).await;
    eprintln!(
        "host 2 cut off: its connection closed by the server {closed_after:?} later (silent for 2 s + 3 s)"
    );
    // Silent for 5 s, counted from the last probe answered, at most a probe interval (1 s)
    // before the cut. A probe lost must not end the connection by itself: not before 3 s.
    assert!(closed_after >= Duration::from_secs(3), "{closed_after:?}");
    assert!(
        after.contains("198.18.0.3:"),
        "the live client's connection was closed too: {after}"
    );
    drop((gone, alive, server));
}
