//! What the process-level tests share: starting servers as real processes and running clients.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The `calcmesh` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_calcmesh");

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A server process on a free port; killed if the test ends early.
pub struct ServerProcess {
    pub child: Child,
    /// The address from the last `listening on ADDR` line read.
    pub addr: String,
    /// Every stdout line read before the process was ready.
    pub lines: Vec<String>,
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
    pub async fn mesh() -> Self {
        let args = [
            "up",
            "--calculator-port",
            "0",
            "--evaluator-listen",
            "127.0.0.1:0",
        ];
        Self::start_until(BIN, &args, "evaluator listening on ").await
    }

    /// Starts `program args…` and waits for its `listening on ADDR` line: the readiness signal
    /// every calcmesh server, and the Python and Node peers, print once bound.
    pub async fn start(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Self {
        Self::start_until(program, args, "listening on ").await
    }

    /// Starts `program args…` and reads stdout until a line starting with `ready` (which must
    /// continue with the address).
    pub async fn start_until(
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        ready: &str,
    ) -> Self {
        let program = program.as_ref();
        let mut child = Command::new(program)
            .args(args)
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
        Self { child, addr, lines }
    }

    pub fn channel(&self) -> calcmesh_runtime::MeshChannel {
        calcmesh_runtime::connect(&self.addr.parse().unwrap(), &Default::default()).unwrap()
    }

    pub async fn terminate(&mut self) {
        let pid = self.child.id().unwrap().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }

    pub async fn wait(mut self) -> (ExitStatus, String) {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("exits after draining")
            .unwrap();
        let mut stderr = String::new();
        tokio::io::AsyncReadExt::read_to_string(self.child.stderr.as_mut().unwrap(), &mut stderr)
            .await
            .unwrap();
        (status, stderr)
    }
}

/// What a finished client process said.
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
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
        .expect("the client finishes")
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
