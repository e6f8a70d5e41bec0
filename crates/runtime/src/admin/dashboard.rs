//! The dashboard: one page (`/`, its script and style inline, no CDN) that polls `/api/mesh`
//! every second and draws the mesh — this process's servers, each channel's endpoints with
//! their state and traffic — and a try-it box that calls the evaluator over gRPC-Web.
//!
//! `/api/mesh` is a JSON snapshot, read-only:
//! `{"name", "time_ms", "grpc_web", "certificate_expires_ms", "servers": [{"calls",
//! "in_flight", "draining", "methods": [MethodLatency]}], "channels": [ChannelStatus]}` — `calls`
//! are totals since start, so a reader takes rates from two snapshots, as the page does; each
//! method's `p50_ms` and `p99_ms` are estimated from its latency histogram.

use serde::Serialize;

use super::Admin;
use crate::client::ChannelStatus;
use crate::telemetry::metrics::MethodLatency;

/// The page, as served.
pub(crate) const PAGE: &str = include_str!("dashboard.html");

/// One server of the process.
#[derive(Debug, Serialize)]
struct ServerStatus {
    calls: u64,
    in_flight: i64,
    draining: bool,
    /// Each method called, with its p50 and p99.
    methods: Vec<MethodLatency>,
}

/// `/api/mesh`.
#[derive(Debug, Serialize)]
pub(crate) struct MeshStatus {
    name: String,
    time_ms: u64,
    grpc_web: Option<String>,
    /// The soonest expiry among the servers' certificates (ms since the Unix epoch).
    certificate_expires_ms: Option<i64>,
    servers: Vec<ServerStatus>,
    channels: Vec<ChannelStatus>,
}

impl Admin {
    /// What the dashboard shows, now.
    pub(crate) fn mesh_status(&self) -> MeshStatus {
        let draining = self.draining.iter().any(crate::HealthState::is_draining);
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        MeshStatus {
            name: self.name.clone(),
            time_ms,
            grpc_web: self.grpc_web.clone(),
            certificate_expires_ms: self
                .server_tls
                .iter()
                .filter_map(|tls| tls.certificate_expires_ms())
                .min(),
            servers: self
                .servers
                .iter()
                .map(|m| ServerStatus {
                    calls: m.calls_started(),
                    in_flight: m.in_flight(),
                    draining,
                    methods: m.latencies(),
                })
                .collect(),
            channels: self
                .channels
                .iter()
                .map(crate::MeshChannel::status)
                .collect(),
        }
    }
}
