//! `tollgate dp-group …`: data-plane groups and their registration tokens
//! (docs/operations.md).

use clap::Subcommand;
use serde_json::json;

use tollgate_proto::admin::v1 as pb;

use crate::client::{status_error, Admin};
use crate::output::{datetime, table};

#[derive(Subcommand, Debug)]
pub enum DpGroupCmd {
    /// Create a group: shared (every tenant) or, with --tenant, scoped to one
    /// tenant (its self-hosted data planes see nothing of other tenants).
    Create {
        name: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List groups (a tenant user: --tenant is required).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Registration tokens of a group.
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a registration token; it is printed once.
    Create {
        /// Group id or name.
        group: String,
        #[arg(long, default_value = "")]
        name: String,
        /// The token stops working after this many seconds.
        #[arg(long)]
        expires_in_secs: Option<u64>,
        /// Tenant users: their tenant (the group must be scoped to it).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List a group's tokens (never the tokens themselves).
    List {
        group: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a token: its data planes are disconnected within a second.
    Revoke {
        token_id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn token_json(t: &pb::DataPlaneToken) -> serde_json::Value {
    json!({"id": t.id, "group_id": t.group_id, "name": t.name, "last4": t.last4,
        "created_at_ms": t.created_at_ms, "expires_at_ms": t.expires_at_ms, "revoked_at_ms": t.revoked_at_ms})
}

pub async fn dp_group(admin: &mut Admin, cmd: DpGroupCmd, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        DpGroupCmd::Create { name, tenant } => {
            let g = admin
                .dp_groups
                .create_data_plane_group(pb::CreateDataPlaneGroupRequest {
                    name,
                    tenant: tenant.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                println!(
                    "{}",
                    json!({"id": g.id, "name": g.name, "tenant_id": g.tenant_id})
                );
            } else {
                println!("Created data-plane group {} ({})", g.name, g.id);
            }
        }
        DpGroupCmd::List { tenant } => {
            let groups = admin
                .dp_groups
                .list_data_plane_groups(pb::ListDataPlaneGroupsRequest {
                    tenant: tenant.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .groups;
            if as_json {
                let v: Vec<_> = groups
                    .iter()
                    .map(|g| json!({"id": g.id, "name": g.name, "tenant_id": g.tenant_id, "created_at_ms": g.created_at_ms}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let rows: Vec<_> = groups
                    .iter()
                    .map(|g| {
                        vec![
                            g.name.clone(),
                            g.id.clone(),
                            if g.tenant_id.is_empty() {
                                "(shared)".into()
                            } else {
                                g.tenant_id.clone()
                            },
                            datetime(g.created_at_ms),
                        ]
                    })
                    .collect();
                table(&["NAME", "ID", "TENANT", "CREATED (UTC)"], &rows);
            }
        }
        DpGroupCmd::Token(TokenCmd::Create {
            group,
            name,
            expires_in_secs,
            tenant,
        }) => {
            let expires_at_ms = match expires_in_secs {
                Some(s) => tollgate_core::time::now_ms()
                    .saturating_add(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)),
                None => 0,
            };
            let created = admin
                .dp_groups
                .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
                    group,
                    tenant: tenant.unwrap_or_default(),
                    name,
                    expires_at_ms,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let token = created.token.unwrap_or_default();
            if as_json {
                let mut v = token_json(&token);
                v["token"] = json!(created.secret);
                println!("{v}");
            } else {
                println!(
                    "Created registration token {} for group {}.",
                    token.id, token.group_id
                );
                println!("Shown once; start a data plane with --cp URL --token-file FILE holding:");
                println!("{}", created.secret);
            }
        }
        DpGroupCmd::Token(TokenCmd::List { group, tenant }) => {
            let tokens = admin
                .dp_groups
                .list_data_plane_tokens(pb::ListDataPlaneTokensRequest {
                    group,
                    tenant: tenant.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .tokens;
            if as_json {
                println!(
                    "{}",
                    serde_json::Value::Array(tokens.iter().map(token_json).collect())
                );
            } else {
                let rows: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            format!("…{}", t.last4),
                            datetime(t.created_at_ms),
                            datetime(t.expires_at_ms),
                            datetime(t.revoked_at_ms),
                        ]
                    })
                    .collect();
                table(
                    &["ID", "NAME", "TOKEN", "CREATED", "EXPIRES", "REVOKED"],
                    &rows,
                );
            }
        }
        DpGroupCmd::Token(TokenCmd::Revoke { token_id, tenant }) => {
            let t = admin
                .dp_groups
                .revoke_data_plane_token(pb::RevokeDataPlaneTokenRequest {
                    token_id,
                    tenant: tenant.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                println!("{}", token_json(&t));
            } else {
                println!("Revoked data-plane token {}", t.id);
            }
        }
    }
    Ok(())
}
