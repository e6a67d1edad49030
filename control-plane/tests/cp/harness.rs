//! Starts a control plane and builds authenticated clients for it.

use std::path::Path;
use std::time::Duration;

use tollgate_cp::{ControlPlaneConfig, RunningControlPlane};
use tollgate_proto::admin::v1 as admin;
use tollgate_proto::admin::v1::data_plane_service_client::DataPlaneServiceClient;
use tollgate_proto::admin::v1::key_service_client::KeyServiceClient;
use tollgate_proto::admin::v1::model_service_client::ModelServiceClient;
use tollgate_proto::admin::v1::provider_service_client::ProviderServiceClient;
use tollgate_proto::admin::v1::tenant_service_client::TenantServiceClient;
use tollgate_proto::admin::v1::usage_service_client::UsageServiceClient;
use tollgate_proto::sync::v1::sync_service_client::SyncServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub const OPENAI_KEY: &str = "sk-proj-PLAINTEXTsecretKEY0123456789wxyz";

pub async fn start_in(dir: &Path) -> RunningControlPlane {
    let config = ControlPlaneConfig::new(dir).with_listen("127.0.0.1:0".parse().unwrap());
    tollgate_cp::start(config).await.unwrap()
}

pub struct Cp {
    pub cp: Option<RunningControlPlane>,
    pub dir: tempfile::TempDir,
}

impl Cp {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cp = start_in(dir.path()).await;
        Self { cp: Some(cp), dir }
    }

    /// Like [`Cp::start`] with the database at `database_url`.
    pub async fn start_with_database(database_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            ControlPlaneConfig::new(dir.path()).with_listen("127.0.0.1:0".parse().unwrap());
        config.database_url = Some(database_url.to_owned());
        // A shared database outlives the temp dir: keep one master key so
        // rows written by earlier runs still decrypt.
        config.master_key = tollgate_cp::MasterKeySource::Base64(
            "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=".into(),
        );
        let cp = tollgate_cp::start(config).await.unwrap();
        Self { cp: Some(cp), dir }
    }

    pub fn running(&self) -> &RunningControlPlane {
        self.cp.as_ref().unwrap()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.running().url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn admin(&self) -> Admin {
        Admin::new(self.channel().await, &self.running().admin_token)
    }

    pub async fn sync(&self) -> SyncServiceClient<InterceptedService<Channel, Bearer>> {
        SyncServiceClient::with_interceptor(
            self.channel().await,
            Bearer::new(&self.running().dp_token),
        )
        .max_decoding_message_size(64 * 1024 * 1024)
    }

    pub async fn shutdown(mut self) -> tempfile::TempDir {
        self.cp.take().unwrap().shutdown().await.unwrap();
        self.dir
    }
}

#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    pub fn new(token: &str) -> Self {
        Self(Some(format!("Bearer {token}").parse().unwrap()))
    }
    pub fn none() -> Self {
        Self(None)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Auth = InterceptedService<Channel, Bearer>;

pub struct Admin {
    pub tenants: TenantServiceClient<Auth>,
    pub providers: ProviderServiceClient<Auth>,
    pub models: ModelServiceClient<Auth>,
    pub keys: KeyServiceClient<Auth>,
    pub usage: UsageServiceClient<Auth>,
    pub data_planes: DataPlaneServiceClient<Auth>,
}

impl Admin {
    pub fn new(ch: Channel, token: &str) -> Self {
        Self::with_bearer(ch, Bearer::new(token))
    }

    pub fn with_bearer(ch: Channel, b: Bearer) -> Self {
        Self {
            tenants: TenantServiceClient::with_interceptor(ch.clone(), b.clone()),
            providers: ProviderServiceClient::with_interceptor(ch.clone(), b.clone()),
            models: ModelServiceClient::with_interceptor(ch.clone(), b.clone()),
            keys: KeyServiceClient::with_interceptor(ch.clone(), b.clone()),
            usage: UsageServiceClient::with_interceptor(ch.clone(), b.clone()),
            data_planes: DataPlaneServiceClient::with_interceptor(ch, b),
        }
    }

    pub async fn tenant(&mut self, name: &str) -> admin::Tenant {
        self.tenants
            .create_tenant(admin::CreateTenantRequest { name: name.into() })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn provider(&mut self, tenant: &str, name: &str, key: &str) -> admin::Provider {
        self.providers
            .add_provider(admin::AddProviderRequest {
                tenant: tenant.into(),
                name: name.into(),
                kind: "openai".into(),
                base_url: "https://api.openai.example/v1".into(),
                api_key: key.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn model(
        &mut self,
        tenant: &str,
        name: &str,
        provider: &str,
    ) -> Result<admin::Model, Status> {
        self.models
            .add_model(admin::AddModelRequest {
                tenant: tenant.into(),
                name: name.into(),
                provider: provider.into(),
                upstream_model: String::new(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn key(&mut self, tenant: &str, name: &str) -> admin::CreateKeyResponse {
        self.keys
            .create_key(admin::CreateKeyRequest {
                tenant: tenant.into(),
                name: name.into(),
                expires_at_ms: 0,
                providers: Vec::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }
}

/// All bytes of the SQLite database, WAL included.
pub fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["tollgate.db", "tollgate.db-wal", "tollgate.db-shm"] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            all.extend(b);
        }
    }
    assert!(!all.is_empty());
    all
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Waits (bounded) for an eventually-true condition that has no signal of
/// its own, such as a registry update after an ack was sent.
pub async fn eventually<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
