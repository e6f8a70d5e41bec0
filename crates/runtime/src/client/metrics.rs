//! A client's metrics: go-grpc-prometheus `grpc_client_*` for every call its channels make
//! (recorded by the shared rpc machinery of [`crate::telemetry::metrics`]), and per channel the
//! balancer's own state, read at scrape time from the channels themselves: endpoints by state,
//! calls outstanding, ejections, retries and discovery updates (`calcmesh_client_*`).

use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use prometheus_client::registry::Registry;
use tonic::Status;
use tonic::body::Body;

use super::Shared;
use crate::client::outlier::Reason;
use crate::telemetry::metrics::{MethodLatency, RpcMetrics, count_messages, encode};

/// A client's metrics: go-grpc-prometheus `grpc_client_*` for every call made through the
/// channels that share it, and per channel its endpoints, their outstanding calls and ejections,
/// retries, and discovery updates (`calcmesh_client_*`).
pub struct ClientMetrics {
    rpc: RpcMetrics,
    pub(crate) channels: Arc<Mutex<Vec<Weak<Shared>>>>,
}

impl std::fmt::Debug for ClientMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMetrics").finish_non_exhaustive()
    }
}

impl ClientMetrics {
    /// A registry for calls to methods described by `descriptors` (encoded
    /// `FileDescriptorSet`s, for each method's `grpc_type`).
    pub fn new(descriptors: &[&[u8]]) -> Self {
        let mut rpc = RpcMetrics::new("client", descriptors);
        let channels = Arc::default();
        rpc.registry
            .register_collector(Box::new(ChannelsCollector::new(&channels)));
        Self { rpc, channels }
    }

    /// The registry, for an exposition ([`crate::admin`]).
    pub fn registry(&self) -> &Registry {
        &self.rpc.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        encode(&[self.registry()])
    }

    /// Each method called so far, with its latency.
    pub fn latencies(&self) -> Vec<MethodLatency> {
        self.rpc.latencies()
    }

    /// Records one client call: `send` performs it.
    pub(crate) fn observe<F, Fut>(
        &self,
        request: http::Request<Body>,
        send: F,
    ) -> impl Future<Output = Result<http::Response<Body>, crate::error::BoxError>> + use<F, Fut>
    where
        F: FnOnce(http::Request<Body>) -> Fut,
        Fut: Future<Output = Result<http::Response<Body>, crate::error::BoxError>>,
    {
        let mut call = self.rpc.start(request.uri().path());
        let request = count_messages(request, call.method.sent.clone());
        let future = send(request);
        async move {
            match future.await {
                Ok(response) => Ok(call.settle(response, |m| m.received.clone(), None, None)),
                Err(err) => {
                    let code = err
                        .downcast_ref::<Status>()
                        .map_or(tonic::Code::Unknown, Status::code);
                    call.finish(code);
                    Err(err)
                }
            }
        }
    }
}

/// Reports every live channel of a [`ClientMetrics`] at scrape time: nothing on the call path.
#[derive(Debug)]
pub(crate) struct ChannelsCollector(Arc<Mutex<Vec<Weak<Shared>>>>);

impl ChannelsCollector {
    pub(crate) fn new(channels: &Arc<Mutex<Vec<Weak<Shared>>>>) -> Self {
        Self(channels.clone())
    }
}

/// Writes one metric family: its descriptor, then one series per `(labels, value)`.
fn write_family<L, M>(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder,
    (name, help, kind): (&str, &str, prometheus_client::metrics::MetricType),
    series: impl IntoIterator<Item = (L, M)>,
) -> Result<(), fmt::Error>
where
    L: prometheus_client::encoding::EncodeLabelSet,
    M: prometheus_client::encoding::EncodeMetric,
{
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        value.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for ChannelsCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), fmt::Error> {
        let channels: Vec<Arc<Shared>> = crate::sync::lock(&self.0)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        encode_endpoints(&mut encoder, &channels)?;
        encode_channels(&mut encoder, &channels)
    }
}

/// Per endpoint that is down: why (the reason of its last connection failure).
fn encode_down(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder,
    endpoints: &[(String, Arc<crate::client::balance::Endpoint>)],
) -> Result<(), fmt::Error> {
    use prometheus_client::metrics::MetricType::Gauge;
    use prometheus_client::metrics::gauge::ConstGauge;
    write_family(
        encoder,
        (
            "calcmesh_client_endpoint_down",
            "1 for each endpoint that is down, by reason (refused, unresolved, timeout, tls_required, not_tls, client_certificate_required, client_certificate_refused, server_certificate_untrusted, server_certificate_expired, server_name_mismatch, not_http2, closed, goaway, unreachable, other)",
            Gauge,
        ),
        endpoints.iter().filter_map(|e| {
            let (reason, _) = e.1.down_reason()?;
            let labels = [
                ("target", e.0.clone()),
                ("endpoint", e.1.authority.clone()),
                ("reason", reason.to_owned()),
            ];
            Some((labels, ConstGauge::new(1)))
        }),
    )
}

/// Per target: how many endpoints are in each state.
fn encode_states(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder,
    channels: &[Arc<Shared>],
) -> Result<(), fmt::Error> {
    use prometheus_client::metrics::MetricType::Gauge;
    use prometheus_client::metrics::gauge::ConstGauge;

    write_family(
        encoder,
        (
            "calcmesh_client_endpoints",
            "Endpoints of the target by state: eligible (takes calls), not_serving, down, connecting, ejected (an outlier)",
            Gauge,
        ),
        channels.iter().flat_map(|c| {
            let counts = c.balancer.counts();
            [
                ("eligible", counts.eligible),
                ("not_serving", counts.not_serving),
                ("down", counts.down),
                ("connecting", counts.connecting),
                ("ejected", counts.ejected),
            ]
            .map(|(state, n)| {
                let labels = [("target", c.target.clone()), ("state", state.to_owned())];
                (labels, ConstGauge::new(n as i64))
            })
        }),
    )
}

/// Per target: endpoints by state; per endpoint: calls outstanding and ejections.
fn encode_endpoints(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder,
    channels: &[Arc<Shared>],
) -> Result<(), fmt::Error> {
    use prometheus_client::metrics::MetricType::{Counter, Gauge};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    let endpoints: Vec<(String, Arc<crate::client::balance::Endpoint>)> = channels
        .iter()
        .flat_map(|c| {
            let target = c.target.clone();
            c.balancer
                .snapshot()
                .into_iter()
                .map(move |e| (target.clone(), e))
        })
        .collect();
    let endpoint = |(t, e): &(String, Arc<crate::client::balance::Endpoint>)| {
        [("target", t.clone()), ("endpoint", e.authority.clone())]
    };

    encode_states(encoder, channels)?;
    encode_down(encoder, &endpoints)?;
    write_family(
        encoder,
        (
            "calcmesh_client_endpoint_outstanding",
            "Calls in progress on the endpoint",
            Gauge,
        ),
        endpoints
            .iter()
            .map(|e| (endpoint(e), ConstGauge::new(e.1.outstanding() as i64))),
    )?;
    write_family(
        encoder,
        (
            "calcmesh_client_endpoint_ejections",
            "Times the endpoint went out of rotation (not serving or unreachable)",
            Counter,
        ),
        endpoints
            .iter()
            .map(|e| (endpoint(e), ConstCounter::new(e.1.ejections()))),
    )?;
    write_family(
        encoder,
        (
            "calcmesh_client_outlier_ejections",
            "Times outlier detection ejected the endpoint, by reason (success_rate, failure_percentage)",
            Counter,
        ),
        endpoints.iter().flat_map(|e| {
            Reason::ALL.map(|reason| {
                let [target, endpoint] = endpoint(e);
                let labels = [target, endpoint, ("reason", reason.name().to_owned())];
                (labels, ConstCounter::new(e.1.outliers.ejections(reason)))
            })
        }),
    )
}

/// Per target: retries, discovery updates and when discovery last delivered one.
fn encode_channels(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder,
    channels: &[Arc<Shared>],
) -> Result<(), fmt::Error> {
    use prometheus_client::metrics::MetricType::{Counter, Gauge};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    let target = |c: &Arc<Shared>| [("target", c.target.clone())];
    write_family(
        encoder,
        (
            "calcmesh_client_retries",
            "Attempts sent again on another endpoint",
            Counter,
        ),
        channels.iter().map(|c| {
            let retries = c.retries.load(Ordering::Relaxed);
            (target(c), ConstCounter::new(retries))
        }),
    )?;
    write_family(
        encoder,
        (
            "calcmesh_client_service_config_updates",
            "Service configs published for the target (etcd, DNS TXT): applied, or refused (the last good one kept)",
            Counter,
        ),
        channels.iter().flat_map(|c| {
            let updates = c.live.updates();
            [("applied", updates.applied), ("refused", updates.refused)].map(|(outcome, n)| {
                let labels = [
                    ("target", c.target.clone()),
                    ("outcome", outcome.to_owned()),
                ];
                (labels, ConstCounter::new(n))
            })
        }),
    )?;
    write_family(
        encoder,
        (
            "calcmesh_client_discovery_updates",
            "Endpoint changes delivered by discovery",
            Counter,
        ),
        channels.iter().map(|c| {
            let updates = c.discovery.updates.load(Ordering::Relaxed);
            (target(c), ConstCounter::new(updates))
        }),
    )?;
    write_family(
        encoder,
        (
            "calcmesh_client_discovery_last_update_timestamp_seconds",
            "When discovery last delivered a change (Unix time; 0: never)",
            Gauge,
        ),
        channels.iter().map(|c| {
            let ms = c.discovery.last_update_ms.load(Ordering::Relaxed);
            (target(c), ConstGauge::new(ms as f64 / 1000.0))
        }),
    )
}
