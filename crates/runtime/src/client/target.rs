//! The target grammar: where a client sends its calls, in gRPC's name syntax.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

/// The target forms accepted, for error messages and `--help`.
pub const TARGET_FORMS: &str = "host:port, http://host:port, ipv4:ADDR:PORT[,ADDR:PORT...], \
ipv6:[ADDR]:PORT[,[ADDR]:PORT...], dns:///NAME:PORT, dns://DNS_SERVER:PORT/NAME:PORT, \
etcd://HOST:PORT[,HOST:PORT...]/SERVICE";

/// Where a client sends its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One endpoint, `host:port` (a host name is resolved when connecting).
    Endpoint(String),
    /// A fixed list of addresses (`ipv4:` / `ipv6:`).
    Static(Vec<SocketAddr>),
    /// Every A/AAAA record of `host`, re-resolved (`dns:///host:port`).
    Dns {
        /// The DNS server to ask (`dns://SERVER:PORT/…`); `None` for the system's.
        server: Option<SocketAddr>,
        /// The name.
        host: String,
        /// The port.
        port: u16,
    },
    /// Endpoints registered in etcd under `SERVICE/` (`etcd://HOST:PORT[,…]/SERVICE`).
    Etcd {
        /// The etcd cluster's client endpoints, `host:port`.
        endpoints: Vec<String>,
        /// The service name: the key prefix.
        service: String,
    },
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
    /// The target needs a feature this build does not have.
    #[error("target {target:?} needs etcd support: build calcmesh with `--features etcd`")]
    Unsupported {
        /// The target.
        target: String,
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
    list.split(',')
        .map(|item| {
            item.trim()
                .parse::<A>()
                .map(SocketAddr::from)
                .map_err(|_| invalid(target, format!("{item:?} is not an {family} ADDR:PORT")))
        })
        .collect()
}

/// Parses `host:port`, requiring the port.
fn host_port<'a>(target: &str, authority: &'a str) -> Result<(&'a str, u16), ClientError> {
    let parsed = http::uri::Authority::from_str(authority)
        .map_err(|err| invalid(target, format!("{authority:?} is not a host:port ({err})")))?;
    let port = parsed.port_u16().ok_or_else(|| {
        invalid(
            target,
            format!("{authority:?} has no port (the calculator's usual one is 50051)"),
        )
    })?;
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
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
        if let Some(rest) = s.strip_prefix("dns://") {
            let (server, name) = rest
                .split_once('/')
                .ok_or_else(|| invalid(s, "expected dns:///NAME:PORT"))?;
            let server =
                match server {
                    "" => None,
                    server => Some(server.parse::<SocketAddr>().map_err(|_| {
                        invalid(s, format!("DNS server {server:?} is not an IP:PORT"))
                    })?),
                };
            let (host, port) = host_port(s, name)?;
            return Ok(Target::Dns {
                server,
                host: host.to_owned(),
                port,
            });
        }
        if let Some(rest) = s.strip_prefix("etcd://") {
            let (hosts, service) = rest
                .split_once('/')
                .ok_or_else(|| invalid(s, "expected etcd://HOST:PORT/SERVICE"))?;
            if service.is_empty() || service.contains('/') {
                return Err(invalid(
                    s,
                    "the service name after the '/' must be one non-empty word",
                ));
            }
            let endpoints = hosts
                .split(',')
                .map(|h| host_port(s, h).map(|_| h.to_owned()))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Target::Etcd {
                endpoints,
                service: service.to_owned(),
            });
        }
        // TLS is a property of the client (ClientConfig::tls), so https:// reads like http://.
        let authority = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .unwrap_or(s);
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains("://") || authority.contains('/') {
            return Err(invalid(s, "unknown scheme or a path after host:port"));
        }
        host_port(s, authority)?;
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
            Target::Dns { server, host, port } => {
                let server = server.map(|s| s.to_string()).unwrap_or_default();
                if host.contains(':') {
                    write!(f, "dns://{server}/[{host}]:{port}")
                } else {
                    write!(f, "dns://{server}/{host}:{port}")
                }
            }
            Target::Etcd { endpoints, service } => {
                write!(f, "etcd://{}/{service}", endpoints.join(","))
            }
        }
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
