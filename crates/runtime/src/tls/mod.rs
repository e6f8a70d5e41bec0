//! TLS and mutual TLS with rustls (one crypto provider in the whole build: ring).
//!
//! - [`ServerTls`]: a server certificate and key, and optionally a client CA (then a client
//!   certificate is required: mutual TLS). The files are watched: a handshake after they change
//!   uses the new ones; connections already open keep theirs. No restart.
//! - [`ClientTls`]: the CA to trust, and optionally a client certificate and key.
//! - [`PeerInfo`]: what a server knows of a connection — the remote address and, under mutual
//!   TLS, the caller's identity ([`crate::tls::certs::identity_of`]); in every request's extensions.

pub mod certs;
mod client;

pub use client::ClientTls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Why TLS could not be set up. Each names the file and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{path}: expected {expected}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        expected: &'static str,
    },
    /// rustls refused the material.
    #[error("{0}")]
    Rustls(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Content {
            path: path.to_owned(),
            expected: "a PEM CERTIFICATE block",
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|_| TlsError::Content {
        path: path.to_owned(),
        expected: "a PEM PRIVATE KEY block",
    })
}

/// The files of a server's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The server certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signs client certificates (PEM); set, it makes client certificates required.
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsFiles {
    fn paths(&self) -> Vec<&Path> {
        [
            Some(self.cert.as_path()),
            Some(self.key.as_path()),
            self.client_ca.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.paths()
            .into_iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    fn build(&self) -> Result<rustls::ServerConfig, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certs(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| TlsError::Rustls(format!("{}: {e}", ca.display())))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsError::Rustls(format!("{}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs(&self.cert)?, key(&self.key)?)
            .map_err(|e| {
                TlsError::Rustls(format!(
                    "{} and {}: {e}",
                    self.cert.display(),
                    self.key.display()
                ))
            })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// A server's TLS, reloaded when its files change.
#[derive(Debug)]
pub struct ServerTls {
    files: ServerTlsFiles,
    state: Mutex<Loaded>,
}

struct Loaded {
    /// HTTP/2 only (ALPN `h2`): gRPC.
    acceptor: TlsAcceptor,
    /// HTTP/2 or HTTP/1.1 (ALPN `h2`, `http/1.1`): for a server that serves gRPC-Web too.
    with_http1: TlsAcceptor,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("stamps", &self.stamps)
            .finish_non_exhaustive()
    }
}

/// How often, at most, the files are checked for changes (on a handshake).
const RELOAD_CHECK: Duration = Duration::from_millis(500);

impl ServerTls {
    /// Loads the files.
    ///
    /// # Errors
    /// A file is missing or does not hold what it should.
    pub fn load(files: ServerTlsFiles) -> Result<Self, TlsError> {
        let (acceptor, with_http1) = acceptors(files.build()?);
        let state = Mutex::new(Loaded {
            acceptor,
            with_http1,
            stamps: files.stamps(),
            checked: Instant::now(),
        });
        Ok(Self { files, state })
    }

    /// When the certificate served now stops being valid, in ms since the Unix epoch (read
    /// from its file, so a renewed certificate shows at once).
    pub fn certificate_expires_ms(&self) -> Option<i64> {
        let chain = certs(&self.files.cert).ok()?;
        certs::expires_ms(chain.first()?)
    }

    /// Whether client certificates are required.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The acceptor for the next handshake: the files' current contents, offering HTTP/1.1 as
    /// well as HTTP/2 when `http1` (gRPC-Web).
    pub(crate) fn acceptor(&self, http1: bool) -> TlsAcceptor {
        let mut state = crate::sync::lock(&self.state);
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            let stamps = self.files.stamps();
            if stamps != state.stamps {
                match self.files.build() {
                    Ok(config) => {
                        (state.acceptor, state.with_http1) = acceptors(config);
                        state.stamps = stamps;
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificates reloaded");
                    }
                    // Half-written files: keep serving with the old ones and try again later.
                    Err(err) => {
                        tracing::warn!(%err, "TLS files changed but do not load yet; keeping the previous ones")
                    }
                }
            }
        }
        match http1 {
            true => state.with_http1.clone(),
            false => state.acceptor.clone(),
        }
    }
}

/// The acceptors of `config` (ALPN `h2`): as it is, and offering `http/1.1` too.
fn acceptors(config: rustls::ServerConfig) -> (TlsAcceptor, TlsAcceptor) {
    let mut with_http1 = config.clone();
    with_http1.alpn_protocols.push(b"http/1.1".to_vec());
    (
        TlsAcceptor::from(Arc::new(config)),
        TlsAcceptor::from(Arc::new(with_http1)),
    )
}

/// What a server knows of the connection a request came on. In every request's extensions.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The caller's address.
    pub remote: Option<SocketAddr>,
    /// The caller's identity from its verified client certificate (mutual TLS only).
    pub identity: Option<String>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The connection's channelz numbers (the server counts its messages into them).
    pub socket: Option<Arc<crate::channelz::SocketStats>>,
}

/// A TLS session as channelz shows it: the cipher suite by its standard name (rustls says
/// `TLS13_…` where the IANA registry says `TLS_…`), our certificate and the peer's.
pub(crate) fn channelz_tls(
    session: &rustls::CommonState,
    local_certificate: Vec<u8>,
) -> crate::channelz::registry::TlsInfo {
    let cipher = session
        .negotiated_cipher_suite()
        .and_then(|suite| suite.suite().as_str())
        .map(|name| name.replacen("TLS13_", "TLS_", 1))
        .unwrap_or_default();
    let remote_certificate = session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| cert.to_vec())
        .unwrap_or_default();
    crate::channelz::registry::TlsInfo {
        cipher,
        local_certificate,
        remote_certificate,
    }
}

/// A server connection: plaintext or TLS.
#[derive(Debug)]
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            Conn::Plain(tcp) => PeerInfo {
                remote: tcp.peer_addr().ok(),
                identity: None,
                tls: false,
                socket: None,
            },
            Conn::Tls(tls) => {
                let (tcp, session) = tls.get_ref();
                let identity = session
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|cert| crate::tls::certs::identity_of(cert));
                PeerInfo {
                    remote: tcp.peer_addr().ok(),
                    identity,
                    tls: true,
                    socket: None,
                }
            }
        }
    }
}

impl Conn {
    /// A new channelz entry for this connection: its addresses and TLS.
    pub(crate) fn register_socket(&self) -> Arc<crate::channelz::SocketStats> {
        let (tcp, tls) = match self {
            Conn::Plain(tcp) => (tcp, None),
            Conn::Tls(stream) => {
                let (tcp, session) = stream.get_ref();
                (tcp, Some(channelz_tls(session, Vec::new())))
            }
        };
        crate::channelz::SocketStats::register(tcp.local_addr().ok(), tcp.peer_addr().ok(), tls)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}
