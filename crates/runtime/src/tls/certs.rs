//! A development certificate authority: `calcmesh certs init` and `calcmesh certs show`.
//!
//! Each service gets one key and one certificate for both directions (server and client
//! authentication) whose SANs carry its identity — a URI SAN `spiffe://calcmesh/NAME` — plus
//! `DNS:localhost` and `IP:127.0.0.1` (more with `extra_sans`). People and tools get
//! client-only certificates with the same kind of URI SAN. Keys are written with mode 0600.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// The URI SAN prefix of calcmesh identities.
pub const SPIFFE_PREFIX: &str = "spiffe://calcmesh/";

/// Why certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// Which certificate.
        what: String,
        /// Why.
        source: rcgen::Error,
    },
    /// A file is not a readable certificate.
    #[error("{path}: not a PEM certificate ({reason})")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A SAN given is neither an IP address nor a DNS name.
    #[error("--san {0:?} is neither an IP address nor a DNS name")]
    BadSan(String),
}

/// What [`init`] makes.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Services: each gets a server+client certificate, `NAME.pem` and `NAME.key`.
    pub services: Vec<String>,
    /// Clients (people, tools): each gets a client certificate.
    pub clients: Vec<String>,
    /// Extra DNS names or IP addresses for the service certificates.
    pub extra_sans: Vec<String>,
    /// Validity of the leaf certificates, in days (the CA gets ten times as long).
    pub days: i64,
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    file.write_all(contents.as_bytes()).map_err(io)
}

fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })
}

fn generate(what: &str) -> impl Fn(rcgen::Error) -> CertError + '_ {
    move |source| CertError::Generate {
        what: what.to_owned(),
        source,
    }
}

fn sans(name: &str, server: bool, extra: &[String]) -> Result<Vec<SanType>, CertError> {
    let g = generate(name);
    let mut sans = vec![SanType::URI(
        format!("{SPIFFE_PREFIX}{name}").try_into().map_err(&g)?,
    )];
    if server {
        sans.push(SanType::DnsName("localhost".try_into().map_err(&g)?));
        sans.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        for san in extra {
            sans.push(match san.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    san.clone()
                        .try_into()
                        .map_err(|_| CertError::BadSan(san.clone()))?,
                ),
            });
        }
    }
    Ok(sans)
}

/// Leaf certificate parameters for `name`, valid from now for `days`.
pub fn leaf_params(
    name: &str,
    server: bool,
    extra_sans: &[String],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = sans(name, server, extra_sans)?;
    params.extended_key_usages = if server {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

/// Signs `params` with the CA in `dir` (`ca.pem`, `ca.key`) and writes `NAME.pem`, `NAME.key`.
pub fn issue(
    dir: &Path,
    name: &str,
    params: &CertificateParams,
) -> Result<[PathBuf; 2], CertError> {
    let ca_key = KeyPair::from_pem(&read(&dir.join("ca.key"))?).map_err(generate("the CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(&read(&dir.join("ca.pem"))?, ca_key)
        .map_err(generate("the CA"))?;
    let key = KeyPair::generate().map_err(generate(name))?;
    let cert = params.signed_by(&key, &issuer).map_err(generate(name))?;
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    write_file(&key_path, &key.serialize_pem(), true)?;
    write_file(&cert_path, &cert.pem(), false)?;
    Ok([cert_path, key_path])
}

/// Creates a CA in `dir` unless one is there, then a certificate per service and client.
/// Returns the files written.
///
/// # Errors
/// A file cannot be written or read, or a SAN is malformed.
pub fn init(dir: &Path, options: &InitOptions) -> Result<Vec<PathBuf>, CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let now = OffsetDateTime::now_utc();
    let mut written = Vec::new();
    if !dir.join("ca.pem").exists() || !dir.join("ca.key").exists() {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "calcmesh development CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(options.days * 10);
        let key = KeyPair::generate().map_err(generate("the CA"))?;
        let cert = params.self_signed(&key).map_err(generate("the CA"))?;
        write_file(&dir.join("ca.key"), &key.serialize_pem(), true)?;
        write_file(&dir.join("ca.pem"), &cert.pem(), false)?;
        written.extend([dir.join("ca.pem"), dir.join("ca.key")]);
    }
    let validity = (
        now - Duration::minutes(5),
        now + Duration::days(options.days),
    );
    for (names, server) in [(&options.services, true), (&options.clients, false)] {
        for name in names {
            let params = leaf_params(name, server, &options.extra_sans, validity.0, validity.1)?;
            written.extend(issue(dir, name, &params)?);
        }
    }
    Ok(written)
}

/// Subject, SANs and validity of the certificate(s) in a PEM file, for people.
///
/// # Errors
/// The file cannot be read or holds no certificate.
pub fn show(path: &Path) -> Result<String, CertError> {
    let text = read(path)?;
    let parse_err = |reason: String| CertError::Parse {
        path: path.to_owned(),
        reason,
    };
    let mut out = String::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|e| parse_err(e.to_string()))?;
        let cert = pem.parse_x509().map_err(|e| parse_err(e.to_string()))?;
        out.push_str(&format!("subject:   {}\n", cert.subject()));
        out.push_str(&format!("issuer:    {}\n", cert.issuer()));
        let validity = cert.validity();
        out.push_str(&format!(
            "valid:     {} to {}{}\n",
            validity.not_before,
            validity.not_after,
            if validity.is_valid() {
                ""
            } else {
                " (NOT VALID NOW)"
            }
        ));
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            let names: Vec<String> = san.value.general_names.iter().map(general_name).collect();
            out.push_str(&format!("SANs:      {}\n", names.join(", ")));
        }
        out.push_str(&format!("CA:        {}\n", cert.is_ca()));
    }
    if out.is_empty() {
        return Err(parse_err("no CERTIFICATE block".into()));
    }
    Ok(out)
}

fn general_name(name: &x509_parser::extensions::GeneralName<'_>) -> String {
    use x509_parser::extensions::GeneralName;
    match name {
        GeneralName::URI(uri) => format!("URI:{uri}"),
        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
        GeneralName::IPAddress(bytes) => match <[u8; 4]>::try_from(*bytes) {
            Ok(v4) => format!("IP:{}", IpAddr::from(v4)),
            Err(_) => <[u8; 16]>::try_from(*bytes).map_or_else(
                |_| format!("IP:{bytes:02x?}"),
                |v6| format!("IP:{}", IpAddr::from(v6)),
            ),
        },
        other => other.to_string(),
    }
}

/// When a DER certificate stops being valid, in ms since the Unix epoch.
pub fn expires_ms(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.validity().not_after.timestamp().checked_mul(1000)
}

/// The identity a DER certificate carries: its first `spiffe://` URI SAN, else its first DNS
/// SAN, else its common name.
pub fn identity_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let names = &san.value.general_names;
        let uri = names.iter().find_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) if u.starts_with("spiffe://") => {
                Some((*u).to_owned())
            }
            _ => None,
        });
        let dns = names.iter().find_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        });
        if let Some(id) = uri.or(dns) {
            return Some(id);
        }
    }
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("calcmesh-certs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn init_makes_a_ca_and_identities_with_private_keys() {
        let dir = temp_dir("init");
        let options = InitOptions {
            services: vec!["calculator".into()],
            clients: vec!["admin".into()],
            extra_sans: vec!["calc.example".into(), "10.0.0.7".into()],
            days: 30,
        };
        let written = init(&dir, &options).unwrap();
        assert_eq!(written.len(), 6);
        #[cfg(unix)]
        for key in ["ca.key", "calculator.key", "admin.key"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
        let shown = show(&dir.join("calculator.pem")).unwrap();
        for needle in [
            "spiffe://calcmesh/calculator",
            "localhost",
            "127.0.0.1",
            "calc.example",
            "10.0.0.7",
        ] {
            assert!(shown.contains(needle), "{needle} in\n{shown}");
        }
        let admin = show(&dir.join("admin.pem")).unwrap();
        assert!(
            admin.contains("spiffe://calcmesh/admin") && !admin.contains("localhost"),
            "{admin}"
        );
        // A second init keeps the CA and adds to it.
        let more = init(
            &dir,
            &InitOptions {
                services: vec!["evaluator".into()],
                clients: vec![],
                ..options
            },
        )
        .unwrap();
        assert_eq!(more.len(), 2, "no new CA");
        let der = x509_parser::pem::parse_x509_pem(
            fs::read(dir.join("evaluator.pem")).unwrap().as_slice(),
        )
        .unwrap()
        .1
        .contents;
        assert_eq!(
            identity_of(&der).as_deref(),
            Some("spiffe://calcmesh/evaluator")
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_file() {
        let err = show(Path::new("/nonexistent/calcmesh.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/nonexistent/calcmesh.pem: "), "{err}");
        let bad = temp_dir("bad");
        fs::create_dir_all(&bad).unwrap();
        fs::write(bad.join("x.pem"), "not a certificate").unwrap();
        assert!(
            show(&bad.join("x.pem"))
                .unwrap_err()
                .to_string()
                .contains("no CERTIFICATE")
        );
        fs::remove_dir_all(&bad).unwrap();
    }
}
