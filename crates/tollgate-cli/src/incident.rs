//! `tollgate incident …`: incidents on the public status page
//! (docs/observability.md). Operator token only.

use clap::Subcommand;
use serde_json::json;

use tollgate_proto::admin::v1 as pb;

use crate::client::{status_error, Admin};
use crate::output::{datetime, table};

#[derive(Subcommand, Debug)]
pub enum IncidentCmd {
    /// Post an incident (state `investigating`).
    Create {
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "")]
        message: String,
        /// none, minor, major or critical.
        #[arg(long, default_value = "minor")]
        impact: String,
        /// Affected provider kinds or models, comma-separated.
        #[arg(long, value_delimiter = ',')]
        components: Vec<String>,
    },
    /// Change an incident: state (investigating, identified, monitoring,
    /// resolved), message, impact, title or components.
    Update {
        #[arg(long)]
        id: String,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        message: Option<String>,
        #[arg(long)]
        impact: Option<String>,
        #[arg(long)]
        title: Option<String>,
        #[arg(long, value_delimiter = ',')]
        components: Vec<String>,
    },
    /// Mark an incident resolved.
    Resolve {
        #[arg(long)]
        id: String,
        #[arg(long)]
        message: Option<String>,
    },
    /// Open incidents and those resolved in the last days.
    List {
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
}

fn to_json(i: &pb::Incident) -> serde_json::Value {
    json!({
        "id": i.id, "title": i.title, "message": i.message, "impact": i.impact,
        "state": i.state, "components": i.components,
        "created_at_ms": i.created_at_ms, "updated_at_ms": i.updated_at_ms,
        "resolved_at_ms": i.resolved_at_ms,
    })
}

fn print(i: &pb::Incident, as_json: bool) {
    if as_json {
        println!("{}", to_json(i));
    } else {
        println!(
            "incident {} [{}] impact {}: {}",
            i.id, i.state, i.impact, i.title
        );
    }
}

pub async fn incident(admin: &mut Admin, cmd: IncidentCmd, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        IncidentCmd::Create {
            title,
            message,
            impact,
            components,
        } => {
            let i = admin
                .status
                .create_incident(pb::CreateIncidentRequest {
                    title,
                    message,
                    impact,
                    components,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&i, as_json);
        }
        IncidentCmd::Update {
            id,
            state,
            message,
            impact,
            title,
            components,
        } => {
            let i = admin
                .status
                .update_incident(pb::UpdateIncidentRequest {
                    id,
                    title: title.unwrap_or_default(),
                    message: message.unwrap_or_default(),
                    impact: impact.unwrap_or_default(),
                    state: state.unwrap_or_default(),
                    components,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&i, as_json);
        }
        IncidentCmd::Resolve { id, message } => {
            let i = admin
                .status
                .update_incident(pb::UpdateIncidentRequest {
                    id,
                    state: "resolved".into(),
                    message: message.unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&i, as_json);
        }
        IncidentCmd::List { days } => {
            let list = admin
                .status
                .list_incidents(pb::ListIncidentsRequest {
                    resolved_within_days: days,
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .incidents;
            if as_json {
                println!(
                    "{}",
                    serde_json::Value::Array(list.iter().map(to_json).collect())
                );
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|i| {
                        vec![
                            i.id.clone(),
                            i.state.clone(),
                            i.impact.clone(),
                            datetime(i.created_at_ms),
                            datetime(i.resolved_at_ms),
                            i.title.clone(),
                        ]
                    })
                    .collect();
                table(
                    &["ID", "STATE", "IMPACT", "CREATED", "RESOLVED", "TITLE"],
                    &rows,
                );
            }
        }
    }
    Ok(())
}
