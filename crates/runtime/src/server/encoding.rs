//! What a server does with a request's compression headers before any service sees it: an
//! encoding it cannot read is UNIMPLEMENTED, naming the ones it can (and saying them in
//! `grpc-accept-encoding`, as the spec asks); a plain request has its `grpc-accept-encoding`
//! removed so that the answer is plain too (tonic would otherwise compress every response to a
//! client that merely accepts gzip, as grpcio's clients all do), and a compressed one is
//! answered in its own encoding when the client reads it.

use http::HeaderValue;
use tonic::body::Body;

use crate::compression::{ACCEPTED, CompressAnswers, Compression};
use crate::headers::{GRPC_ACCEPT_ENCODING, GRPC_ENCODING, find};

/// `Some(response)` to send instead of serving `request`; `None` to serve it (its headers
/// adjusted).
pub(crate) fn admit(
    request: &mut http::Request<Body>,
    answers: CompressAnswers,
) -> Option<http::Response<Body>> {
    let encoding = find(request.headers(), &GRPC_ENCODING)
        .map(|v| v.to_str().unwrap_or("(not text)").to_owned());
    match encoding.as_deref() {
        _ if answers == CompressAnswers::WhenAccepted => known(encoding.as_deref()),
        None | Some("identity") => {
            if find(request.headers(), &GRPC_ACCEPT_ENCODING).is_some() {
                request.headers_mut().remove(&GRPC_ACCEPT_ENCODING);
            }
            None
        }
        Some(name) if Compression::is_accepted(name) => {
            answer_in(request, name);
            None
        }
        Some(name) => refuse(name),
    }
}

/// `None` when a server reads `encoding`, the refusal otherwise.
fn known(encoding: Option<&str>) -> Option<http::Response<Body>> {
    match encoding {
        Some(name) if !Compression::is_accepted(name) => refuse(name),
        _ => None,
    }
}

/// UNIMPLEMENTED for an encoding the server cannot read, naming those it can.
fn refuse(name: &str) -> Option<http::Response<Body>> {
    let status = tonic::Status::unimplemented(format!(
        "grpc-encoding {name:?} is not supported: this server reads {}",
        ACCEPTED.replace(',', ", ")
    ));
    let mut response = status.into_http::<Body>();
    response.headers_mut().insert(
        GRPC_ACCEPT_ENCODING.clone(),
        HeaderValue::from_static(ACCEPTED),
    );
    Some(response)
}

/// Narrows a compressed request's `grpc-accept-encoding` to its own encoding when the client
/// reads that one, so the answer comes back the way the request came (tonic would pick the
/// first encoding of the client's list that it knows).
fn answer_in(request: &mut http::Request<Body>, name: &str) {
    let accepts = find(request.headers(), &GRPC_ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|list| list.split(',').any(|e| e.trim() == name));
    if accepts && let Ok(value) = HeaderValue::from_str(name) {
        request
            .headers_mut()
            .insert(GRPC_ACCEPT_ENCODING.clone(), value);
    }
}

/// Whether a call `admit`ted is uncompressed both ways: no `grpc-encoding` but `identity`, and
/// no `grpc-accept-encoding` (which `admit` leaves only where the answer may be compressed). One
/// pass over the call's few headers, not a lookup per name.
pub(crate) fn is_plain(headers: &http::HeaderMap) -> bool {
    headers.iter().all(|(name, value)| {
        name != GRPC_ACCEPT_ENCODING && (name != GRPC_ENCODING || value == "identity")
    })
}
