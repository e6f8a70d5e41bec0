//! Prometheus metrics with the names go-grpc-prometheus made standard, and the admin HTTP
//! endpoint that serves them.
//!
//! Per RPC, labelled `grpc_service`, `grpc_method`, `grpc_type` (`unary`, `client_stream`,
//! `server_stream`, `bidi_stream`): `grpc_server_started_total`, `grpc_server_handled_total` (plus
//! `grpc_code`, spelled `OK`, `InvalidArgument`, `OutOfRange`, … as grpc-go spells codes),
//! `grpc_server_msg_received_total`, `grpc_server_msg_sent_total` and the
//! `grpc_server_handling_seconds` histogram. Messages are counted from the gRPC length prefixes
//! on the wire; the code is read from the response's `grpc-status` (headers or trailers).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Buf;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use prost::Message;
use tonic::Status;
use tonic::body::Body;

use crate::limits::FrameScanner;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

/// The metrics of one method, resolved once so that a call costs no label allocation or
/// family lookup (only its final code is looked up, among 17).
struct MethodMetrics {
    labels: MethodLabels,
    started: Counter,
    received: Counter,
    sent: Counter,
    seconds: Histogram,
    handled: [std::sync::OnceLock<Counter>; 17],
}

/// A server's metrics registry.
pub struct ServerMetrics {
    registry: Registry,
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    received: Family<MethodLabels, Counter>,
    sent: Family<MethodLabels, Counter>,
    seconds: Family<MethodLabels, Histogram>,
    types: HashMap<String, &'static str>,
    methods: HashMap<String, Arc<MethodMetrics>>,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics")
            .field("methods", &self.types.len())
            .finish_non_exhaustive()
    }
}

/// grpc-go's spelling of a code, as go-grpc-prometheus labels it.
pub fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

impl ServerMetrics {
    /// A registry for a server whose methods are described by `descriptors` (encoded
    /// `FileDescriptorSet`s), which give each method its `grpc_type`.
    pub fn new(descriptors: &[&[u8]]) -> Self {
        let mut types = HashMap::new();
        for fds in descriptors {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*fds) else {
                continue;
            };
            for file in set.file {
                for service in &file.service {
                    let name = format!("{}.{}", file.package(), service.name());
                    for method in &service.method {
                        let kind = match (method.client_streaming(), method.server_streaming()) {
                            (false, false) => "unary",
                            (true, false) => "client_stream",
                            (false, true) => "server_stream",
                            (true, true) => "bidi_stream",
                        };
                        types.insert(format!("/{name}/{}", method.name()), kind);
                    }
                }
            }
        }
        let mut registry = Registry::default();
        let started = Family::default();
        let handled = Family::default();
        let received = Family::default();
        let sent = Family::default();
        let seconds = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        registry.register(
            "grpc_server_started",
            "RPCs started on the server",
            started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, by code",
            handled.clone(),
        );
        registry.register(
            "grpc_server_msg_received",
            "Stream messages received by the server",
            received.clone(),
        );
        registry.register(
            "grpc_server_msg_sent",
            "Stream messages sent by the server",
            sent.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status",
            seconds.clone(),
        );
        let mut metrics = Self {
            registry,
            started,
            handled,
            received,
            sent,
            seconds,
            types,
            methods: HashMap::new(),
        };
        let paths: Vec<String> = metrics.types.keys().cloned().collect();
        for path in paths {
            let method = metrics.resolve(&path);
            metrics.methods.insert(path, method);
        }
        metrics
    }

    fn resolve(&self, path: &str) -> Arc<MethodMetrics> {
        let labels = self.labels(path);
        Arc::new(MethodMetrics {
            started: self.started.get_or_create_owned(&labels),
            received: self.received.get_or_create_owned(&labels),
            sent: self.sent.get_or_create_owned(&labels),
            seconds: self.seconds.get_or_create_owned(&labels),
            handled: Default::default(),
            labels,
        })
    }

    /// The metrics of `path`: precomputed for described methods, made on the spot otherwise.
    fn method(&self, path: &str) -> Arc<MethodMetrics> {
        match self.methods.get(path) {
            Some(m) => m.clone(),
            None => self.resolve(path),
        }
    }

    fn handled(&self, method: &MethodMetrics, code: tonic::Code) -> Counter {
        let slot = &method.handled[(code as usize).min(16)];
        slot.get_or_init(|| {
            let l = &method.labels;
            self.handled.get_or_create_owned(&HandledLabels {
                grpc_type: l.grpc_type,
                grpc_service: l.grpc_service.clone(),
                grpc_method: l.grpc_method.clone(),
                grpc_code: go_code_name(code),
            })
        })
        .clone()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn labels(&self, path: &str) -> MethodLabels {
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        MethodLabels {
            grpc_type: self.types.get(path).copied().unwrap_or("unknown"),
            grpc_service: service.to_owned(),
            grpc_method: method.to_owned(),
        }
    }
}

/// The tower layer that records [`ServerMetrics`].
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Arc<ServerMetrics>,
}

impl MetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<ServerMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower_layer::Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Arc<ServerMetrics>,
}

/// What one call has seen so far; recorded once, when the call ends (or is dropped).
struct Call {
    metrics: Arc<ServerMetrics>,
    method: Arc<MethodMetrics>,
    started: Instant,
    code: Option<tonic::Code>,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.metrics.handled(&self.method, code).inc();
        self.method
            .seconds
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // A response body dropped before its status: the client went away.
        let code = self.code.unwrap_or(tonic::Code::Cancelled);
        self.finish(code);
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from(value))
}

impl<S> tower_service::Service<http::Request<Body>> for Metered<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = self.metrics.method(request.uri().path());
        method.started.inc();
        let received = method.received.clone();
        let request = request.map(|body| {
            Body::new(Counted {
                inner: body,
                scanner: FrameScanner::default(),
                messages: received,
                call: None,
            })
        });
        let mut call = Call {
            metrics: self.metrics.clone(),
            method,
            started: Instant::now(),
            code: None,
            done: false,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            call.code = status_of(response.headers());
            if let Some(code) = call.code {
                // Trailers-only: the status is already known.
                call.finish(code);
            }
            let sent = call.method.sent.clone();
            Ok(response.map(|body| {
                Body::new(Counted {
                    inner: body,
                    scanner: FrameScanner::default(),
                    messages: sent,
                    call: Some(call),
                })
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A body whose gRPC messages are counted; a response body also settles its call's status.
    struct Counted {
        #[pin]
        inner: Body,
        scanner: FrameScanner,
        messages: Counter,
        call: Option<Call>,
    }
}

impl HttpBody for Counted {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let n = this.scanner.scan(data.chunk(), usize::MAX).unwrap_or(0);
                    this.messages.inc_by(n as u64);
                } else if let (Some(trailers), Some(call)) =
                    (frame.trailers_ref(), this.call.as_mut())
                {
                    let code = status_of(trailers).unwrap_or(tonic::Code::Unknown);
                    call.code = Some(code);
                    call.finish(code);
                }
            }
            Some(Err(status)) => {
                if let Some(call) = this.call.as_mut() {
                    call.code = Some(status.code());
                }
            }
            None => {
                if let Some(call) = this.call.as_mut() {
                    let code = call.code.unwrap_or(tonic::Code::Ok);
                    call.finish(code);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves the admin endpoint on `listener` until `shutdown`: `/metrics` (Prometheus text),
/// `/healthz` (the process is up: 200) and `/readyz` (200 while serving, 503 while draining).
///
/// # Errors
/// The listener fails.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    metrics: Arc<ServerMetrics>,
    health: crate::HealthState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let health = health.clone();
                async move {
                    if health.is_draining() {
                        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                    } else {
                        (StatusCode::OK, "ready\n")
                    }
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
