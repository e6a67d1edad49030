//! The admin verbs: tenants, providers, models, caller keys, usage, status.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;

use tollgate_core::money::format_usd;
use tollgate_proto::admin::v1 as pb;

use crate::client::{status_error, Admin};
use crate::output::{datetime, table};

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant (name: lowercase letters, digits and dashes).
    Create { name: String },
    /// List tenants.
    List,
    /// Billing: freeze / unfreeze (crate::billing).
    #[command(flatten)]
    Billing(crate::billing::TenantBillingCmd),
}

#[derive(Subcommand, Debug)]
pub enum ProviderCmd {
    /// Add a provider credential to a tenant. The API key is encrypted at rest
    /// and never shown again.
    Add(ProviderAdd),
    /// List a tenant's providers (keys are shown as fingerprint and last 4).
    List(TenantArg),
    /// Delete a provider.
    Delete {
        #[arg(long)]
        tenant: String,
        /// Provider name or id.
        #[arg(long)]
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct ProviderAdd {
    #[arg(long)]
    pub tenant: String,
    #[arg(long)]
    pub name: String,
    /// openai (any OpenAI-compatible API), anthropic (Messages API), gemini
    /// (Gemini API) or mock (built into the data plane).
    #[arg(long, default_value = "openai")]
    pub kind: String,
    /// e.g. https://api.openai.com/v1; optional for anthropic
    /// (https://api.anthropic.com/v1) and gemini
    /// (https://generativelanguage.googleapis.com/v1beta).
    #[arg(long, default_value = "")]
    pub base_url: String,
    /// Read the API key from this file (keeps it out of shell history).
    #[arg(long, conflicts_with = "api_key_env")]
    pub api_key_file: Option<PathBuf>,
    /// Read the API key from this environment variable.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// A kind-specific setting as KEY=VALUE, repeatable (azure:
    /// api_version=2024-10-21).
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TenantArg {
    #[arg(long)]
    pub tenant: String,
}

#[derive(Subcommand, Debug)]
pub enum ModelCmd {
    /// Expose a model to a tenant's callers, served by one of its providers.
    Add {
        #[arg(long)]
        tenant: String,
        /// Public name callers use in `model`.
        #[arg(long)]
        name: String,
        /// Provider name or id.
        #[arg(long)]
        provider: String,
        /// Model name sent upstream (defaults to --name).
        #[arg(long, default_value = "")]
        upstream_model: String,
    },
    /// List a tenant's models.
    List(TenantArg),
    /// Remove a model.
    Delete {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create a caller key; it is printed once and only its hash is stored.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// Expire the key after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Only these providers (names or ids, comma-separated) may serve
        /// the key's calls; default: all of the tenant's.
        #[arg(long, value_delimiter = ',')]
        providers: Vec<String>,
    },
    /// List a tenant's keys (prefix only).
    List(TenantArg),
    /// Revoke a key (by name or id); data planes refuse it within a second.
    Revoke {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        key: String,
    },
    /// Give a key (by name or id) a new secret, printed once; its id, name,
    /// allowlist, budgets, limits and expiry stay. The old secret stops
    /// working within a second.
    Regenerate {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        key: String,
    },
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct UsageArgs {
    /// query, requests or export; without one: totals per model (and key).
    #[command(subcommand)]
    pub command: Option<crate::usage::UsageCmd>,
    #[arg(long)]
    pub tenant: Option<String>,
    /// Window: e.g. 30m, 24h, 7d (default: everything).
    #[arg(long)]
    pub since: Option<String>,
    /// Break down per caller key too.
    #[arg(long)]
    pub by_key: bool,
    /// Show the newest itemised records instead of totals.
    #[arg(long)]
    pub records: Option<u32>,
}

fn read_api_key(add: &ProviderAdd) -> anyhow::Result<String> {
    if let Some(path) = &add.api_key_file {
        let s = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the API key file {}", path.display()))?;
        return Ok(s.trim().to_string());
    }
    if let Some(var) = &add.api_key_env {
        return std::env::var(var)
            .map(|s| s.trim().to_string())
            .with_context(|| format!("environment variable {var} is not set"));
    }
    Ok(String::new())
}

pub async fn tenant(admin: &mut Admin, cmd: TenantCmd, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        TenantCmd::Billing(c) => crate::billing::tenant(admin, c, as_json).await?,
        TenantCmd::Create { name } => {
            let t = admin
                .tenants
                .create_tenant(pb::CreateTenantRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                println!("{}", json!({"id": t.id, "name": t.name}));
            } else {
                println!("Created tenant {} ({})", t.name, t.id);
            }
        }
        TenantCmd::List => {
            let ts = admin
                .tenants
                .list_tenants(pb::ListTenantsRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .tenants;
            if as_json {
                let v: Vec<_> = ts
                    .iter()
                    .map(|t| json!({"id": t.id, "name": t.name, "active": t.active, "created_at_ms": t.created_at_ms}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let rows = ts
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.id.clone(),
                            if t.active { "active" } else { "frozen" }.into(),
                            datetime(t.created_at_ms),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["NAME", "ID", "STATE", "CREATED (UTC)"], &rows);
            }
        }
    }
    Ok(())
}

pub async fn provider(admin: &mut Admin, cmd: ProviderCmd, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        ProviderCmd::Add(add) => {
            let api_key = read_api_key(&add)?;
            if add.kind != "mock" && api_key.is_empty() {
                eprintln!("note: no API key given (--api-key-file or --api-key-env); calls go out unauthenticated");
            }
            let p = admin
                .providers
                .add_provider(pb::AddProviderRequest {
                    tenant: add.tenant,
                    name: add.name,
                    kind: add.kind,
                    base_url: add.base_url,
                    api_key,
                    settings: add
                        .settings
                        .iter()
                        .map(|kv| {
                            kv.split_once('=')
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .ok_or_else(|| {
                                    anyhow::anyhow!("--setting {kv:?}: expected KEY=VALUE")
                                })
                        })
                        .collect::<anyhow::Result<_>>()?,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                println!("{}", provider_json(&p));
            } else {
                println!(
                    "Added provider {} ({}, kind {}) with key fingerprint {}{}",
                    p.name,
                    p.id,
                    p.kind,
                    if p.key_fingerprint.is_empty() {
                        "-"
                    } else {
                        &p.key_fingerprint
                    },
                    if p.key_last4.is_empty() {
                        String::new()
                    } else {
                        format!(" ending in {}", p.key_last4)
                    }
                );
            }
        }
        ProviderCmd::List(t) => {
            let ps = admin
                .providers
                .list_providers(pb::ListProvidersRequest { tenant: t.tenant })
                .await
                .map_err(status_error)?
                .into_inner()
                .providers;
            if as_json {
                println!(
                    "{}",
                    serde_json::Value::Array(ps.iter().map(provider_json).collect())
                );
            } else {
                let rows = ps
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.kind.clone(),
                            p.base_url.clone(),
                            if p.key_fingerprint.is_empty() {
                                "-".to_string()
                            } else {
                                format!("{} …{}", p.key_fingerprint, p.key_last4)
                            },
                            p.id.clone(),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["NAME", "KIND", "BASE URL", "KEY", "ID"], &rows);
            }
        }
        ProviderCmd::Delete { tenant, name } => {
            admin
                .providers
                .delete_provider(pb::DeleteProviderRequest {
                    tenant,
                    provider: name.clone(),
                })
                .await
                .map_err(status_error)?;
            println!("Deleted provider {name}");
        }
    }
    Ok(())
}

fn provider_json(p: &pb::Provider) -> serde_json::Value {
    json!({"id": p.id, "tenant_id": p.tenant_id, "name": p.name, "kind": p.kind,
           "base_url": p.base_url, "key_fingerprint": p.key_fingerprint, "key_last4": p.key_last4,
           "settings": p.settings})
}

pub async fn model(admin: &mut Admin, cmd: ModelCmd, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        ModelCmd::Add {
            tenant,
            name,
            provider,
            upstream_model,
        } => {
            let m = admin
                .models
                .add_model(pb::AddModelRequest {
                    tenant,
                    name,
                    provider,
                    upstream_model,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                println!("{}", model_json(&m));
            } else {
                println!(
                    "Added model {} → {} on provider {} ({})",
                    m.name, m.upstream_model, m.provider_name, m.id
                );
            }
        }
        ModelCmd::List(t) => {
            let ms = admin
                .models
                .list_models(pb::ListModelsRequest { tenant: t.tenant })
                .await
                .map_err(status_error)?
                .into_inner()
                .models;
            if as_json {
                println!(
                    "{}",
                    serde_json::Value::Array(ms.iter().map(model_json).collect())
                );
            } else {
                let rows = ms
                    .iter()
                    .map(|m| {
                        vec![
                            m.name.clone(),
                            m.provider_name.clone(),
                            m.upstream_model.clone(),
                            m.id.clone(),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["MODEL", "PROVIDER", "UPSTREAM MODEL", "ID"], &rows);
            }
        }
        ModelCmd::Delete { tenant, name } => {
            admin
                .models
                .delete_model(pb::DeleteModelRequest {
                    tenant,
                    model: name.clone(),
                })
                .await
                .map_err(status_error)?;
            println!("Deleted model {name}");
        }
    }
    Ok(())
}

fn model_json(m: &pb::Model) -> serde_json::Value {
    json!({"id": m.id, "tenant_id": m.tenant_id, "name": m.name, "provider_id": m.provider_id,
           "provider_name": m.provider_name, "upstream_model": m.upstream_model})
}

pub async fn key(admin: &mut Admin, cmd: KeyCmd, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::Create {
            tenant,
            name,
            expires_in_days,
            providers,
        } => {
            let expires_at_ms = expires_in_days
                .map(|d| tollgate_core::time::now_ms() + i64::from(d) * 86_400_000)
                .unwrap_or(0);
            let r = admin
                .keys
                .create_key(pb::CreateKeyRequest {
                    tenant,
                    name,
                    expires_at_ms,
                    providers,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let k = r.key.unwrap_or_default();
            if as_json {
                println!(
                    "{}",
                    json!({"id": k.id, "name": k.name, "secret": r.secret, "expires_at_ms": k.expires_at_ms,
                           "allowed_provider_ids": k.allowed_provider_ids})
                );
            } else {
                println!(
                    "Created key {} ({}). Copy it now, it is not shown again:",
                    k.name, k.id
                );
                println!();
                println!("  {}", r.secret);
                println!();
            }
        }
        KeyCmd::List(t) => {
            let ks = admin
                .keys
                .list_keys(pb::ListKeysRequest { tenant: t.tenant })
                .await
                .map_err(status_error)?
                .into_inner()
                .keys;
            if as_json {
                let v: Vec<_> = ks
                    .iter()
                    .map(|k| json!({"id": k.id, "name": k.name, "prefix": k.prefix, "created_at_ms": k.created_at_ms,
                                    "expires_at_ms": k.expires_at_ms, "revoked_at_ms": k.revoked_at_ms}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let rows = ks
                    .iter()
                    .map(|k| {
                        let state = if k.revoked_at_ms > 0 {
                            "revoked"
                        } else if k.expires_at_ms > 0
                            && k.expires_at_ms <= tollgate_core::time::now_ms()
                        {
                            "expired"
                        } else {
                            "active"
                        };
                        vec![
                            k.name.clone(),
                            format!("{}…", k.prefix),
                            state.into(),
                            datetime(k.created_at_ms),
                            datetime(k.expires_at_ms),
                            k.id.clone(),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(
                    &["NAME", "PREFIX", "STATE", "CREATED (UTC)", "EXPIRES", "ID"],
                    &rows,
                );
            }
        }
        KeyCmd::Revoke { tenant, key } => {
            let k = admin
                .keys
                .revoke_key(pb::RevokeKeyRequest { tenant, key })
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "Revoked key {} ({}) at {}",
                k.name,
                k.id,
                datetime(k.revoked_at_ms)
            );
        }
        KeyCmd::Regenerate { tenant, key } => {
            let r = admin
                .keys
                .regenerate_key(pb::RegenerateKeyRequest { tenant, key })
                .await
                .map_err(status_error)?
                .into_inner();
            let k = r.key.unwrap_or_default();
            if as_json {
                println!(
                    "{}",
                    json!({"id": k.id, "name": k.name, "secret": r.secret, "expires_at_ms": k.expires_at_ms,
                           "allowed_provider_ids": k.allowed_provider_ids})
                );
            } else {
                println!(
                    "Regenerated key {} ({}); the old secret no longer works. Copy the new one now, it is not shown again:",
                    k.name, k.id
                );
                println!();
                println!("  {}", r.secret);
                println!();
            }
        }
    }
    Ok(())
}

/// Parses `30m`, `24h`, `7d` into milliseconds.
pub fn parse_window(s: &str) -> anyhow::Result<i64> {
    let (num, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: i64 = num
        .parse()
        .with_context(|| format!("bad window {s:?}: use e.g. 30m, 24h or 7d"))?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("bad window {s:?}: the unit must be s, m, h or d"),
    };
    Ok(n.saturating_mul(ms))
}

pub async fn usage(admin: &mut Admin, args: UsageArgs, as_json: bool) -> anyhow::Result<()> {
    if let Some(cmd) = args.command {
        return crate::usage::run(admin, cmd, as_json).await;
    }
    let Some(tenant) = args.tenant else {
        bail!("--tenant is required (or use `tollgate usage query|requests|export --tenant ...`)");
    };
    if let Some(limit) = args.records {
        let rs = admin
            .usage
            .list_usage_records(pb::ListUsageRecordsRequest { tenant, limit })
            .await
            .map_err(status_error)?
            .into_inner()
            .records;
        if as_json {
            let v: Vec<_> = rs
                .iter()
                .map(|r| json!({"id": r.id, "request_id": r.request_id, "key_id": r.key_id, "model": r.model,
                    "provider_id": r.provider_id, "started_at_ms": r.started_at_ms, "latency_ms": r.latency_ms,
                    "status_code": r.status_code, "error_code": r.error_code, "stream": r.stream,
                    "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                    "cost_micros": r.cost_micros}))
                .collect();
            println!("{}", serde_json::Value::Array(v));
        } else {
            let rows = rs
                .iter()
                .map(|r| {
                    vec![
                        datetime(r.started_at_ms),
                        r.request_id.clone(),
                        r.model.clone(),
                        r.status_code.to_string(),
                        r.prompt_tokens.to_string(),
                        r.completion_tokens.to_string(),
                        format!("{} ms", r.latency_ms),
                        if r.stream { "stream" } else { "" }.into(),
                    ]
                })
                .collect::<Vec<_>>();
            table(
                &[
                    "TIME (UTC)",
                    "REQUEST",
                    "MODEL",
                    "STATUS",
                    "PROMPT",
                    "COMPLETION",
                    "LATENCY",
                    "",
                ],
                &rows,
            );
        }
        return Ok(());
    }
    let since_ms = match &args.since {
        Some(w) => tollgate_core::time::now_ms() - parse_window(w)?,
        None => 0,
    };
    let rows = admin
        .usage
        .get_usage(pb::GetUsageRequest {
            tenant,
            since_ms,
            until_ms: 0,
            by_key: args.by_key,
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .rows;
    if as_json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({"model": r.model, "key_id": r.key_id, "calls": r.calls, "errors": r.errors,
                "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                "total_tokens": r.total_tokens, "cost_micros": r.cost_micros})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    let mut out = Vec::new();
    for r in &rows {
        let mut row = vec![r.model.clone()];
        if args.by_key {
            row.push(r.key_id.clone());
        }
        row.extend([
            r.calls.to_string(),
            r.errors.to_string(),
            r.prompt_tokens.to_string(),
            r.completion_tokens.to_string(),
            r.total_tokens.to_string(),
            format_usd(r.cost_micros),
        ]);
        out.push(row);
    }
    let mut header = vec!["MODEL"];
    if args.by_key {
        header.push("KEY");
    }
    header.extend([
        "CALLS",
        "ERRORS",
        "PROMPT TOKENS",
        "COMPLETION TOKENS",
        "TOTAL TOKENS",
        "COST",
    ]);
    table(&header, &out);
    Ok(())
}

pub async fn status(admin: &mut Admin, as_json: bool) -> anyhow::Result<()> {
    let s = admin
        .data_planes
        .get_config_status(pb::GetConfigStatusRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    if as_json {
        let dps: Vec<_> = s
            .data_planes
            .iter()
            .map(|d| json!({"node_id": d.node_id, "connected": d.connected, "acked_version": d.acked_version,
                "rejected_version": d.rejected_version, "reject_reason": d.reject_reason, "last_seen_ms": d.last_seen_ms,
                "group_id": d.group_id, "group_name": d.group_name, "token_id": d.token_id, "tenant_id": d.tenant_id}))
            .collect();
        println!("{}", json!({"version": s.version, "data_planes": dps}));
        return Ok(());
    }
    println!("Config version {}", s.version);
    let rows = s
        .data_planes
        .iter()
        .map(|d| {
            vec![
                d.node_id.clone(),
                d.group_name.clone(),
                if d.connected {
                    "connected"
                } else {
                    "disconnected"
                }
                .into(),
                d.acked_version.to_string(),
                if d.rejected_version > 0 {
                    format!("v{}: {}", d.rejected_version, d.reject_reason)
                } else {
                    String::new()
                },
                datetime(d.last_seen_ms),
            ]
        })
        .collect::<Vec<_>>();
    table(
        &[
            "DATA PLANE",
            "GROUP",
            "STATE",
            "APPLIED VERSION",
            "REJECTED",
            "LAST SEEN (UTC)",
        ],
        &rows,
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse() {
        assert_eq!(parse_window("30m").unwrap(), 1_800_000);
        assert_eq!(parse_window("7d").unwrap(), 604_800_000);
        assert!(parse_window("7w").is_err());
        assert!(parse_window("h").is_err());
    }
}
