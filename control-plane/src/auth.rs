//! Bearer-token authentication of the two audiences of the gRPC port:
//! operators and signed-in users (admin services) and data planes (sync
//! service).
//!
//! The admin interceptor only classifies the token ([`Credential`]): the
//! operator token is checked here, a session token is resolved to its user,
//! tenant and role by the services (a database read) through
//! `ApiState::principal`.
//!
//! Tokens are compared as SHA-256 digests with a constant-time comparison, so
//! neither the token's length nor a matching prefix shows in response times.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::secret::SecretString;
use crate::secrets_files::{ADMIN_TOKEN_FILE, DP_TOKEN_FILE};

/// Checks `authorization: Bearer <token>` against one expected token.
#[derive(Clone)]
pub struct BearerAuth {
    expected: [u8; 32],
    /// What the caller should do when refused; shown in the error.
    hint: Arc<str>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth").finish_non_exhaustive()
    }
}

impl BearerAuth {
    /// Operator token for the admin services.
    pub fn operator(token: &SecretString, data_dir: &Path) -> Self {
        Self::new(
            token,
            format!(
                "pass the operator token from {} with --token or TOLLGATE_ADMIN_TOKEN",
                data_dir.join(ADMIN_TOKEN_FILE).display()
            ),
        )
    }

    /// Registration token for data planes.
    pub fn data_plane(token: &SecretString, data_dir: &Path) -> Self {
        Self::new(
            token,
            format!(
                "pass the data-plane token from {} with --token or TOLLGATE_DP_TOKEN",
                data_dir.join(DP_TOKEN_FILE).display()
            ),
        )
    }

    fn new(token: &SecretString, hint: String) -> Self {
        Self {
            expected: Sha256::digest(token.expose().as_bytes()).into(),
            hint: hint.into(),
        }
    }

    fn check(&self, header: Option<&[u8]>) -> Result<(), Status> {
        let Some(value) = header else {
            return Err(Status::unauthenticated(format!(
                "missing authorization metadata: {}",
                self.hint
            )));
        };
        let token = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
            .unwrap_or(b"");
        let got: [u8; 32] = Sha256::digest(token).into();
        if constant_time_eq(&got, &self.expected) {
            Ok(())
        } else {
            Err(Status::unauthenticated(format!(
                "invalid token: {}",
                self.hint
            )))
        }
    }
}

pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Session tokens start with this (see `api::users`).
pub const SESSION_TOKEN_PREFIX: &str = "tgs-";

/// What the bearer token of an admin call is, put in the request's
/// extensions by [`AdminAuth`].
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The operator token: every tenant, every action.
    Operator,
    /// A session token, by its SHA-256 (hex); resolved by the services.
    Session { token_hash: String },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Operator => f.write_str("Operator"),
            Credential::Session { .. } => f.write_str("Session"),
        }
    }
}

/// Lowercase hex SHA-256 of a session token: the only form that is stored.
pub fn session_token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Interceptor of the admin services: accepts the operator token or a
/// session token and records which in the request's extensions.
#[derive(Clone, Debug)]
pub struct AdminAuth {
    operator: BearerAuth,
    /// When false (the sign-in service), calls without a valid token pass
    /// through without a credential; the service decides.
    required: bool,
}

impl AdminAuth {
    pub fn new(operator: BearerAuth) -> Self {
        Self {
            operator,
            required: true,
        }
    }

    /// The same check, but a missing token is not an error.
    pub fn optional(&self) -> Self {
        Self {
            operator: self.operator.clone(),
            required: false,
        }
    }
}

impl Interceptor for AdminAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_encoded_bytes());
        let token = header.map(|value| {
            value
                .strip_prefix(b"Bearer ")
                .or_else(|| value.strip_prefix(b"bearer "))
                .unwrap_or(b"")
        });
        // The operator token is checked first, so an operator token that
        // happens to start like a session token still works.
        let credential = match token {
            None if !self.required => return Ok(req),
            _ if self.operator.check(header).is_ok() => Credential::Operator,
            Some(t) if t.starts_with(SESSION_TOKEN_PREFIX.as_bytes()) => Credential::Session {
                token_hash: hex::encode(Sha256::digest(t)),
            },
            _ if !self.required => return Ok(req),
            _ => return self.operator.check(header).map(|()| req),
        };
        req.extensions_mut().insert(credential);
        Ok(req)
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_encoded_bytes());
        self.check(header)?;
        Ok(req)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    }

    #[test]
    fn accepts_only_the_exact_token() {
        let mut a = BearerAuth::operator(&SecretString::new("tgop-abc"), Path::new("/d"));
        assert!(a.call(req(Some("Bearer tgop-abc"))).is_ok());
        for bad in [
            None,
            Some("Bearer tgop-ab"),
            Some("Bearer tgop-abcd"),
            Some("tgop-abc"),
        ] {
            let e = a.call(req(bad)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
            assert!(e.message().contains("/d/admin.token"), "{}", e.message());
            assert!(e.message().contains("TOLLGATE_ADMIN_TOKEN"));
            assert!(!e.message().contains("tgop-abc"));
        }
        let mut d = BearerAuth::data_plane(&SecretString::new("tgdp-x"), Path::new("/d"));
        let e = d.call(req(Some("Bearer tgop-abc"))).unwrap_err();
        assert!(e.message().contains("dp.token"));
    }

    #[test]
    fn admin_auth_classifies_tokens() {
        let op = BearerAuth::operator(&SecretString::new("tgop-abc"), Path::new("/d"));
        let mut a = AdminAuth::new(op);
        let r = a.call(req(Some("Bearer tgop-abc"))).unwrap();
        assert_eq!(
            r.extensions().get::<Credential>(),
            Some(&Credential::Operator)
        );
        let r = a.call(req(Some("Bearer tgs-xyz"))).unwrap();
        assert_eq!(
            r.extensions().get::<Credential>(),
            Some(&Credential::Session {
                token_hash: session_token_hash("tgs-xyz")
            })
        );
        for bad in [None, Some("Bearer tgop-abd"), Some("Bearer x")] {
            assert_eq!(
                a.call(req(bad)).unwrap_err().code(),
                tonic::Code::Unauthenticated
            );
        }
        let mut odd = AdminAuth::new(BearerAuth::operator(
            &SecretString::new("tgs-operator-override"),
            Path::new("/d"),
        ));
        let r = odd.call(req(Some("Bearer tgs-operator-override"))).unwrap();
        assert_eq!(
            r.extensions().get::<Credential>(),
            Some(&Credential::Operator)
        );
        let mut o = a.optional();
        let r = o.call(req(None)).unwrap();
        assert!(r.extensions().get::<Credential>().is_none());
        let r = o.call(req(Some("Bearer tgop-abd"))).unwrap();
        assert!(r.extensions().get::<Credential>().is_none());
    }
}
