//! A gRPC-only connection served on `h2` directly, without hyper: `h2` keeps the protocol (flow
//! control, HPACK, stream limits, rapid-reset and header-list defences); this module only hands
//! each stream to the server's stack and writes its answer back.
//!
//! What that saves over hyper's HTTP/2 server, per call: a task spawned per stream (on the
//! current-thread runtime a call's future is polled inside the connection's own task, so a
//! call's request and answer need no wake-up of another task), hyper's request and body
//! wrappers, and the `date` header (formatted and HPACK-encoded into every response; gRPC never
//! reads it). On a multi-thread runtime each call still gets a task of its own, so the calls of
//! one connection can use every worker.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http_body::{Body as _, Frame};
use tonic::body::Body;

use crate::server::GrpcService;
use crate::server::transport::{CallFuture, Calls};

/// hyper's HTTP/2 server defaults, which calcmesh served with before: 1 MiB windows for the
/// connection and each stream (HTTP/2's own 64 KiB makes a large message wait for a round trip),
/// 16 KiB frames and header lists, 400 KiB buffered per stream for sending.
const WINDOW: u32 = 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER_SIZE: usize = 400 * 1024;
/// Streams a client may make the server reset for its errors before the connection is closed
/// (hyper's default; `h2`'s defence against a client provoking resets).
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// The `h2` server settings calcmesh serves gRPC with.
pub(crate) fn builder(max_concurrent_streams: u32) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER_SIZE)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESET_STREAMS))
        .max_concurrent_streams(max_concurrent_streams);
    builder
}

/// One connection, from its handshake (the preface and SETTINGS) until the client or a graceful
/// shutdown ends it: accepts streams and runs their calls. Everything the connection holds is
/// here, in the one box its task drives (an idle connection costs what it holds).
pub(crate) struct Connection<IO, S: GrpcService> {
    phase: Phase<IO>,
    /// Calls polled in this task (current-thread runtime); made at the first call.
    calls: Option<FuturesUnordered<Call<CallFuture<S>>>>,
    inline: bool,
    answer: Calls<S>,
}

enum Phase<IO> {
    Handshaking(h2::server::Handshake<IO, Bytes>),
    Serving(h2::server::Connection<IO, Bytes>),
    /// Shut down before its handshake ended.
    Closed,
}

// Nothing of the connection is pinned in place: `h2` moves freely over an `Unpin` socket, the
// calls are pinned inside their `FuturesUnordered`, and the stack is only cloned.
impl<IO: Unpin, S: GrpcService> Unpin for Connection<IO, S> {}

impl<IO, S> Connection<IO, S>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    S: GrpcService,
{
    /// The connection `handshake` makes, its calls answered by `answer`.
    pub(crate) fn new(handshake: h2::server::Handshake<IO, Bytes>, answer: Calls<S>) -> Self {
        let inline = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread;
        Self {
            phase: Phase::Handshaking(handshake),
            calls: None,
            inline,
            answer,
        }
    }

    /// Sends a GOAWAY: calls already open may finish, new ones are refused. A connection still
    /// in its handshake has none, and ends.
    pub(crate) fn graceful_shutdown(&mut self) {
        match &mut self.phase {
            Phase::Serving(h2) => h2.graceful_shutdown(),
            _ => self.phase = Phase::Closed,
        }
    }
}

/// Starts the call `request` makes: polled in the connection's task among `calls` (when
/// `inline`), else in a task of its own.
fn start<S: GrpcService>(
    answer: &Calls<S>,
    calls: &mut Option<FuturesUnordered<Call<CallFuture<S>>>>,
    inline: bool,
    request: http::Request<h2::RecvStream>,
    respond: RespondTo,
) {
    let request = request.map(|recv| Body::new(RequestBody { recv, done: false }));
    let call = Call {
        answer: answer.answer(request),
        respond,
        sending: None,
    };
    if inline {
        calls.get_or_insert_with(FuturesUnordered::new).push(call);
    } else {
        tokio::spawn(call);
    }
}

impl<IO, S> Future for Connection<IO, S>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    S: GrpcService,
{
    type Output = Result<(), h2::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Phase::Handshaking(handshake) = &mut this.phase {
            let h2 = ready!(Pin::new(handshake).poll(cx))?;
            this.phase = Phase::Serving(h2);
        }
        let Phase::Serving(h2) = &mut this.phase else {
            return Poll::Ready(Ok(()));
        };
        loop {
            let mut started = false;
            // Reading the client's frames, and writing what the calls queued.
            loop {
                match h2.poll_accept(cx) {
                    Poll::Ready(Some(Ok((request, respond)))) => {
                        start(&this.answer, &mut this.calls, this.inline, request, respond);
                        started = true;
                    }
                    Poll::Ready(Some(Err(err))) => return Poll::Ready(Err(err)),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => break,
                }
            }
            let mut finished = false;
            if let Some(calls) = this.calls.as_mut() {
                while let Poll::Ready(Some(())) = calls.poll_next_unpin(cx) {
                    finished = true;
                }
            }
            // A call that started may have answered at once, and one that finished has queued
            // its last frames: the connection writes them now rather than at its next wake-up.
            if !started && !finished {
                return Poll::Pending;
            }
        }
    }
}

type RespondTo = h2::server::SendResponse<Bytes>;

pin_project_lite::pin_project! {
    /// One call: its answer awaited (and dropped if the client resets the stream first), then
    /// written.
    struct Call<F> {
        #[pin]
        answer: F,
        respond: RespondTo,
        // Once the answer's headers are sent: its body, written to the stream.
        sending: Option<Sending>,
    }
}

/// An answer's body on its way; a DATA frame waits in `waiting` for send capacity.
struct Sending {
    body: Body,
    send: h2::SendStream<Bytes>,
    waiting: Option<(Bytes, bool)>,
}

impl<F> Future for Call<F>
where
    F: Future<Output = Result<http::Response<Body>, Infallible>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.sending.is_none() {
            let Poll::Ready(Ok(response)) = this.answer.poll(cx) else {
                // The client may give up first: its RST_STREAM cancels the call.
                return this.respond.poll_reset(cx).map(drop);
            };
            let (head, body) = response.into_parts();
            let end = body.is_end_stream();
            match this
                .respond
                .send_response(http::Response::from_parts(head, ()), end)
            {
                Ok(_) if end => return Poll::Ready(()),
                Ok(send) => {
                    *this.sending = Some(Sending {
                        body,
                        send,
                        waiting: None,
                    });
                }
                Err(err) => {
                    tracing::debug!(%err, "sending a response's headers failed");
                    return Poll::Ready(());
                }
            }
        }
        let Some(Sending {
            body,
            send,
            waiting,
        }) = this.sending.as_mut()
        else {
            return Poll::Ready(());
        };
        if let Err(err) = ready!(write_body(cx, body, send, waiting)) {
            tracing::debug!(%err, "sending a response's body failed");
        }
        Poll::Ready(())
    }
}

/// Writes `body`'s frames to `send` until its end or an error, as hyper does: a DATA frame is
/// held (in `waiting`) until the stream has send capacity, so a slow reader slows the call
/// rather than filling the server's memory; a client's RST_STREAM ends it at once.
fn write_body(
    cx: &mut Context<'_>,
    body: &mut Body,
    send: &mut h2::SendStream<Bytes>,
    waiting: &mut Option<(Bytes, bool)>,
) -> Poll<Result<(), h2::Error>> {
    loop {
        if let Poll::Ready(reason) = send.poll_reset(cx)? {
            return Poll::Ready(Err(reason.into()));
        }
        if let Some((data, end)) = waiting.take() {
            if send.capacity() == 0 {
                match send.poll_capacity(cx) {
                    Poll::Pending => {
                        *waiting = Some((data, end));
                        return Poll::Pending;
                    }
                    Poll::Ready(Some(Ok(_))) => {
                        *waiting = Some((data, end));
                        continue;
                    }
                    Poll::Ready(Some(Err(err))) => return Poll::Ready(Err(err)),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                }
            }
            send.send_data(data, end)?;
            if end {
                return Poll::Ready(Ok(()));
            }
            continue;
        }
        match ready!(Pin::new(&mut *body).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if data.is_empty() => {
                    if body.is_end_stream() {
                        return Poll::Ready(send.send_data(data, true));
                    }
                }
                Ok(data) => {
                    // A claim of one byte: h2 raises it to what is buffered (see hyper#4003
                    // on why not the whole frame at once).
                    send.reserve_capacity(1);
                    *waiting = Some((data, body.is_end_stream()));
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        send.reserve_capacity(0);
                        return Poll::Ready(send.send_trailers(trailers));
                    }
                }
            },
            Some(Err(err)) => {
                tracing::debug!(%err, "a response body failed: resetting its stream");
                send.send_reset(reset_reason(&err));
                return Poll::Ready(Ok(()));
            }
            None => return Poll::Ready(send.send_data(Bytes::new(), true)),
        }
    }
}

/// The RST_STREAM code for a body that failed: an HTTP/2 error's own (a request body reset
/// by the client, say), else INTERNAL_ERROR.
fn reset_reason(err: &(dyn std::error::Error + 'static)) -> h2::Reason {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(reason) = err.downcast_ref::<h2::Error>().and_then(h2::Error::reason) {
            return reason;
        }
        source = err.source();
    }
    h2::Reason::INTERNAL_ERROR
}

/// A request's body as `h2` receives it: DATA frames, handed on as they come (and their
/// flow-control capacity released at once, as hyper does), then the trailers.
struct RequestBody {
    recv: h2::RecvStream,
    done: bool,
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(err)) => return Poll::Ready(early_end(err)),
                None => self.done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|trailers| Ok(Frame::trailers(trailers)))),
            Err(err) => Poll::Ready(early_end(err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

/// A RST_STREAM with NO_ERROR ends the request early without failing it (RFC 9113 §8.1);
/// anything else is the body's error.
fn early_end(err: h2::Error) -> Option<Result<Frame<Bytes>, h2::Error>> {
    match err.reason() {
        Some(h2::Reason::NO_ERROR) => None,
        _ => Some(Err(err)),
    }
}
