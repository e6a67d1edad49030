//! `tollgate route …` (targets and policy of a model's route) and
//! `tollgate health …` (rotation state of provider credentials).

use clap::{Args, Subcommand};
use serde_json::json;

use tollgate_proto::admin::v1 as pb;

use crate::client::{status_error, Admin};
use crate::output::{datetime, table};

#[derive(Subcommand, Debug)]
pub enum RouteCmd {
    /// Show a model's route: targets by priority, weights, policy.
    Show(RouteRef),
    /// Add a target (provider × upstream model) to a model's route.
    AddTarget {
        #[command(flatten)]
        route: RouteRef,
        /// Provider name or id.
        #[arg(long)]
        provider: String,
        /// Model sent upstream (default: the model's; for a wildcard route,
        /// what the wildcard matched).
        #[arg(long, default_value = "")]
        upstream_model: String,
        /// Lower priorities are tried first.
        #[arg(long, default_value_t = 0)]
        priority: u32,
        /// Share of traffic within its priority group.
        #[arg(long, default_value_t = 1)]
        weight: u32,
    },
    /// Remove a provider's target(s) from a model's route.
    RemoveTarget {
        #[command(flatten)]
        route: RouteRef,
        #[arg(long)]
        provider: String,
        /// Only the target with this upstream model.
        #[arg(long, default_value = "")]
        upstream_model: String,
    },
    /// Set the route's strategy, retries, timeouts and breaker (unset: defaults).
    SetPolicy {
        #[command(flatten)]
        route: RouteRef,
        /// weighted, least_in_flight, latency or ordered.
        #[arg(long, default_value = "")]
        strategy: String,
        #[arg(long, default_value_t = 0)]
        max_attempts: u32,
        #[arg(long, default_value_t = 0)]
        retries_per_target: u32,
        /// Never retry the same target; go to the next one at once.
        #[arg(long)]
        no_same_target_retry: bool,
        #[arg(long, default_value_t = 0)]
        connect_timeout_ms: u64,
        #[arg(long, default_value_t = 0)]
        total_timeout_ms: u64,
        #[arg(long, default_value_t = 0)]
        ttft_timeout_ms: u64,
        #[arg(long, default_value_t = 0)]
        idle_timeout_ms: u64,
        #[arg(long, default_value_t = 0)]
        retry_base_ms: u64,
        #[arg(long, default_value_t = 0)]
        retry_max_ms: u64,
        #[arg(long, default_value_t = 0)]
        breaker_failures: u32,
        #[arg(long, default_value_t = 0)]
        breaker_cooldown_ms: u64,
        /// Model to retry with once on context-length or content-policy refusals.
        #[arg(long, default_value = "")]
        fallback_model: String,
    },
}

#[derive(Args, Debug)]
pub struct RouteRef {
    #[arg(long)]
    pub tenant: String,
    /// Model name or id.
    #[arg(long)]
    pub model: String,
}

#[derive(Subcommand, Debug)]
pub enum HealthCmd {
    /// Which provider credentials are out of rotation, and why.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Put a provider credential back into rotation.
    Enable {
        #[arg(long)]
        tenant: String,
        /// Provider name or id.
        #[arg(long)]
        provider: String,
    },
}

pub async fn route(admin: &mut Admin, cmd: RouteCmd, as_json: bool) -> anyhow::Result<()> {
    let r = match cmd {
        RouteCmd::Show(r) => admin
            .routes
            .get_route(pb::GetRouteRequest {
                tenant: r.tenant,
                model: r.model,
            })
            .await
            .map_err(status_error)?
            .into_inner(),
        RouteCmd::AddTarget {
            route,
            provider,
            upstream_model,
            priority,
            weight,
        } => admin
            .routes
            .add_route_target(pb::AddRouteTargetRequest {
                tenant: route.tenant,
                model: route.model,
                provider,
                upstream_model,
                priority,
                weight,
            })
            .await
            .map_err(status_error)?
            .into_inner(),
        RouteCmd::RemoveTarget {
            route,
            provider,
            upstream_model,
        } => admin
            .routes
            .remove_route_target(pb::RemoveRouteTargetRequest {
                tenant: route.tenant,
                model: route.model,
                provider,
                upstream_model,
            })
            .await
            .map_err(status_error)?
            .into_inner(),
        RouteCmd::SetPolicy {
            route,
            strategy,
            max_attempts,
            retries_per_target,
            no_same_target_retry,
            connect_timeout_ms,
            total_timeout_ms,
            ttft_timeout_ms,
            idle_timeout_ms,
            retry_base_ms,
            retry_max_ms,
            breaker_failures,
            breaker_cooldown_ms,
            fallback_model,
        } => admin
            .routes
            .set_route_policy(pb::SetRoutePolicyRequest {
                tenant: route.tenant,
                model: route.model,
                policy: Some(pb::RoutePolicy {
                    strategy,
                    max_attempts,
                    retries_per_target,
                    no_same_target_retry,
                    connect_timeout_ms,
                    total_timeout_ms,
                    ttft_timeout_ms,
                    idle_timeout_ms,
                    retry_base_ms,
                    retry_max_ms,
                    breaker_failures,
                    breaker_cooldown_ms,
                    fallback_model,
                }),
            })
            .await
            .map_err(status_error)?
            .into_inner(),
    };
    print_route(&r, as_json);
    Ok(())
}

fn print_route(r: &pb::Route, as_json: bool) {
    let policy = r.policy.clone().unwrap_or_default();
    if as_json {
        let targets: Vec<serde_json::Value> = r
            .targets
            .iter()
            .map(|t| {
                json!({"id": t.id, "provider_id": t.provider_id, "provider": t.provider_name,
                       "upstream_model": t.upstream_model, "priority": t.priority,
                       "weight": t.weight, "provider_disabled": t.provider_disabled})
            })
            .collect();
        println!(
            "{}",
            json!({"model_id": r.model_id, "name": r.name, "targets": targets,
                   "policy": {"strategy": policy.strategy, "max_attempts": policy.max_attempts,
                              "retries_per_target": policy.retries_per_target,
                              "no_same_target_retry": policy.no_same_target_retry,
                              "connect_timeout_ms": policy.connect_timeout_ms,
                              "total_timeout_ms": policy.total_timeout_ms,
                              "ttft_timeout_ms": policy.ttft_timeout_ms,
                              "idle_timeout_ms": policy.idle_timeout_ms,
                              "retry_base_ms": policy.retry_base_ms,
                              "retry_max_ms": policy.retry_max_ms,
                              "breaker_failures": policy.breaker_failures,
                              "breaker_cooldown_ms": policy.breaker_cooldown_ms,
                              "fallback_model": policy.fallback_model}})
        );
        return;
    }
    let or_default = |v: String| {
        if v.is_empty() {
            "default".to_string()
        } else {
            v
        }
    };
    println!(
        "Route {} ({}): strategy {}",
        r.name,
        r.model_id,
        or_default(policy.strategy.clone())
    );
    let rows: Vec<Vec<String>> = r
        .targets
        .iter()
        .map(|t| {
            vec![
                t.priority.to_string(),
                t.provider_name.clone(),
                if t.upstream_model.is_empty() {
                    "(model's)".into()
                } else {
                    t.upstream_model.clone()
                },
                t.weight.to_string(),
                if t.provider_disabled {
                    "out of rotation".into()
                } else {
                    "in rotation".into()
                },
            ]
        })
        .collect();
    table(
        &[
            "PRIORITY",
            "PROVIDER",
            "UPSTREAM MODEL",
            "WEIGHT",
            "CREDENTIAL",
        ],
        &rows,
    );
}

pub async fn health(admin: &mut Admin, cmd: HealthCmd, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        HealthCmd::List { tenant } => {
            let hs = admin
                .providers
                .list_provider_health(pb::ListProviderHealthRequest { tenant })
                .await
                .map_err(status_error)?
                .into_inner()
                .providers;
            if as_json {
                let v: Vec<serde_json::Value> = hs
                    .iter()
                    .map(|h| {
                        json!({"provider_id": h.provider_id, "provider": h.provider_name,
                               "disabled": h.disabled, "disabled_at_ms": h.disabled_at_ms,
                               "reason": h.reason})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let rows: Vec<Vec<String>> = hs
                    .iter()
                    .map(|h| {
                        vec![
                            h.provider_name.clone(),
                            if h.disabled {
                                "out of rotation".into()
                            } else {
                                "in rotation".into()
                            },
                            if h.disabled_at_ms == 0 {
                                String::new()
                            } else {
                                datetime(h.disabled_at_ms)
                            },
                            h.reason.clone(),
                        ]
                    })
                    .collect();
                table(&["PROVIDER", "CREDENTIAL", "SINCE", "REASON"], &rows);
            }
        }
        HealthCmd::Enable { tenant, provider } => {
            let h = admin
                .providers
                .enable_provider(pb::EnableProviderRequest { tenant, provider })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                println!(
                    "{}",
                    json!({"provider": h.provider_name, "disabled": h.disabled})
                );
            } else {
                println!("Provider {} is back in rotation", h.provider_name);
            }
        }
    }
    Ok(())
}
