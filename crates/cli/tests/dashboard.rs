//! The dashboard in a real browser (Debian's chromium, headless, driven by playwright-core from
//! `interop/node`, see `dashboard_check.js`), against real processes: three calculators and an
//! evaluator with `--admin` and `--grpc-web`. The page shows the three SERVING, answers an
//! expression typed into its try-it box over gRPC-Web with the steps and the calculators that
//! computed them, shows the rate rise under `calcmesh bench` with Evaluate's p50 and p99, and a
//! killed calculator as down within 2 s, without a console error. The screenshot it takes is the README's.
//!
//! And `calcmesh up` prints the dashboard's address, whose `/api/mesh` lists its calculators.

mod common;

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use common::{BIN, ServerProcess, root};

async fn calculator() -> ServerProcess {
    ServerProcess::start(BIN, &["serve", "calculator", "--listen", "127.0.0.1:0"]).await
}

#[tokio::test]
async fn the_dashboard_shows_the_mesh_working_in_a_browser() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: ./scripts/test installs Debian's chromium"
    );
    let calculators = [calculator().await, calculator().await, calculator().await];
    let target = common::ipv4_target(calculators.iter().map(|c| c.addr.as_str()));
    let args = [
        "serve",
        "evaluator",
        "--listen",
        "127.0.0.1:0",
        "--calculator",
        &target,
        "--admin",
        "127.0.0.1:0",
        "--grpc-web",
        "--grpc-web-allow-origin",
        "*",
    ];
    let evaluator = ServerProcess::start_until(BIN, &args, "admin on ").await;
    let grpc = evaluator.lines[0]
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    // The README shows a copy of it, docs/dashboard.png.
    let screenshot = root().join("target/dashboard.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let mut browser = Command::new("node")
        .arg(root().join("interop/node/dashboard_check.js"))
        .args(["--url", &format!("http://{}/", evaluator.addr)])
        .args(["--screenshot", screenshot.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs dashboard_check.js");
    let mut stdin = browser.stdin.take().unwrap();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut next = async || {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line());
        line.await
            .expect("the browser reports within 30 s")
            .unwrap()
            .unwrap_or_default()
    };

    assert_eq!(next().await, "serving 3");
    let evaluated = next().await;
    assert!(evaluated.starts_with("evaluated 9 by "), "{evaluated}");
    let by = evaluated.trim_start_matches("evaluated 9 by ");
    assert!(
        by.split(',')
            .all(|e| calculators.iter().any(|c| c.addr == e)),
        "each step names a calculator: {by}"
    );

    let load = tokio::spawn(async move {
        let bench = [
            "bench", "--rpc", "evaluate", "--target", &grpc, "-c", "4", "-d", "6s",
        ];
        common::calcmesh(&bench, "").await
    });
    stdin.write_all(b"load\n").await.unwrap();
    let rate = next().await;
    assert!(rate.starts_with("rate "), "{rate}");
    let latency = next().await;
    let ms: Vec<f64> = latency
        .strip_prefix("latency ")
        .unwrap_or_else(|| panic!("{latency}"))
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        0.0 < ms[0] && ms[0] <= ms[1] && ms[1] < 1000.0,
        "Evaluate's p50 and p99 under load, in ms: {latency}"
    );
    assert_eq!(next().await, "screenshot");

    let mut calculators = calculators;
    let killed = calculators[0].addr.clone();
    calculators[0].child.kill().await.unwrap();
    stdin
        .write_all(format!("killed {killed}\n").as_bytes())
        .await
        .unwrap();
    let down = next().await;
    assert!(down.starts_with(&format!("down {killed} in ")), "{down}");
    assert_eq!(next().await, "console clean");
    assert!(browser.wait().await.unwrap().success());
    let out = load.await.unwrap();
    assert_eq!(out.code, Some(0), "the load ran: {}", out.stderr);
}

#[tokio::test]
async fn up_prints_the_dashboard_and_its_api_lists_the_calculators() {
    let state = std::env::temp_dir().join(format!("calcmesh-dashboard-{}", std::process::id()));
    let mesh = ServerProcess::mesh_until(&state, "dashboard on ").await;
    let url = mesh.addr.trim_end_matches('/');
    let admin = url.trim_start_matches("http://");
    let (status, page) = calcmesh_testkit::http_get(admin, "/").await;
    assert!(
        status.contains("200") && page.contains("<title>calcmesh</title>"),
        "{status}"
    );
    assert!(
        page.len() < 200 * 1024,
        "the page is light: {} bytes",
        page.len()
    );
    let (_, json) = calcmesh_testkit::http_get(admin, "/api/mesh").await;
    let mesh_status: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(mesh_status["name"], "evaluator");
    assert!(
        mesh_status["grpc_web"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(
        mesh_status["channels"][0]["endpoints"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // The evaluator calls the calculators with mutual TLS: its certificate's expiry is shown,
    // in the future (`up` issues them for 30 days).
    let now = mesh_status["time_ms"].as_i64().unwrap();
    let expires = mesh_status["channels"][0]["certificate_expires_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("{mesh_status}"));
    assert!(
        now < expires && expires <= now + 31 * 86_400_000,
        "{mesh_status}"
    );
    let _ = std::fs::remove_dir_all(&state);
}
