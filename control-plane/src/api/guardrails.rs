//! `GuardrailService`: guardrail policies of a tenant and their attachments.
//! Settings are validated here with the data plane's own parser, so a bad
//! regex is an InvalidArgument naming the pattern and the position, and
//! never reaches a data plane.

use crate::api::access::Need;
use tollgate_core::guardrail::GuardrailSpec;
use tollgate_core::ids::{new_id, prefix};
use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::guardrail_service_server::GuardrailService;
use tonic::{Request, Response, Status};

use super::status::store_status;
use super::{reject_id_lookalike, require_token, ApiState};
use crate::store::{Guardrail, NewGuardrail};

/// Largest settings JSON accepted (a keyword list of ~100k words).
const MAX_SETTINGS_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct GuardrailApi {
    state: ApiState,
}

impl GuardrailApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

fn to_proto(g: Guardrail) -> pb::Guardrail {
    pb::Guardrail {
        id: g.id,
        tenant_id: g.tenant_id,
        name: g.name,
        kind: g.kind,
        action: g.action,
        direction: g.direction,
        settings: g.settings,
        created_at_ms: g.created_at_ms,
        attachments: g
            .attachments
            .into_iter()
            .map(|a| pb::GuardrailAttachment {
                scope: a.scope,
                target_id: a.target_id,
                target_name: a.target_name,
            })
            .collect(),
    }
}

fn require(field: &str, value: &str) -> Result<String, Status> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} is required (id or name)"
        )));
    }
    Ok(v.to_owned())
}

fn scope_and_target(scope: &str, target: &str) -> Result<(String, String), Status> {
    match scope.trim() {
        "tenant" => Ok(("tenant".into(), String::new())),
        s @ ("key" | "model") => Ok((s.to_owned(), require(s, target)?)),
        other => Err(Status::invalid_argument(format!(
            "scope must be tenant, key or model, not {other:?}"
        ))),
    }
}

#[tonic::async_trait]
impl GuardrailService for GuardrailApi {
    async fn create_guardrail(
        &self,
        request: Request<pb::CreateGuardrailRequest>,
    ) -> Result<Response<pb::Guardrail>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let name = req.name.trim().to_owned();
        require_token("guardrail name", &name)?;
        reject_id_lookalike("guardrail name", &name, prefix::GUARDRAIL)?;
        if req.settings.len() > MAX_SETTINGS_BYTES {
            return Err(Status::invalid_argument(format!(
                "settings are larger than {MAX_SETTINGS_BYTES} bytes"
            )));
        }
        let direction = match req.direction.trim() {
            "" => "input",
            d => d,
        };
        let settings = match req.settings.trim() {
            "" => "{}".to_owned(),
            s => s.to_owned(),
        };
        GuardrailSpec::parse(req.kind.trim(), req.action.trim(), direction, &settings)
            .map_err(Status::invalid_argument)?;
        let g = self
            .state
            .store
            .create_guardrail(NewGuardrail {
                id: new_id(prefix::GUARDRAIL),
                tenant_id: tenant.id,
                name,
                kind: req.kind.trim().to_owned(),
                action: req.action.trim().to_owned(),
                direction: direction.to_owned(),
                settings,
            })
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %g.tenant_id, guardrail_id = %g.id, name = %g.name, kind = %g.kind, "guardrail created");
        Ok(Response::new(to_proto(g)))
    }

    async fn list_guardrails(
        &self,
        request: Request<pb::ListGuardrailsRequest>,
    ) -> Result<Response<pb::ListGuardrailsResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let guardrails = self
            .state
            .store
            .list_guardrails(&tenant.id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListGuardrailsResponse {
            guardrails: guardrails.into_iter().map(to_proto).collect(),
        }))
    }

    async fn delete_guardrail(
        &self,
        request: Request<pb::DeleteGuardrailRequest>,
    ) -> Result<Response<pb::DeleteGuardrailResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let guardrail = require("guardrail", &req.guardrail)?;
        self.state
            .store
            .delete_guardrail(&tenant.id, &guardrail)
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %tenant.id, guardrail = %guardrail, "guardrail deleted");
        Ok(Response::new(pb::DeleteGuardrailResponse {}))
    }

    async fn attach_guardrail(
        &self,
        request: Request<pb::AttachGuardrailRequest>,
    ) -> Result<Response<pb::Guardrail>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let guardrail = require("guardrail", &req.guardrail)?;
        let (scope, target) = scope_and_target(&req.scope, &req.target)?;
        let store = &self.state.store;
        store
            .attach_guardrail(&tenant.id, &guardrail, &scope, &target)
            .await
            .map_err(store_status)?;
        let g = store
            .get_guardrail(&tenant.id, &guardrail)
            .await
            .map_err(store_status)?;
        Ok(Response::new(to_proto(g)))
    }

    async fn detach_guardrail(
        &self,
        request: Request<pb::DetachGuardrailRequest>,
    ) -> Result<Response<pb::Guardrail>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let guardrail = require("guardrail", &req.guardrail)?;
        let (scope, target) = scope_and_target(&req.scope, &req.target)?;
        let store = &self.state.store;
        store
            .detach_guardrail(&tenant.id, &guardrail, &scope, &target)
            .await
            .map_err(store_status)?;
        let g = store
            .get_guardrail(&tenant.id, &guardrail)
            .await
            .map_err(store_status)?;
        Ok(Response::new(to_proto(g)))
    }
}
