//! gRPC-Web as a client speaks it (grpc/grpc's PROTOCOL-WEB.md): a gRPC request with the
//! `application/grpc-web` content type, and an answer whose trailers come as the body's last
//! frame (its flag byte's high bit set, an HTTP/1 header block inside) turned back into the
//! trailers the rest of the channel reads.
//!
//! Written here rather than taken from tonic-web's client layer, which the Connect conformance
//! suite fails on: it keeps one value of a repeated trailer, rejects a compressed trailers frame
//! (flag 0x81, as connect-go sends with compression), and loses a status sent in the headers of
//! an answer with an empty chunked body.

use std::io::Read as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

/// The most a trailers frame may hold: as the header-list limits of HTTP/2 servers.
const MAX_TRAILERS: usize = 64 * 1024;

/// `request`, a gRPC one, as gRPC-Web.
pub(crate) fn request(mut request: http::Request<Body>, http1: bool) -> http::Request<Body> {
    let headers = request.headers_mut();
    let content_type = subtype(headers, GRPC).map(|sub| format!("{GRPC_WEB}{sub}"));
    if let Some(value) = content_type.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(http::header::CONTENT_TYPE, value);
    }
    headers.insert("x-grpc-web", HeaderValue::from_static("1"));
    // `te: trailers` says a gRPC client reads HTTP trailers; gRPC-Web's come in the body.
    headers.remove(http::header::TE);
    if http1 {
        *request.version_mut() = http::Version::HTTP_11;
    }
    request
}

/// A gRPC-Web answer as gRPC: its content type, and a body whose trailers frame becomes
/// trailers. Headers with a status stand for trailers when the body brings none.
pub(crate) fn response<B>(response: http::Response<B>) -> http::Response<Body>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::error::BoxError>,
{
    // Answered as gRPC, or refused as a gRPC server refuses what is not gRPC (HTTP 415 with a
    // `grpc-status`, in text for a person, as calcmesh's own): the server did not take the call
    // as gRPC-Web.
    let refused_by_grpc = response.status() == http::StatusCode::UNSUPPORTED_MEDIA_TYPE
        && response.headers().contains_key("grpc-status")
        && subtype(response.headers(), GRPC_WEB).is_none();
    if refused_by_grpc || subtype(response.headers(), GRPC).is_some() {
        let (code, message) = crate::diagnose::not_grpc_web(response.status());
        return Status::new(code, message).into_http();
    }
    let (mut parts, body) = response.into_parts();
    let content_type = subtype(&parts.headers, GRPC_WEB)
        .and_then(|sub| HeaderValue::from_str(&format!("{GRPC}{sub}")).ok());
    if let Some(value) = content_type {
        parts.headers.insert(http::header::CONTENT_TYPE, value);
    }
    // A trailers-only answer: its one header block is also its trailers (custom ones too).
    let in_headers = parts
        .headers
        .contains_key("grpc-status")
        .then(|| parts.headers.clone());
    let encoding = parts
        .headers
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = WebAnswer {
        inner: Body::new(body),
        buffer: BytesMut::new(),
        remaining: 0,
        trailers: None,
        in_headers,
        encoding,
        seen_data: false,
        done: false,
    };
    http::Response::from_parts(parts, Body::new(body))
}

const GRPC: &str = "application/grpc";
const GRPC_WEB: &str = "application/grpc-web";

/// The codec part of `headers`' content type when it is `base` or `base+codec` (`""` or
/// `"+proto"`); `None` for any other content type (`application/grpc-web` is not
/// `application/grpc` with something after it).
fn subtype<'a>(headers: &'a HeaderMap, base: &str) -> Option<&'a str> {
    headers
        .get(http::header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .strip_prefix(base)
        .filter(|sub| sub.is_empty() || sub.starts_with('+'))
}

pin_project_lite::pin_project! {
    /// A gRPC-Web response body read as a gRPC one: messages pass as they arrive, the trailers
    /// frame is held until it is whole and then given as trailers.
    struct WebAnswer {
        #[pin]
        inner: Body,
        // Bytes of a frame prefix or of a trailers frame, not yet whole.
        buffer: BytesMut,
        // Bytes of the current message still to pass through.
        remaining: usize,
        trailers: Option<HeaderMap>,
        in_headers: Option<HeaderMap>,
        encoding: Option<String>,
        seen_data: bool,
        done: bool,
    }
}

impl WebAnswer {
    /// Takes what `data` holds: message bytes to pass on (returned), prefixes and trailers
    /// frames kept until whole.
    fn take(self: Pin<&mut Self>, mut data: Bytes) -> Result<BytesMut, Status> {
        let this = self.project();
        let mut out = BytesMut::new();
        while data.has_remaining() {
            if *this.remaining > 0 {
                let n = (*this.remaining).min(data.len());
                out.extend_from_slice(&data.split_to(n));
                *this.remaining -= n;
                continue;
            }
            if this.trailers.is_some() {
                return Err(Status::internal(
                    "the server sent data after the gRPC-Web trailers frame",
                ));
            }
            let want = frame_len(this.buffer).unwrap_or(5);
            let n = (want - this.buffer.len()).min(data.len());
            this.buffer.extend_from_slice(&data.split_to(n));
            let Some(len) = frame_len(this.buffer) else {
                continue;
            };
            if this.buffer[0] & 0x80 == 0 {
                // A message: its prefix passes on, then its bytes as they come.
                *this.remaining = len - 5;
                out.extend_from_slice(&this.buffer.split());
            } else if len > MAX_TRAILERS + 5 {
                return Err(Status::internal(format!(
                    "the server's gRPC-Web trailers frame is {len} bytes, over the {MAX_TRAILERS} this client reads"
                )));
            } else if this.buffer.len() == len {
                let frame = this.buffer.split().freeze();
                *this.trailers = Some(trailers(&frame, this.encoding.as_deref())?);
            }
        }
        Ok(out)
    }
}

/// The whole length of the frame whose prefix `buffer` starts with, once it has one.
fn frame_len(buffer: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = buffer.get(1..5)?.try_into().ok()?;
    Some(5 + u32::from_be_bytes(prefix) as usize)
}

/// The header block of a trailers frame (`frame`, its prefix first): `name: value` lines, each
/// name lower-cased, repeated names kept. Flag 0x01 means compressed with the answer's encoding.
fn trailers(frame: &[u8], encoding: Option<&str>) -> Result<HeaderMap, Status> {
    let malformed = |why: &str| Status::internal(format!("malformed gRPC-Web trailers: {why}"));
    let block = if frame[0] & 1 == 1 {
        inflate(&frame[5..], encoding).map_err(|e| malformed(&e))?
    } else {
        frame[5..].to_vec()
    };
    let mut map = HeaderMap::new();
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| malformed("a line without ':'"))?;
        let name = HeaderName::from_bytes(&line[..colon].to_ascii_lowercase())
            .map_err(|_| malformed("a name that is not a header name"))?;
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii())
            .map_err(|_| malformed("a value that is not a header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// A compressed trailers block, decompressed with the answer's `grpc-encoding`.
fn inflate(bytes: &[u8], encoding: Option<&str>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let limited = |reader: &mut dyn std::io::Read, out: &mut Vec<u8>| {
        reader
            .take(MAX_TRAILERS as u64 + 1)
            .read_to_end(out)
            .map_err(|e| e.to_string())
    };
    match encoding {
        Some("gzip") => limited(&mut flate2::read::GzDecoder::new(bytes), &mut out)?,
        Some("zstd") => {
            let mut reader = zstd::stream::read::Decoder::new(bytes).map_err(|e| e.to_string())?;
            limited(&mut reader, &mut out)?
        }
        other => {
            return Err(format!(
                "compressed, but with no encoding this client reads ({other:?})"
            ));
        }
    };
    if out.len() > MAX_TRAILERS {
        return Err(format!("over {MAX_TRAILERS} bytes once decompressed"));
    }
    Ok(out)
}

impl HttpBody for WebAnswer {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            let this = self.as_mut().project();
            match ready!(this.inner.poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        *this.seen_data |= !data.is_empty();
                        match self.as_mut().take(data) {
                            Ok(out) if out.is_empty() => {}
                            Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out.freeze())))),
                            Err(status) => {
                                self.done = true;
                                return Poll::Ready(Some(Err(status)));
                            }
                        }
                    }
                    // HTTP trailers (gRPC-Web over HTTP/2 may use them too): kept with the rest.
                    Err(frame) => {
                        if let Ok(more) = frame.into_trailers() {
                            this.trailers
                                .get_or_insert_with(HeaderMap::new)
                                .extend(more);
                        }
                    }
                },
                Some(Err(status)) => return Poll::Ready(Some(Err(status))),
                None => {
                    *this.done = true;
                    if !this.buffer.is_empty() {
                        return Poll::Ready(Some(Err(Status::internal(
                            "the server's gRPC-Web answer ended inside a frame",
                        ))));
                    }
                    let trailers = match this.trailers.take() {
                        Some(t) => Some(t),
                        None if !*this.seen_data => this.in_headers.take(),
                        None => None,
                    };
                    return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    /// A gRPC-Web answer with `headers` and `body`, read as gRPC: its data and its trailers.
    async fn read(headers: &[(&str, &str)], body: Vec<u8>) -> Result<(Vec<u8>, HeaderMap), Status> {
        let mut answer = http::Response::builder();
        for (name, value) in headers {
            answer = answer.header(*name, *value);
        }
        let answer = response(
            answer
                .body(http_body_util::Full::new(Bytes::from(body)))
                .unwrap(),
        );
        let collected = answer.into_body().collect().await?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        Ok((collected.to_bytes().to_vec(), trailers))
    }

    fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flags];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    const WEB: (&str, &str) = ("content-type", "application/grpc-web+proto");

    #[tokio::test]
    async fn messages_pass_and_the_trailers_frame_becomes_trailers_with_every_value() {
        let mut body = frame(0, b"hello");
        body.extend(frame(
            0x80,
            b"Grpc-Status: 0\r\nx-Custom: a\r\nx-custom: b\r\n",
        ));
        let (data, trailers) = read(&[WEB], body).await.unwrap();
        assert_eq!(data, frame(0, b"hello"));
        assert_eq!(trailers["grpc-status"], "0");
        let custom: Vec<_> = trailers.get_all("x-custom").iter().collect();
        assert_eq!(custom, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_compressed_trailers_frame_is_read_with_the_answers_encoding() {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gzip, b"grpc-status: 9\r\ngrpc-message: no\r\n").unwrap();
        let body = frame(0x81, &gzip.finish().unwrap());
        let (_, trailers) = read(&[WEB, ("grpc-encoding", "gzip")], body).await.unwrap();
        assert_eq!(trailers["grpc-status"], "9");
        assert_eq!(trailers["grpc-message"], "no");
    }

    #[tokio::test]
    async fn a_trailers_only_answer_keeps_its_custom_metadata_as_trailers() {
        let headers = [WEB, ("grpc-status", "5"), ("x-why", "gone")];
        let (data, trailers) = read(&headers, Vec::new()).await.unwrap();
        assert!(data.is_empty());
        assert_eq!(trailers["grpc-status"], "5");
        assert_eq!(trailers["x-why"], "gone");
    }

    #[tokio::test]
    async fn data_after_the_trailers_or_an_unfinished_frame_is_internal() {
        let mut body = frame(0x80, b"grpc-status: 0\r\n");
        body.extend(frame(0, b"late"));
        let late = read(&[WEB], body).await.unwrap_err();
        assert_eq!(late.code(), tonic::Code::Internal);
        assert!(
            late.message().contains("after the gRPC-Web trailers"),
            "{late:?}"
        );
        let cut = frame(0x80, b"grpc-status: 0\r\n")[..8].to_vec();
        let cut = read(&[WEB], cut).await.unwrap_err();
        assert!(cut.message().contains("ended inside a frame"), "{cut:?}");
    }

    #[tokio::test]
    async fn an_answer_in_grpc_not_grpc_web_says_the_server_does_not_serve_it() {
        let answer = http::Response::builder()
            .status(415)
            .header("content-type", "application/grpc")
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let answer = response(answer);
        let status = tonic::Status::from_header_map(answer.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert!(status.message().contains("--protocol grpc"), "{status:?}");
    }

    #[tokio::test]
    async fn a_grpc_server_s_refusal_in_text_says_the_server_does_not_serve_it() {
        let answer = http::Response::builder()
            .status(415)
            .header("content-type", "text/plain; charset=utf-8")
            .header("grpc-status", "3")
            .body(http_body_util::Full::new(Bytes::from(
                "not a gRPC request\n",
            )))
            .unwrap();
        let status = tonic::Status::from_header_map(response(answer).headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert!(status.message().contains("--protocol grpc"), "{status:?}");
    }
}
