//! What the process-level tests share: starting servers as real processes and running clients.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use calcmesh_proto::calculator::Request;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_runtime::MeshChannel;
use tokio::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The `calcmesh` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_calcmesh");

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Go tool installed by `./scripts/test` into `target/interop/go/bin` (`module` is what to
/// `go install` when it is missing).
pub fn go_tool(name: &str, module: &str) -> String {
    let bin = root().join("target/interop/go/bin");
    let path = bin.join(name);
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test, or GOBIN={} go install {module}",
        path.display(),
        bin.display()
    );
    path.display().to_string()
}

/// A server process on a free port; killed if the test ends early.
pub struct ServerProcess {
    pub child: Child,
    /// The address from the last `listening on ADDR` line read.
    pub addr: String,
    /// Every stdout line read before the process was ready.
    pub lines: Vec<String>,
    /// Its stderr (logs), read as it comes: a pipe nobody reads fills up at 64 KiB, and a
    /// chatty server would then block in its next log line.
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Ends when stderr closes.
    stderr_read: tokio::task::JoinHandle<()>,
}

impl ServerProcess {
    /// Starts `calcmesh serve calculator` on 127.0.0.1:0.
    pub async fn calcmesh() -> Self {
        Self::start(
            BIN,
            &[
                "serve",
                "calculator",
                "--listen",
                "127.0.0.1:0",
                "--grace-period",
                "5s",
            ],
        )
        .await
    }

    /// Starts `calcmesh up` on free ports and waits until the evaluator is listening; `addr` is
    /// the evaluator's, `lines` has every calculator's.
    pub async fn mesh(state_dir: &std::path::Path) -> Self {
        Self::mesh_until(state_dir, "evaluator listening on ").await
    }

    /// [`mesh`](Self::mesh), reading stdout until a line starting with `ready` (every admin
    /// endpoint is on a free port too).
    pub async fn mesh_until(state_dir: &std::path::Path, ready: &str) -> Self {
        let state = state_dir.display().to_string();
        let args = [
            "up",
            "--calculator-port",
            "0",
            "--calculator-tls-port",
            "0",
            "--evaluator-listen",
            "127.0.0.1:0",
            "--admin-port",
            "0",
            "--state-dir",
            &state,
        ];
        Self::start_until(BIN, &args, ready).await
    }

    /// Starts `program args…` and waits for its `listening on ADDR` line: the readiness signal
    /// every calcmesh server, and the Python and Node peers, print once bound.
    pub async fn start(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Self {
        Self::start_until(program, args, "listening on ").await
    }

    /// [`start`](Self::start) with extra environment variables.
    pub async fn start_with_env(
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch(program, args, "listening on ", env).await
    }

    /// Starts `program args…` and reads stdout until a line starting with `ready` (which must
    /// continue with the address).
    pub async fn start_until(
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        ready: &str,
    ) -> Self {
        Self::launch(program, args, ready, &[]).await
    }

    /// Starts `program args…` with extra environment variables and reads stdout until a line
    /// starting with `ready` (which must continue with the address).
    pub async fn launch(
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        ready: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let program = program.as_ref();
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {program:?}: {err}"));
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout).lines();
        let mut lines = Vec::new();
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(20), reader.next_line())
                .await
                .unwrap_or_else(|_| {
                    panic!("{program:?} {args:?} announces its address within 20 s")
                })
                .unwrap()
                .unwrap_or_else(|| {
                    panic!("{program:?} {args:?} exited before `{ready}`: {lines:?}")
                });
            lines.push(line.clone());
            if let Some(rest) = line.strip_prefix(ready) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        };
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = reader.next_line().await {} });
        let mut pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let logs = stderr.clone();
        let stderr_read = tokio::spawn(async move {
            let mut chunk = [0; 8192];
            while let Ok(n @ 1..) = tokio::io::AsyncReadExt::read(&mut pipe, &mut chunk).await {
                logs.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Self {
            child,
            addr,
            lines,
            stderr,
            stderr_read,
        }
    }

    pub fn channel(&self) -> calcmesh_runtime::MeshChannel {
        calcmesh_runtime::connect(&self.addr.parse().unwrap(), &Default::default()).unwrap()
    }

    /// SIGTERM: the server drains and exits.
    pub async fn terminate(&mut self) {
        self.signal("-TERM").await;
    }

    /// Sends the process `sig` (`-TERM`, `-KILL`, `-STOP`, `-CONT`) with kill(1).
    pub async fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = Command::new("kill")
            .args([sig, &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    }

    /// Waits for the process to exit (within 10 s); its status and everything it logged.
    pub async fn wait(mut self) -> (ExitStatus, String) {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("exits after draining")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), &mut self.stderr_read)
            .await
            .expect("stderr closes when the process exits")
            .unwrap();
        (status, self.logs())
    }

    /// What the process has logged (stderr) so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

/// What a finished client process said.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A static target over `addrs`: `ipv4:A,B,…`.
pub fn ipv4_target<'a>(addrs: impl IntoIterator<Item = &'a str>) -> String {
    format!("ipv4:{}", addrs.into_iter().collect::<Vec<_>>().join(","))
}

/// Runs `program args…` with `stdin`, to completion (at most 60 s).
pub async fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(program.as_ref())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {:?}: {err}", program.as_ref()));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{:?} {args:?} finishes within 60 s", program.as_ref()))
        .unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs the `calcmesh` binary.
pub async fn calcmesh(args: &[&str], stdin: &str) -> Output {
    run(BIN, args, stdin).await
}

/// Outcomes of a load run: successes, failures, and which endpoint answered how often.
#[derive(Default)]
pub struct Tally {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Failures that were DEADLINE_EXCEEDED (also counted in `failed`).
    pub deadline_exceeded: AtomicU64,
    /// The longest any call took, in milliseconds.
    pub slowest_ms: AtomicU64,
    pub by_endpoint: Mutex<HashMap<String, u64>>,
}

impl Tally {
    /// Calls answered by `endpoint` so far.
    pub fn answered_by(&self, endpoint: &str) -> u64 {
        self.by_endpoint
            .lock()
            .unwrap()
            .get(endpoint)
            .copied()
            .unwrap_or(0)
    }
}

/// Calls from `workers` tasks until `until`, each with a 2 s deadline; every failure is counted
/// and its first reason kept.
pub async fn load(
    channel: MeshChannel,
    workers: usize,
    until: Instant,
    tally: Arc<Tally>,
) -> Option<String> {
    load_with_deadline(channel, workers, until, tally, Duration::from_secs(2)).await
}

/// [`load`] with each call's deadline given.
pub async fn load_with_deadline(
    channel: MeshChannel,
    workers: usize,
    until: Instant,
    tally: Arc<Tally>,
    deadline: Duration,
) -> Option<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let mut client = CalculatorClient::new(channel.clone());
        let tally = tally.clone();
        tasks.spawn(async move {
            let mut first_failure = None;
            let mut i = w as f64;
            while Instant::now() < until {
                let mut request = tonic::Request::new(Request {
                    num1: i,
                    num2: 2.0,
                    operator: "*".into(),
                });
                request.set_timeout(deadline);
                let sent = Instant::now();
                let result = client.calculate(request).await;
                tally
                    .slowest_ms
                    .fetch_max(sent.elapsed().as_millis() as u64, Ordering::Relaxed);
                match result {
                    Ok(r) if r.get_ref().result == i * 2.0 => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        if let Some(e) = r
                            .metadata()
                            .get(calcmesh_runtime::ENDPOINT_HEADER)
                            .and_then(|v| v.to_str().ok())
                        {
                            *tally
                                .by_endpoint
                                .lock()
                                .unwrap()
                                .entry(e.to_owned())
                                .or_default() += 1;
                        }
                    }
                    other => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        if other
                            .as_ref()
                            .is_err_and(|e| e.code() == tonic::Code::DeadlineExceeded)
                        {
                            tally.deadline_exceeded.fetch_add(1, Ordering::Relaxed);
                        }
                        first_failure.get_or_insert(format!("{other:?}"));
                    }
                }
                i += 1.0;
            }
            first_failure
        });
    }
    let mut first = None;
    while let Some(done) = tasks.join_next().await {
        if let Some(f) = done.unwrap() {
            first.get_or_insert(f);
        }
    }
    first
}

/// A real etcd (Debian's etcd-server) on free loopback ports with a temporary data directory;
/// killed and cleaned up on drop.
pub struct Etcd {
    child: Option<Child>,
    args: Vec<String>,
    data_dir: PathBuf,
    /// The client address, `127.0.0.1:PORT`.
    pub addr: String,
    /// For a TLS etcd: etcdctl's `--cacert`, `--cert`, `--key` arguments.
    tls: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// Starts etcd and waits until it answers `etcdctl endpoint health`.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts etcd serving clients over mutual TLS with `pki`'s `etcd.pem`/`etcd.key`, trusting
    /// `pki/ca.pem`; etcdctl itself uses `admin.pem`.
    pub async fn start_tls(pki: &std::path::Path) -> Self {
        Self::start_with(Some(pki)).await
    }

    async fn start_with(pki: Option<&std::path::Path>) -> Self {
        let (client, peer) = (free_port(), free_port());
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut etcd = Self::member("test", client, &peer_url, &format!("test={peer_url}"), pki);
        etcd.run().await;
        etcd
    }

    /// A cluster of `n` members on loopback, once every member is healthy.
    pub async fn cluster(n: usize) -> Vec<Self> {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial = (ports.iter().enumerate())
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Self> = (ports.iter().enumerate())
            .map(|(i, (client, peer))| {
                let peer_url = format!("http://127.0.0.1:{peer}");
                Self::member(&format!("m{i}"), *client, &peer_url, &initial, None)
            })
            .collect();
        // No member is healthy before a quorum of them runs: all start, then all are waited for.
        for member in &mut members {
            member.spawn();
        }
        for member in &members {
            member.healthy().await;
        }
        members
    }

    /// One member's command line: client URL on `client`, peers on `peer_url`, the cluster
    /// `initial`; TLS for clients from `pki`.
    fn member(
        name: &str,
        client: u16,
        peer_url: &str,
        initial: &str,
        pki: Option<&std::path::Path>,
    ) -> Self {
        let data_dir = std::env::temp_dir().join(format!("calcmesh-etcd-{client}"));
        let _ = std::fs::remove_dir_all(&data_dir);
        let scheme = if pki.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let file = |f: &str| {
            pki.map(|p| p.join(f).display().to_string())
                .unwrap_or_default()
        };
        let mut args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={initial}"),
        ];
        let mut tls = Vec::new();
        if pki.is_some() {
            args.extend([
                format!("--cert-file={}", file("etcd.pem")),
                format!("--key-file={}", file("etcd.key")),
                format!("--trusted-ca-file={}", file("ca.pem")),
                "--client-cert-auth".to_owned(),
            ]);
            tls = vec![
                format!("--cacert={}", file("ca.pem")),
                format!("--cert={}", file("admin.pem")),
                format!("--key={}", file("admin.key")),
            ];
        }
        Self {
            child: None,
            args,
            data_dir,
            addr: format!("127.0.0.1:{client}"),
            tls,
        }
    }

    /// (Re)starts the process on the same ports and data, and waits until it is healthy.
    pub async fn run(&mut self) {
        self.spawn();
        self.healthy().await;
    }

    fn spawn(&mut self) {
        let child = Command::new("etcd")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("etcd is missing: ./scripts/test installs Debian's etcd-server");
        self.child = Some(child);
    }

    /// Waits (up to 30 s) until the member answers `etcdctl endpoint health`.
    async fn healthy(&self) {
        let started = std::time::Instant::now();
        while !self.etcdctl(&["endpoint", "health"]).await.0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "etcd became healthy within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends the process `sig` (`-STOP`, `-CONT`, …).
    pub async fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().and_then(Child::id).unwrap().to_string();
        let status = Command::new("kill")
            .args([sig, &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    }

    /// Whether this member leads its cluster now (`etcdctl endpoint status`).
    pub async fn leads(&self) -> bool {
        let (ok, json) = self.etcdctl(&["endpoint", "status", "-w", "json"]).await;
        assert!(ok, "etcdctl endpoint status failed");
        let status: serde_json::Value = serde_json::from_str(&json).unwrap();
        let status = &status[0]["Status"];
        status["leader"] == status["header"]["member_id"]
    }

    /// Stops the process (SIGTERM) and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().unwrap().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status().await;
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }

    pub async fn etcdctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.addr))
            .arg("--dial-timeout=1s")
            .args(&self.tls)
            .args(args)
            .output()
            .await
            .expect("etcdctl is missing: ./scripts/test installs Debian's etcd-client");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// `etcdctl get --prefix PREFIX`: (key, value) pairs.
    pub async fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let (ok, text) = self.etcdctl(&["get", "--prefix", prefix]).await;
        assert!(ok, "etcdctl get failed");
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .map(|kv| {
                (
                    kv[0].to_owned(),
                    kv.get(1).copied().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// `etcd://ADDR/SERVICE`.
    pub fn target(&self, service: &str) -> String {
        format!("etcd://{}/{service}", self.addr)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Waits (polling, bounded) until `check` holds; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_explained(what, limit, check, String::new).await;
}

/// Watches `check` for `window` (polling as [`eventually`] does); panics with `what` and what
/// `explain` says the first time it does not hold.
pub async fn always<F, Fut>(
    what: &str,
    window: Duration,
    mut check: F,
    explain: impl Fn() -> String,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while started.elapsed() < window {
        assert!(
            check().await,
            "{what}: broken after {:?}\n{}",
            started.elapsed(),
            explain()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`eventually`], adding what `explain` says (e.g. a server's logs) to the panic message.
pub async fn eventually_explained<F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
    explain: impl Fn() -> String,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "{what} within {limit:?}\n{}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A RunningSummary call held open: a call in flight, which keeps a drain going until
/// [`finish`](Self::finish).
pub struct HeldCall {
    numbers: tokio::sync::mpsc::Sender<calcmesh_proto::calculator::Number>,
    summaries: tonic::Streaming<calcmesh_proto::calculator::Summary>,
}

impl HeldCall {
    /// Opens the call in plaintext to `target`.
    pub async fn open_plain(target: &str) -> Self {
        Self::open(target, &calcmesh_runtime::ClientConfig::default()).await
    }

    /// Opens the call to `target` with `config` (TLS, say), once it has answered one number.
    pub async fn open(target: &str, config: &calcmesh_runtime::ClientConfig) -> Self {
        use calcmesh_proto::calculator::Number;
        let channel = calcmesh_runtime::connect(&target.parse().unwrap(), config).unwrap();
        let (numbers, rx) = tokio::sync::mpsc::channel(4);
        numbers.send(Number { value: 1.0 }).await.unwrap();
        let mut summaries = CalculatorClient::new(channel)
            .running_summary(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(summaries.message().await.unwrap().unwrap().count, 1);
        Self { numbers, summaries }
    }

    /// Ends the call and reads the rest of its answers.
    pub async fn finish(mut self) {
        drop(self.numbers);
        while self.summaries.message().await.unwrap().is_some() {}
    }
}
