//! Keepalive enforcement (gRFC A8, as grpc-go and grpc-java servers do it): a client that pings
//! more often than the server allows gets a GOAWAY with ENHANCE_YOUR_CALM and the debug data
//! `too_many_pings`, and its connection is closed — so a fleet of clients with aggressive
//! keepalives cannot keep a server busy answering pings.
//!
//! hyper answers PINGs itself and offers no policy, so `Policed` watches the HTTP/2 frames on
//! the connection: the client's, to see its PINGs and the streams it opens or resets, and the
//! server's, to see streams end and to find a frame boundary where the GOAWAY can go. A PING
//! counts as a strike when it comes sooner than `min_time` after the last one — or, with no call
//! open and `permit_without_calls` off, sooner than two hours after it. Sending data or headers
//! forgives the strikes, and the third strike closes the connection, as in grpc-go.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::tls::PeerInfo;

use crate::channelz::SocketStats;
use crate::h2::{
    ACK, DATA, END_STREAM, ENHANCE_YOUR_CALM, Frame, Framer, HEADERS, PING, PREFACE, RST_STREAM,
    TOO_MANY_PINGS,
};

/// What a server allows its clients' keepalives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingPolicy {
    /// The least time between a client's pings. Default 5 min, as in gRPC.
    pub min_time: Duration,
    /// Whether a client may ping while it has no call open (then at most every two hours).
    /// Default false, as in gRPC.
    pub permit_without_calls: bool,
}

impl Default for PingPolicy {
    fn default() -> Self {
        Self {
            min_time: Duration::from_secs(300),
            permit_without_calls: false,
        }
    }
}

/// How often a client with no call open may ping when that is not permitted (gRPC's value).
const IDLE_PING_TIME: Duration = Duration::from_secs(2 * 60 * 60);
/// Strikes forgiven; one more closes the connection (grpc-go's `maxPingStrikes`).
const MAX_STRIKES: u32 = 2;
/// The policy's view of one connection, and its channelz numbers (when channelz is served).
#[derive(Debug)]
struct Referee {
    policy: PingPolicy,
    stats: Option<Arc<SocketStats>>,
    /// Streams open (FNV: hashed twice per call).
    open: fnv::FnvHashSet<u32>,
    last_stream: u32,
    last_ping: Option<Instant>,
    strikes: u32,
}

impl Referee {
    /// A frame from the client; `true` when it was one ping too many.
    fn client_sent(&mut self, frame: Frame) -> bool {
        match frame.kind {
            HEADERS if frame.stream > self.last_stream => {
                self.last_stream = frame.stream;
                self.open.insert(frame.stream);
                if let Some(stats) = &self.stats {
                    stats.stream_opened(false);
                }
            }
            RST_STREAM => self.ended(frame.stream, false),
            PING if frame.flags & ACK == 0 => return self.ping(Instant::now()),
            _ => {}
        }
        false
    }

    /// A frame from the server: its data and headers forgive strikes; its stream ends close
    /// calls.
    fn server_sent(&mut self, frame: Frame) {
        if matches!(frame.kind, DATA | HEADERS) {
            self.strikes = 0;
        }
        if matches!(frame.kind, DATA | HEADERS) && frame.flags & END_STREAM != 0 {
            self.ended(frame.stream, true);
        } else if frame.kind == RST_STREAM {
            self.ended(frame.stream, false);
        }
    }

    /// A call ended: with END_STREAM from the server (`ok`, as channelz counts it), or reset.
    fn ended(&mut self, stream: u32, ok: bool) {
        if self.open.remove(&stream)
            && let Some(stats) = &self.stats
        {
            stats.stream_ended(ok);
        }
    }

    fn ping(&mut self, now: Instant) -> bool {
        let allowed = if self.open.is_empty() && !self.policy.permit_without_calls {
            IDLE_PING_TIME
        } else {
            self.policy.min_time
        };
        if self.last_ping.is_some_and(|last| now < last + allowed) {
            self.strikes += 1;
        }
        self.last_ping = Some(now);
        self.strikes > MAX_STRIKES
    }

    /// GOAWAY(last stream, ENHANCE_YOUR_CALM, "too_many_pings").
    fn goaway(&self) -> Vec<u8> {
        crate::h2::goaway(self.last_stream, ENHANCE_YOUR_CALM, TOO_MANY_PINGS)
    }
}

pin_project_lite::pin_project! {
    /// A server connection whose client's pings are held to a [`PingPolicy`].
    pub(crate) struct Policed<T> {
        #[pin]
        inner: T,
        referee: Referee,
        reading: Framer,
        writing: Framer,
        // The GOAWAY to send, and how much of it is sent.
        goaway: Option<(Vec<u8>, usize)>,
        // hyper's reader, woken once the GOAWAY can go out, and once it is out.
        reader: Option<Waker>,
        // Preface bytes matched so far; `None` once the connection proved not to be HTTP/2
        // with prior knowledge (HTTP/1.1, e.g. gRPC-Web): then nothing is policed.
        preface: Option<usize>,
    }
}

impl<T> Policed<T> {
    /// Polices `inner`; counts into `stats` for channelz, if given.
    pub(crate) fn new(inner: T, policy: PingPolicy, stats: Option<Arc<SocketStats>>) -> Self {
        Self {
            inner,
            referee: Referee {
                policy,
                stats,
                open: fnv::FnvHashSet::default(),
                last_stream: 0,
                last_ping: None,
                strikes: 0,
            },
            reading: Framer::new(PREFACE.len()),
            writing: Framer::new(0),
            goaway: None,
            reader: None,
            preface: Some(0),
        }
    }
}

impl<T> Policed<T> {
    /// The connection beneath.
    #[cfg(test)]
    pub(crate) fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncWrite> Policed<T> {
    /// Writes what is left of the GOAWAY, if the server's bytes are at a frame boundary:
    /// `Ready(true)` once it is all out.
    fn send_goaway(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        let mut this = self.project();
        let Some((frame, sent)) = this.goaway.as_mut() else {
            return Poll::Ready(Ok(false));
        };
        if !this.writing.at_boundary() {
            return Poll::Ready(Ok(false));
        }
        while *sent < frame.len() {
            let n = std::task::ready!(this.inner.as_mut().poll_write(cx, &frame[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        std::task::ready!(this.inner.as_mut().poll_flush(cx))?;
        if let Some(reader) = this.reader.take() {
            reader.wake();
        }
        Poll::Ready(Ok(true))
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncRead for Policed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.goaway.is_some() {
            // The GOAWAY goes out, then hyper reads the end of the connection.
            return match self.as_mut().send_goaway(cx)? {
                Poll::Ready(true) => Poll::Ready(Ok(())),
                _ => {
                    *self.as_mut().project().reader = Some(cx.waker().clone());
                    Poll::Pending
                }
            };
        }
        let this = self.as_mut().project();
        let before = buf.filled().len();
        std::task::ready!(this.inner.poll_read(cx, buf))?;
        if let Some(matched) = this.preface.as_mut() {
            let read = &buf.filled()[before..];
            let n = read.len().min(PREFACE.len() - *matched);
            if read[..n] == PREFACE[*matched..*matched + n] {
                *matched += n;
            } else {
                *this.preface = None;
            }
        }
        if this.preface.is_none() {
            return Poll::Ready(Ok(()));
        }
        let (referee, mut calm) = (this.referee, true);
        this.reading.feed(&buf.filled()[before..], |frame, _| {
            calm &= !referee.client_sent(frame);
        });
        if !calm {
            tracing::warn!(
                strikes = referee.strikes,
                "client pings too often: GOAWAY ENHANCE_YOUR_CALM too_many_pings"
            );
            *this.goaway = Some((referee.goaway(), 0));
            buf.set_filled(before);
            return self.poll_read(cx, buf);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite> AsyncWrite for Policed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[std::io::IoSlice::new(bytes)])
    }

    /// Every buffer passed on in one write (hyper and h2 write a frame's head and a large
    /// payload together where the connection can), the frames written watched.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.goaway.is_some() && std::task::ready!(self.as_mut().send_goaway(cx))? {
            return Poll::Ready(Err(std::io::ErrorKind::ConnectionAborted.into()));
        }
        let this = self.project();
        let n = std::task::ready!(this.inner.poll_write_vectored(cx, bufs))?;
        if this.preface.is_none() {
            return Poll::Ready(Ok(n));
        }
        let (referee, mut left) = (this.referee, n);
        for buf in bufs {
            if left == 0 {
                break;
            }
            let part = &buf[..left.min(buf.len())];
            this.writing
                .feed(part, |frame, _| referee.server_sent(frame));
            left -= part.len();
        }
        if this.goaway.is_some() && this.writing.at_boundary() {
            // A frame boundary at last: the reader sends the GOAWAY.
            if let Some(reader) = this.reader.take() {
                reader.wake();
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

impl<T> tonic::transport::server::Connected for Policed<T>
where
    T: tonic::transport::server::Connected<ConnectInfo = PeerInfo>,
{
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        PeerInfo {
            socket: self.referee.stats.clone(),
            ..self.inner.connect_info()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2::tests::header;

    fn referee(min_time: u64, permit_without_calls: bool) -> Referee {
        Referee {
            policy: PingPolicy {
                min_time: Duration::from_secs(min_time),
                permit_without_calls,
            },
            stats: Some(SocketStats::register(None, None, None)),
            open: fnv::FnvHashSet::default(),
            last_stream: 0,
            last_ping: None,
            strikes: 0,
        }
    }

    #[test]
    fn the_third_early_ping_is_one_too_many_and_server_data_forgives() {
        let mut r = referee(60, false);
        r.client_sent(Frame {
            kind: HEADERS,
            flags: 0,
            stream: 1,
        });
        let t = Instant::now();
        assert!(!r.ping(t), "the first ping is no strike");
        assert!(!r.ping(t + Duration::from_secs(1)));
        assert!(!r.ping(t + Duration::from_secs(2)));
        r.server_sent(Frame {
            kind: DATA,
            flags: 0,
            stream: 1,
        });
        assert!(
            !r.ping(t + Duration::from_secs(3)),
            "data forgave the two strikes"
        );
        assert!(!r.ping(t + Duration::from_secs(4)));
        assert!(r.ping(t + Duration::from_secs(5)), "the third strike");
    }

    #[test]
    fn without_calls_pings_wait_two_hours_unless_permitted() {
        let t = Instant::now();
        let mut idle = referee(60, false);
        let mut permitted = referee(60, true);
        for r in [&mut idle, &mut permitted] {
            r.ping(t);
            for minutes in 1..=3 {
                r.ping(t + Duration::from_secs(61 * minutes));
            }
        }
        assert_eq!((idle.strikes, permitted.strikes), (3, 0));
        let mut ended = referee(60, false);
        ended.client_sent(Frame {
            kind: HEADERS,
            flags: 0,
            stream: 1,
        });
        ended.server_sent(Frame {
            kind: HEADERS,
            flags: END_STREAM,
            stream: 1,
        });
        assert!(ended.open.is_empty(), "trailers end the call");
    }

    #[test]
    fn streams_are_counted_once_as_channelz_counts_them() {
        let mut r = referee(60, false);
        let frame = |kind, flags, stream| Frame {
            kind,
            flags,
            stream,
        };
        r.client_sent(frame(HEADERS, 0, 1));
        r.client_sent(frame(HEADERS, 0, 3));
        r.server_sent(frame(HEADERS, END_STREAM, 1));
        r.client_sent(frame(RST_STREAM, 0, 1));
        r.client_sent(frame(RST_STREAM, 0, 3));
        let s = r.stats.as_ref().unwrap().snapshot();
        assert_eq!(
            (s.streams_started, s.streams_succeeded, s.streams_failed),
            (2, 1, 1),
            "a reset after the server's END_STREAM changes nothing"
        );
        assert!(s.last_remote_stream_ms > 0);
    }

    #[tokio::test]
    async fn a_connection_that_is_not_http2_passes_untouched() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(4096);
        let mut policed = Policed::new(
            server,
            PingPolicy::default(),
            Some(SocketStats::register(None, None, None)),
        );
        let mut sent = b"POST /calculator.Calculator/Calculate HTTP/1.1\r\n\r\n".to_vec();
        for i in 0..5u8 {
            sent.extend(header(PING, 0, 0, 8));
            sent.extend([i; 8]);
        }
        client.write_all(&sent).await.unwrap();
        drop(client);
        let mut read = Vec::new();
        policed.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, sent, "no GOAWAY, nothing dropped");
    }
}
