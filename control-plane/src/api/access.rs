//! Who is calling and what it may do: the one permission check of the admin
//! API. Every RPC that touches tenant data resolves its `tenant` field through
//! [`ApiState::tenant_for`]; operator-only RPCs call
//! [`ApiState::require_operator`]. A tenant principal naming another tenant
//! gets NotFound with the same message as a tenant that does not exist.
//!
//! The role matrix (also in docs/dashboard.md):
//!
//! | action                                   | viewer | member | admin | owner |
//! |------------------------------------------|--------|--------|-------|-------|
//! | read tenant, providers, models, routes, keys, usage | ✓ | ✓ | ✓ | ✓ |
//! | create caller keys; revoke the ones it created |  | ✓      | ✓     | ✓     |
//! | providers, models, routes, revoke keys   |        |        | ✓     | ✓     |
//! | list users; add/disable members, viewers |        |        | ✓     | ✓     |
//! | add/disable admins and owners            |        |        |       | ✓     |

use tollgate_core::time::now_ms;
use tonic::{Request, Status};

use super::status::store_status;
use super::ApiState;
use crate::auth::Credential;
use crate::store::{Tenant, User};

/// Roles of users, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn allows(self, need: Need) -> bool {
        self >= need.least_role()
    }
}

/// What an RPC needs of the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read the tenant's objects.
    Read,
    /// Create caller keys.
    CreateKey,
    /// Change providers, models, routes; revoke keys.
    Write,
    /// List users and manage members and viewers (owners/admins: owner).
    Users,
}

impl Need {
    fn least_role(self) -> Role {
        match self {
            Need::Read => Role::Viewer,
            Need::CreateKey => Role::Member,
            Need::Write | Need::Users => Role::Admin,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Need::Read => "read this tenant",
            Need::CreateKey => "create caller keys",
            Need::Write => "change this tenant's configuration",
            Need::Users => "manage users",
        }
    }
}

/// The authenticated caller of an admin RPC.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The operator token.
    Operator,
    /// A signed-in user; `tenant` is `None` for operator users.
    User { user: User, tenant: Option<Tenant> },
}

impl Principal {
    /// The only tenant this principal may see; `None`: every tenant.
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            Principal::Operator => None,
            Principal::User { user, .. } => user.tenant_id.as_deref(),
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Principal::Operator => Role::Owner,
            // An unknown role in the table grants nothing beyond reading.
            Principal::User { user, .. } => Role::parse(&user.role).unwrap_or(Role::Viewer),
        }
    }

    pub fn check(&self, need: Need) -> Result<(), Status> {
        let role = self.role();
        if role.allows(need) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "role {} may not {}",
                role.as_str(),
                need.describe()
            )))
        }
    }
}

impl ApiState {
    /// Resolves the credential the admin interceptor put on the request.
    pub async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        match request.extensions().get::<Credential>() {
            Some(Credential::Operator) => Ok(Principal::Operator),
            Some(Credential::Session { token_hash }) => {
                let user = self
                    .store
                    .session_user(token_hash, now_ms())
                    .await
                    .map_err(store_status)?
                    .ok_or_else(|| {
                        Status::unauthenticated("the session has expired or ended; sign in again")
                    })?;
                let tenant = match &user.tenant_id {
                    Some(id) => Some(self.store.get_tenant(id).await.map_err(store_status)?),
                    None => None,
                };
                Ok(Principal::User { user, tenant })
            }
            None => Err(Status::unauthenticated(
                "missing authorization: send `authorization: Bearer <operator or session token>`",
            )),
        }
    }

    /// The tenant named by a request's `tenant` field (id or name), if the
    /// caller may see it and its role allows `need`.
    pub async fn tenant_for<T>(
        &self,
        request: &Request<T>,
        reference: &str,
        need: Need,
    ) -> Result<Tenant, Status> {
        Ok(self.scoped(request, reference, need).await?.1)
    }

    /// [`ApiState::tenant_for`], also returning the caller.
    pub async fn scoped<T>(
        &self,
        request: &Request<T>,
        reference: &str,
        need: Need,
    ) -> Result<(Principal, Tenant), Status> {
        let principal = self.principal(request).await?;
        let tenant = self.tenant_of(&principal, reference, need).await?;
        Ok((principal, tenant))
    }

    /// [`ApiState::tenant_for`] for an already resolved principal.
    pub async fn tenant_of(
        &self,
        principal: &Principal,
        reference: &str,
        need: Need,
    ) -> Result<Tenant, Status> {
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(Status::invalid_argument("tenant is required (id or name)"));
        }
        let tenant = self
            .store
            .get_tenant(reference)
            .await
            .map_err(store_status)?;
        if let Some(own) = principal.tenant_id() {
            if tenant.id != own {
                // Same answer as for a tenant that does not exist.
                return Err(Status::not_found(format!("tenant '{reference}' not found")));
            }
        }
        principal.check(need)?;
        Ok(tenant)
    }

    /// For RPCs about the whole installation (tenants, data planes): the
    /// operator token, or an operator user whose role allows `need`.
    pub async fn require_operator<T>(
        &self,
        request: &Request<T>,
        need: Need,
    ) -> Result<Principal, Status> {
        let principal = self.principal(request).await?;
        if principal.tenant_id().is_some() {
            return Err(Status::permission_denied(
                "only operators may do this; tenant users see their own tenant",
            ));
        }
        principal.check(need)?;
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix() {
        use Need::*;
        let table = [
            (Role::Viewer, [true, false, false, false]),
            (Role::Member, [true, true, false, false]),
            (Role::Admin, [true, true, true, true]),
            (Role::Owner, [true, true, true, true]),
        ];
        for (role, expect) in table {
            let got = [Read, CreateKey, Write, Users].map(|n| role.allows(n));
            assert_eq!(got, expect, "{role:?}");
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
