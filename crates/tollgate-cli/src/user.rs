//! `tollgate user`: dashboard and admin-API users (sign-in with email and
//! password; roles owner, admin, member, viewer).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use tollgate_proto::admin::v1 as pb;

use crate::client::{status_error, Admin};
use crate::output::{datetime, table};

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user. Without --password-file a password is generated and
    /// printed once.
    Create {
        /// Tenant (id or name); omit for an operator user (every tenant).
        #[arg(long, default_value = "")]
        tenant: String,
        #[arg(long)]
        email: String,
        /// owner (admin + users), admin (everything in the tenant), member
        /// (read + create keys) or viewer (read only).
        #[arg(long)]
        role: String,
        /// Read the password (at least 12 characters) from this file.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List the users of a tenant (or the operator users).
    List {
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Disable a user and end its sessions.
    Disable {
        #[arg(long, default_value = "")]
        tenant: String,
        /// Email or id.
        #[arg(long)]
        user: String,
    },
}

pub async fn user(admin: &mut Admin, cmd: UserCmd, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Create {
            tenant,
            email,
            role,
            password_file,
        } => {
            let password = match password_file {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read {}", p.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                None => String::new(),
            };
            let r = admin
                .auth
                .create_user(pb::CreateUserRequest {
                    tenant,
                    email,
                    password,
                    role,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let u = r.user.unwrap_or_default();
            if as_json {
                println!(
                    "{}",
                    json!({"id": u.id, "email": u.email, "role": u.role, "tenant_id": u.tenant_id,
                           "generated_password": r.generated_password})
                );
            } else {
                println!("Created user {} ({}, {}).", u.email, u.role, u.id);
                if !r.generated_password.is_empty() {
                    println!("Password (shown once, copy it now):");
                    println!();
                    println!("  {}", r.generated_password);
                    println!();
                }
            }
        }
        UserCmd::List { tenant } => {
            let users = admin
                .auth
                .list_users(pb::ListUsersRequest { tenant })
                .await
                .map_err(status_error)?
                .into_inner()
                .users;
            if as_json {
                let v: Vec<_> = users
                    .iter()
                    .map(|u| json!({"id": u.id, "email": u.email, "role": u.role, "tenant_id": u.tenant_id,
                                    "created_at_ms": u.created_at_ms, "disabled_at_ms": u.disabled_at_ms}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let rows: Vec<Vec<String>> = users
                    .into_iter()
                    .map(|u| {
                        vec![
                            u.email,
                            u.role,
                            u.id,
                            datetime(u.created_at_ms),
                            if u.disabled_at_ms == 0 {
                                "active".into()
                            } else {
                                format!("disabled {}", datetime(u.disabled_at_ms))
                            },
                        ]
                    })
                    .collect();
                table(&["EMAIL", "ROLE", "ID", "CREATED", "STATE"], &rows);
            }
        }
        UserCmd::Disable { tenant, user } => {
            let u = admin
                .auth
                .disable_user(pb::DisableUserRequest { tenant, user })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                println!(
                    "{}",
                    json!({"id": u.id, "email": u.email, "disabled_at_ms": u.disabled_at_ms})
                );
            } else {
                println!("Disabled user {} ({}); its sessions ended.", u.email, u.id);
            }
        }
    }
    Ok(())
}
