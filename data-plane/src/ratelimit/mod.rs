//! Rate limits and quotas on the data plane (docs/rate-limits.md).
//!
//! Limits attach to a caller key, a tenant and a model within a tenant
//! (tiers are resolved by the control plane). Each is compiled once per
//! snapshot version into a [`Limiter`]: the limit values plus a handle on
//! its [`LimiterState`], which outlives versions so a configuration change
//! does not reset counters. A call looks up its key once
//! ([`RateLimitTable::for_key`]) and is then admitted with a few atomic
//! operations per limit ([`admission`]).
//!
//! Requests and tokens are counted in fixed windows aligned to the epoch
//! (second, minute, UTC day). Across data planes, each spends a local slice
//! of every window granted by the control plane (`SyncService.AcquireQuota`,
//! [`quota`]); a data plane that cannot reach the control plane grants
//! itself its local share instead (limit ÷ expected data planes), never
//! more. Concurrency is an in-flight counter on each data plane, capped at
//! the same local share.

pub mod admission;
pub mod headers;
pub mod queue;
pub mod quota;
pub mod window;

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, Weak};

use tollgate_proto::sync::v1 as pb;

pub use admission::{Admission, CallLimits, Rejected};
pub use headers::RateHeaders;
pub use queue::QueuePolicy;
pub use quota::{QuotaHub, QuotaSettings};
use window::WindowCounter;

/// Which limit set a limiter enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Key,
    Model,
    Tenant,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Model => "model",
            Scope::Tenant => "tenant",
        }
    }
}

/// A limited quantity. The first five are counted in windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Rps,
    Rpm,
    Rpd,
    Tpm,
    Tpd,
    Concurrency,
}

/// The windowed dimensions, in counter order.
pub const WINDOWED: [Dim; 5] = [Dim::Rps, Dim::Rpm, Dim::Rpd, Dim::Tpm, Dim::Tpd];

impl Dim {
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Rps => "rps",
            Dim::Rpm => "rpm",
            Dim::Rpd => "rpd",
            Dim::Tpm => "tpm",
            Dim::Tpd => "tpd",
            Dim::Concurrency => "concurrency",
        }
    }

    /// Index of the window counter; `None` for concurrency.
    pub fn index(self) -> Option<usize> {
        match self {
            Dim::Rps => Some(0),
            Dim::Rpm => Some(1),
            Dim::Rpd => Some(2),
            Dim::Tpm => Some(3),
            Dim::Tpd => Some(4),
            Dim::Concurrency => None,
        }
    }

    pub fn window_ms(self) -> i64 {
        match self {
            Dim::Rps => 1_000,
            Dim::Rpm => 60_000,
            Dim::Rpd | Dim::Concurrency => 86_400_000,
            Dim::Tpm => 60_000,
            Dim::Tpd => 86_400_000,
        }
    }

    pub fn is_tokens(self) -> bool {
        matches!(self, Dim::Tpm | Dim::Tpd)
    }

    /// How the limit reads in an error message.
    pub fn describe(self) -> &'static str {
        match self {
            Dim::Rps => "requests per second (RPS)",
            Dim::Rpm => "requests per minute (RPM)",
            Dim::Rpd => "requests per day (RPD)",
            Dim::Tpm => "tokens per minute (TPM)",
            Dim::Tpd => "tokens per day (TPD)",
            Dim::Concurrency => "concurrent requests",
        }
    }
}

/// The error code recorded in the usage record and access log of a call a
/// limit refused: which scope and which limit fired.
pub fn log_code(scope: Scope, dim: Dim) -> &'static str {
    match (scope, dim) {
        (Scope::Key, Dim::Rps) => "rate_limit_exceeded:key:rps",
        (Scope::Key, Dim::Rpm) => "rate_limit_exceeded:key:rpm",
        (Scope::Key, Dim::Rpd) => "rate_limit_exceeded:key:rpd",
        (Scope::Key, Dim::Tpm) => "rate_limit_exceeded:key:tpm",
        (Scope::Key, Dim::Tpd) => "rate_limit_exceeded:key:tpd",
        (Scope::Key, Dim::Concurrency) => "rate_limit_exceeded:key:concurrency",
        (Scope::Model, Dim::Rps) => "rate_limit_exceeded:model:rps",
        (Scope::Model, Dim::Rpm) => "rate_limit_exceeded:model:rpm",
        (Scope::Model, Dim::Rpd) => "rate_limit_exceeded:model:rpd",
        (Scope::Model, Dim::Tpm) => "rate_limit_exceeded:model:tpm",
        (Scope::Model, Dim::Tpd) => "rate_limit_exceeded:model:tpd",
        (Scope::Model, Dim::Concurrency) => "rate_limit_exceeded:model:concurrency",
        (Scope::Tenant, Dim::Rps) => "rate_limit_exceeded:tenant:rps",
        (Scope::Tenant, Dim::Rpm) => "rate_limit_exceeded:tenant:rpm",
        (Scope::Tenant, Dim::Rpd) => "rate_limit_exceeded:tenant:rpd",
        (Scope::Tenant, Dim::Tpm) => "rate_limit_exceeded:tenant:tpm",
        (Scope::Tenant, Dim::Tpd) => "rate_limit_exceeded:tenant:tpd",
        (Scope::Tenant, Dim::Concurrency) => "rate_limit_exceeded:tenant:concurrency",
    }
}

/// Counters of one limiter; survives snapshot versions.
#[derive(Debug)]
pub struct LimiterState {
    /// `k/<tenant>/<key>`, `m/<tenant>/<model>` or `t/<tenant>`: the name the
    /// control plane keeps its grants under.
    pub id: String,
    pub windows: [WindowCounter; 5],
    pub in_flight: AtomicI64,
    /// Calls waiting in the concurrency queue ([`queue`]).
    pub queued: AtomicI64,
    /// Woken when a slot is given back while calls wait.
    pub slot_freed: tokio::sync::Notify,
    pub(crate) hub: Arc<QuotaHub>,
}

impl LimiterState {
    pub(crate) fn new(id: String, hub: Arc<QuotaHub>) -> LimiterState {
        LimiterState {
            id,
            windows: WINDOWED.map(|d| WindowCounter::new(d.window_ms())),
            in_flight: AtomicI64::new(0),
            queued: AtomicI64::new(0),
            slot_freed: tokio::sync::Notify::new(),
            hub,
        }
    }
}

/// The limits of one scope in one snapshot version, with its state.
#[derive(Debug)]
pub struct Limiter {
    pub scope: Scope,
    /// Per windowed dimension (counter order); 0: not limited.
    pub limits: [i64; 5],
    /// 0: not limited.
    pub max_concurrent: i64,
    /// Optional short queue of the concurrency limit.
    pub queue: QueuePolicy,
    pub state: Arc<LimiterState>,
}

/// Hands out limiter states by id so a new snapshot version finds the
/// counters of the previous one. Only used while compiling.
#[derive(Debug, Default)]
pub struct LimiterRegistry {
    states: Mutex<HashMap<String, Weak<LimiterState>>>,
    /// Where slices come from (control plane or local share).
    pub hub: Arc<QuotaHub>,
}

impl LimiterRegistry {
    fn state(&self, id: String) -> Arc<LimiterState> {
        let mut map = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(live) = map.get(&id).and_then(Weak::upgrade) {
            return live;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let fresh = Arc::new(LimiterState::new(id.clone(), self.hub.clone()));
        map.insert(id, Arc::downgrade(&fresh));
        fresh
    }
}

/// Every limit that applies to the calls of one caller key.
#[derive(Debug, Default)]
pub struct KeyLimits {
    pub key: Option<Arc<Limiter>>,
    pub tenant: Option<Arc<Limiter>>,
    /// Model id → limits of the tenant's calls to that model.
    pub models: FastMap<Arc<Limiter>>,
}

impl KeyLimits {
    /// The limiters of a call to `model_id`, most specific first.
    pub fn for_model(&self, model_id: &str) -> [Option<&Arc<Limiter>>; 3] {
        let model = if self.models.is_empty() {
            None
        } else {
            self.models.get(model_id)
        };
        [self.key.as_ref(), model, self.tenant.as_ref()]
    }
}

/// Rate limits of one snapshot version: caller key id → its limits. Keys
/// of tenants without any limit are absent (nothing to check, no headers).
#[derive(Debug, Default, Clone)]
pub struct RateLimitTable {
    by_key: FastMap<Arc<KeyLimits>>,
}

/// Looked up on every call of a limited key (key id, then model id):
/// foldhash, not SipHash — the ids come from our own configuration.
type FastMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

fn limiter(
    registry: &LimiterRegistry,
    scope: Scope,
    id: String,
    r: &pb::RateLimitRule,
) -> Option<Arc<Limiter>> {
    let i = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let limits = [
        i(r.requests_per_second),
        i(r.requests_per_minute),
        i(r.requests_per_day),
        i(r.tokens_per_minute),
        i(r.tokens_per_day),
    ];
    let max_concurrent = i(r.max_concurrent);
    if limits.iter().all(|l| *l == 0) && max_concurrent == 0 {
        return None;
    }
    Some(Arc::new(Limiter {
        scope,
        limits,
        max_concurrent,
        queue: QueuePolicy {
            wait_ms: r.queue_ms,
            depth: i(r.queue_depth),
        },
        state: registry.state(id),
    }))
}

impl RateLimitTable {
    pub fn compile(snapshot: &pb::Snapshot, registry: &LimiterRegistry) -> RateLimitTable {
        let mut by_key = FastMap::default();
        for t in &snapshot.tenants {
            if t.rate_limits.is_empty() {
                continue;
            }
            let mut tenant = None;
            let mut keys = HashMap::new();
            let mut models = FastMap::default();
            for r in &t.rate_limits {
                match r.scope.as_str() {
                    "tenant" => {
                        tenant = limiter(registry, Scope::Tenant, format!("t/{}", t.id), r);
                    }
                    "model" => {
                        if let Some(l) = limiter(
                            registry,
                            Scope::Model,
                            format!("m/{}/{}", t.id, r.target_id),
                            r,
                        ) {
                            models.insert(r.target_id.clone(), l);
                        }
                    }
                    "key" => {
                        if let Some(l) = limiter(
                            registry,
                            Scope::Key,
                            format!("k/{}/{}", t.id, r.target_id),
                            r,
                        ) {
                            keys.insert(r.target_id.as_str(), l);
                        }
                    }
                    other => {
                        tracing::warn!(tenant_id = %t.id, scope = other, "unknown rate limit scope ignored");
                    }
                }
            }
            if tenant.is_none() && keys.is_empty() && models.is_empty() {
                continue;
            }
            for k in &t.keys {
                let limits = KeyLimits {
                    key: keys.get(k.id.as_str()).cloned(),
                    tenant: tenant.clone(),
                    models: models.clone(),
                };
                by_key.insert(k.id.clone(), Arc::new(limits));
            }
        }
        RateLimitTable { by_key }
    }

    /// The limits of a caller key's calls; `None`: not limited.
    pub fn for_key(&self, key_id: &str) -> Option<&Arc<KeyLimits>> {
        if self.by_key.is_empty() {
            return None;
        }
        self.by_key.get(key_id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    pub(crate) fn rule(scope: &str, target: &str) -> pb::RateLimitRule {
        pb::RateLimitRule {
            scope: scope.into(),
            target_id: target.into(),
            ..Default::default()
        }
    }

    #[test]
    fn compiled_per_key_and_state_kept_across_versions() {
        let registry = LimiterRegistry::default();
        let snap = |rpm: u64| pb::Snapshot {
            version: 1,
            tenants: vec![pb::TenantConfig {
                id: "tn_a".into(),
                keys: vec![
                    pb::CallerKeyConfig {
                        id: "ck_1".into(),
                        ..Default::default()
                    },
                    pb::CallerKeyConfig {
                        id: "ck_2".into(),
                        ..Default::default()
                    },
                ],
                rate_limits: vec![
                    pb::RateLimitRule {
                        requests_per_minute: rpm,
                        ..rule("tenant", "")
                    },
                    pb::RateLimitRule {
                        tokens_per_minute: 1_000,
                        ..rule("key", "ck_1")
                    },
                    pb::RateLimitRule {
                        max_concurrent: 2,
                        ..rule("model", "md_x")
                    },
                    // Limits nothing: no limiter.
                    rule("key", "ck_2"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let v1 = RateLimitTable::compile(&snap(60), &registry);
        let k1 = v1.for_key("ck_1").unwrap();
        assert_eq!(k1.key.as_ref().unwrap().limits[3], 1_000);
        assert_eq!(k1.tenant.as_ref().unwrap().limits[1], 60);
        let k2 = v1.for_key("ck_2").unwrap();
        assert!(k2.key.is_none());
        let [key, model, tenant] = k2.for_model("md_x");
        assert!(key.is_none());
        assert_eq!(model.unwrap().max_concurrent, 2);
        assert_eq!(tenant.unwrap().state.id, "t/tn_a");
        assert!(k2.for_model("md_other")[1].is_none());
        assert!(v1.for_key("ck_unknown").is_none());
        // A new version with another limit keeps the same counters.
        let v2 = RateLimitTable::compile(&snap(120), &registry);
        let t1 = v1.for_key("ck_1").unwrap().tenant.clone().unwrap();
        let t2 = v2.for_key("ck_1").unwrap().tenant.clone().unwrap();
        assert!(Arc::ptr_eq(&t1.state, &t2.state));
        assert_eq!(t2.limits[1], 120);
    }

    #[test]
    fn log_codes_name_scope_and_limit() {
        assert_eq!(
            log_code(Scope::Key, Dim::Rpm),
            "rate_limit_exceeded:key:rpm"
        );
        assert_eq!(
            log_code(Scope::Tenant, Dim::Concurrency),
            "rate_limit_exceeded:tenant:concurrency"
        );
    }
}
