//! `tollgate audit list`: the audit log of admin changes (docs/security.md
//! "Audit log"). Operators see every tenant; tenant owners and admins their
//! own.

use clap::Subcommand;
use serde_json::json;
use tollgate_proto::admin::v1 as pb;

use crate::client::{status_error, Admin};
use crate::output::{datetime, table};

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Events, newest first.
    List {
        /// Tenant id or name; "-" for installation-level events only.
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        tenant: String,
        /// Action or action prefix, e.g. "key." or "provider.add".
        #[arg(long, default_value = "")]
        action: String,
        /// Actor: user email or id, or "operator-token".
        #[arg(long, default_value = "")]
        actor: String,
        /// Start: relative (30m, 24h, 7d), a date (2026-11-23, UTC) or epoch ms.
        #[arg(long)]
        since: Option<String>,
        /// How many events (following pages until this many).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

fn since_ms(since: Option<&str>) -> anyhow::Result<i64> {
    let Some(s) = since else { return Ok(0) };
    if s.ends_with(['m', 'h', 'd']) && !s.contains('-') {
        return Ok(tollgate_core::time::now_ms() - crate::admin::parse_window(s)?);
    }
    crate::usage::parse_time(s)
}

fn to_json(e: &pb::AuditEvent) -> serde_json::Value {
    let details: serde_json::Value =
        serde_json::from_str(&e.details_json).unwrap_or(serde_json::Value::Null);
    json!({
        "id": e.id, "at_ms": e.at_ms, "actor_kind": e.actor_kind, "actor_id": e.actor_id,
        "actor_email": e.actor_email, "tenant_id": e.tenant_id, "action": e.action,
        "target_kind": e.target_kind, "target_id": e.target_id, "details": details,
        "outcome": e.outcome, "request_id": e.request_id, "peer": e.peer,
    })
}

pub async fn audit(admin: &mut Admin, cmd: AuditCmd, as_json: bool) -> anyhow::Result<()> {
    let AuditCmd::List {
        tenant,
        action,
        actor,
        since,
        limit,
    } = cmd;
    let since_ms = since_ms(since.as_deref())?;
    let mut events = Vec::new();
    let mut page_token = String::new();
    while events.len() < limit as usize {
        let resp = admin
            .audit
            .list_audit_events(pb::ListAuditEventsRequest {
                tenant: tenant.clone(),
                actor: actor.clone(),
                action_prefix: action.clone(),
                since_ms,
                until_ms: 0,
                limit: (limit as usize - events.len()).min(1000) as u32,
                page_token: page_token.clone(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        events.extend(resp.events);
        if resp.next_page_token.is_empty() {
            break;
        }
        page_token = resp.next_page_token;
    }
    if as_json {
        let all: Vec<_> = events.iter().map(to_json).collect();
        println!("{}", serde_json::Value::Array(all));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let actor = if e.actor_email.is_empty() {
                e.actor_id.clone()
            } else {
                e.actor_email.clone()
            };
            let target = if e.target_id.is_empty() {
                e.target_kind.clone()
            } else {
                format!("{} {}", e.target_kind, e.target_id)
            };
            vec![
                datetime(e.at_ms),
                actor,
                if e.tenant_id.is_empty() {
                    "-".into()
                } else {
                    e.tenant_id.clone()
                },
                e.action.clone(),
                target,
                e.outcome.clone(),
                e.details_json.clone(),
            ]
        })
        .collect();
    table(
        &[
            "TIME (UTC)",
            "ACTOR",
            "TENANT",
            "ACTION",
            "TARGET",
            "OUTCOME",
            "DETAILS",
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
    fn since_takes_windows_dates_and_epoch_ms() {
        assert_eq!(since_ms(None).unwrap(), 0);
        let now = tollgate_core::time::now_ms();
        let day_ago = since_ms(Some("1d")).unwrap();
        assert!((now - 86_400_000 - day_ago).abs() < 5_000);
        assert_eq!(since_ms(Some("1700000000000")).unwrap(), 1_700_000_000_000);
        assert_eq!(since_ms(Some("1970-01-02")).unwrap(), 86_400_000);
        assert!(since_ms(Some("yesterday")).is_err());
    }
}
