//! `tollgate limit …`: rate limits of a tenant, one of its models
//! (`--model`) or one of its keys (`--key`), and the operator's tiers
//! (docs/rate-limits.md). Every call must pass every limit that applies.

use clap::{Args, Subcommand};
use serde_json::json;

use tollgate_proto::admin::v1 as pb;

use crate::client::{status_error, Admin};
use crate::output::{datetime, table};

#[derive(Args, Debug)]
pub struct LimitScopeArgs {
    #[arg(long)]
    pub tenant: String,
    /// Limit the tenant's calls to this model (name or id).
    #[arg(long, conflicts_with = "key")]
    pub model: Option<String>,
    /// Limit this caller key (name or id) instead of the whole tenant.
    #[arg(long)]
    pub key: Option<String>,
}

impl LimitScopeArgs {
    fn scope(&self) -> pb::RateLimitScope {
        let (kind, target) = match (&self.model, &self.key) {
            (Some(m), _) => ("model", m.clone()),
            (None, Some(k)) => ("key", k.clone()),
            (None, None) => ("tenant", String::new()),
        };
        pb::RateLimitScope {
            kind: kind.into(),
            target,
        }
    }
}

/// Limit values; 0 (the default) leaves a value unlimited (or the tier's).
#[derive(Args, Debug, Clone, Copy)]
pub struct LimitValues {
    /// Requests per second.
    #[arg(long, default_value_t = 0)]
    pub rps: u64,
    /// Requests per minute.
    #[arg(long, default_value_t = 0)]
    pub rpm: u64,
    /// Requests per day (UTC).
    #[arg(long, default_value_t = 0)]
    pub rpd: u64,
    /// Input + output tokens per minute.
    #[arg(long, default_value_t = 0)]
    pub tpm: u64,
    /// Input + output tokens per day (UTC).
    #[arg(long, default_value_t = 0)]
    pub tpd: u64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 0)]
    pub concurrency: u64,
    /// A call over the concurrency limit waits up to this many ms for a
    /// slot (with --queue-depth) before its 429.
    #[arg(long, default_value_t = 0)]
    pub queue_ms: u64,
    /// How many calls may wait for a concurrency slot at once (per data
    /// plane); more are refused at once.
    #[arg(long, default_value_t = 0)]
    pub queue_depth: u64,
}

impl LimitValues {
    fn to_proto(self) -> pb::RateLimitValues {
        pb::RateLimitValues {
            requests_per_second: self.rps,
            requests_per_minute: self.rpm,
            requests_per_day: self.rpd,
            tokens_per_minute: self.tpm,
            tokens_per_day: self.tpd,
            max_concurrent: self.concurrency,
            queue_ms: self.queue_ms,
            queue_depth: self.queue_depth,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum LimitCmd {
    /// Create or replace the limits of a tenant, a model or a key.
    Set {
        #[command(flatten)]
        scope: LimitScopeArgs,
        #[command(flatten)]
        values: LimitValues,
        /// Tier whose values apply wherever this set leaves 0.
        #[arg(long, default_value = "")]
        tier: String,
    },
    /// List the limits of a tenant.
    Show {
        #[arg(long)]
        tenant: String,
    },
    /// Remove the limits of a tenant, a model or a key.
    Clear {
        #[command(flatten)]
        scope: LimitScopeArgs,
    },
    /// Tiers (plans): named limit sets, operator only.
    #[command(subcommand)]
    Tier(TierCmd),
}

#[derive(Subcommand, Debug)]
pub enum TierCmd {
    /// Create or replace a tier.
    Set {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        values: LimitValues,
    },
    /// List the tiers.
    List,
    /// Delete a tier no limit set uses.
    Delete {
        #[arg(long)]
        name: String,
    },
}

pub async fn limit(admin: &mut Admin, cmd: LimitCmd, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        LimitCmd::Set {
            scope,
            values,
            tier,
        } => {
            let entry = admin
                .rate_limits
                .set_rate_limit(pb::SetRateLimitRequest {
                    tenant: scope.tenant.clone(),
                    scope: Some(scope.scope()),
                    limits: Some(values.to_proto()),
                    tier,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_limits(&[entry], as_json);
        }
        LimitCmd::Show { tenant } => {
            let list = admin
                .rate_limits
                .list_rate_limits(pb::ListRateLimitsRequest { tenant })
                .await
                .map_err(status_error)?
                .into_inner();
            print_limits(&list.limits, as_json);
        }
        LimitCmd::Clear { scope } => {
            let r = admin
                .rate_limits
                .clear_rate_limit(pb::ClearRateLimitRequest {
                    tenant: scope.tenant.clone(),
                    scope: Some(scope.scope()),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                println!("{}", json!({"removed": r.removed}));
            } else if r.removed {
                println!("rate limits removed");
            } else {
                println!("no rate limits were set there");
            }
        }
        LimitCmd::Tier(TierCmd::Set { name, values }) => {
            let t = admin
                .rate_limits
                .set_rate_limit_tier(pb::SetRateLimitTierRequest {
                    name,
                    limits: Some(values.to_proto()),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_tiers(&[t], as_json);
        }
        LimitCmd::Tier(TierCmd::List) => {
            let list = admin
                .rate_limits
                .list_rate_limit_tiers(pb::ListRateLimitTiersRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            print_tiers(&list.tiers, as_json);
        }
        LimitCmd::Tier(TierCmd::Delete { name }) => {
            let r = admin
                .rate_limits
                .delete_rate_limit_tier(pb::DeleteRateLimitTierRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                println!("{}", json!({"removed": r.removed}));
            } else if r.removed {
                println!("tier deleted");
            } else {
                println!("no such tier");
            }
        }
    }
    Ok(())
}

fn values_json(v: &pb::RateLimitValues) -> serde_json::Value {
    json!({"rps": v.requests_per_second, "rpm": v.requests_per_minute,
        "rpd": v.requests_per_day, "tpm": v.tokens_per_minute, "tpd": v.tokens_per_day,
        "concurrency": v.max_concurrent, "queue_ms": v.queue_ms,
        "queue_depth": v.queue_depth})
}

fn cells(v: &pb::RateLimitValues) -> Vec<String> {
    [
        v.requests_per_second,
        v.requests_per_minute,
        v.requests_per_day,
        v.tokens_per_minute,
        v.tokens_per_day,
        v.max_concurrent,
    ]
    .iter()
    .map(|n| if *n == 0 { "-".into() } else { n.to_string() })
    .chain(std::iter::once(if v.queue_ms == 0 || v.queue_depth == 0 {
        "-".to_string()
    } else {
        format!("{} x {}ms", v.queue_depth, v.queue_ms)
    }))
    .collect()
}

const VALUE_HEADERS: [&str; 7] = ["RPS", "RPM", "RPD", "TPM", "TPD", "CONCURRENCY", "QUEUE"];

fn print_limits(list: &[pb::RateLimitEntry], as_json: bool) {
    if as_json {
        let items: Vec<serde_json::Value> = list
            .iter()
            .map(|e| {
                json!({"tenant_id": e.tenant_id, "scope": e.scope, "target_id": e.target_id,
                    "target_name": e.target_name, "tier": e.tier,
                    "limits": values_json(&e.limits.unwrap_or_default()),
                    "effective": values_json(&e.effective.unwrap_or_default()),
                    "updated_at_ms": e.updated_at_ms})
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            let mut row = vec![
                e.scope.clone(),
                if e.target_name.is_empty() {
                    "-".into()
                } else {
                    e.target_name.clone()
                },
                if e.tier.is_empty() {
                    "-".into()
                } else {
                    e.tier.clone()
                },
            ];
            row.extend(cells(&e.effective.unwrap_or_default()));
            row.push(datetime(e.updated_at_ms));
            row
        })
        .collect();
    let mut header = vec!["SCOPE", "TARGET", "TIER"];
    header.extend(VALUE_HEADERS);
    header.push("UPDATED");
    table(&header, &rows);
}

fn print_tiers(list: &[pb::RateLimitTier], as_json: bool) {
    if as_json {
        let items: Vec<serde_json::Value> = list
            .iter()
            .map(|t| {
                json!({"name": t.name, "limits": values_json(&t.limits.unwrap_or_default()),
                    "updated_at_ms": t.updated_at_ms})
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            let mut row = vec![t.name.clone()];
            row.extend(cells(&t.limits.unwrap_or_default()));
            row.push(datetime(t.updated_at_ms));
            row
        })
        .collect();
    let mut header = vec!["TIER"];
    header.extend(VALUE_HEADERS);
    header.push("UPDATED");
    table(&header, &rows);
}
