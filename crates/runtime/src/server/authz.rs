//! Authorization of callers by identity, per method.
//!
//! Under mutual TLS every caller has an identity (from its certificate, see [`crate::tls`]).
//! Without a [`AuthzPolicy`], every identity the client CA signed is admitted (authentication only).
//! A policy narrows that to the identities it names, per method prefix; everyone else gets
//! PERMISSION_DENIED, naming the method (never the policy). A call with no identity at all under
//! a policy (a plaintext or one-way TLS connection) gets UNAUTHENTICATED. `grpc.health.v1` is
//! always open, so probes and load balancers can check health.

use std::path::Path;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use tonic::Status;
use tonic::body::Body;

use crate::tls::PeerInfo;

/// Who may call what: lines of `allow IDENTITY METHOD_PREFIX`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthzPolicy {
    rules: Vec<(String, String)>,
}

/// A policy that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "{source_name}:{line}: {problem}; expected `allow IDENTITY METHOD_PREFIX`, e.g. `allow spiffe://calcmesh/evaluator /calculator.Calculator/`"
)]
pub struct PolicyError {
    source_name: String,
    line: usize,
    problem: String,
}

impl AuthzPolicy {
    /// Parses policy text; `source_name` (a file name) goes into error messages. Blank lines and
    /// `#` comments are ignored.
    ///
    /// # Errors
    /// A line that is not `allow IDENTITY METHOD_PREFIX`.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, PolicyError> {
        let mut policy = AuthzPolicy::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let err = |problem: &str| PolicyError {
                source_name: source_name.to_owned(),
                line: i + 1,
                problem: problem.to_owned(),
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["allow", identity, prefix] if prefix.starts_with('/') => {
                    policy.allow(identity, prefix)
                }
                ["allow", _, _] => return Err(err("the method prefix must start with '/'")),
                _ => return Err(err(&format!("cannot read {line:?}"))),
            }
        }
        Ok(policy)
    }

    /// Reads a policy file.
    ///
    /// # Errors
    /// The file cannot be read or a line is malformed.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            source_name: path.display().to_string(),
            line: 0,
            problem: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Lets `identity` call every method whose path starts with `method_prefix` (`/` for all).
    pub fn allow(&mut self, identity: &str, method_prefix: &str) {
        self.rules
            .push((identity.to_owned(), method_prefix.to_owned()));
    }

    /// Whether `identity` may call `path`.
    pub fn allows(&self, identity: &str, path: &str) -> bool {
        self.rules
            .iter()
            .any(|(id, prefix)| id == identity && path.starts_with(prefix.as_str()))
    }

    /// The identities named, for logs.
    pub fn identities(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.rules.iter().map(|(id, _)| id.as_str()).collect();
        ids.dedup();
        ids
    }
}

/// Decides one request: `None` lets it through.
fn decide(policy: Option<&AuthzPolicy>, peer: Option<&PeerInfo>, path: &str) -> Option<Status> {
    let policy = policy?;
    if path.starts_with("/grpc.health.v1.Health/") {
        return None;
    }
    match peer.and_then(|p| p.identity.as_deref()) {
        None => Some(Status::unauthenticated(format!(
            "{path} needs a client certificate that names the caller (mutual TLS)"
        ))),
        Some(identity) if policy.allows(identity, path) => None,
        Some(identity) => Some(Status::permission_denied(format!(
            "{identity} may not call {path}"
        ))),
    }
}

/// The tower layer that enforces a [`AuthzPolicy`] (and logs denials).
#[derive(Debug, Clone)]
pub struct AuthzLayer {
    policy: Option<std::sync::Arc<AuthzPolicy>>,
}

impl AuthzLayer {
    /// A layer for `policy` (`None`: admit every caller that got through TLS).
    pub fn new(policy: Option<std::sync::Arc<AuthzPolicy>>) -> Self {
        Self { policy }
    }
}

impl<S> tower_layer::Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Authz<S> {
        Authz {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service of [`AuthzLayer`].
#[derive(Debug, Clone)]
pub struct Authz<S> {
    inner: S,
    policy: Option<std::sync::Arc<AuthzPolicy>>,
}

impl<S> tower_service::Service<http::Request<Body>> for Authz<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<Ready<Result<http::Response<Body>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let peer = request.extensions().get::<PeerInfo>();
        match decide(self.policy.as_deref(), peer, request.uri().path()) {
            None => Either::Right(self.inner.call(request)),
            Some(status) => {
                tracing::warn!(peer = ?peer.and_then(|p| p.remote), identity = ?peer.and_then(|p| p.identity.as_deref()), code = ?status.code(), reason = status.message(), "call refused");
                Either::Left(ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(identity: Option<&str>) -> PeerInfo {
        PeerInfo {
            remote: None,
            identity: identity.map(str::to_owned),
            tls: true,
            socket: None,
        }
    }

    #[test]
    fn policy_text() {
        let p = AuthzPolicy::parse("# who may call\nallow spiffe://calcmesh/evaluator /calculator.Calculator/\n\nallow spiffe://calcmesh/admin /  # everything\n", "p.txt").unwrap();
        assert!(p.allows(
            "spiffe://calcmesh/evaluator",
            "/calculator.Calculator/Calculate"
        ));
        assert!(!p.allows(
            "spiffe://calcmesh/evaluator",
            "/calcmesh.evaluator.v1.Evaluator/Evaluate"
        ));
        assert!(p.allows("spiffe://calcmesh/admin", "/anything/At"));
        let err = AuthzPolicy::parse("allow a\n", "p.txt")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.txt:1: cannot read \"allow a\""), "{err}");
        let err = AuthzPolicy::parse("\nallow a calculator\n", "p.txt")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.txt:2: the method prefix must start with '/'"),
            "{err}"
        );
    }

    #[test]
    fn decisions() {
        let mut p = AuthzPolicy::default();
        p.allow("spiffe://calcmesh/evaluator", "/calculator.Calculator/");
        let calc = "/calculator.Calculator/Calculate";
        assert!(
            decide(None, None, calc).is_none(),
            "no policy: authentication only"
        );
        assert!(
            decide(
                Some(&p),
                Some(&peer(Some("spiffe://calcmesh/evaluator"))),
                calc
            )
            .is_none()
        );
        let denied = decide(
            Some(&p),
            Some(&peer(Some("spiffe://calcmesh/mallory"))),
            calc,
        )
        .unwrap();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            denied.message(),
            "spiffe://calcmesh/mallory may not call /calculator.Calculator/Calculate"
        );
        assert_eq!(
            decide(Some(&p), Some(&peer(None)), calc).unwrap().code(),
            tonic::Code::Unauthenticated
        );
        assert!(
            decide(Some(&p), None, "/grpc.health.v1.Health/Check").is_none(),
            "health stays open"
        );
    }
}
