//! gRPC-Web (`--grpc-web`, off by default): browsers speak gRPC only as gRPC-Web — HTTP/1.1 or
//! HTTP/2, with the status in the body — so a page can call the services directly. tonic-web
//! translates each gRPC-Web call into a gRPC call before any other layer sees it (limits,
//! authorisation, metrics and logs all apply to it as to any call), and tower-http answers the
//! browser's CORS preflight for the origins allowed (`--grpc-web-allow-origin`).

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// gRPC-Web settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcWeb {
    /// Origins whose pages may call (`https://host:port`); `*` allows any. None: only pages
    /// from the server's own origin (which browsers do not preflight).
    pub allow_origins: Vec<String>,
}

/// The headers a gRPC-Web client sends, and those its page may read.
const REQUEST_HEADERS: [&str; 5] = [
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "traceparent",
];
const RESPONSE_HEADERS: [&str; 3] = [
    "grpc-status",
    "grpc-message",
    crate::server::ENDPOINT_HEADER,
];

/// The CORS layer for `config`'s origins.
pub(crate) fn cors(config: &GrpcWeb) -> CorsLayer {
    let origins = if config.allow_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = config
            .allow_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok());
        AllowOrigin::list(list)
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::POST])
        .allow_headers(REQUEST_HEADERS.map(HeaderName::from_static))
        .expose_headers(RESPONSE_HEADERS.map(HeaderName::from_static))
}
