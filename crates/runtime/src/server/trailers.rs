//! Trailers a service adds to a gRPC response beside `grpc-status`: tonic gives a handler the
//! response headers (`Response::metadata_mut`) but no trailers. A handler sets them with
//! [`set`], and the [`Server`](super::Server) adds them to the response — in the trailers, or
//! in the headers of a trailers-only response (an error before any message, where gRPC has one
//! header block). An error's trailers go in its `Status`'s metadata, as tonic has it.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;

/// The trailers a handler asked for, as a response extension until the server adds them.
#[derive(Debug, Clone)]
struct Trailers(HeaderMap);

/// Sends `trailers` with a successful `response`, after its messages.
pub fn set<T>(response: &mut tonic::Response<T>, trailers: tonic::metadata::MetadataMap) {
    response
        .extensions_mut()
        .insert(Trailers(trailers.into_headers()));
}

/// `response` with the trailers its handler [`set`], if it set any.
pub(crate) fn from_handler(mut response: http::Response<Body>) -> http::Response<Body> {
    match response.extensions_mut().remove::<Trailers>() {
        Some(Trailers(extra)) => append(response, extra),
        None => response,
    }
}

/// `response` with `extra` in its trailers (appended: a name may repeat).
pub fn append(mut response: http::Response<Body>, extra: HeaderMap) -> http::Response<Body> {
    if extra.is_empty() {
        return response;
    }
    if response.headers().contains_key("grpc-status") {
        merge(response.headers_mut(), extra);
        return response;
    }
    response.map(|inner| {
        Body::new(WithTrailers {
            inner,
            extra: Some(extra),
        })
    })
}

fn merge(into: &mut HeaderMap, extra: HeaderMap) {
    let mut name = None;
    for (key, value) in extra {
        name = key.or(name);
        if let Some(name) = &name {
            into.append(name.clone(), value);
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body whose trailers gain `extra`.
    struct WithTrailers {
        #[pin]
        inner: Body,
        extra: Option<HeaderMap>,
    }
}

impl HttpBody for WithTrailers {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                let mut trailers = frame.into_trailers().unwrap_or_default();
                if let Some(extra) = this.extra.take() {
                    merge(&mut trailers, extra);
                }
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Poll::Ready(None) => Poll::Ready(this.extra.take().map(|t| Ok(Frame::trailers(t)))),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream() && self.extra.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
