//! What makes a failed call safe to send again, and a request body that can be sent again.
//!
//! Without a service-config `retryPolicy`, a call is retried only when it failed *before any
//! response* (a transport error: refused connection, reset, refused stream) and either its
//! method is idempotent, or the failure proves the server never saw it (the connection was
//! refused). A retry budget (`tower::retry::budget`) keeps those retries a small share of
//! traffic, so a dead mesh is not hammered.
//!
//! With a `retryPolicy` (gRFC A6), `Retries` decides: an attempt that failed with a retryable
//! status before any response headers (a trailers-only answer, or a broken stream, which is
//! UNAVAILABLE) is tried again after a random backoff, up to `maxAttempts`, unless the server's
//! `grpc-retry-pushback-ms` (`Pushback`) says otherwise or `retryThrottling` has run out.
//!
//! Either way the request body is recorded while it is sent, up to [`REPLAY_LIMIT`] bytes, so a
//! retry can resend it — including the messages a client stream had already sent; a larger body
//! makes the call final (committed, in A6's words).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use tonic::Status;
use tonic::body::Body;

use crate::client::service_config::RetryPolicy;
use crate::error::chain;

/// What a failed attempt's `grpc-retry-pushback-ms` asks for (gRFC A6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushback {
    /// No pushback: the policy's backoff decides.
    None,
    /// Negative or unreadable: do not try again.
    Stop,
    /// Try again after exactly this long.
    After(Duration),
}

impl Pushback {
    /// The pushback among `headers` (a trailers-only answer's, or trailers).
    pub(crate) fn of(headers: &http::HeaderMap) -> Self {
        let Some(value) = headers.get("grpc-retry-pushback-ms") else {
            return Pushback::None;
        };
        match value.to_str().ok().and_then(|v| v.parse::<i32>().ok()) {
            Some(ms) if ms >= 0 => Pushback::After(Duration::from_millis(ms as u64)),
            _ => Pushback::Stop,
        }
    }
}

/// One call's retries under a `retryPolicy`: attempts so far, and how long the next backoff
/// may be.
#[derive(Debug)]
pub(crate) struct Retries {
    policy: RetryPolicy,
    attempts: u32,
    backoff: Duration,
}

impl Retries {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        let backoff = policy.initial_backoff;
        Self {
            policy,
            attempts: 1,
            backoff,
        }
    }

    /// Whether the policy retries `code` at all (such a failure counts against throttling).
    pub(crate) fn retryable(&self, code: tonic::Code) -> bool {
        self.policy.retryable_codes.contains(&code)
    }

    /// After an attempt failed with a retryable code: how long to wait before the next, or
    /// `None` when no attempt is left or the server pushed back for good. A6: the n-th retry
    /// waits random(0, min(initialBackoff × multiplier^(n-1), maxBackoff)); a pushback's wait is
    /// exact, and the backoff starts again from initialBackoff after it.
    pub(crate) fn next_wait(&mut self, pushback: Pushback) -> Option<Duration> {
        if self.attempts >= self.policy.max_attempts || pushback == Pushback::Stop {
            return None;
        }
        self.attempts += 1;
        if let Pushback::After(wait) = pushback {
            self.backoff = self.policy.initial_backoff;
            return Some(wait);
        }
        let wait = self.backoff.mul_f64(fastrand::f64());
        self.backoff = self
            .backoff
            .mul_f64(self.policy.backoff_multiplier)
            .min(self.policy.max_backoff);
        Some(wait)
    }
}

/// Bytes of request body kept for a retry; a larger request is not retried.
pub const REPLAY_LIMIT: usize = 64 * 1024;

#[derive(Debug)]
struct Source {
    inner: Body,
    recorded: Vec<Bytes>,
    recorded_len: usize,
    overflowed: bool,
    ended: bool,
    /// Readers waiting on `inner` beside the one that polled it last (hedged copies).
    waiting: Vec<Waker>,
}

/// A request body that records what it sends so that it can be sent again.
#[derive(Debug)]
pub(crate) struct ReplayBody {
    source: Arc<Mutex<Source>>,
    position: usize,
    /// Set on the body that was sending when the record overflowed: it alone goes on.
    past_record: bool,
}

impl ReplayBody {
    pub(crate) fn new(inner: Body) -> Self {
        Self {
            source: Arc::new(Mutex::new(Source {
                inner,
                recorded: Vec::new(),
                recorded_len: 0,
                overflowed: false,
                ended: false,
                waiting: Vec::new(),
            })),
            position: 0,
            past_record: false,
        }
    }

    fn source(&self) -> std::sync::MutexGuard<'_, Source> {
        crate::sync::lock(&self.source)
    }

    /// A body that sends everything from the start again, then continues with the rest, or
    /// `None` when too much was sent to keep.
    pub(crate) fn replay(&self) -> Option<ReplayBody> {
        let replayable = !self.source().overflowed;
        replayable.then(|| ReplayBody {
            source: self.source.clone(),
            position: 0,
            past_record: false,
        })
    }
}

impl HttpBody for ReplayBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let (position, past_record) = (self.position, self.past_record);
        let source_arc = self.source.clone();
        let mut source = crate::sync::lock(&source_arc);
        if !past_record {
            if let Some(chunk) = source.recorded.get(position).cloned() {
                drop(source);
                self.position += 1;
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if source.overflowed {
                return Poll::Ready(Some(Err(Status::internal(
                    "request body can no longer be replayed",
                ))));
            }
        }
        if source.ended {
            return Poll::Ready(None);
        }
        let Poll::Ready(frame) = Pin::new(&mut source.inner).poll_frame(cx) else {
            // Several copies of a hedged call read one body: each must hear when it moves.
            if !source.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                source.waiting.push(cx.waker().clone());
            }
            return Poll::Pending;
        };
        source.waiting.drain(..).for_each(Waker::wake);
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref()
                    && !source.overflowed
                {
                    if source.recorded_len + data.len() <= REPLAY_LIMIT {
                        source.recorded_len += data.len();
                        source.recorded.push(data.clone());
                        drop(source);
                        self.position += 1;
                    } else {
                        source.overflowed = true;
                        source.recorded = Vec::new();
                        drop(source);
                        self.past_record = true;
                    }
                }
            }
            None => source.ended = true,
            Some(Err(_)) => {}
        }
        Poll::Ready(frame)
    }
}

/// Whether a transport error proves the request never reached the server: no connection could
/// be made, the server refused the stream (REFUSED_STREAM, e.g. after its GOAWAY), or hyper
/// never wrote the request because the connection closed first (a server closing an old
/// connection, see `max_connection_age`).
pub(crate) fn never_reached_server(err: &(dyn std::error::Error + 'static)) -> bool {
    unreachable(err)
        || chain(err).any(|e| {
            e.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_canceled)
                || e.to_string().contains("refused stream")
        })
}

/// Whether no connection could be made: refused (nobody listens there), unreachable, or not
/// made within the connect timeout (a host cut off the network). The endpoint is down.
pub(crate) fn unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::{ConnectionRefused, HostUnreachable, NetworkUnreachable, TimedOut};
    chain(err).any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ConnectionRefused | HostUnreachable | NetworkUnreachable | TimedOut
            )
        })
        // tonic's connect timeout; a call's own deadline is a different error (TimeoutExpired).
            || e.is::<tokio::time::error::Elapsed>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(chunks: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, Status>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        Body::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)))
    }

    async fn collect(b: ReplayBody) -> Vec<u8> {
        b.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn a_replay_resends_what_was_sent_then_continues() {
        let mut first = ReplayBody::new(body(&[b"ab", b"cd", b"ef"]));
        let chunk = first.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(chunk, "ab");
        let second = first.replay().unwrap();
        drop(first);
        assert_eq!(collect(second).await, b"abcdef");
    }

    #[tokio::test]
    async fn too_large_a_body_is_not_replayable_but_is_still_sent_whole() {
        let big: &'static [u8] = Box::leak(vec![1u8; REPLAY_LIMIT].into_boxed_slice());
        let mut first = ReplayBody::new(body(&[b"start", big, b"end"]));
        first.frame().await.unwrap().unwrap();
        let early = first.replay().expect("small so far");
        first.frame().await.unwrap().unwrap();
        assert!(first.replay().is_none(), "past the limit");
        let rest = first.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(rest, "end", "the body being sent goes on");
        assert!(first.frame().await.is_none());
        assert!(
            collect_err(early).await,
            "an older replay cannot be completed"
        );
    }

    async fn collect_err(b: ReplayBody) -> bool {
        b.collect().await.is_err()
    }
}
