//! Bearer-token authentication of the two audiences of the gRPC port:
//! operators (admin services) and data planes (sync service).
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

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
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
}
