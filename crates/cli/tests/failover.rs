//! Instances that die or drain under continuous load cost no failed call, and one that freezes
//! costs only the calls it holds, each ended at its deadline: three `calcmesh serve calculator`
//! processes, a client balancing over them, and a signal to one.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use calcmesh_runtime::{ClientConfig, Target};
use tokio::time::Instant;

use common::{ServerProcess, Tally, load, load_with_deadline};

/// Three server processes and a channel balancing over them, as every calcmesh client is
/// configured (idempotent calls may be sent again).
async fn three_servers() -> (Vec<ServerProcess>, calcmesh_runtime::MeshChannel) {
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(ServerProcess::calcmesh().await);
    }
    let target = Target::Static(servers.iter().map(|s| s.addr.parse().unwrap()).collect());
    let config = ClientConfig {
        idempotent: calcmesh_proto::idempotent_methods(),
        ..ClientConfig::default()
    };
    (
        servers,
        calcmesh_runtime::connect(&target, &config).unwrap(),
    )
}

/// Waits until the load has made 1 000 calls (at most 2 s).
async fn load_flowing(tally: &Tally) {
    common::eventually("load flowing", Duration::from_secs(2), || async {
        tally.ok.load(Ordering::Relaxed) >= 1_000
    })
    .await;
}

async fn scenario(sig: &str) {
    let (servers, channel) = three_servers().await;
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let run = tokio::spawn(load(
        channel.clone(),
        8,
        started + Duration::from_secs(3),
        tally.clone(),
    ));

    // Signal one instance once the load is flowing.
    load_flowing(&tally).await;
    servers[1].signal(sig).await;
    let at_signal = tally.ok.load(Ordering::Relaxed);
    let first_failure = run.await.unwrap();
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    let rate = ok as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "{sig}: {ok} calls in {:?} ({rate:.0}/s), {failed} failed",
        started.elapsed()
    );
    assert_eq!(failed, 0, "first failure: {first_failure:?}");
    // Not a speed test (the machine is shared): the load went on, well past the signal.
    assert!(
        ok >= at_signal + 1_000,
        "{} calls after the signal",
        ok - at_signal
    );
    let counts = channel.endpoints();
    assert_eq!(
        (counts.total, counts.eligible),
        (3, 2),
        "the signalled instance left the rotation: {counts:?}"
    );
}

/// An instance frozen with SIGSTOP — alive, connected, silent — for 3 s under load with a
/// 300 ms deadline per call: calls it holds end at their deadline, and the rest move on to the
/// others (least_request avoids an endpoint whose calls pile up).
async fn frozen() {
    let (servers, channel) = three_servers().await;
    let tally = Arc::new(Tally::default());
    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let run = tokio::spawn(load_with_deadline(
        channel.clone(),
        8,
        started + Duration::from_secs(4),
        tally.clone(),
        deadline,
    ));
    load_flowing(&tally).await;
    servers[1].signal("-STOP").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    servers[1].signal("-CONT").await;
    let first_failure = run.await.unwrap();
    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let late = tally.deadline_exceeded.load(Ordering::Relaxed);
    let slowest = tally.slowest_ms.load(Ordering::Relaxed);
    eprintln!(
        "-STOP for 3 s: {ok} calls ok, {failed} failed ({late} DEADLINE_EXCEEDED), slowest {slowest} ms"
    );
    assert_eq!(failed, late, "only deadlines: {first_failure:?}");
    assert!(
        slowest < 300 + 200,
        "every call ended within its deadline (+200 ms): {slowest} ms"
    );
    assert!(
        failed * 20 < ok,
        "the others took the load: {failed} of {ok} failed"
    );
}

/// One test, three scenarios in turn, so they do not compete for the machine's cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_sigterm_or_sigstop_of_one_instance_under_load() {
    scenario("-KILL").await;
    scenario("-TERM").await;
    frozen().await;
}
