//! What a channel is configured with.

use std::sync::Arc;
use std::time::Duration;

use super::ClientMetrics;
use super::service_config::ServiceConfig;
use crate::client::balance::LbPolicy;

/// Client behaviour. [`Default`] gives production defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How long to wait for a TCP connection. Default 5 s.
    pub connect_timeout: Duration,
    /// How often to PING an idle HTTP/2 connection. Default 5 min: what gRPC servers (calcmesh,
    /// grpc-go, grpc-java) allow by default; sooner, they answer GOAWAY "too_many_pings".
    pub keepalive_interval: Duration,
    /// How long to wait for the PING ack. Default 20 s.
    pub keepalive_timeout: Duration,
    /// How calls are spread over endpoints. Default least_request.
    pub policy: LbPolicy,
    /// The service whose `grpc.health.v1` status decides if an endpoint takes calls (`""`: the
    /// server as a whole); `None` turns health checking off. Default `Some("")`.
    pub health_service: Option<String>,
    /// Attempts per call, the first included. Default 3.
    pub max_attempts: usize,
    /// Method path prefixes (e.g. `/calculator.Calculator/`) that are safe to send twice.
    /// Calls to other methods are retried only when the server provably never saw them.
    pub idempotent: Vec<String>,
    /// How often DNS targets are resolved again. Default 30 s.
    pub dns_interval: Duration,
    /// TLS to every endpoint (with a client certificate: mutual TLS); `None`: plaintext.
    pub tls: Option<crate::tls::ClientTls>,
    /// TLS to etcd, for `etcd://` targets; `None`: plaintext.
    pub etcd_tls: Option<crate::tls::ClientTls>,
    /// Where to record `grpc_client_*` and this channel's endpoint metrics; `None`: nowhere.
    pub metrics: Option<Arc<ClientMetrics>>,
    /// The gRPC service config; where it sets a policy or a health service name, it wins over
    /// `policy` and `health_service`. `None`: none.
    pub service_config: Option<Arc<ServiceConfig>>,
    /// For `dns:` targets, take the service config published in TXT `_grpc_config.NAME` (it
    /// replaces `service_config` while published). Default off, as in gRPC.
    pub dns_service_config: bool,
    /// What the calls travel as. Default gRPC over HTTP/2.
    pub protocol: Protocol,
}

/// What a channel's calls travel as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC over HTTP/2 (cleartext, or TLS with ALPN `h2`): what every gRPC server speaks.
    #[default]
    Grpc,
    /// gRPC-Web over HTTP/2: for servers that take gRPC-Web only (behind a browser-facing
    /// proxy, say). Every kind of call, bidirectional streams included.
    GrpcWebHttp2,
    /// gRPC-Web over HTTP/1.1 (TLS with ALPN `http/1.1`): a connection per call in flight.
    /// A bidirectional stream works half duplex (all requests, then the answers): HTTP/1.1
    /// servers and proxies do not answer before the request has ended.
    GrpcWebHttp1,
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "grpc" => Ok(Protocol::Grpc),
            "grpc-web" => Ok(Protocol::GrpcWebHttp2),
            "grpc-web-http1" => Ok(Protocol::GrpcWebHttp1),
            other => Err(format!(
                "unknown protocol {other:?}: expected grpc, grpc-web (over HTTP/2) or grpc-web-http1"
            )),
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Grpc => "grpc",
            Protocol::GrpcWebHttp2 => "grpc-web",
            Protocol::GrpcWebHttp1 => "grpc-web-http1",
        })
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(300),
            keepalive_timeout: Duration::from_secs(20),
            policy: LbPolicy::default(),
            health_service: Some(String::new()),
            max_attempts: 3,
            idempotent: Vec::new(),
            dns_interval: Duration::from_secs(30),
            tls: None,
            etcd_tls: None,
            metrics: None,
            service_config: None,
            dns_service_config: false,
            protocol: Protocol::Grpc,
        }
    }
}
