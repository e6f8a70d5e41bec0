//! Message compression as gRPC negotiates it: a request says its encoding in `grpc-encoding`
//! and what it can read back in `grpc-accept-encoding`; each message says in its prefix whether
//! it is compressed. calcmesh servers read `gzip`, `zstd` and `identity`, and answer in kind —
//! a compressed request gets a compressed response (in an encoding the client accepts), a plain
//! one a plain one, so small calls never pay for a compressor. Clients choose with
//! [`Compression`] (`--compression`).

use std::fmt;
use std::str::FromStr;

use tonic::codec::CompressionEncoding;

/// What a client compresses its requests with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// No compression (the default: calcmesh's messages are small).
    #[default]
    Identity,
    /// gzip (RFC 1952), which every gRPC implementation reads.
    Gzip,
    /// Zstandard (RFC 8878): faster and tighter than gzip, read by fewer implementations.
    Zstd,
}

/// When a server compresses its answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CompressAnswers {
    /// In the request's own encoding, and only when the request was compressed (the default:
    /// small calls never pay for a compressor).
    #[default]
    InKind,
    /// Whenever the client accepts an encoding the server sends, as gRPC allows and the
    /// interop cases expect (`response_compressed` on a plain request).
    WhenAccepted,
}

/// The encodings every calcmesh server reads, as `grpc-accept-encoding` lists them.
pub const ACCEPTED: &str = "gzip,zstd,identity";

impl Compression {
    /// tonic's encoding, `None` for identity.
    pub fn encoding(self) -> Option<CompressionEncoding> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some(CompressionEncoding::Gzip),
            Self::Zstd => Some(CompressionEncoding::Zstd),
        }
    }

    /// Whether a server reads `grpc-encoding: name`.
    pub fn is_accepted(name: &str) -> bool {
        name.parse::<Self>().is_ok()
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "identity" => Ok(Self::Identity),
            "gzip" => Ok(Self::Gzip),
            "zstd" => Ok(Self::Zstd),
            other => Err(format!(
                "unknown compression {other:?}: use gzip, zstd or identity"
            )),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Identity => "identity",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        })
    }
}

/// A generated tonic server (`XServer::new(service)`) that reads gzip and zstd requests and
/// can answer in them: the one place every calcmesh service gets its compression.
#[macro_export]
macro_rules! compressed_server {
    ($server:expr) => {
        $server
            .accept_compressed(::tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(::tonic::codec::CompressionEncoding::Zstd)
            .send_compressed(::tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(::tonic::codec::CompressionEncoding::Zstd)
    };
}

/// A generated tonic client (`XClient::new(channel)`) that reads gzip and zstd answers and
/// compresses its requests with `$compression` (a [`Compression`]).
#[macro_export]
macro_rules! compressed_client {
    ($client:expr, $compression:expr) => {{
        let client = $client
            .accept_compressed(::tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(::tonic::codec::CompressionEncoding::Zstd);
        match $crate::compression::Compression::encoding($compression) {
            Some(encoding) => client.send_compressed(encoding),
            None => client,
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_say_what_is_known() {
        for c in [Compression::Identity, Compression::Gzip, Compression::Zstd] {
            assert_eq!(c.to_string().parse::<Compression>(), Ok(c));
            assert!(ACCEPTED.split(',').any(|n| n == c.to_string()));
        }
        let err = "br".parse::<Compression>().unwrap_err();
        assert!(err.contains("gzip, zstd or identity"), "{err}");
    }
}
