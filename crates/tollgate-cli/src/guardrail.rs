//! `tollgate guardrail add|list|attach|detach|delete`.

use clap::{Args, Subcommand};
use serde_json::json;

use tollgate_proto::admin::v1 as pb;

use crate::client::{status_error, Admin};
use crate::output::{datetime, table};

#[derive(Subcommand, Debug)]
pub enum GuardrailCmd {
    /// Define a guardrail (unattached until `attach`).
    Add {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// keyword, regex, pii, size, model or webhook.
        #[arg(long)]
        kind: String,
        /// block, redact or log.
        #[arg(long, default_value = "block")]
        action: String,
        /// input, output or both.
        #[arg(long, default_value = "input")]
        direction: String,
        /// Settings as JSON, e.g. '{"words":["project zeus"],"whole_word":true}'
        /// (see docs/guardrails.md for each kind).
        #[arg(long, default_value = "{}")]
        settings: String,
    },
    /// A tenant's guardrails and where they are attached.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Attach a guardrail to the tenant, a key or a model.
    Attach(Attachment),
    /// Remove one attachment.
    Detach(Attachment),
    /// Delete a guardrail and its attachments.
    Delete {
        #[arg(long)]
        tenant: String,
        /// Guardrail name or id.
        #[arg(long)]
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct Attachment {
    #[arg(long)]
    tenant: String,
    /// Guardrail name or id.
    #[arg(long)]
    name: String,
    /// Attach to this key (name or id).
    #[arg(long, conflicts_with = "model")]
    key: Option<String>,
    /// Attach to this model (name or id).
    #[arg(long)]
    model: Option<String>,
}

impl Attachment {
    /// (scope, target): the tenant when neither --key nor --model is given.
    fn scope(&self) -> (String, String) {
        match (&self.key, &self.model) {
            (Some(k), _) => ("key".into(), k.clone()),
            (None, Some(m)) => ("model".into(), m.clone()),
            (None, None) => ("tenant".into(), String::new()),
        }
    }
}

fn attachments(g: &pb::Guardrail) -> String {
    g.attachments
        .iter()
        .map(|a| {
            if a.scope == "tenant" {
                "tenant".to_string()
            } else {
                format!("{}:{}", a.scope, a.target_name)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn to_json(g: &pb::Guardrail) -> serde_json::Value {
    json!({
        "id": g.id, "tenant_id": g.tenant_id, "name": g.name, "kind": g.kind,
        "action": g.action, "direction": g.direction,
        "settings": serde_json::from_str::<serde_json::Value>(&g.settings).unwrap_or_default(),
        "created_at_ms": g.created_at_ms,
        "attachments": g.attachments.iter().map(|a| json!({
            "scope": a.scope, "target_id": a.target_id, "target_name": a.target_name})).collect::<Vec<_>>(),
    })
}

fn show(gs: &[pb::Guardrail], as_json: bool) {
    if as_json {
        let v: Vec<_> = gs.iter().map(to_json).collect();
        println!("{}", serde_json::Value::Array(v));
        return;
    }
    let rows: Vec<Vec<String>> = gs
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                g.kind.clone(),
                g.action.clone(),
                g.direction.clone(),
                attachments(g),
                datetime(g.created_at_ms),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "KIND",
            "ACTION",
            "DIRECTION",
            "ATTACHED TO",
            "CREATED",
        ],
        &rows,
    );
}

pub async fn guardrail(admin: &mut Admin, cmd: GuardrailCmd, as_json: bool) -> anyhow::Result<()> {
    let c = &mut admin.guardrails;
    let g = match cmd {
        GuardrailCmd::Add {
            tenant,
            name,
            kind,
            action,
            direction,
            settings,
        } => c
            .create_guardrail(pb::CreateGuardrailRequest {
                tenant,
                name,
                kind,
                action,
                direction,
                settings,
            })
            .await
            .map_err(status_error)?
            .into_inner(),
        GuardrailCmd::List { tenant } => {
            let gs = c
                .list_guardrails(pb::ListGuardrailsRequest { tenant })
                .await
                .map_err(status_error)?
                .into_inner()
                .guardrails;
            show(&gs, as_json);
            return Ok(());
        }
        GuardrailCmd::Attach(a) => {
            let (scope, target) = a.scope();
            c.attach_guardrail(pb::AttachGuardrailRequest {
                tenant: a.tenant,
                guardrail: a.name,
                scope,
                target,
            })
            .await
            .map_err(status_error)?
            .into_inner()
        }
        GuardrailCmd::Detach(a) => {
            let (scope, target) = a.scope();
            c.detach_guardrail(pb::DetachGuardrailRequest {
                tenant: a.tenant,
                guardrail: a.name,
                scope,
                target,
            })
            .await
            .map_err(status_error)?
            .into_inner()
        }
        GuardrailCmd::Delete { tenant, name } => {
            c.delete_guardrail(pb::DeleteGuardrailRequest {
                tenant,
                guardrail: name.clone(),
            })
            .await
            .map_err(status_error)?;
            if as_json {
                println!("{}", json!({"deleted": name}));
            } else {
                println!("deleted guardrail {name}");
            }
            return Ok(());
        }
    };
    show(std::slice::from_ref(&g), as_json);
    Ok(())
}
