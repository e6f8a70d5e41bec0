//! The `Notes` service on calcmesh's `Server`: mutual TLS, and a policy that lets only `alice`
//! call it. Health, reflection, limits, metrics and a graceful drain come with the server.
//!
//! ```text
//! cargo run -p calcmesh-examples --bin notes-server -- target/notes-certs 50070
//! ```
//! Makes a development CA and certificates in the folder if it has none (`calcmesh certs
//! init` makes the same), prints `listening on ADDR`, and serves until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use calcmesh_runtime::server::authz::AuthzPolicy;
use calcmesh_runtime::tls::certs::{self, InitOptions};
use calcmesh_runtime::tls::{ServerTls, ServerTlsFiles};
use calcmesh_runtime::{Server, ServerConfig, bind, shutdown};

/// Who may call what: identities (from client certificates) and method prefixes.
const POLICY: &str = "allow spiffe://calcmesh/alice /notes.v1.Notes/\n";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .context("usage: notes-server CERTS_DIR [PORT]")?,
    );
    let port: u16 = args.next().map_or(Ok(0), |p| p.parse()).context("PORT")?;
    if !dir.join("notes.pem").exists() {
        let options = InitOptions {
            services: vec!["notes".into()],
            clients: vec!["alice".into(), "mallory".into()],
            extra_sans: Vec::new(),
            days: 30,
        };
        certs::init(&dir, &options)?;
    }
    let tls = ServerTls::load(ServerTlsFiles {
        cert: dir.join("notes.pem"),
        key: dir.join("notes.key"),
        client_ca: Some(dir.join("ca.pem")), // client certificates required
    })?;
    let config = ServerConfig {
        tls: Some(Arc::new(tls)),
        policy: Some(Arc::new(AuthzPolicy::parse(POLICY, "POLICY")?)),
        ..ServerConfig::default()
    };
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], port)), &config)?;
    println!("listening on {}", listener.local_addr()?);
    Server::new(config)
        .add_service(calcmesh_examples::service())
        .add_descriptors(calcmesh_examples::proto::DESCRIPTOR_SET)
        .serve(listener, shutdown::signal())
        .await?;
    Ok(())
}
