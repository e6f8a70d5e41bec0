//! Prometheus metrics with the names go-grpc-prometheus made standard, on both sides of a call,
//! and the per-RPC span and trace context of every server call.
//!
//! Per RPC, labelled `grpc_service`, `grpc_method`, `grpc_type` (`unary`, `client_stream`,
//! `server_stream`, `bidi_stream`): `grpc_{server,client}_started_total`,
//! `grpc_{server,client}_handled_total` (plus `grpc_code`, spelled `OK`, `InvalidArgument`,
//! `OutOfRange`, … as grpc-go spells codes), `grpc_{server,client}_msg_received_total`,
//! `grpc_{server,client}_msg_sent_total` and the `grpc_{server,client}_handling_seconds`
//! histogram. Messages are counted from the gRPC length prefixes on the wire; the code is read
//! from the response's `grpc-status` (headers or trailers).
//!
//! [`ServerMetrics`] is recorded by [`RpcTelemetryLayer`] inside every [`Server`](crate::Server);
//! [`ClientMetrics`](crate::client::ClientMetrics) by a [`MeshChannel`](crate::MeshChannel) given one in its
//! [`ClientConfig`](crate::ClientConfig), which also reports each channel's endpoints
//! (`calcmesh_client_*`, see [`crate::client`]). [`crate::admin`] serves them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Buf;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::task::futures::TaskLocalFuture;
use tonic::Status;
use tonic::body::Body;
use tracing::Instrument;
use tracing::instrument::Instrumented;

use crate::channelz::SocketStats;
use crate::framing::FrameScanner;
use crate::telemetry::histogram::Latency;
use crate::telemetry::trace::TraceContext;
use crate::tls::PeerInfo;

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
pub(crate) struct MethodMetrics {
    labels: MethodLabels,
    started: Counter,
    pub(crate) received: Counter,
    pub(crate) sent: Counter,
    seconds: Latency,
    handled_family: Family<HandledLabels, Counter>,
    handled: [std::sync::OnceLock<Counter>; 17],
    totals: Arc<Totals>,
}

/// Every method's calls together: in flight now, and for channelz, started and ended.
#[derive(Debug, Default)]
struct Totals {
    in_flight: AtomicI64,
    started: AtomicI64,
    succeeded: AtomicI64,
    failed: AtomicI64,
    last_started_ms: AtomicI64,
}

impl MethodMetrics {
    fn handled(&self, code: tonic::Code) -> &Counter {
        self.handled[(code as usize).min(16)].get_or_init(|| {
            let l = &self.labels;
            self.handled_family.get_or_create_owned(&HandledLabels {
                grpc_type: l.grpc_type,
                grpc_service: l.grpc_service.clone(),
                grpc_method: l.grpc_method.clone(),
                grpc_code: go_code_name(code),
            })
        })
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

/// One method's finished calls and their latency (estimated from the histogram's buckets, as
/// Prometheus' `histogram_quantile` does), for the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MethodLatency {
    /// `/package.Service/Method`.
    pub method: String,
    /// Calls finished.
    pub calls: u64,
    /// Median time to the status, in ms.
    pub p50_ms: f64,
    /// 99th percentile, in ms.
    pub p99_ms: f64,
}

/// The per-RPC families of one side (`server` or `client`).
/// Paths that no descriptor describes (an unknown method, or a service registered without its
/// descriptors) with metrics of their own; calls to any more are counted as method `other` of
/// service `other`.
pub(crate) const UNDESCRIBED_PATHS: usize = 64;

pub(crate) struct RpcMetrics {
    pub(crate) registry: Registry,
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    received: Family<MethodLabels, Counter>,
    sent: Family<MethodLabels, Counter>,
    seconds: Family<MethodLabels, Latency>,
    types: HashMap<String, &'static str>,
    /// The described methods', looked up on every call: compared in order (lengths first),
    /// without a lock, which costs less than hashing the path.
    described: Box<[(String, Arc<MethodMetrics>)]>,
    /// Every path's (the described ones too), by path.
    methods: RwLock<fnv::FnvHashMap<String, Arc<MethodMetrics>>>,
    /// Where calls go once [`UNDESCRIBED_PATHS`] paths have metrics of their own.
    other: std::sync::OnceLock<Arc<MethodMetrics>>,
    totals: Arc<Totals>,
}

impl RpcMetrics {
    pub(crate) fn new(side: &str, descriptors: &[&[u8]]) -> Self {
        let mut registry = Registry::default();
        let started = Family::default();
        let handled = Family::default();
        let received = Family::default();
        let sent = Family::default();
        let seconds = Family::<MethodLabels, Latency>::default();
        registry.register(
            format!("grpc_{side}_started"),
            format!("RPCs started on the {side}"),
            started.clone(),
        );
        registry.register(
            format!("grpc_{side}_handled"),
            format!("RPCs completed on the {side}, by code"),
            handled.clone(),
        );
        registry.register(
            format!("grpc_{side}_msg_received"),
            format!("Stream messages received by the {side}"),
            received.clone(),
        );
        registry.register(
            format!("grpc_{side}_msg_sent"),
            format!("Stream messages sent by the {side}"),
            sent.clone(),
        );
        registry.register(
            format!("grpc_{side}_handling_seconds"),
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
            types: crate::descriptors::method_types(descriptors),
            described: Box::default(),
            methods: RwLock::default(),
            other: std::sync::OnceLock::new(),
            totals: Arc::default(),
        };
        metrics.described = metrics
            .types
            .keys()
            .map(|path| (path.clone(), metrics.resolve(path)))
            .collect();
        *crate::sync::write(&metrics.methods) = metrics.described.iter().cloned().collect();
        metrics
    }

    fn resolve(&self, path: &str) -> Arc<MethodMetrics> {
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        let labels = MethodLabels {
            grpc_type: self.types.get(path).copied().unwrap_or("unknown"),
            grpc_service: service.to_owned(),
            grpc_method: method.to_owned(),
        };
        Arc::new(MethodMetrics {
            started: self.started.get_or_create_owned(&labels),
            received: self.received.get_or_create_owned(&labels),
            sent: self.sent.get_or_create_owned(&labels),
            seconds: self.seconds.get_or_create_owned(&labels),
            handled_family: self.handled.clone(),
            handled: Default::default(),
            totals: self.totals.clone(),
            labels,
        })
    }

    /// The metrics of `path`: precomputed for described methods, made once for the first
    /// [`UNDESCRIBED_PATHS`] others, and shared as `other` by any more (gRFC A66's rule), so that
    /// a client inventing paths cannot grow the metrics without bound.
    fn method(&self, path: &str) -> Arc<MethodMetrics> {
        if let Some((_, m)) = self.described.iter().find(|(known, _)| known == path) {
            return m.clone();
        }
        if let Some(m) = crate::sync::read(&self.methods).get(path) {
            return m.clone();
        }
        let mut methods = crate::sync::write(&self.methods);
        if !methods.contains_key(path) && methods.len() >= self.types.len() + UNDESCRIBED_PATHS {
            return self
                .other
                .get_or_init(|| self.resolve("/other/other"))
                .clone();
        }
        methods
            .entry(path.to_owned())
            .or_insert_with(|| self.resolve(path))
            .clone()
    }

    /// Each method called so far (gRPC's own services left out), with its p50 and p99.
    pub(crate) fn latencies(&self) -> Vec<MethodLatency> {
        let methods = crate::sync::read(&self.methods);
        let mut out: Vec<MethodLatency> = methods
            .iter()
            .filter(|(path, m)| !path.starts_with("/grpc.") && m.seconds.count() > 0)
            .map(|(path, m)| {
                let ms = |q| m.seconds.quantile(q).unwrap_or(0.0) * 1e3;
                MethodLatency {
                    method: path.clone(),
                    calls: m.seconds.count(),
                    p50_ms: ms(0.5),
                    p99_ms: ms(0.99),
                }
            })
            .collect();
        out.sort_by(|a, b| a.method.cmp(&b.method));
        out
    }

    /// Counts a call as started; the returned [`Call`] records how it ends.
    pub(crate) fn start(&self, path: &str) -> Call {
        let method = self.method(path);
        method.started.inc();
        let totals = &method.totals;
        totals.in_flight.fetch_add(1, Ordering::Relaxed);
        totals.started.fetch_add(1, Ordering::Relaxed);
        totals
            .last_started_ms
            .store(crate::channelz::registry::now_ms(), Ordering::Relaxed);
        Call {
            method,
            started: Instant::now(),
            code: None,
            done: false,
            span: None,
        }
    }
}

/// A server's metrics: go-grpc-prometheus `grpc_server_*`.
pub struct ServerMetrics(RpcMetrics);

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics")
            .field("methods", &self.0.types.len())
            .finish_non_exhaustive()
    }
}

impl crate::channelz::registry::ServerSource for ServerMetrics {
    fn calls(&self) -> crate::channelz::CallCounts {
        ServerMetrics::calls(self)
    }
}

impl ServerMetrics {
    /// A registry for a server whose methods are described by `descriptors` (encoded
    /// `FileDescriptorSet`s), which give each method its `grpc_type`.
    pub fn new(descriptors: &[&[u8]]) -> Self {
        Self(RpcMetrics::new("server", descriptors))
    }

    /// Calls started and not yet finished.
    pub fn in_flight(&self) -> i64 {
        self.0.totals.in_flight.load(Ordering::Relaxed)
    }

    /// Calls started since the server started, health checks and reflection left out.
    pub fn calls_started(&self) -> u64 {
        let methods = crate::sync::read(&self.0.methods);
        methods
            .iter()
            .filter(|(path, _)| {
                !path.starts_with("/grpc.health.") && !path.starts_with("/grpc.reflection.")
            })
            .map(|(_, m)| m.started.get())
            .sum()
    }

    /// The registry, for an exposition ([`crate::admin`]).
    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    /// Each method called so far, with its latency.
    pub fn latencies(&self) -> Vec<MethodLatency> {
        self.0.latencies()
    }

    /// Every call, health checks included, as channelz counts them.
    pub fn calls(&self) -> crate::channelz::CallCounts {
        let t = &self.0.totals;
        crate::channelz::CallCounts {
            started: t.started.load(Ordering::Relaxed),
            succeeded: t.succeeded.load(Ordering::Relaxed),
            failed: t.failed.load(Ordering::Relaxed),
            last_started_ms: t.last_started_ms.load(Ordering::Relaxed),
        }
    }

    /// The registry, to add a server's own families before it is shared.
    pub(crate) fn registry_mut(&mut self) -> &mut Registry {
        &mut self.0.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        encode(&[self.registry()])
    }
}

/// The OpenMetrics text of `registries`, one `# EOF` at the end.
pub(crate) fn encode(registries: &[&Registry]) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    for registry in registries {
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, registry);
    }
    let _ = prometheus_client::encoding::text::encode_eof(&mut out);
    out
}

/// The tower layer inside every server that does all of a call's telemetry: records
/// [`ServerMetrics`], reads `traceparent` into the call's [`TraceContext`] (see
/// [`crate::telemetry::trace`]), runs the call in a `calcmesh::rpc` span, and logs its outcome
/// (at warn when the server is at fault).
#[derive(Debug, Clone)]
pub struct RpcTelemetryLayer {
    metrics: Arc<ServerMetrics>,
}

impl RpcTelemetryLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<ServerMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower_layer::Layer<S> for RpcTelemetryLayer {
    type Service = RpcTelemetry<S>;

    fn layer(&self, inner: S) -> RpcTelemetry<S> {
        RpcTelemetry {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`RpcTelemetryLayer`].
#[derive(Debug, Clone)]
pub struct RpcTelemetry<S> {
    inner: S,
    metrics: Arc<ServerMetrics>,
}

/// What one call has seen so far; recorded once, when the call ends (or is dropped).
pub(crate) struct Call {
    pub(crate) method: Arc<MethodMetrics>,
    started: Instant,
    code: Option<tonic::Code>,
    done: bool,
    /// The server's span for the call; `None` on the client side.
    span: Option<tracing::Span>,
}

impl Call {
    pub(crate) fn finish(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        self.method.handled(code).inc();
        self.method.seconds.observe(elapsed);
        let totals = &self.method.totals;
        totals.in_flight.fetch_sub(1, Ordering::Relaxed);
        let ended = if code == tonic::Code::Ok {
            &totals.succeeded
        } else {
            &totals.failed
        };
        ended.fetch_add(1, Ordering::Relaxed);
        let grpc_code = go_code_name(code);
        let Some(span) = &self.span else {
            let l = &self.method.labels;
            let (service, method) = (&l.grpc_service, &l.grpc_method);
            tracing::debug!(target: "calcmesh::rpc", service, method, grpc_code, ?elapsed, "downstream call finished");
            return;
        };
        span.in_scope(|| match code {
            // The server's own faults; the caller's mistakes are debug, like successes.
            tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::DataLoss => {
                tracing::warn!(target: "calcmesh::rpc", grpc_code, ?elapsed, "rpc failed")
            }
            _ => tracing::debug!(target: "calcmesh::rpc", grpc_code, ?elapsed, "rpc finished"),
        });
    }

    /// Records a response's status when it is already known (trailers-only), and wraps its body
    /// to count messages and read the status from the trailers.
    /// On a server, `trace` is the call's context, current while the body is polled.
    pub(crate) fn settle(
        mut self,
        response: http::Response<Body>,
        messages: impl FnOnce(&MethodMetrics) -> Counter,
        trace: Option<TraceContext>,
        socket: Option<Arc<SocketStats>>,
    ) -> http::Response<Body> {
        // Only a trailers-only response (no body) has its status in the headers.
        if response.body().is_end_stream() {
            self.code = status_of(response.headers());
        }
        if let Some(code) = self.code {
            self.finish(code);
        }
        let messages = messages(&self.method);
        response.map(|body| {
            Body::new(MeteredBody {
                inner: body,
                scanner: FrameScanner::default(),
                messages,
                socket,
                call: Some(self),
                trace,
            })
        })
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // A response body dropped before its status: the call was cancelled.
        let code = self.code.unwrap_or(tonic::Code::Cancelled);
        self.finish(code);
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = crate::headers::find(headers, &crate::headers::GRPC_STATUS)?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from(value))
}

/// Wraps a (client's) request body to count the messages it sends.
pub(crate) fn count_messages(
    request: http::Request<Body>,
    messages: Counter,
) -> http::Request<Body> {
    request.map(|body| {
        Body::new(MeteredBody {
            inner: body,
            scanner: FrameScanner::default(),
            messages,
            socket: None,
            call: None,
            trace: None,
        })
    })
}

/// Where a server counts a call's request messages: into the method's counter and the
/// connection's channelz numbers. The telemetry layer puts it in the request's extensions;
/// the size limit's body (`server::limits`), which reads every message prefix anyway, counts
/// with it, so a request body is wrapped and scanned once.
#[derive(Clone)]
pub(crate) struct ReceivedMessages {
    messages: Counter,
    socket: Option<Arc<SocketStats>>,
}

impl ReceivedMessages {
    /// `n` more messages arrived.
    pub(crate) fn add(&self, n: usize) {
        if n > 0 {
            self.messages.inc_by(n as u64);
            if let Some(socket) = &self.socket {
                socket.messages(false, n as u64);
            }
        }
    }
}

/// Who called, for the span: the certificate identity, else the remote address.
fn peer_name(peer: Option<&PeerInfo>) -> String {
    match peer {
        Some(PeerInfo {
            identity: Some(id), ..
        }) => id.clone(),
        Some(PeerInfo {
            remote: Some(addr), ..
        }) => addr.to_string(),
        _ => "unknown".to_owned(),
    }
}

impl<S> tower_service::Service<http::Request<Body>> for RpcTelemetry<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = CallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let trace = TraceContext::from_headers(request.headers());
        let mut call = self.metrics.0.start(request.uri().path());
        // Debug level: fields are only formatted when `calcmesh::rpc=debug` is on.
        let span = tracing::debug_span!(
            target: "calcmesh::rpc",
            "rpc",
            method = request.uri().path(),
            peer = peer_name(request.extensions().get::<PeerInfo>()),
            trace_id = trace.trace_id_hex(),
            span_id = trace.span_id_hex(),
        );
        call.span = Some(span.clone());
        let socket = request
            .extensions()
            .get::<PeerInfo>()
            .and_then(|peer| peer.socket.clone());
        let mut request = request;
        request.extensions_mut().insert(ReceivedMessages {
            messages: call.method.received.clone(),
            socket: socket.clone(),
        });
        CallFuture {
            inner: trace.scope(self.inner.call(request).instrument(span)),
            call: Some(call),
            trace,
            socket,
        }
    }
}

pin_project_lite::pin_project! {
    /// A server call until its response headers: the handler's future, run under the call's
    /// span and trace context, then the response settled by its [`Call`]. A named future, not
    /// a boxed `async` block: nothing is allocated or moved per call.
    pub struct CallFuture<F> {
        #[pin]
        inner: TaskLocalFuture<TraceContext, Instrumented<F>>,
        call: Option<Call>,
        trace: TraceContext,
        socket: Option<Arc<SocketStats>>,
    }
}

impl<F, E> Future for CallFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        // The response stream runs under the call's span and trace context too: a streaming
        // handler's downstream calls happen while it is polled.
        let call = this
            .call
            .take()
            .expect("a CallFuture is not polled after it is ready");
        Poll::Ready(Ok(call.settle(
            response,
            |m| m.sent.clone(),
            Some(*this.trace),
            this.socket.take(),
        )))
    }
}

pin_project_lite::pin_project! {
    /// A body whose gRPC messages are counted; a response body also settles its call's status
    /// and, on a server, is polled under the call's span and trace context.
    struct MeteredBody {
        #[pin]
        inner: Body,
        scanner: FrameScanner,
        messages: Counter,
        // The server connection's channelz numbers (a response: these messages are sent).
        socket: Option<Arc<SocketStats>>,
        call: Option<Call>,
        trace: Option<TraceContext>,
    }
}

impl HttpBody for MeteredBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = match (*this.trace, this.call.as_ref()) {
            (
                Some(trace),
                Some(Call {
                    span: Some(span), ..
                }),
            ) => {
                let _span = span.enter();
                trace.enter(|| this.inner.poll_frame(cx))
            }
            _ => this.inner.poll_frame(cx),
        };
        let frame = ready!(frame);
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let n = this.scanner.scan(data.chunk(), usize::MAX).unwrap_or(0) as u64;
                    this.messages.inc_by(n);
                    if let (Some(socket), 1..) = (this.socket.as_ref(), n) {
                        socket.messages(true, n);
                    }
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
