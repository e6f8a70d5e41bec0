//! The examples run as a user runs them: the binaries, real processes, real TLS on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

/// A running `notes-server`, killed on drop.
struct NotesServer(Child);

impl Drop for NotesServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `notes-server` on a free port with certificates in `dir`; its address, once it says
/// it listens.
fn notes_server(dir: &std::path::Path) -> (NotesServer, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("notes-server starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let server = NotesServer(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("a line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("`listening on ADDR`");
    (server, addr.to_owned())
}

fn client(dir: &std::path::Path, addr: &str, who: &str, text: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_notes-client"))
        .arg(dir)
        .args([&format!("ipv4:{addr}"), who, text])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("notes-client runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn alice_adds_and_lists_notes_and_mallory_is_refused() {
    let dir = std::env::temp_dir().join(format!("calcmesh-notes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (_server, addr) = notes_server(&dir);

    let first = client(&dir, &addr, "alice", "buy milk");
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(
        text(&first.stdout),
        "added note 1 by spiffe://calcmesh/alice\nnote: buy milk\n"
    );
    let second = client(&dir, &addr, "alice", "call home");
    assert_eq!(
        text(&second.stdout),
        "added note 2 by spiffe://calcmesh/alice\nnote: buy milk\nnote: call home\n"
    );

    let refused = client(&dir, &addr, "mallory", "hello");
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains(
            "PermissionDenied: spiffe://calcmesh/mallory may not call /notes.v1.Notes/Add"
        ),
        "{}",
        text(&refused.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_layers_refuse_a_call_without_the_token_and_pass_one_with_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_layers"))
        .output()
        .expect("layers runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "without the token: Unauthenticated: no valid x-notes-token header\n\
         with the token: added note 1\n"
    );
}
