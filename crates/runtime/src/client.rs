//! The one place that builds gRPC channels.
//!
//! A [`Target`] names where to call, in gRPC's name syntax; [`connect`] turns it into a tonic
//! [`Channel`] with calcmesh's client defaults (connect timeout, TCP_NODELAY, HTTP/2 keepalive).
//! Channels connect lazily and reconnect by themselves; every call multiplexes over one HTTP/2
//! connection per endpoint.
//!
//! The channel is a [`MeshChannel`]: a tonic [`Channel`] whose expired deadlines surface as
//! DEADLINE_EXCEEDED, as gRPC specifies (tonic alone reports CANCELLED "Timeout expired").

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;
use tonic::transport::channel::ResponseFuture;
use tonic::transport::{Channel, Endpoint};

/// The target forms accepted, for error messages and `--help`.
pub const TARGET_FORMS: &str = "host:port, http://host:port, ipv4:ADDR:PORT[,ADDR:PORT...], \
ipv6:[ADDR]:PORT[,[ADDR]:PORT...]";

/// Where a client sends its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One endpoint, `host:port` (the host may be a name, resolved when connecting).
    Endpoint(String),
    /// A fixed list of addresses (`ipv4:` / `ipv6:`); calls are spread across them.
    Static(Vec<SocketAddr>),
}

/// Why a target or channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The target text is not one of the accepted forms.
    #[error("invalid target {target:?}: {reason}; accepted forms: {TARGET_FORMS}")]
    InvalidTarget {
        /// The text given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(target: &str, reason: impl Into<String>) -> ClientError {
    ClientError::InvalidTarget {
        target: target.to_owned(),
        reason: reason.into(),
    }
}

fn parse_list<A: FromStr>(
    target: &str,
    list: &str,
    family: &str,
) -> Result<Vec<SocketAddr>, ClientError>
where
    SocketAddr: From<A>,
{
    let addrs = list
        .split(',')
        .map(|item| {
            item.trim()
                .parse::<A>()
                .map(SocketAddr::from)
                .map_err(|_| invalid(target, format!("{item:?} is not an {family} ADDR:PORT")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(addrs)
}

impl FromStr for Target {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(list) = s.strip_prefix("ipv4:") {
            return parse_list::<SocketAddrV4>(s, list, "IPv4").map(Target::Static);
        }
        if let Some(list) = s.strip_prefix("ipv6:") {
            return parse_list::<SocketAddrV6>(s, list, "IPv6").map(Target::Static);
        }
        if s.starts_with("https://") {
            return Err(invalid(s, "TLS targets are not supported yet"));
        }
        let authority = s.strip_prefix("http://").unwrap_or(s);
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains("://") || authority.contains('/') {
            return Err(invalid(s, "unknown scheme or a path after host:port"));
        }
        let parsed = http::uri::Authority::from_str(authority)
            .map_err(|err| invalid(s, format!("not a host:port ({err})")))?;
        if parsed.port_u16().is_none() {
            return Err(invalid(
                s,
                "missing port (the calculator's usual one is 50051)",
            ));
        }
        Ok(Target::Endpoint(authority.to_owned()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Endpoint(authority) => f.write_str(authority),
            Target::Static(addrs) => {
                let family = if addrs.first().is_some_and(SocketAddr::is_ipv6) {
                    "ipv6"
                } else {
                    "ipv4"
                };
                let list: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
                write!(f, "{family}:{}", list.join(","))
            }
        }
    }
}

/// Client timings. [`Default`] gives production defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How long to wait for a TCP connection. Default 5 s.
    pub connect_timeout: Duration,
    /// How often to PING an idle HTTP/2 connection. Default 60 s.
    pub keepalive_interval: Duration,
    /// How long to wait for the PING ack. Default 20 s.
    pub keepalive_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

fn endpoint(authority: &str, config: &ClientConfig) -> Result<Endpoint, ClientError> {
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|err| invalid(authority, err.to_string()))?;
    Ok(endpoint
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(config.keepalive_interval)
        .keep_alive_timeout(config.keepalive_timeout)
        .keep_alive_while_idle(true))
}

/// A channel to `target`. It connects on the first call and reconnects when needed, so this
/// never waits on the network; a call to an unreachable target fails with UNAVAILABLE.
///
/// # Errors
/// The target cannot be turned into an endpoint URI.
pub fn connect(target: &Target, config: &ClientConfig) -> Result<MeshChannel, ClientError> {
    let inner = match target {
        Target::Endpoint(authority) => endpoint(authority, config)?.connect_lazy(),
        Target::Static(addrs) => {
            let endpoints = addrs
                .iter()
                .map(|addr| endpoint(&addr.to_string(), config))
                .collect::<Result<Vec<_>, _>>()?;
            Channel::balance_list(endpoints.into_iter())
        }
    };
    Ok(MeshChannel { inner })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The channel [`connect`] builds: use it wherever a tonic client wants a channel
/// (`CalculatorClient::new(channel)`). Cheap to clone; clones share the connections.
#[derive(Debug, Clone)]
pub struct MeshChannel {
    inner: Channel,
}

/// tonic reports its own expired deadline as a `TimeoutExpired` error (which becomes CANCELLED);
/// gRPC says DEADLINE_EXCEEDED.
fn deadline_exceeded(err: tonic::transport::Error) -> BoxError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return Box::new(Status::deadline_exceeded(
                "deadline exceeded before the server answered",
            ));
        }
        source = e.source();
    }
    Box::new(err)
}

impl tower_service::Service<http::Request<Body>> for MeshChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = MeshResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::deadline::parse_timeout)
            .map(|left| Instant::now() + left);
        MeshResponseFuture {
            inner: self.inner.call(request),
            deadline,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`MeshChannel`].
    #[derive(Debug)]
    pub struct MeshResponseFuture {
        #[pin]
        inner: ResponseFuture,
        deadline: Option<Instant>,
    }
}

impl Future for MeshResponseFuture {
    type Output = Result<http::Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match std::task::ready!(this.inner.poll(cx)) {
            Ok(response) => response,
            Err(err) => return Poll::Ready(Err(deadline_exceeded(err))),
        };
        // A tonic server whose copy of our deadline fired first answers CANCELLED "Timeout
        // expired"; once our deadline has passed, that is DEADLINE_EXCEEDED.
        let cancelled = response
            .headers()
            .get("grpc-status")
            .is_some_and(|s| s == "1");
        if cancelled && this.deadline.is_some_and(|d| Instant::now() >= d) {
            let headers = response.headers_mut();
            headers.insert("grpc-status", http::HeaderValue::from_static("4"));
            headers.insert(
                "grpc-message",
                http::HeaderValue::from_static("deadline exceeded"),
            );
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(
            "localhost:50051".parse::<Target>().unwrap(),
            Target::Endpoint("localhost:50051".into())
        );
        assert_eq!(
            "http://127.0.0.1:9/".parse::<Target>().unwrap(),
            Target::Endpoint("127.0.0.1:9".into())
        );
        assert_eq!(
            "[::1]:50051".parse::<Target>().unwrap(),
            Target::Endpoint("[::1]:50051".into())
        );
        let list: Target = "ipv4:127.0.0.1:1,127.0.0.2:2".parse().unwrap();
        assert_eq!(list.to_string(), "ipv4:127.0.0.1:1,127.0.0.2:2");
        let list: Target = "ipv6:[::1]:1".parse().unwrap();
        assert_eq!(list.to_string(), "ipv6:[::1]:1");
    }

    #[test]
    fn rejected_forms_say_what_is_accepted() {
        for bad in [
            "localhost",
            "ftp://x:1",
            "ipv4:1.2.3.4",
            "ipv4:localhost:1",
            "x:1/path",
            "",
            "ipv6:::1:1",
        ] {
            let err = bad.parse::<Target>().unwrap_err().to_string();
            assert!(err.contains("accepted forms: host:port"), "{bad}: {err}");
        }
    }
}
