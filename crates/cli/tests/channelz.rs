//! channelz judged by grpc-go: its own generated channelz client (`calc-channelz`, built by
//! the test command from `interop/go/calculator/channelz`) walks every RPC — GetServers,
//! GetServer, GetServerSockets, GetSocket, GetTopChannels, GetChannel, GetSubchannel — against
//! real calcmesh processes, and what it decodes must be what happened: the calls made, their
//! outcomes, the endpoints' states, the connections' addresses, streams, messages and TLS.

mod common;

use serde_json::Value;

use common::{BIN, ServerProcess, calcmesh, root, run};

/// What grpc-go's channelz client read from `target`, as JSON (protojson field names).
async fn read_channelz(target: &str) -> Value {
    let program = root().join("target/interop/go/bin/calc-channelz");
    let out = run(program, &["-target", target], "").await;
    assert_eq!(out.code, Some(0), "calc-channelz: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// A protojson int64 (a string) as a number; absent (zero) as 0.
fn int(v: &Value) -> i64 {
    v.as_str().map_or(0, |s| s.parse().unwrap())
}

/// The port of a channelz `Address`, and whether its IP is 127.0.0.1 (4 bytes, base64).
fn tcp(address: &Value) -> (u16, bool) {
    let a = &address["tcpip_address"];
    let port = a["port"].as_u64().unwrap() as u16;
    (port, a["ip_address"] == "fwAAAQ==")
}

fn port(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn grpc_go_reads_what_an_evaluator_and_its_calculator_did() {
    let calculator = ServerProcess::calcmesh().await;
    let args = [
        "serve",
        "evaluator",
        "--listen",
        "127.0.0.1:0",
        "--calculator",
        &calculator.addr,
        "--channelz",
    ];
    let evaluator = ServerProcess::start(BIN, &args).await;
    // Two Calculate calls that succeed, one that fails.
    let ok = calcmesh(&["eval", "--target", &evaluator.addr, "(2 + 3) * 4"], "").await;
    assert_eq!(ok.stdout.trim(), "20", "{}", ok.stderr);
    let failed = calcmesh(&["eval", "--target", &evaluator.addr, "1 / 0"], "").await;
    assert_ne!(failed.code, Some(0));

    let z = read_channelz(&evaluator.addr).await;

    let channels = z["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1, "one channel, to the calculator: {z}");
    let channel = &channels[0]["channel"];
    let data = &channel["data"];
    assert_eq!(data["target"], calculator.addr.as_str());
    assert_eq!(data["state"]["state"], "READY");
    let calls = |d: &Value| {
        [
            int(&d["calls_started"]),
            int(&d["calls_succeeded"]),
            int(&d["calls_failed"]),
        ]
    };
    assert_eq!(calls(data), [3, 2, 1], "{channel}");
    assert!(data["last_call_started_timestamp"].is_string());

    let subchannels = channels[0]["subchannels"].as_array().unwrap();
    assert_eq!(subchannels.len(), 1);
    let sub = &subchannels[0]["subchannel"];
    assert_eq!(sub["ref"]["name"], calculator.addr.as_str());
    assert_eq!(sub["data"]["state"]["state"], "READY");
    assert_eq!(calls(&sub["data"]), [3, 2, 1]);
    let socket = &subchannels[0]["sockets"][0];
    assert_eq!(tcp(&socket["remote"]), (port(&calculator.addr), true));
    // The health watch and the three calls; the watch is still open.
    let streams = &socket["data"];
    assert!(int(&streams["streams_started"]) >= 4, "{socket}");
    assert_eq!(int(&streams["streams_succeeded"]), 3, "{socket}");
    assert!(streams["last_local_stream_created_timestamp"].is_string());
    // The health request and three Calculate requests out; the health status and two results in
    // (the failed call has none).
    assert_eq!(int(&streams["messages_sent"]), 4, "{socket}");
    assert!(int(&streams["messages_received"]) >= 3, "{socket}");
    assert!(streams["last_message_received_timestamp"].is_string());
    assert!(socket.get("security").is_none(), "plaintext: {socket}");

    let servers = z["servers"].as_array().unwrap();
    assert_eq!(
        servers.len(),
        1,
        "one server in the evaluator's process: {z}"
    );
    let server = &servers[0]["server"];
    assert_eq!(server["ref"]["name"], evaluator.addr.as_str());
    let [started, succeeded, failed] = calls(&server["data"]);
    // Two Evaluate calls (one failed), with each CLI client's health watch (cancelled when it
    // exits: failed), and the reader's own calls, finished or in flight.
    assert!(started >= 5 && succeeded >= 2 && failed >= 3, "{server}");
    assert!(
        server["listen_socket"][0]["name"]
            .as_str()
            .unwrap()
            .ends_with(&evaluator.addr)
    );
    // The reader's own connection is open: its calls so far came in on it.
    let sockets = servers[0]["sockets"].as_array().unwrap();
    let reader = sockets
        .iter()
        .find(|s| int(&s["data"]["streams_started"]) >= 3)
        .unwrap_or_else(|| panic!("the reader's connection: {sockets:?}"));
    assert_eq!(tcp(&reader["local"]), (port(&evaluator.addr), true));
    assert!(tcp(&reader["remote"]).1);
    assert!(int(&reader["data"]["messages_received"]) >= 3, "{reader}");
    assert!(int(&reader["data"]["messages_sent"]) >= 2, "{reader}");
}

/// `calcmesh up` serves channelz on its evaluator: the whole process, every calculator's
/// listeners beside the evaluator's, and the evaluator's mutual-TLS connections to its
/// calculators with their cipher suite and both certificates.
#[tokio::test]
async fn up_serves_channelz_with_the_mutual_tls_of_its_connections() {
    let state = std::env::temp_dir().join(format!("calcmesh-channelz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let mesh = ServerProcess::mesh(&state).await;
    let ok = calcmesh(&["eval", "--target", &mesh.addr, "1 + 2 + 3 + 4"], "").await;
    assert_eq!(ok.stdout.trim(), "10", "{}", ok.stderr);

    let z = read_channelz(&mesh.addr).await;

    let servers = z["servers"].as_array().unwrap();
    // Three calculators, each on a plaintext and a mutual-TLS port, and the evaluator.
    assert_eq!(servers.len(), 7, "{z}");
    let channels = z["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1, "{z}");
    let subchannels = channels[0]["subchannels"].as_array().unwrap();
    assert_eq!(subchannels.len(), 3);
    let used: Vec<&Value> = subchannels
        .iter()
        .filter_map(|s| s["sockets"].get(0))
        .collect();
    assert!(!used.is_empty(), "{z}");
    for socket in used {
        let tls = &socket["security"]["tls"];
        let cipher = tls["standard_name"].as_str().unwrap_or_default();
        assert!(
            cipher.starts_with("TLS_"),
            "a standard cipher name: {socket}"
        );
        assert!(
            tls["local_certificate"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        );
        assert!(
            tls["remote_certificate"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        );
    }
}

/// An id that names nothing is NOT_FOUND, saying which.
#[tokio::test]
async fn an_unknown_id_is_not_found() {
    use calcmesh_proto::channelz::channelz_client::ChannelzClient;
    use calcmesh_proto::channelz::{GetServerRequest, GetSocketRequest};

    let args = [
        "serve",
        "calculator",
        "--listen",
        "127.0.0.1:0",
        "--channelz",
    ];
    let server = ServerProcess::start(BIN, &args).await;
    let mut client = ChannelzClient::new(server.channel());
    let status = client
        .get_socket(GetSocketRequest {
            socket_id: 1 << 40,
            summary: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(
        status.message(),
        "no socket with id 1099511627776 in this process"
    );
    let status = client
        .get_server(GetServerRequest { server_id: -1 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}

/// Without `--channelz`, there is none.
#[tokio::test]
async fn channelz_is_off_unless_asked_for() {
    let server = ServerProcess::calcmesh().await;
    let program = root().join("target/interop/go/bin/calc-channelz");
    let out = run(program, &["-target", &server.addr], "").await;
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("Unimplemented"), "{}", out.stderr);
}
