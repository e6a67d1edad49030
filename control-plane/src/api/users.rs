//! `AuthService`: sign-in with email and password, sessions, and users.
//!
//! Passwords are stored as Argon2id PHC strings; session tokens come from the
//! OS CSPRNG, are returned once and stored as SHA-256. A failed sign-in says
//! the same thing whether the email or the password was wrong, and costs the
//! same (an unknown email is checked against a dummy hash).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use rand::RngCore;
use tollgate_core::ids::{new_id, prefix};
use tollgate_core::time::now_ms;
use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::auth_service_server::AuthService;
use tonic::{Request, Response, Status};

use super::access::{Need, Principal, Role};
use super::status::store_status;
use super::ApiState;
use crate::auth::{session_token_hash, Credential, SESSION_TOKEN_PREFIX};
use crate::secret::SecretString;
use crate::store::{NewUser, User};

/// How long a session lasts.
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;
pub const MIN_PASSWORD_CHARS: usize = 12;
const SIGN_IN_FAILED: &str = "wrong email or password";
/// Failed sign-ins per email before that email is locked for the rest of
/// the window (unknown emails count the same, so this reveals nothing).
const MAX_FAILED_SIGN_INS: u32 = 5;
const FAILED_SIGN_IN_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Bound on remembered emails; older windows are dropped past it.
const MAX_TRACKED_EMAILS: usize = 10_000;

/// Slows password guessing: counts failed sign-ins per email in a window.
/// Per control-plane replica, in memory.
#[derive(Debug, Default)]
struct SignInThrottle {
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl SignInThrottle {
    fn check(&self, email: &str, now: i64) -> Result<(), Status> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(email) {
            Some(&(n, start))
                if n >= MAX_FAILED_SIGN_INS && now - start < FAILED_SIGN_IN_WINDOW_MS =>
            {
                let wait_s = (FAILED_SIGN_IN_WINDOW_MS - (now - start)) / 1000 + 1;
                Err(Status::resource_exhausted(format!(
                    "too many failed sign-ins for this email; try again in {wait_s} s"
                )))
            }
            _ => Ok(()),
        }
    }

    fn failed(&self, email: &str, now: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED_EMAILS {
            map.retain(|_, (_, start)| now - *start < FAILED_SIGN_IN_WINDOW_MS);
        }
        let entry = map.entry(email.to_owned()).or_insert((0, now));
        if now - entry.1 >= FAILED_SIGN_IN_WINDOW_MS {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }

    fn succeeded(&self, email: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(email);
    }
}

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` uniformly random base62 characters from the OS CSPRNG.
fn random_base62(n: usize) -> String {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 1];
    while out.len() < n {
        OsRng.fill_bytes(&mut buf);
        if buf[0] < 248 {
            out.push(char::from(ALPHABET[usize::from(buf[0] % 62)]));
        }
    }
    out
}

/// A new session token (~256 bits).
pub fn generate_session_token() -> String {
    format!("{SESSION_TOKEN_PREFIX}{}", random_base62(43))
}

/// A new password for a user created without one (~143 bits).
pub fn generate_password() -> String {
    random_base62(24)
}

/// Argon2id PHC string of a password (CPU-heavy: run off the async threads).
pub fn hash_password(password: &str) -> Result<String, Status> {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(hash_status)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(hash_status)
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

fn hash_status(e: argon2::password_hash::Error) -> Status {
    tracing::error!(error = %e, "password hashing failed");
    Status::internal("internal error hashing the password; see the control plane log")
}

/// Compared against when the email is unknown, so both failures take as long.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&generate_password()).unwrap_or_default())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Status::internal("internal error; see the control plane log"))
}

fn normalize_email(email: &str) -> Result<String, Status> {
    let email = email.trim().to_ascii_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(Status::invalid_argument(
            "email must look like name@example.com (no spaces)",
        ))
    }
}

fn user_to_proto(u: User) -> pb::User {
    pb::User {
        id: u.id,
        tenant_id: u.tenant_id.unwrap_or_default(),
        email: u.email,
        role: u.role,
        created_at_ms: u.created_at_ms,
        disabled_at_ms: u.disabled_at_ms,
    }
}

fn principal_to_proto(p: &Principal) -> pb::Principal {
    match p {
        Principal::Operator => pb::Principal {
            kind: "operator".into(),
            role: Role::Owner.as_str().into(),
            ..Default::default()
        },
        Principal::User { user, tenant } => pb::Principal {
            kind: "user".into(),
            user_id: user.id.clone(),
            email: user.email.clone(),
            tenant_id: tenant.as_ref().map(|t| t.id.clone()).unwrap_or_default(),
            tenant_name: tenant.as_ref().map(|t| t.name.clone()).unwrap_or_default(),
            role: p.role().as_str().into(),
        },
    }
}

#[derive(Debug, Clone)]
pub struct UserApi {
    state: ApiState,
    throttle: Arc<SignInThrottle>,
}

impl UserApi {
    pub fn new(state: ApiState) -> Self {
        Self {
            state,
            throttle: Arc::default(),
        }
    }

    /// The tenant a user request is about (`None`: operator users) after
    /// checking the caller may manage users there.
    async fn user_scope(
        &self,
        principal: &Principal,
        tenant: &str,
    ) -> Result<Option<String>, Status> {
        if tenant.trim().is_empty() {
            if principal.tenant_id().is_some() {
                return Err(Status::permission_denied(
                    "only operators may manage operator users; name your tenant",
                ));
            }
            if !principal.role().allows(Need::Users) {
                return Err(Status::permission_denied("your role may not manage users"));
            }
            return Ok(None);
        }
        let t = self.state.tenant_of(principal, tenant, Need::Users).await?;
        Ok(Some(t.id))
    }
}

/// Admins manage members and viewers; owners (and operators) any role.
fn may_manage_role(actor: Role, target: Role) -> Result<(), Status> {
    if actor == Role::Owner || target < Role::Admin {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "only an owner may add or disable {} users",
            target.as_str()
        )))
    }
}

#[tonic::async_trait]
impl AuthService for UserApi {
    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        let req = request.into_inner();
        let password = SecretString::new(req.password);
        let email = req.email.trim().to_ascii_lowercase();
        self.throttle.check(&email, now_ms())?;
        let creds = self
            .state
            .store
            .user_credentials(&email)
            .await
            .map_err(store_status)?;
        let (phc, user) = match creds {
            Some(c) => (c.password_hash, Some(c.user)),
            None => (dummy_hash().to_owned(), None),
        };
        let ok = blocking(move || verify_password(password.expose(), &phc)).await?;
        let user = match user {
            Some(u) if ok && u.disabled_at_ms == 0 => u,
            _ => {
                tracing::info!("sign-in refused");
                self.throttle.failed(&email, now_ms());
                return Err(Status::unauthenticated(SIGN_IN_FAILED));
            }
        };
        self.throttle.succeeded(&email);
        let token = generate_session_token();
        let now = now_ms();
        let expires_at_ms = now.saturating_add(SESSION_TTL_MS);
        self.state
            .store
            .create_session(&session_token_hash(&token), &user.id, now, expires_at_ms)
            .await
            .map_err(store_status)?;
        let tenant = match &user.tenant_id {
            Some(id) => Some(
                self.state
                    .store
                    .get_tenant(id)
                    .await
                    .map_err(store_status)?,
            ),
            None => None,
        };
        tracing::info!(user_id = %user.id, "signed in");
        let principal = Principal::User { user, tenant };
        Ok(Response::new(pb::SignInResponse {
            token,
            expires_at_ms,
            principal: Some(principal_to_proto(&principal)),
        }))
    }

    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        if let Some(Credential::Session { token_hash }) = request.extensions().get::<Credential>() {
            self.state
                .store
                .delete_session(token_hash)
                .await
                .map_err(store_status)?;
        }
        Ok(Response::new(pb::SignOutResponse {}))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        let principal = self.state.principal(&request).await?;
        Ok(Response::new(principal_to_proto(&principal)))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let principal = self.state.principal(&request).await?;
        let req = request.into_inner();
        let tenant_id = self.user_scope(&principal, &req.tenant).await?;
        let email = normalize_email(&req.email)?;
        let role = Role::parse(req.role.trim()).ok_or_else(|| {
            Status::invalid_argument("role must be one of: owner, admin, member, viewer")
        })?;
        may_manage_role(principal.role(), role)?;
        let (password, generated) = if req.password.is_empty() {
            let p = generate_password();
            (SecretString::new(p.clone()), p)
        } else if req.password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(Status::invalid_argument(format!(
                "password must have at least {MIN_PASSWORD_CHARS} characters"
            )));
        } else {
            (SecretString::new(req.password), String::new())
        };
        let password_hash = blocking(move || hash_password(password.expose())).await??;
        let user = self
            .state
            .store
            .create_user(NewUser {
                id: new_id(prefix::USER),
                tenant_id,
                email,
                password_hash,
                role: role.as_str().into(),
                created_at_ms: now_ms(),
            })
            .await
            .map_err(store_status)?;
        tracing::info!(user_id = %user.id, tenant_id = ?user.tenant_id, role = %user.role, "user created");
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(user_to_proto(user)),
            generated_password: generated,
        }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let principal = self.state.principal(&request).await?;
        let tenant_id = self
            .user_scope(&principal, &request.get_ref().tenant)
            .await?;
        let users = self
            .state
            .store
            .list_users(tenant_id.as_deref())
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.into_iter().map(user_to_proto).collect(),
        }))
    }

    async fn disable_user(
        &self,
        request: Request<pb::DisableUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let principal = self.state.principal(&request).await?;
        let req = request.into_inner();
        let tenant_id = self.user_scope(&principal, &req.tenant).await?;
        let reference = req.user.trim();
        if reference.is_empty() {
            return Err(Status::invalid_argument("user is required (id or email)"));
        }
        let user = self
            .state
            .store
            .get_user(tenant_id.as_deref(), reference)
            .await
            .map_err(store_status)?;
        may_manage_role(
            principal.role(),
            Role::parse(&user.role).unwrap_or(Role::Owner),
        )?;
        self.state
            .store
            .disable_user(&user.id, now_ms())
            .await
            .map_err(store_status)?;
        tracing::info!(user_id = %user.id, "user disabled");
        let user = self
            .state
            .store
            .get_user(tenant_id.as_deref(), &user.id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(user_to_proto(user)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a phc string"));
        assert_ne!(hash_password("correct horse battery").unwrap(), h, "salted");
    }

    #[test]
    fn failed_sign_ins_lock_an_email_for_the_window() {
        let t = SignInThrottle::default();
        for i in 0..MAX_FAILED_SIGN_INS {
            assert!(t.check("a@x", 1000 + i64::from(i)).is_ok());
            t.failed("a@x", 1000 + i64::from(i));
        }
        let e = t.check("a@x", 2000).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(
            t.check("b@x", 2000).is_ok(),
            "other emails are not affected"
        );
        assert!(
            t.check("a@x", 1000 + FAILED_SIGN_IN_WINDOW_MS).is_ok(),
            "the window passes"
        );
        t.failed("a@x", 1000 + FAILED_SIGN_IN_WINDOW_MS);
        assert!(
            t.check("a@x", 1001 + FAILED_SIGN_IN_WINDOW_MS).is_ok(),
            "a new window starts at 1"
        );
        t.succeeded("a@x");
        assert!(t.failures.lock().unwrap().is_empty());
    }

    #[test]
    fn tokens_emails_and_roles() {
        let t = generate_session_token();
        assert!(t.starts_with("tgs-") && t.len() == 47, "{t}");
        assert_ne!(t, generate_session_token());
        assert_eq!(normalize_email(" Ann@Acme.Test ").unwrap(), "ann@acme.test");
        for bad in ["", "ann", "@x", "a@", "a b@x", "a@b@c"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        assert!(may_manage_role(Role::Owner, Role::Owner).is_ok());
        assert!(may_manage_role(Role::Admin, Role::Member).is_ok());
        assert!(may_manage_role(Role::Admin, Role::Admin).is_err());
    }
}
