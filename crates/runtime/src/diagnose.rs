//! What a failed connection means, in words a person can act on: the cause, and the flag or
//! action that fixes it. The client says it for the endpoint it dialled (TCP connect, TLS
//! handshake, the first bytes the server sent, a TLS alert after the handshake, a GOAWAY); the
//! server says its side of the same failure once, at info. One place for the wording, so every
//! client (CLI, library, the evaluator's channel, logs, `/api/mesh`, channelz) and the server
//! say the same.
//!
//! The flags named are the CLI's; the library's [`ClientTls`](crate::tls::ClientTls) and
//! [`ClientConfig`](crate::ClientConfig) fields of the same names do the same.

use std::error::Error;
use std::fmt;
use std::io;

use rustls::{AlertDescription, CertificateError};

use crate::error::BoxError;

/// An error whose message is the explanation; what it explains is its source.
#[derive(Debug)]
pub struct Explained {
    message: String,
    source: Option<BoxError>,
}

impl Explained {
    /// `message`, explaining `source`.
    pub(crate) fn new(message: String, source: Option<BoxError>) -> Self {
        Self { message, source }
    }

    /// The same as an I/O error (what a connection's reads and writes return), kind `kind`.
    pub(crate) fn io(kind: io::ErrorKind, message: String, source: Option<BoxError>) -> io::Error {
        io::Error::new(kind, Self::new(message, source))
    }
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Explained {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// The first `T` in `err`'s chain, looking inside I/O errors too (whose `source()` skips the
/// error they wrap).
pub(crate) fn find<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    crate::error::chain(err).find_map(|e| {
        e.downcast_ref::<T>().or_else(|| {
            let inner = e.downcast_ref::<io::Error>()?.get_ref()?;
            find::<T>(inner)
        })
    })
}

/// The explanation `err` carries, if any.
pub(crate) fn explanation(err: &(dyn Error + 'static)) -> Option<String> {
    find::<Explained>(err).map(ToString::to_string)
}

/// A connection failure explained: a short fixed reason (the `reason` label of
/// `calcmesh_client_endpoint_down`, the `reason` of `/api/mesh`) and the sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// What went wrong, in one of a few words: `refused`, `unresolved`, `unreachable`,
    /// `timeout`, `tls_required`, `not_tls`, `client_certificate_required`,
    /// `client_certificate_refused`, `server_certificate_untrusted`,
    /// `server_certificate_expired`, `server_name_mismatch`, `not_http2`, `closed`, `goaway`,
    /// `other`.
    pub reason: &'static str,
    /// What went wrong and what fixes it.
    pub message: String,
}

fn diagnosis(reason: &'static str, message: impl Into<String>) -> Diagnosis {
    Diagnosis {
        reason,
        message: message.into(),
    }
}

/// Why a connection could not be made: the TCP connect or, with `tls`, its handshake.
pub(crate) fn connect_failure(err: &io::Error, tls: bool) -> Diagnosis {
    use io::ErrorKind::{
        ConnectionRefused, ConnectionReset, HostUnreachable, NetworkUnreachable, TimedOut,
        UnexpectedEof,
    };
    if let Some(rustls) = find::<rustls::Error>(err) {
        return tls_failure(rustls);
    }
    match err.kind() {
        ConnectionRefused => diagnosis(
            "refused",
            "connection refused: nothing listens there (is the server running, on this port?)",
        ),
        HostUnreachable | NetworkUnreachable => diagnosis(
            "unreachable",
            "unreachable: no route to it (its host or network is down)",
        ),
        TimedOut => diagnosis(
            "timeout",
            "the host did not answer the connection (down, or behind a firewall)",
        ),
        UnexpectedEof | ConnectionReset if tls => diagnosis(
            "closed",
            "the server closed the connection during the TLS handshake: it may serve without TLS \
             (then leave out --ca), or refuse this client (its log says why)",
        ),
        _ if is_dns_failure(err) => diagnosis(
            "unresolved",
            "the host name does not resolve (DNS): check the host in --target",
        ),
        _ => diagnosis("other", format!("cannot connect: {err}")),
    }
}

/// A connection not made within the channel's connect timeout.
pub(crate) fn connect_timeout() -> Diagnosis {
    diagnosis(
        "timeout",
        "no connection within the connect timeout (--connect-timeout): a host down, or a \
         firewall dropping packets",
    )
}

/// getaddrinfo's failures reach Rust as untyped I/O errors; their text says what they are.
fn is_dns_failure(err: &io::Error) -> bool {
    let text = err.to_string();
    text.contains("failed to lookup address") || text.contains("Name or service not known")
}

/// A TLS failure as the client sees it, during the handshake or on the first read after it
/// (TLS 1.3 servers refuse a client certificate there, with an alert).
pub(crate) fn tls_failure(err: &rustls::Error) -> Diagnosis {
    match err {
        rustls::Error::InvalidCertificate(cert) => server_certificate(cert),
        rustls::Error::AlertReceived(alert) => alert_received(*alert),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => diagnosis(
            "not_tls",
            "the server answered the TLS handshake with something that is not TLS: it serves \
                 without TLS, so leave out --ca, --cert and --key",
        ),
        other => diagnosis("other", format!("TLS failed: {other}")),
    }
}

/// The server's certificate did not pass.
fn server_certificate(err: &CertificateError) -> Diagnosis {
    match err {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => diagnosis(
            "server_certificate_untrusted",
            "the server's certificate is not signed by the CA this client trusts (--ca): pass \
             the CA that signed it",
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => diagnosis(
            "server_certificate_expired",
            "the server's certificate has expired: the server needs a new one (calcmesh certs)",
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => diagnosis(
            "server_certificate_expired",
            "the server's certificate is not valid yet: check the clocks, or the certificate's \
             dates",
        ),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => diagnosis(
            "server_name_mismatch",
            format!(
                "the server's certificate names {}, not {}: connect by one of those names, or \
                 pass --tls-server-name NAME",
                dialable(presented),
                expected.to_str()
            ),
        ),
        CertificateError::NotValidForName => diagnosis(
            "server_name_mismatch",
            "the server's certificate does not name the host dialled: connect by a name it has, \
             or pass --tls-server-name NAME",
        ),
        other => diagnosis(
            "server_certificate_untrusted",
            format!("the server's certificate was refused: {other:?}"),
        ),
    }
}

/// The names a certificate presents that a client can dial (rustls gives them as
/// `DnsName("host")`, `IpAddress(addr)`, `UniformResourceIdentifier("spiffe://…")`).
fn dialable(presented: &[String]) -> String {
    let names: Vec<&str> = presented
        .iter()
        .filter(|n| n.starts_with("DnsName(") || n.starts_with("IpAddress("))
        .filter_map(|n| n.split_once('(')?.1.strip_suffix(')'))
        .map(|n| n.trim_matches('"'))
        .collect();
    if names.is_empty() {
        "no host name or address".to_owned()
    } else {
        names.join(", ")
    }
}

/// The server ended TLS with an alert: it refused this client.
fn alert_received(alert: AlertDescription) -> Diagnosis {
    match alert {
        AlertDescription::CertificateRequired => diagnosis(
            "client_certificate_required",
            "the server requires a client certificate and none was sent: pass --cert FILE --key \
             FILE (mutual TLS)",
        ),
        AlertDescription::UnknownCA
        | AlertDescription::BadCertificate
        | AlertDescription::DecryptError => diagnosis(
            "client_certificate_refused",
            format!(
                "the server refused this client's certificate (TLS alert {alert:?}): it is not \
                 signed by a CA the server trusts (the server's --client-ca)"
            ),
        ),
        AlertDescription::CertificateExpired => diagnosis(
            "client_certificate_refused",
            "the server refused this client's certificate: it has expired (make a new one: \
             calcmesh certs)",
        ),
        AlertDescription::NoApplicationProtocol => diagnosis(
            "not_http2",
            "the server does not offer HTTP/2 over TLS (ALPN h2), which gRPC needs: not a gRPC \
             server?",
        ),
        other => diagnosis(
            "other",
            format!("the server ended the TLS handshake with the alert {other:?}"),
        ),
    }
}

/// The frame type of SETTINGS, an HTTP/2 server's first frame: the fourth byte it sends.
const SETTINGS: u8 = 4;

/// What the first bytes a server sent say, when they are not HTTP/2 (whose server starts with a
/// SETTINGS frame: its fourth byte is the frame type, 4). `head` holds at least 4 bytes.
pub(crate) fn first_bytes(head: &[u8], tls: bool) -> Option<Diagnosis> {
    if head.get(3) == Some(&SETTINGS) {
        return None;
    }
    Some(match head {
        // A TLS record (alert 21, handshake 22) of TLS 1.x: a TLS server read our preface.
        [21 | 22, 3, ..] if !tls => needs_tls(),
        [b'H', b'T', b'T', b'P', ..] => diagnosis(
            "not_http2",
            "the server is an HTTP/1 server, not gRPC (which needs HTTP/2): check the port",
        ),
        _ => diagnosis(
            "not_http2",
            format!(
                "the server does not speak HTTP/2, so it is no gRPC server: check the port (it \
                 sent {:?})",
                String::from_utf8_lossy(head)
            ),
        ),
    })
}

/// A server that requires TLS, called without.
fn needs_tls() -> Diagnosis {
    diagnosis(
        "tls_required",
        "the server requires TLS, and this client connected without it: pass --ca FILE (and \
         --cert and --key where the server asks for a client certificate)",
    )
}

/// What a server with TLS answers a client that sent the HTTP/2 preface without it, in its
/// GOAWAY INADEQUATE_SECURITY (any client shows it: grpc-go prints the debug data).
pub const TLS_REQUIRED: &str = "this server requires TLS";

/// A server that closed the connection before sending anything.
pub(crate) fn closed_at_once(tls: bool) -> Diagnosis {
    let hint = if tls {
        "its log says why"
    } else {
        "if it serves TLS, pass --ca FILE"
    };
    diagnosis(
        "closed",
        format!(
            "the server closed the connection before the HTTP/2 handshake: not a gRPC server? \
             ({hint})"
        ),
    )
}

/// A connection that failed before HTTP/2 began, for a reason no other function names.
pub(crate) fn failed_early(err: &io::Error) -> Diagnosis {
    match find::<rustls::Error>(err) {
        Some(tls) => tls_failure(tls),
        None => diagnosis(
            "closed",
            format!("the connection failed before the HTTP/2 handshake: {err}"),
        ),
    }
}

/// A server that said GOAWAY: why, in its words.
pub(crate) fn goaway(code: u32, debug: &[u8]) -> Diagnosis {
    if code == crate::h2::INADEQUATE_SECURITY {
        return needs_tls();
    }
    let name = match code {
        1 => "PROTOCOL_ERROR",
        2 => "INTERNAL_ERROR",
        11 => "ENHANCE_YOUR_CALM",
        _ => "an error",
    };
    let debug = String::from_utf8_lossy(debug);
    let debug = if debug.is_empty() {
        String::new()
    } else {
        format!(": {debug:?}")
    };
    diagnosis(
        "goaway",
        format!("the server closed the connection with GOAWAY {name}{debug}"),
    )
}

/// A response that is not gRPC — an HTTP status other than 200, or another content type: a
/// proxy's error page, a web server on the wrong port — as the gRPC spec maps it
/// (`doc/http-grpc-status-mapping.md`): the code for its HTTP status, and what came back.
pub(crate) fn http_answer(status: http::StatusCode, content_type: &str) -> (tonic::Code, String) {
    let code = http_code(status);
    let content_type = if content_type.is_empty() {
        "no content type"
    } else {
        content_type
    };
    let message = format!(
        "the server answered HTTP {status} ({content_type}), not gRPC: is a proxy or a web server \
         at this address, or does the server not serve this method?"
    );
    (code, message)
}

/// The code the gRPC spec gives an HTTP status that is not gRPC's.
fn http_code(status: http::StatusCode) -> tonic::Code {
    use tonic::Code;
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// A gRPC-Web call answered as gRPC (content type `application/grpc`): a server that does not
/// serve gRPC-Web, refusing the request's content type (a calcmesh server without
/// `--grpc-web` answers HTTP 415).
pub(crate) fn not_grpc_web(status: http::StatusCode) -> (tonic::Code, String) {
    let code = if status.is_success() {
        tonic::Code::Unknown
    } else {
        http_code(status)
    };
    let message = format!(
        "the server answered a gRPC-Web call with HTTP {status} as gRPC, not gRPC-Web: it does \
         not serve gRPC-Web; call it with --protocol grpc, or serve gRPC-Web there (calcmesh \
         serve … --grpc-web)"
    );
    (code, message)
}

/// What the first bytes a server sent say, for a client speaking HTTP/1.1 (gRPC-Web): `None`
/// for an HTTP/1 answer. `head` holds at least 4 bytes.
pub(crate) fn first_bytes_http1(head: &[u8], tls: bool) -> Option<Diagnosis> {
    Some(match head {
        [b'H', b'T', b'T', b'P', ..] => return None,
        [21 | 22, 3, ..] if !tls => needs_tls(),
        [_, _, _, SETTINGS, ..] => diagnosis(
            "not_http1",
            "the server speaks HTTP/2 only, not the HTTP/1.1 of --protocol grpc-web-http1: call \
             it with --protocol grpc-web or grpc (a calcmesh server takes HTTP/1.1 with \
             --grpc-web)",
        ),
        _ => diagnosis(
            "not_http1",
            format!(
                "the server does not speak HTTP/1.1 (it sent {:?}): check the port",
                String::from_utf8_lossy(head)
            ),
        ),
    })
}

/// A plaintext client on a TLS port, for the server's log.
pub(crate) fn plaintext_client() -> String {
    "a client without TLS (it sent the HTTP/2 preface in plaintext): answered GOAWAY \
     INADEQUATE_SECURITY; the client needs --ca"
        .to_owned()
}

/// A TLS client on a port without TLS, for the server's log.
pub(crate) fn tls_client() -> String {
    "a TLS client on a port without TLS (it sent a TLS ClientHello): the client should leave out \
     --ca, or this server serve TLS (--tls-cert, --tls-key)"
        .to_owned()
}

/// The server's side of a failed TLS handshake, for its log.
pub(crate) fn server_handshake(err: &io::Error) -> String {
    let Some(rustls) = find::<rustls::Error>(err) else {
        return match err.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
                "the client closed the connection during the TLS handshake (it may not trust \
                 this server's certificate: its error says)"
                    .to_owned()
            }
            _ => format!("TLS handshake failed: {err}"),
        };
    };
    match rustls {
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "a client without TLS (it sent no TLS handshake): it needs --ca".to_owned()
        }
        rustls::Error::NoCertificatesPresented => {
            "the client sent no certificate, and this server requires one (--client-ca): it \
             needs --cert and --key"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => "the client's certificate is not signed by a CA in --client-ca".to_owned(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the client's certificate has expired".to_owned(),
        rustls::Error::AlertReceived(AlertDescription::CertificateExpired) => {
            "the client refused this server's certificate: it has expired (--tls-cert)".to_owned()
        }
        rustls::Error::AlertReceived(alert) => format!(
            "the client refused this server's certificate (TLS alert {alert:?}): it does not \
             trust the CA that signed it, or the certificate does not name the host it dialled"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_tls_http1_and_http2_apart() {
        let settings = [0, 0, 6, 4, 0, 0, 0, 0, 0];
        assert_eq!(first_bytes(&settings, false), None);
        let alert = [21, 3, 3, 0, 2, 2, 50];
        assert_eq!(first_bytes(&alert, false).unwrap().reason, "tls_required");
        let http1 = b"HTTP/1.1 400 Bad Request\r\n";
        assert!(
            first_bytes(http1, false)
                .unwrap()
                .message
                .contains("HTTP/1 server")
        );
        assert!(
            first_bytes(b"SSH-2.0", false)
                .unwrap()
                .message
                .contains("SSH-")
        );
    }

    #[test]
    fn only_names_a_client_can_dial_are_suggested() {
        let presented = [
            r#"UniformResourceIdentifier("spiffe://calcmesh/calculator")"#.to_owned(),
            r#"DnsName("localhost")"#.to_owned(),
            "IpAddress(127.0.0.1)".to_owned(),
        ];
        assert_eq!(dialable(&presented), "localhost, 127.0.0.1");
    }

    #[test]
    fn an_explanation_is_found_inside_io_errors() {
        let err = Explained::io(io::ErrorKind::InvalidData, "why".into(), None);
        let outer = Explained::new("outer".into(), Some(Box::new(err)));
        assert_eq!(explanation(&outer).as_deref(), Some("outer"));
        let wrapped: BoxError = Box::new(io::Error::other(Explained::new("inner".into(), None)));
        assert_eq!(explanation(wrapped.as_ref()).as_deref(), Some("inner"));
    }
}
