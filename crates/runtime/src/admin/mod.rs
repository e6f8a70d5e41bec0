//! The admin HTTP endpoint: `/metrics` (OpenMetrics text), `/healthz` (the process is up) and
//! `/readyz` (ready for traffic) — what Prometheus and HTTP probes expect — and the dashboard:
//! `/` (a page) over `/api/mesh` (JSON), see `dashboard.rs`. Every route is a GET that changes
//! nothing.
//!
//! An [`Admin`] is told what to report: [`Admin::server`] adds a server's metrics and makes
//! readiness fail while it drains; [`Admin::client`] adds a channel's metrics and makes
//! readiness fail while the channel has no endpoint that can take calls. `/readyz` answers
//! 503 with one line per reason. `/metrics` always has the process's own figures, read at
//! scrape time: `process_resident_memory_bytes`, `process_open_fds` (the names Prometheus
//! client libraries use) and `calcmesh_runtime_alive_tasks` (tokio tasks alive), which is how
//! leaks show in a soak test.

use std::future::Future;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;

mod dashboard;

use crate::client::ClientMetrics;
use crate::telemetry::metrics::ServerMetrics;
use crate::{HealthState, MeshChannel, Server};

/// What an admin endpoint reports. Build it, then [`serve`](Admin::serve) it.
#[derive(Debug, Default, Clone)]
pub struct Admin {
    servers: Vec<Arc<ServerMetrics>>,
    /// The TLS of the servers reported, for the dashboard's certificate expiry.
    server_tls: Vec<Arc<crate::tls::ServerTls>>,
    clients: Vec<Arc<ClientMetrics>>,
    draining: Vec<HealthState>,
    channels: Vec<MeshChannel>,
    name: String,
    grpc_web: Option<String>,
}

impl Admin {
    /// An endpoint that reports nothing yet (`/readyz` is 200).
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the process on the dashboard (e.g. `evaluator`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Tells the dashboard's try-it box where the evaluator answers gRPC-Web (`http://host:port`).
    pub fn grpc_web(mut self, url: &str) -> Self {
        self.grpc_web = Some(url.to_owned());
        self
    }

    /// Reports `server`'s metrics (once, if several servers share them) and fails readiness
    /// while it drains.
    pub fn server(mut self, server: &Server) -> Self {
        let metrics = server.metrics();
        if !self.servers.iter().any(|m| Arc::ptr_eq(m, &metrics)) {
            self.servers.push(metrics);
        }
        if let Some(tls) = &server.config().tls
            && !self.server_tls.iter().any(|t| Arc::ptr_eq(t, tls))
        {
            self.server_tls.push(tls.clone());
        }
        self.draining.push(server.health());
        self
    }

    /// Reports `channel`'s metrics (if its config gave it some) and fails readiness while it
    /// has no endpoint that can take calls.
    pub fn client(mut self, channel: &MeshChannel) -> Self {
        if let Some(metrics) = channel.metrics()
            && !self.clients.iter().any(|m| Arc::ptr_eq(m, &metrics))
        {
            self.clients.push(metrics);
        }
        self.channels.push(channel.clone());
        self
    }

    /// The OpenMetrics text of everything reported.
    pub fn metrics_text(&self) -> String {
        let mut process = prometheus_client::registry::Registry::default();
        process.register_collector(Box::new(ProcessCollector));
        let registries: Vec<_> = self
            .servers
            .iter()
            .map(|m| m.registry())
            .chain(self.clients.iter().map(|m| m.registry()))
            .chain([&process])
            .collect();
        crate::telemetry::metrics::encode(&registries)
    }

    /// Why the process is not ready, one reason per item; empty when it is.
    pub fn not_ready(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.draining.iter().any(HealthState::is_draining) {
            reasons.push("draining: the server is shutting down".to_owned());
        }
        for channel in &self.channels {
            let counts = channel.endpoints();
            if counts.eligible == 0 {
                reasons.push(counts.none_eligible(&channel.target()));
            }
        }
        reasons
    }

    /// Serves the endpoint on `listener` until `shutdown` completes.
    ///
    /// # Errors
    /// The listener fails.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let admin = Arc::new(self);
        let (metrics, ready, mesh) = (admin.clone(), admin.clone(), admin);
        let app = axum::Router::new()
            .route("/", get(|| async { axum::response::Html(dashboard::PAGE) }))
            .route(
                "/api/mesh",
                get(move || {
                    let status = mesh.mesh_status();
                    async move { axum::Json(status) }
                }),
            )
            .route(
                "/metrics",
                get(move || {
                    let text = metrics.metrics_text();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/readyz",
                get(move || {
                    let reasons = ready.not_ready();
                    async move {
                        if reasons.is_empty() {
                            (StatusCode::OK, "ready\n".to_owned())
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, reasons.join("\n") + "\n")
                        }
                    }
                }),
            );
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// The process's memory, file descriptors and tokio tasks, read when scraped.
#[derive(Debug)]
struct ProcessCollector;

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType::Gauge;
        use prometheus_client::metrics::gauge::ConstGauge;
        let rss_kib = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
            });
        let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as i64);
        let tasks =
            tokio::runtime::Handle::try_current().map(|h| h.metrics().num_alive_tasks() as i64);
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss_kib.map(|k| k * 1024),
            ),
            ("process_open_fds", "Open file descriptors", fds.ok()),
            (
                "calcmesh_runtime_alive_tasks",
                "tokio tasks alive in the process",
                tasks.ok(),
            ),
        ] {
            if let Some(value) = value {
                let metric = encoder.encode_descriptor(name, help, None, Gauge)?;
                ConstGauge::new(value).encode(metric)?;
            }
        }
        Ok(())
    }
}
