//! The server under test: what the runner's `ServerCompatRequest` asks for — TLS with the
//! runner's certificate, client certificates required, a message size limit, gRPC-Web — as a
//! runtime [`Server`] configuration, the same one every calcmesh service runs on.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use calcmesh_runtime::server::web::GrpcWeb;
use calcmesh_runtime::tls::{ServerTls, ServerTlsFiles};
use calcmesh_runtime::{Server, ServerConfig};

use crate::proto::{Protocol, ServerCompatRequest, ServerCompatResponse};

/// The runtime configuration for `request`; TLS files are written into `dir`.
///
/// # Errors
/// The runner's certificate or key does not load, or `dir` cannot be written.
pub fn config(request: &ServerCompatRequest, dir: &Path) -> anyhow::Result<ServerConfig> {
    let mut config = ServerConfig::default();
    if request.message_receive_limit > 0 {
        config.max_message_size = request.message_receive_limit as usize;
    }
    if request.protocol() == Protocol::GrpcWeb {
        config.grpc_web = Some(GrpcWeb::default());
    }
    if request.use_tls {
        config.tls = Some(Arc::new(tls(request, dir)?));
    }
    Ok(config)
}

/// The runner's certificate and key, and its client certificate as the only client CA (the
/// suite's client certificate is self-signed).
fn tls(request: &ServerCompatRequest, dir: &Path) -> anyhow::Result<ServerTls> {
    let creds = request
        .server_creds
        .as_ref()
        .context("use_tls without server_creds: the runner sent no certificate")?;
    let write = |name: &str, bytes: &[u8]| crate::wire::pem_file(dir, name, bytes);
    let files = ServerTlsFiles {
        cert: write("server.pem", &creds.cert)?,
        key: write("server.key", &creds.key)?,
        client_ca: match request.client_tls_cert.is_empty() {
            true => None,
            false => Some(write("client-ca.pem", &request.client_tls_cert)?),
        },
    };
    Ok(ServerTls::load(files)?)
}

/// The conformance service on a runtime server.
pub fn mesh_server(config: &ServerConfig) -> Server {
    Server::new(config.clone())
        .add_service(crate::service::server(config.max_message_size))
        .add_descriptors(crate::proto::DESCRIPTOR_SET)
}

/// What the runner is told: where the server listens, and its certificate.
pub fn response(request: &ServerCompatRequest, addr: SocketAddr) -> ServerCompatResponse {
    ServerCompatResponse {
        host: addr.ip().to_string(),
        port: addr.port().into(),
        pem_cert: match (request.use_tls, &request.server_creds) {
            (true, Some(creds)) => creds.cert.clone(),
            _ => Vec::new(),
        },
    }
}
