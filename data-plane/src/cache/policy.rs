//! Cache policies compiled from a snapshot: attachable to a tenant, a model
//! and a caller key; the most specific one set applies as a whole
//! (key > model > tenant). Looked up per request with at most three hash
//! lookups, never parsed per request.

use std::collections::HashMap;

use serde_json::{Map, Value};
use tollgate_proto::sync::v1 as pb;

/// Default time an answer is served from cache.
pub const DEFAULT_TTL_MS: u64 = 300_000;
/// Default largest answer stored.
pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 1024 * 1024;
/// Full price, in basis points.
pub const FULL_PRICE_BPS: u32 = 10_000;

/// One effective policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    pub enabled: bool,
    pub ttl_ms: u64,
    pub max_entry_bytes: u64,
    /// Only requests with `temperature` explicitly 0 are cached.
    pub only_deterministic: bool,
    /// Share of the full price billed for a hit (0 free … 10000 full).
    pub hit_cost_bps: u32,
}

impl CachePolicy {
    pub fn from_proto(p: &pb::CachePolicy) -> CachePolicy {
        CachePolicy {
            enabled: p.enabled,
            ttl_ms: if p.ttl_ms == 0 {
                DEFAULT_TTL_MS
            } else {
                p.ttl_ms
            },
            max_entry_bytes: if p.max_entry_bytes == 0 {
                DEFAULT_MAX_ENTRY_BYTES
            } else {
                p.max_entry_bytes
            },
            only_deterministic: p.only_deterministic,
            hit_cost_bps: p.hit_cost_bps.min(FULL_PRICE_BPS),
        }
    }

    /// Whether this request's parameters allow caching under the policy:
    /// with `only_deterministic`, `temperature` must be present and 0
    /// (absent means the provider default, 1).
    pub fn admits(&self, body: &Map<String, Value>) -> bool {
        if !self.only_deterministic {
            return true;
        }
        body.get("temperature")
            .and_then(Value::as_f64)
            .is_some_and(|t| t <= 0.0)
    }

    /// What a hit costs when the same answer fetched upstream would cost
    /// `full_cost_micros`: the policy's share, rounded up (never a free
    /// micro-dollar from rounding).
    pub fn hit_cost_micros(&self, full_cost_micros: i64) -> i64 {
        hit_cost_micros(full_cost_micros, self.hit_cost_bps)
    }
}

/// `full_cost_micros` × `bps` / 10000, rounded up, in integer arithmetic.
pub fn hit_cost_micros(full_cost_micros: i64, bps: u32) -> i64 {
    if full_cost_micros <= 0 || bps == 0 {
        return 0;
    }
    let bps = i128::from(bps.min(FULL_PRICE_BPS));
    let full = i128::from(full_cost_micros);
    let cost = (full * bps + i128::from(FULL_PRICE_BPS) - 1) / i128::from(FULL_PRICE_BPS);
    i64::try_from(cost).unwrap_or(i64::MAX)
}

/// Every policy of a snapshot, by scope.
#[derive(Debug, Clone, Default)]
pub struct CachePolicies {
    tenants: HashMap<String, CachePolicy>,
    /// By model id (ids are unique across tenants).
    models: HashMap<String, CachePolicy>,
    /// By caller key id.
    keys: HashMap<String, CachePolicy>,
}

impl CachePolicies {
    pub fn compile(snapshot: &pb::Snapshot) -> CachePolicies {
        let mut out = CachePolicies::default();
        for t in &snapshot.tenants {
            if let Some(p) = &t.cache_policy {
                out.tenants.insert(t.id.clone(), CachePolicy::from_proto(p));
            }
            for m in &t.models {
                if let Some(p) = &m.cache_policy {
                    out.models.insert(m.id.clone(), CachePolicy::from_proto(p));
                }
            }
            for k in &t.keys {
                if let Some(p) = &k.cache_policy {
                    out.keys.insert(k.id.clone(), CachePolicy::from_proto(p));
                }
            }
        }
        out
    }

    /// The policy for a call: the key's, else the model's, else the
    /// tenant's; `None` (not cached) when none is set.
    pub fn effective(&self, tenant_id: &str, model_id: &str, key_id: &str) -> Option<CachePolicy> {
        if self.keys.is_empty() && self.models.is_empty() && self.tenants.is_empty() {
            return None;
        }
        self.keys
            .get(key_id)
            .or_else(|| self.models.get(model_id))
            .or_else(|| self.tenants.get(tenant_id))
            .copied()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pol(enabled: bool, ttl_ms: u64) -> Option<pb::CachePolicy> {
        Some(pb::CachePolicy {
            enabled,
            ttl_ms,
            ..Default::default()
        })
    }

    #[test]
    fn most_specific_wins_key_then_model_then_tenant() {
        let snap = pb::Snapshot {
            tenants: vec![pb::TenantConfig {
                id: "t1".into(),
                cache_policy: pol(true, 1000),
                models: vec![pb::ModelConfig {
                    id: "m1".into(),
                    cache_policy: pol(true, 2000),
                    ..Default::default()
                }],
                keys: vec![pb::CallerKeyConfig {
                    id: "k1".into(),
                    cache_policy: pol(false, 0),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let p = CachePolicies::compile(&snap);
        assert!(!p.effective("t1", "m1", "k1").unwrap().enabled);
        assert_eq!(p.effective("t1", "m1", "k2").unwrap().ttl_ms, 2000);
        assert_eq!(p.effective("t1", "m2", "k2").unwrap().ttl_ms, 1000);
        assert_eq!(p.effective("t2", "m9", "k9"), None);
        // Defaults fill zeros.
        let k = p.effective("t1", "m1", "k1").unwrap();
        assert_eq!(k.ttl_ms, DEFAULT_TTL_MS);
        assert_eq!(k.max_entry_bytes, DEFAULT_MAX_ENTRY_BYTES);
    }

    #[test]
    fn only_deterministic_needs_temperature_zero() {
        let p = CachePolicy {
            only_deterministic: true,
            ..CachePolicy::from_proto(&pb::CachePolicy::default())
        };
        let body = |s: &str| match serde_json::from_str::<Value>(s).unwrap() {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        assert!(p.admits(&body(r#"{"temperature":0}"#)));
        assert!(!p.admits(&body(r#"{"temperature":0.2}"#)));
        assert!(!p.admits(&body(r#"{}"#)));
        let any = CachePolicy {
            only_deterministic: false,
            ..p
        };
        assert!(any.admits(&body(r#"{"temperature":1.5}"#)));
    }

    #[test]
    fn hit_cost_is_a_rounded_up_share() {
        assert_eq!(hit_cost_micros(1_000, 0), 0);
        assert_eq!(hit_cost_micros(1_000, 10_000), 1_000);
        assert_eq!(hit_cost_micros(1_000, 2_500), 250);
        assert_eq!(hit_cost_micros(3, 5_000), 2);
        // Above full price is capped at full price.
        assert_eq!(hit_cost_micros(1_000, 20_000), 1_000);
        assert_eq!(hit_cost_micros(i64::MAX, 10_000), i64::MAX);
        assert_eq!(hit_cost_micros(-5, 10_000), 0);
    }
}
