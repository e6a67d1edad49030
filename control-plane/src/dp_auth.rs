//! Authentication of data planes on the sync service: the control plane's
//! own data-plane token (the built-in group "shared") and registration tokens
//! of data-plane groups.
//!
//! Tonic interceptors are synchronous, so the active tokens live in memory,
//! by hash, reloaded from the store after every token write of this process
//! and every few seconds (writes of another replica). A reload bumps a
//! generation that every subscription follows: a session whose token is gone
//! (revoked, expired) ends at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_core::time::now_ms;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::secret::SecretString;
use crate::store::{ActiveDpToken, Store, StoreResult};

/// Name and id of the built-in group of the control plane's own token.
pub const SHARED_GROUP: &str = "shared";

/// How often the table is re-read for token writes of other replicas (and
/// expiries).
const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Who a data plane is, put in the request's extensions by [`DpAuth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpIdentity {
    pub group_id: String,
    pub group_name: String,
    /// `None`: shared (every tenant); else the only tenant it may see.
    pub tenant_id: Option<String>,
    /// `None`: the control plane's own data-plane token.
    pub token_id: Option<String>,
    /// Epoch ms after which the token no longer works (0: never).
    pub expires_at_ms: i64,
}

impl DpIdentity {
    fn shared() -> Self {
        DpIdentity {
            group_id: SHARED_GROUP.into(),
            group_name: SHARED_GROUP.into(),
            tenant_id: None,
            token_id: None,
            expires_at_ms: 0,
        }
    }

    /// Whether this data plane may act for `tenant_id`.
    pub fn may_serve(&self, tenant_id: &str) -> bool {
        self.tenant_id.as_deref().is_none_or(|t| t == tenant_id)
    }

    /// PermissionDenied unless this data plane may act for `tenant_id`.
    pub fn check_tenant(&self, tenant_id: &str) -> Result<(), Status> {
        if self.may_serve(tenant_id) {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "this data plane's group does not serve that tenant",
            ))
        }
    }
}

/// The identity the interceptor attached (the built-in one if none, which
/// only happens when the service runs without [`DpAuth`], as in unit tests).
pub fn identity_of<T>(request: &Request<T>) -> DpIdentity {
    request
        .extensions()
        .get::<DpIdentity>()
        .cloned()
        .unwrap_or_else(DpIdentity::shared)
}

#[derive(Debug, Default)]
struct Table {
    /// SHA-256 (raw) of the token → identity.
    by_hash: HashMap<[u8; 32], DpIdentity>,
}

/// The tokens that may subscribe, shared by the interceptor and sessions.
#[derive(Debug)]
pub struct DpTokenTable {
    builtin: [u8; 32],
    table: RwLock<Table>,
    generation: watch::Sender<u64>,
    /// Bumps after each token write of this process (announced to the
    /// other replicas: crate::cluster).
    local_writes: watch::Sender<u64>,
    hint: String,
}

impl DpTokenTable {
    /// A table with the built-in token only; call [`DpTokenTable::reload`].
    pub fn new(builtin: &SecretString, hint: String) -> Arc<Self> {
        let (generation, _) = watch::channel(0);
        Arc::new(DpTokenTable {
            builtin: Sha256::digest(builtin.expose().as_bytes()).into(),
            table: RwLock::new(Table::default()),
            generation,
            local_writes: watch::channel(0).0,
            hint,
        })
    }

    /// Re-reads the active tokens; sessions re-check theirs.
    pub async fn reload(&self, store: &Store) -> StoreResult<()> {
        let active = store.active_dp_tokens(now_ms()).await?;
        self.replace(active);
        Ok(())
    }

    /// [`DpTokenTable::reload`] after a token write of this process.
    pub async fn reload_after_write(&self, store: &Store) -> StoreResult<()> {
        let reloaded = self.reload(store).await;
        self.local_writes.send_modify(|g| *g += 1);
        reloaded
    }

    /// Bumps after every token write of this process.
    pub fn subscribe_local_writes(&self) -> watch::Receiver<u64> {
        self.local_writes.subscribe()
    }

    fn replace(&self, active: Vec<ActiveDpToken>) {
        let mut by_hash = HashMap::with_capacity(active.len());
        for t in active {
            let Ok(bytes) = hex::decode(&t.token_hash) else {
                continue;
            };
            let Ok(hash) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                continue;
            };
            by_hash.insert(
                hash,
                DpIdentity {
                    group_id: t.group.id,
                    group_name: t.group.name,
                    tenant_id: t.group.tenant_id,
                    token_id: Some(t.token_id),
                    expires_at_ms: t.expires_at_ms,
                },
            );
        }
        match self.table.write() {
            Ok(mut g) => g.by_hash = by_hash,
            Err(poisoned) => poisoned.into_inner().by_hash = by_hash,
        }
        self.generation.send_modify(|g| *g += 1);
    }

    /// Bumps on every reload.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Whether the token behind `identity` still works.
    pub fn still_valid(&self, identity: &DpIdentity) -> bool {
        let Some(id) = &identity.token_id else {
            return true;
        };
        if identity.expires_at_ms != 0 && identity.expires_at_ms <= now_ms() {
            return false;
        }
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        table
            .by_hash
            .values()
            .any(|i| i.token_id.as_deref() == Some(id))
    }

    fn authenticate(&self, header: Option<&[u8]>) -> Result<DpIdentity, Status> {
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
        if crate::auth::constant_time_eq(&got, &self.builtin) {
            return Ok(DpIdentity::shared());
        }
        // A hash-map lookup by the digest: timing reveals nothing about the
        // token beyond what its SHA-256 does.
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        match table.by_hash.get(&got) {
            Some(identity) if identity.expires_at_ms == 0 || identity.expires_at_ms > now_ms() => {
                Ok(identity.clone())
            }
            _ => Err(Status::unauthenticated(format!(
                "invalid, revoked or expired data-plane token: {}",
                self.hint
            ))),
        }
    }

    /// Re-reads the table every few seconds until `shutdown` turns true.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        store: Store,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tick.tick() => {}
                }
                if *shutdown.borrow() {
                    break;
                }
                if let Err(e) = me.reload(&store).await {
                    // The previous table stays in force.
                    tracing::warn!(error = %e, "cannot reload data-plane tokens");
                }
            }
        })
    }
}

/// Interceptor of the sync service: accepts the built-in token or an active
/// registration token and records the [`DpIdentity`].
#[derive(Debug, Clone)]
pub struct DpAuth(pub Arc<DpTokenTable>);

impl Interceptor for DpAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req.metadata().get("authorization").map(|v| v.as_bytes());
        let identity = self.0.authenticate(header)?;
        req.extensions_mut().insert(identity);
        Ok(req)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{dp_token_hash, DpGroup};

    fn active(id: &str, token: &str, tenant: Option<&str>, expires_at_ms: i64) -> ActiveDpToken {
        ActiveDpToken {
            token_id: id.into(),
            token_hash: dp_token_hash(token),
            expires_at_ms,
            group: DpGroup {
                id: "dpg_1".into(),
                name: "onprem".into(),
                tenant_id: tenant.map(str::to_owned),
                created_at_ms: 0,
            },
        }
    }

    #[test]
    fn builtin_and_registration_tokens_map_to_their_groups() {
        let table = DpTokenTable::new(&SecretString::new("tgdp-builtin"), "hint".into());
        let mut gen = table.subscribe();
        table.replace(vec![
            active("dpt_a", "tgdr-a", Some("tn_a"), 0),
            active("dpt_old", "tgdr-old", None, 1),
        ]);
        assert!(gen.has_changed().unwrap());
        gen.borrow_and_update();

        let shared = table.authenticate(Some(b"Bearer tgdp-builtin")).unwrap();
        assert_eq!(shared.group_name, SHARED_GROUP);
        assert!(shared.may_serve("tn_b"));
        let a = table.authenticate(Some(b"Bearer tgdr-a")).unwrap();
        assert_eq!(a.tenant_id.as_deref(), Some("tn_a"));
        assert!(a.may_serve("tn_a") && !a.may_serve("tn_b"));
        assert!(a.check_tenant("tn_b").is_err());
        assert!(table.still_valid(&a));
        // Expired, unknown and missing tokens are refused.
        assert!(table.authenticate(Some(b"Bearer tgdr-old")).is_err());
        assert!(table.authenticate(Some(b"Bearer tgdr-nope")).is_err());
        let missing = table.authenticate(None).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);

        // Revocation (a reload without it) invalidates the live identity.
        table.replace(vec![]);
        assert!(gen.has_changed().unwrap());
        assert!(!table.still_valid(&a));
        assert!(table.authenticate(Some(b"Bearer tgdr-a")).is_err());
        assert!(table.still_valid(&shared));
    }
}
