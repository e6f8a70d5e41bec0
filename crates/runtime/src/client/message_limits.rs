//! The service config's `maxRequestMessageBytes` and `maxResponseMessageBytes`, per method, as
//! gRPC clients apply them: a request message over the limit is not sent and a response
//! message over it is not read — either way the call fails with RESOURCE_EXHAUSTED, naming the
//! size and the limit. The 5-byte gRPC message prefixes are read as the bytes pass
//! ([`FrameScanner`]); nothing is copied or buffered.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

use crate::framing::FrameScanner;

pin_project_lite::pin_project! {
    /// A body whose messages may not be larger than `limit`.
    pub(crate) struct Limited {
        #[pin]
        inner: Body,
        limit: usize,
        scanner: FrameScanner,
        // "request" or "response", and the config field that set the limit.
        what: (&'static str, &'static str),
        // Where the failure is kept for the caller (a request's failure reaches the server only
        // as a reset stream).
        tripped: Option<Arc<OnceLock<Status>>>,
    }
}

impl Limited {
    /// `body` (a request's) bounded by `maxRequestMessageBytes`, if set; the status it fails
    /// with is also kept in `tripped`.
    pub(crate) fn request(
        body: Body,
        limit: Option<usize>,
        tripped: Arc<OnceLock<Status>>,
    ) -> Body {
        let what = ("request", "maxRequestMessageBytes");
        Self::wrap(body, limit, what, Some(tripped))
    }

    /// `body` (a response's) bounded by `maxResponseMessageBytes`, if set.
    pub(crate) fn response(body: Body, limit: Option<usize>) -> Body {
        Self::wrap(body, limit, ("response", "maxResponseMessageBytes"), None)
    }

    fn wrap(
        inner: Body,
        limit: Option<usize>,
        what: (&'static str, &'static str),
        tripped: Option<Arc<OnceLock<Status>>>,
    ) -> Body {
        match limit {
            None => inner,
            Some(limit) => Body::new(Limited {
                inner,
                limit,
                scanner: FrameScanner::default(),
                what,
                tripped,
            }),
        }
    }
}

impl HttpBody for Limited {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref))
            && let Some(data) = data
            && let Err(over) = this.scanner.scan(data, *this.limit)
        {
            let (what, field) = this.what;
            let status = Status::resource_exhausted(format!(
                "{what} message of {} bytes is over the service config's {field} ({} bytes)",
                over.len, this.limit
            ));
            if let Some(tripped) = this.tripped {
                let _ = tripped.set(status.clone());
            }
            return Poll::Ready(Some(Err(status)));
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
