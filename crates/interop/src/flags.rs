//! Which request messages came compressed, for the cases' `expect_compressed`: a wrapper reads
//! each message's compressed flag off the request body as it passes (the runtime's
//! [`FrameScanner`]) and queues it in the request's extensions, where the handler takes one per
//! message it decodes, in order.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Buf;
use calcmesh_runtime::framing::FrameScanner;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::server::NamedService;

/// The compressed flags of a call's request messages not yet taken, oldest first.
#[derive(Debug, Clone, Default)]
pub struct MessageFlags(Arc<Mutex<VecDeque<bool>>>);

impl MessageFlags {
    /// Whether the next request message was compressed (`None`: no flag seen for it).
    pub fn next(&self) -> Option<bool> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    fn push(&self, compressed: bool) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(compressed);
    }
}

/// `S`, with every request's [`MessageFlags`] in its extensions.
#[derive(Debug, Clone)]
pub struct RecordFlags<S>(pub S);

impl<S: NamedService> NamedService for RecordFlags<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower_service::Service<http::Request<Body>> for RecordFlags<S>
where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
        >,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let flags = MessageFlags::default();
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(flags.clone());
        let body = Body::new(Flagged {
            inner: body,
            scanner: FrameScanner::default(),
            flags,
        });
        self.0.call(http::Request::from_parts(parts, body))
    }
}

pin_project_lite::pin_project! {
    /// A request body that records the compressed flag of each message passing through.
    struct Flagged {
        #[pin]
        inner: Body,
        scanner: FrameScanner,
        flags: MessageFlags,
    }
}

impl HttpBody for Flagged {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame
            && let Some(data) = frame.data_ref()
        {
            let flags = &*this.flags;
            this.scanner
                .flags(data.chunk(), |compressed| flags.push(compressed));
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
