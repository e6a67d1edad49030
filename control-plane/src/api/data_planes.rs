//! `DataPlaneService`: which data planes are connected and what they applied.

use tollgate_proto::admin::v1 as pb;
use tollgate_proto::admin::v1::data_plane_service_server::DataPlaneService;
use tonic::{Request, Response, Status};

use super::access::Need;
use super::status::store_status;
use super::ApiState;

#[derive(Debug, Clone)]
pub struct DataPlaneApi {
    state: ApiState,
}

impl DataPlaneApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl DataPlaneService for DataPlaneApi {
    async fn get_config_status(
        &self,
        request: Request<pb::GetConfigStatusRequest>,
    ) -> Result<Response<pb::ConfigStatus>, Status> {
        // Data planes serve many tenants: operators only.
        self.state.require_operator(&request, Need::Read).await?;
        let version = self
            .state
            .store
            .config_version()
            .await
            .map_err(store_status)?;
        let data_planes = self
            .state
            .registry
            .list()
            .into_iter()
            .map(|d| pb::DataPlaneStatus {
                node_id: d.node_id,
                connected: d.connected,
                acked_version: d.acked_version,
                rejected_version: d.rejected_version,
                reject_reason: d.reject_reason,
                last_seen_ms: d.last_seen_ms,
                group_id: d.group_id,
                group_name: d.group_name,
                token_id: d.token_id,
                tenant_id: d.tenant_id,
            })
            .collect();
        Ok(Response::new(pb::ConfigStatus {
            version,
            data_planes,
        }))
    }
}
