//! `StatusService`: incidents on the public status page. Incidents are
//! global (not tenant data): operators only, tenant users get
//! PermissionDenied.

use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::status_service_server::StatusService;
use tonic::{Request, Response, Status};

use super::access::Need;
use super::status::store_status;
use super::ApiState;
use crate::store::status::{Incident, IncidentUpdate};

#[derive(Debug, Clone)]
pub struct IncidentApi {
    state: ApiState,
}

impl IncidentApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

fn to_proto(i: Incident) -> pb::Incident {
    pb::Incident {
        id: i.id,
        title: i.title,
        message: i.message,
        impact: i.impact,
        state: i.state,
        components: i
            .components
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        created_at_ms: i.created_at_ms,
        updated_at_ms: i.updated_at_ms,
        resolved_at_ms: i.resolved_at_ms,
    }
}

fn components(list: &[String]) -> Result<String, Status> {
    let cleaned: Vec<&str> = list
        .iter()
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .collect();
    if cleaned.iter().any(|c| c.contains(',')) {
        return Err(Status::invalid_argument(
            "a component name cannot contain a comma",
        ));
    }
    Ok(cleaned.join(","))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl StatusService for IncidentApi {
    async fn create_incident(
        &self,
        request: Request<pb::CreateIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let r = request.into_inner();
        let impact = if r.impact.is_empty() {
            "minor"
        } else {
            r.impact.as_str()
        };
        let incident = self
            .state
            .store
            .create_incident(
                &r.title,
                &r.message,
                impact,
                &components(&r.components)?,
                tollgate_core::time::now_ms(),
            )
            .await
            .map_err(store_status)?;
        tracing::info!(id = %incident.id, impact = %incident.impact, "incident posted");
        Ok(Response::new(to_proto(incident)))
    }

    async fn update_incident(
        &self,
        request: Request<pb::UpdateIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.state.require_operator(&request, Need::Write).await?;
        let r = request.into_inner();
        let update = IncidentUpdate {
            title: non_empty(r.title),
            message: non_empty(r.message),
            impact: non_empty(r.impact),
            state: non_empty(r.state),
            components: if r.components.is_empty() {
                None
            } else {
                Some(components(&r.components)?)
            },
        };
        let incident = self
            .state
            .store
            .update_incident(&r.id, update, tollgate_core::time::now_ms())
            .await
            .map_err(store_status)?;
        tracing::info!(id = %incident.id, state = %incident.state, "incident updated");
        Ok(Response::new(to_proto(incident)))
    }

    async fn list_incidents(
        &self,
        request: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        self.state.require_operator(&request, Need::Read).await?;
        let days = match request.get_ref().resolved_within_days {
            0 => 7,
            d => i64::from(d.min(3650)),
        };
        let since = tollgate_core::time::now_ms() - days * 24 * 3_600_000;
        let incidents = self
            .state
            .store
            .list_incidents(since)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListIncidentsResponse {
            incidents: incidents.into_iter().map(to_proto).collect(),
        }))
    }
}
