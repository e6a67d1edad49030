//! `tollgate cache …`: response cache policies (docs/cache.md). A policy
//! attaches to the tenant, one of its models (`--model`) or one of its keys
//! (`--key`); the data plane applies the most specific: key > model > tenant.

use clap::{Args, Subcommand};
use serde_json::json;

use tollgate_proto::admin::v1 as pb;

use crate::client::{status_error, Admin};
use crate::output::{datetime, table};

#[derive(Args, Debug)]
pub struct CacheScopeArgs {
    #[arg(long)]
    pub tenant: String,
    /// Attach to this model (name or id) instead of the whole tenant.
    #[arg(long, conflicts_with = "key")]
    pub model: Option<String>,
    /// Attach to this caller key (name or id) instead of the whole tenant.
    #[arg(long)]
    pub key: Option<String>,
}

impl CacheScopeArgs {
    fn scope(&self) -> pb::CacheScope {
        match (&self.model, &self.key) {
            (Some(m), _) => pb::CacheScope {
                kind: "model".into(),
                target: m.clone(),
            },
            (None, Some(k)) => pb::CacheScope {
                kind: "key".into(),
                target: k.clone(),
            },
            (None, None) => pb::CacheScope {
                kind: "tenant".into(),
                target: String::new(),
            },
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum CacheCmd {
    /// Create or replace a cache policy.
    Set {
        #[command(flatten)]
        scope: CacheScopeArgs,
        /// Turn caching off for this scope (overrides a less specific policy).
        #[arg(long)]
        off: bool,
        /// Seconds an answer is served from cache (0: data-plane default, 300).
        #[arg(long, default_value_t = 0)]
        ttl_secs: u64,
        /// Largest answer stored, in bytes (0: data-plane default, 1 MiB).
        #[arg(long, default_value_t = 0)]
        max_entry_bytes: u64,
        /// Cache only requests with `temperature` 0.
        #[arg(long)]
        only_deterministic: bool,
        /// What a hit is billed: `free`, `full`, or a share in percent (e.g. `25`).
        #[arg(long, default_value = "free")]
        hit_price: String,
    },
    /// List the cache policies of a tenant.
    Show {
        #[arg(long)]
        tenant: String,
    },
    /// Remove a cache policy (the next less specific one applies).
    ClearPolicy {
        #[command(flatten)]
        scope: CacheScopeArgs,
    },
}

/// `free` → 0, `full` → 10000, `25` or `25%` → 2500 basis points.
fn hit_cost_bps(s: &str) -> anyhow::Result<u32> {
    match s.trim() {
        "free" => Ok(0),
        "full" => Ok(10_000),
        other => {
            let pct: f64 = other.trim_end_matches('%').parse().map_err(|_| {
                anyhow::anyhow!("--hit-price must be free, full or a percentage, not {other:?}")
            })?;
            if !(0.0..=100.0).contains(&pct) {
                anyhow::bail!("--hit-price must be between 0 and 100 percent");
            }
            // Basis points: percent × 100, to the nearest basis point.
            Ok((pct * 100.0).round() as u32)
        }
    }
}

pub async fn cache(admin: &mut Admin, cmd: CacheCmd, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        CacheCmd::Set {
            scope,
            off,
            ttl_secs,
            max_entry_bytes,
            only_deterministic,
            hit_price,
        } => {
            let entry = admin
                .cache
                .set_cache_policy(pb::SetCachePolicyRequest {
                    tenant: scope.tenant.clone(),
                    scope: Some(scope.scope()),
                    settings: Some(pb::CacheSettings {
                        enabled: !off,
                        ttl_ms: ttl_secs.saturating_mul(1000),
                        max_entry_bytes,
                        only_deterministic,
                        hit_cost_bps: hit_cost_bps(&hit_price)?,
                    }),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_policies(&[entry], as_json);
        }
        CacheCmd::Show { tenant } => {
            let list = admin
                .cache
                .list_cache_policies(pb::ListCachePoliciesRequest { tenant })
                .await
                .map_err(status_error)?
                .into_inner();
            print_policies(&list.policies, as_json);
        }
        CacheCmd::ClearPolicy { scope } => {
            let r = admin
                .cache
                .clear_cache_policy(pb::ClearCachePolicyRequest {
                    tenant: scope.tenant.clone(),
                    scope: Some(scope.scope()),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                println!("{}", json!({"removed": r.removed}));
            } else if r.removed {
                println!("cache policy removed");
            } else {
                println!("no cache policy was set there");
            }
        }
    }
    Ok(())
}

fn print_policies(list: &[pb::CachePolicyEntry], as_json: bool) {
    if as_json {
        let items: Vec<serde_json::Value> = list
            .iter()
            .map(|p| {
                let s = p.settings.unwrap_or_default();
                json!({"tenant_id": p.tenant_id, "scope": p.scope, "target_id": p.target_id,
                    "target_name": p.target_name, "enabled": s.enabled, "ttl_ms": s.ttl_ms,
                    "max_entry_bytes": s.max_entry_bytes,
                    "only_deterministic": s.only_deterministic,
                    "hit_cost_bps": s.hit_cost_bps, "updated_at_ms": p.updated_at_ms})
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            let s = p.settings.unwrap_or_default();
            vec![
                p.scope.clone(),
                if p.target_name.is_empty() {
                    "-".into()
                } else {
                    p.target_name.clone()
                },
                if s.enabled { "on" } else { "off" }.into(),
                if s.ttl_ms == 0 {
                    "default".into()
                } else {
                    format!("{}s", s.ttl_ms / 1000)
                },
                if s.max_entry_bytes == 0 {
                    "default".into()
                } else {
                    s.max_entry_bytes.to_string()
                },
                if s.only_deterministic { "yes" } else { "no" }.into(),
                format!("{}%", f64::from(s.hit_cost_bps) / 100.0),
                datetime(p.updated_at_ms),
            ]
        })
        .collect();
    table(
        &[
            "SCOPE",
            "TARGET",
            "CACHE",
            "TTL",
            "MAX ENTRY",
            "ONLY T=0",
            "HIT PRICE",
            "UPDATED",
        ],
        &rows,
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hit_prices() {
        assert_eq!(hit_cost_bps("free").unwrap(), 0);
        assert_eq!(hit_cost_bps("full").unwrap(), 10_000);
        assert_eq!(hit_cost_bps("25").unwrap(), 2_500);
        assert_eq!(hit_cost_bps("12.5%").unwrap(), 1_250);
        assert!(hit_cost_bps("150").is_err());
        assert!(hit_cost_bps("cheap").is_err());
    }
}
