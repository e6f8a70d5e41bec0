//! A client's TLS: the handshake a channel's connections make, and the same settings for
//! clients that bring their own transport (etcd's).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{TlsError, certs, key, provider, read};

/// A client's TLS: whom to trust and, for mutual TLS, who we are. Its `Debug` output leaves
/// the key out.
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
    connector: TlsConnector,
    /// Our certificate (DER), for channelz; empty without one.
    local_certificate: Vec<u8>,
    /// The protocol the server must agree to (ALPN): `h2`, or `http/1.1` for gRPC-Web.
    alpn: &'static [u8],
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &format_args!("{} bytes of PEM", self.ca_pem.len()))
            .field("client_certificate", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    /// Reads the CA and, if given, the client certificate and key.
    ///
    /// # Errors
    /// A file is missing or does not hold what it should.
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs(ca)? {
            roots
                .add(cert)
                .map_err(|e| TlsError::Rustls(format!("{}: {e}", ca.display())))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_root_certificates(roots);
        let (mut config, identity, local_certificate) = match identity {
            Some((cert, k)) => {
                let chain = certs(cert)?;
                let local = chain.first().map(|c| c.to_vec()).unwrap_or_default();
                let config = builder.with_client_auth_cert(chain, key(k)?).map_err(|e| {
                    TlsError::Rustls(format!("{} and {}: {e}", cert.display(), k.display()))
                })?;
                (config, Some((read(cert)?, read(k)?)), local)
            }
            None => (builder.with_no_client_auth(), None, Vec::new()),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            ca_pem: read(ca)?,
            identity,
            server_name: None,
            connector: TlsConnector::from(Arc::new(config)),
            local_certificate,
            alpn: b"h2",
        })
    }

    /// The same, offering and requiring HTTP/1.1 (ALPN `http/1.1`): for gRPC-Web over HTTP/1.1.
    pub(crate) fn for_http1(mut self) -> Self {
        let mut config = rustls::ClientConfig::clone(self.connector.config());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        self.connector = TlsConnector::from(Arc::new(config));
        self.alpn = b"http/1.1";
        self
    }

    /// When our certificate stops being valid, in ms since the Unix epoch; `None` without one.
    pub fn certificate_expires_ms(&self) -> Option<i64> {
        super::certs::expires_ms(&self.local_certificate)
    }

    /// Our certificate (DER), empty without one.
    pub(crate) fn local_certificate(&self) -> &[u8] {
        &self.local_certificate
    }

    /// Checks every server's certificate against `name` instead of the host dialled: for
    /// endpoints found by address (a `dns:///` headless Service gives pod IPs) whose
    /// certificates name the service.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The handshake over `tcp` to `host` (a name or an address; the certificate must name it,
    /// or the name given to [`with_server_name`](Self::with_server_name)). The server must agree
    /// to HTTP/2, as gRPC over TLS requires (or to HTTP/1.1, made [`for_http1`](Self::for_http1)).
    pub(crate) async fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.to_owned()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{name:?} is not a name or address a certificate can be checked against"),
            )
        })?;
        let stream = self.connector.connect(name, tcp).await?;
        if stream.get_ref().1.alpn_protocol() != Some(self.alpn) {
            return Err(std::io::Error::other(if self.alpn == b"h2" {
                "the server did not agree to HTTP/2 over TLS (ALPN h2), which gRPC needs"
            } else {
                "the server did not agree to HTTP/1.1 over TLS (ALPN http/1.1), which gRPC-Web over HTTP/1.1 needs"
            }));
        }
        Ok(stream)
    }

    /// The same settings for tonic's own TLS (etcd's client).
    #[cfg(feature = "etcd")]
    pub(crate) fn tonic(&self) -> tonic::transport::ClientTlsConfig {
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem));
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        match &self.identity {
            Some((cert, key)) => config.identity(tonic::transport::Identity::from_pem(cert, key)),
            None => config,
        }
    }
}
