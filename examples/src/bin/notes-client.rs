//! A client of `notes-server` through `connect`: an `ipv4:` target (a static list; `dns:///`
//! and `etcd:///` targets work the same), mutual TLS, and a service config that gives every
//! call a deadline and retries UNAVAILABLE.
//!
//! ```text
//! cargo run -p calcmesh-examples --bin notes-client -- target/notes-certs ipv4:127.0.0.1:50070 alice "buy milk"
//! ```
//! Adds the note, then lists every note. As `mallory` the server refuses: PERMISSION_DENIED.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use calcmesh_examples::proto::notes_client::NotesClient;
use calcmesh_examples::proto::{ListRequest, Note};
use calcmesh_runtime::client::ServiceConfig;
use calcmesh_runtime::tls::ClientTls;
use calcmesh_runtime::{ClientConfig, Target, connect};

/// gRPC's service config, as grpc-go and grpc-java read it.
const SERVICE_CONFIG: &str = r#"{
  "methodConfig": [{
    "name": [{"service": "notes.v1.Notes"}],
    "timeout": "2s",
    "retryPolicy": {
      "maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s",
      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, target, who, text] = args.as_slice() else {
        anyhow::bail!("usage: notes-client CERTS_DIR TARGET IDENTITY TEXT");
    };
    let dir = PathBuf::from(dir);
    let (cert, key) = (
        dir.join(format!("{who}.pem")),
        dir.join(format!("{who}.key")),
    );
    let config = ClientConfig {
        tls: Some(ClientTls::load(&dir.join("ca.pem"), Some((&cert, &key)))?),
        service_config: Some(Arc::new(ServiceConfig::parse(
            "SERVICE_CONFIG",
            SERVICE_CONFIG,
        )?)),
        ..ClientConfig::default()
    };
    let target: Target = target.parse().context("TARGET")?;
    let mut notes = NotesClient::new(connect(&target, &config)?);

    let note = Note { text: text.clone() };
    let added = notes.add(note).await.map_err(said)?.into_inner();
    println!("added note {} by {}", added.id, added.by);
    let mut all = notes.list(ListRequest {}).await.map_err(said)?.into_inner();
    while let Some(note) = all.message().await.map_err(said)? {
        println!("note: {}", note.text);
    }
    Ok(())
}

/// A failed call as a person reads it: its code and message.
fn said(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}
