//! The connections a channel makes: TCP, then TLS when configured, each watched for the
//! server's GOAWAY ENHANCE_YOUR_CALM "too_many_pings" (gRFC A8). On one, the channel logs it and
//! doubles its keepalive time for new connections, and the endpoint reconnects with it — so a
//! client configured to ping more often than a server allows settles on what the server takes,
//! as grpc-go and grpc-java clients do.
//!
//! Each connection also keeps its channelz numbers ([`SocketStats`]): streams opened by its
//! HEADERS, ended by the server's END_STREAM or a reset, gRPC messages each way (their 5-byte
//! prefixes in the DATA frames), and keepalive PINGs sent.
//!
//! tonic puts its own TLS above a custom connector's stream, where the frames are encrypted;
//! the handshake is therefore made here ([`ClientTls::handshake`]), beneath the frame watch, and
//! tonic is given the `https` origin for the requests.

use std::future::Future;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::channelz::SocketStats;
use crate::diagnose::{self, Diagnosis, Explained};
use crate::error::BoxError;
use crate::framing::FrameScanner;
use crate::h2::{
    ACK, DATA, END_STREAM, Frame, Framer, GOAWAY, HEADERS, PING, PREFACE, RST_STREAM,
    is_too_many_pings,
};
use crate::tls::{ClientTls, channelz_tls};

/// A channel's keepalive time for new connections, doubled on each "too_many_pings".
#[derive(Debug)]
pub(crate) struct Keepalive {
    millis: AtomicU64,
    /// Endpoints to reconnect with the new time.
    renew: mpsc::UnboundedSender<String>,
}

impl Keepalive {
    /// Starts at `time`; the receiver gets each endpoint told "too_many_pings".
    pub(crate) fn new(time: Duration) -> (Arc<Self>, mpsc::UnboundedReceiver<String>) {
        let (renew, renewals) = mpsc::unbounded_channel();
        let millis = AtomicU64::new(u64::try_from(time.as_millis()).unwrap_or(u64::MAX));
        (Arc::new(Self { millis, renew }), renewals)
    }

    /// The time for a new connection.
    pub(crate) fn time(&self) -> Duration {
        Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }

    /// A connection to `endpoint` that pinged every `used` was told "too_many_pings": new
    /// connections ping at most half as often (connections told at once double it once).
    fn too_many_pings(&self, endpoint: &str, used: Duration) {
        let doubled = u64::try_from(used.as_millis().saturating_mul(2)).unwrap_or(u64::MAX);
        self.millis.fetch_max(doubled, Ordering::Relaxed);
        tracing::warn!(
            endpoint,
            keepalive_time = ?self.time(),
            "server sent GOAWAY ENHANCE_YOUR_CALM too_many_pings: keepalive time doubled for new connections"
        );
        let _ = self.renew.send(endpoint.to_owned());
    }
}

/// An endpoint's connection now: its channelz numbers, set by each new connection, and why the
/// last one failed before HTTP/2 began (cleared when one begins). A connection that fails that
/// early ends its calls with no more than "connection closed"; this is what they mean.
#[derive(Debug, Default)]
pub(crate) struct Link {
    socket: Mutex<Weak<SocketStats>>,
    failure: Mutex<Option<(Diagnosis, i64)>>,
}

impl Link {
    /// The open connection's numbers, if one is open.
    pub(crate) fn socket(&self) -> Option<Arc<SocketStats>> {
        crate::sync::lock(&self.socket).upgrade()
    }

    /// Why the last connection failed before HTTP/2 began, if it did.
    pub(crate) fn failure(&self) -> Option<Diagnosis> {
        self.failure_event().map(|(why, _)| why)
    }

    /// The same, with when it happened (ms since the Unix epoch), for channelz's trace.
    pub(crate) fn failure_event(&self) -> Option<(Diagnosis, i64)> {
        crate::sync::lock(&self.failure).clone()
    }

    /// The connection to `endpoint` failed for `why`: logged (at info, once per connection)
    /// and kept.
    pub(crate) fn failed(&self, endpoint: &str, why: &Diagnosis) {
        tracing::info!(endpoint, why = why.message, "connection failed");
        *crate::sync::lock(&self.failure) =
            Some((why.clone(), crate::channelz::registry::now_ms()));
    }
}

/// An endpoint's [`Link`], shared by its connector and the balancer.
pub(crate) type CurrentSocket = Arc<Link>;

/// Makes one endpoint's connections: TCP (no Nagle), TLS if configured, then the frame watch.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    endpoint: Arc<str>,
    tls: Option<ClientTls>,
    keepalive: Arc<Keepalive>,
    /// The keepalive time this endpoint's connections are made with.
    used: Duration,
    current: CurrentSocket,
    /// Whether its connections speak HTTP/2 (whose frames are watched) or HTTP/1.1 (gRPC-Web).
    http2: bool,
    /// How long a connection may take, where no tonic endpoint bounds it (HTTP/1.1).
    timeout: Option<Duration>,
}

impl Connector {
    pub(crate) fn new(
        endpoint: &str,
        tls: Option<ClientTls>,
        keepalive: Arc<Keepalive>,
        current: CurrentSocket,
    ) -> Self {
        let used = keepalive.time();
        Self {
            endpoint: endpoint.into(),
            tls,
            keepalive,
            used,
            current,
            http2: true,
            timeout: None,
        }
    }

    /// The same for HTTP/1.1 connections (gRPC-Web): TLS offers ALPN `http/1.1`, nothing reads
    /// the bytes as HTTP/2 frames, and a connection not made within `timeout` fails (tonic's
    /// endpoint bounds the HTTP/2 ones).
    pub(crate) fn http1(mut self, timeout: Duration) -> Self {
        self.http2 = false;
        self.tls = self.tls.map(|tls| tls.for_http1());
        self.timeout = Some(timeout);
        self
    }

    async fn connect(self, uri: http::Uri) -> Result<TokioIo<Watched>, BoxError> {
        let host = uri.host().ok_or("the endpoint has no host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().ok_or("the endpoint has no port")?;
        let (stream, local, remote, tls) = match self.open(host, port).await {
            Ok(opened) => opened,
            Err(err) => {
                let why = diagnose::connect_failure(&err, self.tls.is_some());
                self.current.failed(&self.endpoint, &why);
                let message = why.message;
                return Err(Box::new(Explained::io(
                    err.kind(),
                    message,
                    Some(Box::new(err)),
                )));
            }
        };
        let stats = SocketStats::register(local, remote, tls);
        *crate::sync::lock(&self.current.socket) = Arc::downgrade(&stats);
        Ok(TokioIo::new(Watched {
            inner: stream,
            frames: self.http2,
            head: Some(Vec::new()),
            reading: Framer::new(0).keeping(GOAWAY),
            writing: Framer::new(PREFACE.len()),
            watch: Watch {
                open: fnv::FnvHashSet::default(),
                messages: fnv::FnvHashMap::default(),
                stats,
                told: false,
                connector: self,
            },
        }))
    }
}

/// A connection made: the stream, its addresses, and its TLS for channelz.
type Opened = (
    Box<dyn Io>,
    Option<std::net::SocketAddr>,
    Option<std::net::SocketAddr>,
    Option<crate::channelz::registry::TlsInfo>,
);

impl Connector {
    /// TCP (no Nagle), then TLS when configured.
    async fn open(&self, host: &str, port: u16) -> std::io::Result<Opened> {
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        let (local, remote) = (tcp.local_addr().ok(), tcp.peer_addr().ok());
        Ok(match &self.tls {
            Some(tls) => {
                let stream = tls.handshake(host, tcp).await?;
                let info = channelz_tls(stream.get_ref().1, tls.local_certificate().to_vec());
                (Box::new(stream), local, remote, Some(info))
            }
            None => (Box::new(tcp), local, remote, None),
        })
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<Watched>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.clone().connect(uri);
        let Some(timeout) = self.timeout else {
            return Box::pin(connecting);
        };
        Box::pin(async move {
            tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|elapsed| Box::new(elapsed) as BoxError)?
        })
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A client connection whose frames are watched: the server's for "too_many_pings", both
/// ways for channelz's numbers.
pub(crate) struct Watched {
    inner: Box<dyn Io>,
    /// Whether it carries HTTP/2, whose frames are watched.
    frames: bool,
    /// The server's first bytes until there are four (enough to tell HTTP/2 from TLS, HTTP/1 or
    /// anything else, whichever this connection expects); `None` once judged.
    head: Option<Vec<u8>>,
    reading: Framer,
    writing: Framer,
    watch: Watch,
}

/// What the frames of one connection tell.
struct Watch {
    /// Streams opened and not yet ended.
    open: fnv::FnvHashSet<u32>,
    /// Per open stream, the gRPC messages passing each way (sent, received), found by their
    /// 5-byte prefixes in the DATA frames.
    messages: fnv::FnvHashMap<u32, [FrameScanner; 2]>,
    stats: Arc<SocketStats>,
    /// Whether the server said "too_many_pings" (acted on once).
    told: bool,
    connector: Connector,
}

impl Watch {
    /// A frame from the server.
    fn received(&mut self, frame: Frame, payload: &[u8]) {
        match frame.kind {
            DATA | HEADERS if frame.flags & END_STREAM != 0 => self.ended(frame.stream, true),
            RST_STREAM => self.ended(frame.stream, false),
            GOAWAY if is_too_many_pings(payload) && !self.told => {
                self.told = true;
                let c = &self.connector;
                c.keepalive.too_many_pings(&c.endpoint, c.used);
            }
            GOAWAY => {
                let code = payload
                    .get(4..8)
                    .map_or(0, |c| u32::from_be_bytes(c.try_into().unwrap_or_default()));
                // NO_ERROR is a server closing an old connection or draining: no failure.
                if code != 0 {
                    let why = diagnose::goaway(code, payload.get(8..).unwrap_or_default());
                    self.connector
                        .current
                        .failed(&self.connector.endpoint, &why);
                }
            }
            _ => {}
        }
    }

    /// A frame to the server.
    fn sent(&mut self, frame: Frame) {
        match frame.kind {
            HEADERS if self.open.insert(frame.stream) => self.stats.stream_opened(true),
            RST_STREAM => self.ended(frame.stream, false),
            PING if frame.flags & ACK == 0 => self.stats.keepalive_sent(),
            _ => {}
        }
    }

    /// A stream ended: with the server's END_STREAM (`ok`), or reset.
    fn ended(&mut self, stream: u32, ok: bool) {
        if self.open.remove(&stream) {
            self.stats.stream_ended(ok);
        }
        self.messages.remove(&stream);
    }

    /// Data of `stream` went out (`sent`) or came in: counts the messages it starts.
    fn data(&mut self, stream: u32, bytes: &[u8], sent: bool) {
        if !self.open.contains(&stream) {
            return;
        }
        let scanners = self.messages.entry(stream).or_default();
        let n = scanners[usize::from(!sent)]
            .scan(bytes, usize::MAX)
            .unwrap_or(0);
        if n > 0 {
            self.stats.messages(sent, n as u64);
        }
    }
}

impl Watched {
    /// Watches the first `n` bytes of `bufs`, just written.
    fn wrote(&mut self, bufs: &[std::io::IoSlice<'_>], mut n: usize) {
        if !self.frames {
            return;
        }
        let (writing, watch) = (&mut self.writing, &mut self.watch);
        for buf in bufs {
            let part = &buf[..n.min(buf.len())];
            let watch = std::cell::RefCell::new(&mut *watch);
            writing.feed_with_data(
                part,
                |frame, _| watch.borrow_mut().sent(frame),
                |stream, bytes| watch.borrow_mut().data(stream, bytes, true),
            );
            n -= part.len();
            if n == 0 {
                break;
            }
        }
    }
}

impl Watched {
    /// Judges what the server sent before HTTP/2 began (`read`: this read's bytes, or its
    /// error): nothing (closed at once), a TLS alert, TLS or HTTP/1 bytes. Such a connection
    /// ends with the explanation, which its endpoint's [`Link`] keeps.
    fn judge(&mut self, read: Result<&[u8], std::io::Error>) -> std::io::Result<()> {
        let Some(head) = self.head.as_mut() else {
            return read.map(|_| ());
        };
        let link = &self.watch.connector.current;
        let tls = self.watch.connector.tls.is_some();
        let (why, kind, source) = match read {
            Ok([]) => (
                diagnose::closed_at_once(tls),
                ErrorKind::UnexpectedEof,
                None,
            ),
            Ok(bytes) => {
                // Up to 16 bytes, for the message; judged once there are 4.
                head.extend_from_slice(&bytes[..bytes.len().min(16 - head.len())]);
                if head.len() < 4 {
                    return Ok(());
                }
                let why = if self.frames {
                    diagnose::first_bytes(head, tls)
                } else {
                    diagnose::first_bytes_http1(head, tls)
                };
                self.head = None;
                match why {
                    Some(why) => (why, ErrorKind::InvalidData, None),
                    None => {
                        *crate::sync::lock(&link.failure) = None;
                        return Ok(());
                    }
                }
            }
            Err(err) => {
                let why = diagnose::failed_early(&err);
                (why, err.kind(), Some(Box::new(err) as BoxError))
            }
        };
        self.head = None;
        link.failed(&self.watch.connector.endpoint, &why);
        Err(Explained::io(kind, why.message, source))
    }
}

impl Watched {
    /// A write failed: before the server sent anything, the server closed the connection at
    /// once (a TLS server reading our HTTP/2 preface, say), which the error alone does not say.
    fn write_failed(&mut self, cx: &mut Context<'_>, err: std::io::Error) -> std::io::Error {
        if self.head.is_none() {
            return err;
        }
        // It may have said why before it closed (a TLS alert): that is read first.
        let mut scratch = [0; 64];
        let mut unread = ReadBuf::new(&mut scratch);
        if let Poll::Ready(Err(said)) = Pin::new(&mut self.inner).poll_read(cx, &mut unread)
            && let Err(explained) = self.judge(Err(said))
        {
            return explained;
        }
        self.head = None;
        let connector = &self.watch.connector;
        let why = diagnose::closed_at_once(connector.tls.is_some());
        connector.current.failed(&connector.endpoint, &why);
        Explained::io(err.kind(), why.message, Some(Box::new(err)))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        this.judge(read.map(|()| &buf.filled()[before..]))?;
        if !this.frames {
            return Poll::Ready(Ok(()));
        }
        let watch = std::cell::RefCell::new(&mut this.watch);
        this.reading.feed_with_data(
            &buf.filled()[before..],
            |frame, payload| watch.borrow_mut().received(frame, payload),
            |stream, bytes| watch.borrow_mut().data(stream, bytes, false),
        );
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, bytes))
            .map_err(|err| this.write_failed(cx, err))?;
        this.wrote(&[std::io::IoSlice::new(bytes)], n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))
            .map_err(|err| this.write_failed(cx, err))?;
        this.wrote(bufs, n);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner)
            .poll_flush(cx)
            .map_err(|err| this.write_failed(cx, err))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_too_many_pings_doubles_what_the_connection_used_once() {
        let (keepalive, mut renewals) = Keepalive::new(Duration::from_secs(1));
        keepalive.too_many_pings("a:1", Duration::from_secs(1));
        keepalive.too_many_pings("b:1", Duration::from_secs(1));
        assert_eq!(
            keepalive.time(),
            Duration::from_secs(2),
            "told at once: once"
        );
        keepalive.too_many_pings("a:1", Duration::from_secs(2));
        assert_eq!(keepalive.time(), Duration::from_secs(4));
        let mut renewed = Vec::new();
        while let Ok(endpoint) = renewals.try_recv() {
            renewed.push(endpoint);
        }
        assert_eq!(renewed, ["a:1", "b:1", "a:1"]);
    }
}
