//! TLS, mutual TLS, identity and authorization, over real sockets with certificates from
//! `calcmesh_runtime::tls::certs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use calcmesh_calculator::CalculatorService;
use calcmesh_proto::calculator::Request;
use calcmesh_proto::calculator::calculator_client::CalculatorClient;
use calcmesh_runtime::server::authz::AuthzPolicy;
use calcmesh_runtime::tls::certs::{self, InitOptions};
use calcmesh_runtime::tls::{ClientTls, PeerInfo, ServerTls, ServerTlsFiles};
use calcmesh_runtime::{ClientConfig, MeshChannel, ServeError, Server, ServerConfig, Target};
use calcmesh_testkit::{Intercept, Running};
use tonic::Code;

/// A temporary directory of certificates: services calculator and evaluator, clients admin and
/// mallory.
struct Pki(PathBuf);

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("calcmesh-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = InitOptions {
            services: vec!["calculator".into(), "evaluator".into()],
            clients: vec!["admin".into(), "mallory".into()],
            extra_sans: vec![],
            days: 1,
        };
        certs::init(&dir, &options).unwrap();
        Self(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn server_files(&self, mutual: bool) -> ServerTlsFiles {
        ServerTlsFiles {
            cert: self.path("calculator.pem"),
            key: self.path("calculator.key"),
            client_ca: mutual.then(|| self.path("ca.pem")),
        }
    }

    fn client(&self, who: Option<&str>) -> ClientTls {
        let identity = who.map(|w| {
            (
                self.path(&format!("{w}.pem")),
                self.path(&format!("{w}.key")),
            )
        });
        ClientTls::load(
            &self.path("ca.pem"),
            identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
        .unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn server(
    tls: Option<ServerTlsFiles>,
    policy: Option<AuthzPolicy>,
) -> (Server, Arc<Mutex<Vec<PeerInfo>>>) {
    let config = ServerConfig {
        tls: tls.map(|files| Arc::new(ServerTls::load(files).unwrap())),
        policy: policy.map(Arc::new),
        ..ServerConfig::default()
    };
    let seen = Arc::default();
    let service = Intercept::new(calcmesh_calculator::server(
        CalculatorService::new(),
        config.max_message_size,
    ))
    .record_peers(Arc::clone(&seen));
    (Server::new(config).add_service(service), seen)
}

fn channel(addr: SocketAddr, tls: Option<ClientTls>) -> MeshChannel {
    let config = ClientConfig {
        tls,
        health_service: None,
        max_attempts: 1,
        ..ClientConfig::default()
    };
    calcmesh_runtime::connect(&Target::Endpoint(addr.to_string()), &config).unwrap()
}

async fn calc(channel: &MeshChannel) -> Result<f64, tonic::Status> {
    let request = Request {
        num1: 2.0,
        num2: 3.0,
        operator: "+".into(),
    };
    CalculatorClient::new(channel.clone())
        .calculate(request)
        .await
        .map(|r| r.into_inner().result)
}

#[tokio::test]
async fn tls_and_mutual_tls_carry_calls_and_the_callers_identity() {
    let pki = Pki::new("ok");
    let (tls_server, _) = server(Some(pki.server_files(false)), None);
    let tls = Running::start(tls_server);
    assert_eq!(
        calc(&channel(tls.addr, Some(pki.client(None))))
            .await
            .unwrap(),
        5.0
    );

    let (mtls_server, seen) = server(Some(pki.server_files(true)), None);
    let mtls = Running::start(mtls_server);
    assert_eq!(
        calc(&channel(mtls.addr, Some(pki.client(Some("admin")))))
            .await
            .unwrap(),
        5.0
    );
    let peer = seen.lock().unwrap().last().cloned().unwrap();
    assert!(peer.tls);
    assert_eq!(
        peer.identity.as_deref(),
        Some("spiffe://calcmesh/admin"),
        "handlers see who called"
    );
    tls.stop().await;
    mtls.stop().await;
}

#[tokio::test]
async fn a_policy_admits_only_the_identities_it_names() {
    let pki = Pki::new("policy");
    let policy = AuthzPolicy::parse(
        "allow spiffe://calcmesh/evaluator /calculator.Calculator/\n",
        "test",
    )
    .unwrap();
    let (s, _) = server(Some(pki.server_files(true)), Some(policy));
    let running = Running::start(s);
    assert_eq!(
        calc(&channel(running.addr, Some(pki.client(Some("evaluator")))))
            .await
            .unwrap(),
        5.0
    );
    let denied = calc(&channel(running.addr, Some(pki.client(Some("mallory")))))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        denied.message(),
        "spiffe://calcmesh/mallory may not call /calculator.Calculator/Calculate"
    );
    running.stop().await;
}

/// The call fails without reaching the service, and the server goes on serving good clients.
async fn assert_refused(running: &Running, good: &MeshChannel, bad: MeshChannel, why: &str) {
    let status = calc(&bad).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{why}: {status:?}");
    assert_eq!(
        calc(good).await.unwrap(),
        5.0,
        "{why}: the server still serves others"
    );
    let _ = running;
}

#[tokio::test]
async fn bad_certificates_and_wrong_protocols_are_refused_cleanly() {
    let pki = Pki::new("bad");
    let other = Pki::new("other-ca");
    let (s, _) = server(Some(pki.server_files(true)), None);
    let mtls = Running::start(s);
    let good = channel(mtls.addr, Some(pki.client(Some("admin"))));
    assert_eq!(calc(&good).await.unwrap(), 5.0);

    assert_refused(
        &mtls,
        &good,
        channel(mtls.addr, Some(other.client(Some("admin")))),
        "a client of another CA",
    )
    .await;
    assert_refused(
        &mtls,
        &good,
        channel(mtls.addr, Some(pki.client(None))),
        "no client certificate",
    )
    .await;
    assert_refused(
        &mtls,
        &good,
        channel(mtls.addr, None),
        "plaintext to a TLS port",
    )
    .await;

    // An expired client certificate.
    let past = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    let params =
        certs::leaf_params("expired", false, &[], past - time::Duration::days(1), past).unwrap();
    certs::issue(&pki.0, "expired", &params).unwrap();
    assert_refused(
        &mtls,
        &good,
        channel(mtls.addr, Some(pki.client(Some("expired")))),
        "an expired certificate",
    )
    .await;

    // A server certificate for another name.
    let now = time::OffsetDateTime::now_utc();
    let mut params = certs::leaf_params(
        "elsewhere",
        true,
        &[],
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    )
    .unwrap();
    params.subject_alt_names = vec![rcgen_san("elsewhere.example")];
    certs::issue(&pki.0, "elsewhere", &params).unwrap();
    let files = ServerTlsFiles {
        cert: pki.path("elsewhere.pem"),
        key: pki.path("elsewhere.key"),
        client_ca: None,
    };
    let (s, _) = server(Some(files), None);
    let misnamed = Running::start(s);
    let status = calc(&channel(misnamed.addr, Some(pki.client(None))))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unavailable,
        "a certificate for another name: {status:?}"
    );

    // TLS to a plaintext port.
    let (s, _) = server(None, None);
    let plain = Running::start(s);
    let good_plain = channel(plain.addr, None);
    assert_refused(
        &plain,
        &good_plain,
        channel(plain.addr, Some(pki.client(None))),
        "TLS to a plaintext port",
    )
    .await;

    for r in [mtls, misnamed, plain] {
        r.stop().await;
    }
}

fn rcgen_san(name: &str) -> rcgen::SanType {
    rcgen::SanType::DnsName(name.to_owned().try_into().unwrap())
}

#[tokio::test]
async fn plaintext_off_loopback_needs_insecure() {
    let (s, _) = server(None, None);
    let listener = calcmesh_runtime::bind("0.0.0.0:0".parse().unwrap(), s.config()).unwrap();
    let err = s.serve(listener, std::future::pending()).await.unwrap_err();
    assert!(matches!(err, ServeError::Insecure(_)), "{err}");
    assert!(err.to_string().contains("--insecure"), "{err}");
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
}

#[tokio::test]
async fn certificates_reload_without_a_restart() {
    let old = Pki::new("reload-old");
    let new = Pki::new("reload-new");
    // The server reads from its own files, which are replaced below.
    let live = Pki(std::env::temp_dir().join(format!("calcmesh-tls-live-{}", std::process::id())));
    let _ = std::fs::create_dir_all(&live.0);
    for f in ["calculator.pem", "calculator.key", "ca.pem"] {
        copy(&old.path(f), &live.path(f));
    }
    let files = ServerTlsFiles {
        cert: live.path("calculator.pem"),
        key: live.path("calculator.key"),
        client_ca: Some(live.path("ca.pem")),
    };
    let (s, _) = server(Some(files), None);
    let running = Running::start(s);
    let open = channel(running.addr, Some(old.client(Some("admin"))));
    assert_eq!(calc(&open).await.unwrap(), 5.0);

    for f in ["calculator.pem", "calculator.key", "ca.pem"] {
        copy(&new.path(f), &live.path(f));
    }
    // The server checks its files at most every 500 ms, on a handshake: poll with new clients.
    let started = std::time::Instant::now();
    while calc(&channel(running.addr, Some(new.client(Some("admin")))))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "new certificates in use within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = calc(&channel(running.addr, Some(old.client(Some("admin")))))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unavailable,
        "a new client of the old CA fails its handshake"
    );
    for _ in 0..20 {
        assert_eq!(
            calc(&open).await.unwrap(),
            5.0,
            "the connection opened before the reload carries on"
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn a_server_name_checks_certificates_of_endpoints_found_by_address() {
    // The certificate names localhost and 127.0.0.1; the server is reached at 127.0.0.2, as a
    // pod is reached at an IP that no certificate made in advance can name.
    let pki = Pki::new("server-name");
    let (tls_server, _) = server(Some(pki.server_files(false)), None);
    let running = Running::start_on(tls_server, SocketAddr::from(([127, 0, 0, 2], 0)));
    let by_address = calc(&channel(running.addr, Some(pki.client(None))))
        .await
        .unwrap_err();
    assert_eq!(by_address.code(), Code::Unavailable, "{by_address}");
    let named = pki.client(None).with_server_name("localhost");
    assert_eq!(
        calc(&channel(running.addr, Some(named))).await.unwrap(),
        5.0
    );
    let wrong = pki.client(None).with_server_name("evaluator.example");
    assert_eq!(
        calc(&channel(running.addr, Some(wrong)))
            .await
            .unwrap_err()
            .code(),
        Code::Unavailable
    );
    running.stop().await;
}
