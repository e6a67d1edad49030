//! `ModelService`.

use tollgate_core::ids::{new_id, prefix};
use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::model_service_server::ModelService;
use tonic::{Request, Response, Status};

use super::access::Need;
use super::status::store_status;
use super::{reject_id_lookalike, require_token, ApiState};
use crate::store::{Model, NewModel};

#[derive(Debug, Clone)]
pub struct ModelApi {
    state: ApiState,
}

impl ModelApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

fn model_to_proto(m: Model) -> pb::Model {
    pb::Model {
        id: m.id,
        tenant_id: m.tenant_id,
        name: m.name,
        provider_id: m.provider_id,
        provider_name: m.provider_name,
        upstream_model: m.upstream_model,
        created_at_ms: m.created_at_ms,
    }
}

#[tonic::async_trait]
impl ModelService for ModelApi {
    async fn add_model(
        &self,
        request: Request<pb::AddModelRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let name = req.name.trim().to_owned();
        require_token("model name", &name)?;
        reject_id_lookalike("model name", &name, tollgate_core::ids::prefix::MODEL)?;
        let provider = req.provider.trim().to_owned();
        if provider.is_empty() {
            return Err(Status::invalid_argument(
                "provider is required (id or name)",
            ));
        }
        let upstream_model = match req.upstream_model.trim() {
            "" => name.clone(),
            u => u.to_owned(),
        };
        require_token("upstream_model", &upstream_model)?;
        let m = self
            .state
            .store
            .add_model(NewModel {
                id: new_id(prefix::MODEL),
                tenant_id: tenant.id,
                name,
                provider,
                upstream_model,
            })
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %m.tenant_id, model_id = %m.id, name = %m.name, provider_id = %m.provider_id, "model added");
        Ok(Response::new(model_to_proto(m)))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Read)
            .await?;
        let models = self
            .state
            .store
            .list_models(&tenant.id)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::ListModelsResponse {
            models: models.into_iter().map(model_to_proto).collect(),
        }))
    }

    async fn delete_model(
        &self,
        request: Request<pb::DeleteModelRequest>,
    ) -> Result<Response<pb::DeleteModelResponse>, Status> {
        let tenant = self
            .state
            .tenant_for(&request, &request.get_ref().tenant, Need::Write)
            .await?;
        let req = request.into_inner();
        let reference = req.model.trim();
        if reference.is_empty() {
            return Err(Status::invalid_argument("model is required (id or name)"));
        }
        self.state
            .store
            .delete_model(&tenant.id, reference)
            .await
            .map_err(store_status)?;
        tracing::info!(tenant_id = %tenant.id, model = %reference, "model deleted");
        Ok(Response::new(pb::DeleteModelResponse {}))
    }
}
