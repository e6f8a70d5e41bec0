//! HTTP/2 itself, judged by h2spec (v2.2.1, `github.com/summerwind/h2spec`, installed by
//! `./scripts/test` into `target/interop/go/bin`): all 145 of its cases, generic and RFC 7540,
//! against a real `calcmesh serve calculator` — the gRPC-only server, which speaks `h2` directly
//! (`server::http2`), and one serving gRPC-Web too, which speaks HTTP/2 through hyper.
//!
//! Every case but one ([`KNOWN`]) must pass, in every run: h2spec's verdict on a case is read
//! from its JUnit report, and a case that failed, errored or was skipped fails the test with its
//! name and h2spec's words — as does a known failure that starts to pass, so the list stays
//! true. Before the server answered a request that is not gRPC only after that request had ended
//! (`server::limits::not_grpc`), 133 to 136 passed, from run to run.

mod common;

use common::{ServerProcess, root};

/// h2spec, as `./scripts/test` installs it.
fn h2spec() -> String {
    common::go_tool(
        "h2spec",
        "github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible",
    )
}

/// The cases that fail, and why; CONFORMANCE.md lists them too.
///
/// An invalid connection preface: RFC 9113 §3.4 makes it a connection error, and the server ends
/// the connection, but with the client's bytes unread, so the kernel answers them with a TCP
/// reset where h2spec wants a clean close. `h2` owns the socket during the handshake and drops
/// it on a bad preface; reading what is left first would need the socket back (or a peek at
/// every new connection's first 24 bytes). grpc-go and bare tonic reset it too.
const KNOWN: &[(&str, &str)] = &[("http2/3.5", "Sends invalid connection preface")];

/// One case of h2spec's JUnit report: its section, its name, and what went wrong, if anything.
#[derive(Debug)]
struct Case {
    section: String,
    name: String,
    problem: Option<String>,
}

/// The value of attribute `name` in an XML start tag's text.
fn attribute(tag: &str, name: &str) -> String {
    let key = format!("{name}=\"");
    tag.split_once(&key)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(value, _)| value.replace("&#34;", "\"").replace("&amp;", "&"))
        .unwrap_or_default()
}

/// The cases of an h2spec JUnit report: each `<testcase …>` and, for one that did not pass, the
/// text of its `<failure>`, `<error>` or `<skipped>`.
fn cases(report: &str) -> Vec<Case> {
    report
        .split("<testcase ")
        .skip(1)
        .map(|case| {
            let (tag, body) = case.split_once('>').unwrap_or((case, ""));
            let body = body.split("</testcase>").next().unwrap_or_default();
            let problem = ["<failure", "<error", "<skipped"]
                .iter()
                .any(|kind| body.contains(kind))
                .then(|| body.trim().to_owned());
            Case {
                section: attribute(tag, "package"),
                name: attribute(tag, "classname"),
                problem,
            }
        })
        .collect()
}

/// Runs every h2spec case against the server at `addr` and fails with each case that did not
/// pass.
async fn every_case_passes(addr: &str, what: &str) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let dir = root().join("target/h2spec");
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join(format!("{what}.xml"));
    let _ = std::fs::remove_file(&report);
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new(h2spec())
            .args(["-h", host, "-p", port, "-j"])
            .arg(&report)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("h2spec finishes within 120 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let report = std::fs::read_to_string(&report)
        .unwrap_or_else(|err| panic!("h2spec wrote no report ({err}): {stdout}"));
    let cases = cases(&report);
    assert_eq!(cases.len(), 145, "h2spec ran all its cases: {stdout}");
    let known = |case: &Case| KNOWN.contains(&(case.section.as_str(), case.name.as_str()));
    let failed: Vec<String> = cases
        .iter()
        .filter(|case| case.problem.is_some() != known(case))
        .map(|case| match &case.problem {
            Some(problem) => format!("{} {}: {problem}", case.section, case.name),
            None => format!(
                "{} {}: passes now; take it off KNOWN",
                case.section, case.name
            ),
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{what}: {} h2spec cases did not do as expected:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[tokio::test]
async fn h2spec_passes_every_case_against_the_grpc_only_server() {
    let mut server = ServerProcess::calcmesh().await;
    every_case_passes(&server.addr, "grpc").await;
    server.terminate().await;
    let (status, logs) = server.wait().await;
    assert!(status.success(), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
}

#[tokio::test]
async fn h2spec_passes_every_case_against_a_grpc_web_server() {
    let args = [
        "serve",
        "calculator",
        "--listen",
        "127.0.0.1:0",
        "--grpc-web",
        "--grace-period",
        "5s",
    ];
    let mut server = ServerProcess::start(common::BIN, &args).await;
    every_case_passes(&server.addr, "grpc-web").await;
    server.terminate().await;
    let (status, logs) = server.wait().await;
    assert!(status.success(), "{logs}");
}

#[test]
fn a_report_s_failures_are_read() {
    let report = r#"<testsuite>
    <testcase package="generic/2" classname="Sends a PRIORITY frame" time="0.0003"></testcase>
    <testcase package="http2/3.5" classname="Sends invalid connection preface" time="2.1">
      <error>Connection closed
Error: connection reset by peer</error>
    </testcase>
    <testcase package="http2/8.1.2.6" classname="the &#34;content-length&#34; header" time="0"><skipped/></testcase>
    </testsuite>"#;
    let cases = cases(report);
    assert_eq!(cases.len(), 3);
    assert!(cases[0].problem.is_none(), "{cases:?}");
    assert_eq!(cases[1].section, "http2/3.5");
    assert!(cases[1].problem.as_ref().unwrap().contains("reset by peer"));
    assert_eq!(cases[2].name, "the \"content-length\" header");
    assert!(cases[2].problem.is_some(), "a skipped case is not a pass");
}
