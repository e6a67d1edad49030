//! Start-up and shutdown: secrets, store, snapshot broadcaster and one tonic
//! server (gRPC and gRPC-web on one port) for the admin and sync services.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use futures::FutureExt as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tollgate_proto::admin::v1::auth_service_server::AuthServiceServer;
use tollgate_proto::admin::v1::billing_service_server::BillingServiceServer;
use tollgate_proto::admin::v1::data_plane_service_server::DataPlaneServiceServer;
use tollgate_proto::admin::v1::guardrail_service_server::GuardrailServiceServer;
use tollgate_proto::admin::v1::key_service_server::KeyServiceServer;
use tollgate_proto::admin::v1::model_service_server::ModelServiceServer;
use tollgate_proto::admin::v1::provider_service_server::ProviderServiceServer;
use tollgate_proto::admin::v1::route_service_server::RouteServiceServer;
use tollgate_proto::admin::v1::tenant_service_server::TenantServiceServer;
use tollgate_proto::admin::v1::usage_query_service_server::UsageQueryServiceServer;
use tollgate_proto::admin::v1::usage_service_server::UsageServiceServer;
use tollgate_proto::sync::v1::sync_service_server::SyncServiceServer;
use tonic::service::{Routes, RoutesBuilder};
use tonic::transport::Server;

use crate::api::data_planes::DataPlaneApi;
use crate::api::keys::KeyApi;
use crate::api::models::ModelApi;
use crate::api::providers::ProviderApi;
use crate::api::routes::RouteApi;
use crate::api::tenants::TenantApi;
use crate::api::usage::UsageApi;
use crate::api::usage_query::UsageQueryApi;
use crate::api::users::UserApi;
use crate::api::ApiState;
use crate::auth::{AdminAuth, BearerAuth};
use crate::config::ControlPlaneConfig;
use crate::crypto::{KeyEncryptionKey, LocalKek};
use crate::data_planes::DataPlaneRegistry;
use crate::push::SnapshotBroadcaster;
use crate::secrets_files::{
    self, ADMIN_TOKEN_FILE, ADMIN_TOKEN_PREFIX, DP_TOKEN_FILE, DP_TOKEN_PREFIX, URL_FILE,
};
use crate::store::{sqlite_url, Store};
use crate::sync_service::SyncApi;

/// Snapshots grow with the configuration; allow large ones both ways.
const MAX_SYNC_MESSAGE: usize = tollgate_proto::MAX_SYNC_MESSAGE_BYTES;
/// HTTP/2 pings find data planes that vanished without closing the
/// connection, so their sessions end and their status shows disconnected.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A control plane serving on [`RunningControlPlane::url`].
pub struct RunningControlPlane {
    /// `http://<bound address>`, e.g. `http://127.0.0.1:7400` (`https://`
    /// with TLS).
    pub url: String,
    pub addr: SocketAddr,
    /// Operator token for the admin services (`authorization: Bearer ...`).
    pub admin_token: String,
    /// Registration token for data planes.
    pub dp_token: String,
    /// Absolute path of the data directory.
    pub data_dir: PathBuf,
    /// The built dashboard served on [`RunningControlPlane::url`], if any.
    pub dashboard_dir: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    broadcaster: JoinHandle<()>,
    retention: JoinHandle<()>,
    reclaim: JoinHandle<()>,
    cluster: Option<crate::cluster::Cluster>,
    store: Store,
}

impl std::fmt::Debug for RunningControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningControlPlane")
            .field("url", &self.url)
            .field("data_dir", &self.data_dir)
            .field("admin_token", &"<redacted>")
            .field("dp_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Starts the control plane: prepares the data directory (generating the
/// master key and tokens on first start), opens and migrates the database,
/// builds the first snapshot, binds `config.listen` and serves. Returns once
/// the port accepts connections.
pub async fn start(config: ControlPlaneConfig) -> anyhow::Result<RunningControlPlane> {
    secrets_files::ensure_data_dir(&config.data_dir)?;
    let data_dir = std::fs::canonicalize(&config.data_dir)
        .with_context(|| format!("data directory {}", config.data_dir.display()))?;

    let master = secrets_files::load_master_key(&config.master_key, &data_dir)?;
    let kek: Arc<dyn KeyEncryptionKey> = Arc::new(LocalKek::new(&master)?);
    let admin_token = secrets_files::load_token(
        config.admin_token.as_deref(),
        &data_dir,
        ADMIN_TOKEN_FILE,
        ADMIN_TOKEN_PREFIX,
    )?;
    let dp_token = secrets_files::load_token(
        config.dp_token.as_deref(),
        &data_dir,
        DP_TOKEN_FILE,
        DP_TOKEN_PREFIX,
    )?;

    let db_url = match &config.database_url {
        Some(url) => url.clone(),
        None => sqlite_url(&data_dir.join(secrets_files::DATABASE_FILE)),
    };
    let store = Store::connect(&db_url)
        .await
        .context("opening the database")?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Several replicas: etcd elects the job runner and relays commits.
    let mut cluster = match config.cluster.clone() {
        Some(c) => Some(crate::cluster::Cluster::start(
            c,
            &store,
            shutdown_rx.clone(),
        )?),
        None => None,
    };
    let cluster_state = cluster
        .as_ref()
        .map_or_else(crate::cluster::ClusterState::single, |c| c.state.clone());
    let wake = cluster
        .as_ref()
        .map_or_else(|| watch::channel(0_u64).1, |c| c.remote_versions.clone());
    let (snapshots, broadcaster) = match SnapshotBroadcaster::start_with_wake(
        store.clone(),
        kek.clone(),
        shutdown_rx.clone(),
        wake,
    )
    .await
    {
        Ok(v) => v,
        Err(e) => {
            store.close().await;
            return Err(e).context("building the first config snapshot");
        }
    };
    let registry = Arc::new(DataPlaneRegistry::default());
    // TLS (docs/tls.md): unusable certificate files fail the start.
    let tls = match config.tls.as_ref().map(crate::tls::CpTls::load).transpose() {
        Ok(t) => t,
        Err(e) => {
            let _ = shutdown_tx.send(true);
            let _ = broadcaster.await;
            store.close().await;
            return Err(e).context("loading the TLS certificate");
        }
    };

    let listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            let _ = shutdown_tx.send(true);
            let _ = broadcaster.await;
            store.close().await;
            return Err(e).with_context(|| format!("binding {}", config.listen));
        }
    };
    let addr = listener.local_addr()?;
    let url = crate::tls::url_for(addr, tls.is_some());

    let state = ApiState {
        store: store.clone(),
        kek,
        registry: registry.clone(),
    };
    let admin = AdminAuth::new(BearerAuth::operator(&admin_token, &data_dir));
    // Data planes: the built-in token (group "shared") or a registration
    // token of a data-plane group (docs/operations.md).
    let dp_tokens = crate::dp_auth::DpTokenTable::new(
        &dp_token,
        format!(
            "pass a registration token (tollgate dp-group token create) or the token from {} with --token or TOLLGATE_DP_TOKEN",
            data_dir.join(DP_TOKEN_FILE).display()
        ),
    );
    if let Err(e) = dp_tokens.reload(&store).await {
        let _ = shutdown_tx.send(true);
        let _ = broadcaster.await;
        store.close().await;
        return Err(e).context("loading data-plane registration tokens");
    }
    dp_tokens.spawn_reloader(store.clone(), shutdown_rx.clone());
    if let Some(c) = cluster.as_mut() {
        c.share_tokens(dp_tokens.clone(), store.clone(), shutdown_rx.clone());
    }
    let dp = crate::dp_auth::DpAuth(dp_tokens.clone());
    // Telemetry: Prometheus metrics and the public status page.
    let cp_metrics = crate::telemetry::CpMetrics::new()?;
    cp_metrics.attach_cluster(cluster_state.clone());
    let public = crate::status_page::PublicState::new(
        store.clone(),
        cp_metrics.clone(),
        registry.clone(),
        snapshots.clone(),
    );
    let sync = SyncServiceServer::new(
        SyncApi::new(store.clone(), snapshots, registry, shutdown_rx.clone())
            .with_billing(config.billing)
            .with_tokens(dp_tokens.clone())
            .with_metrics(cp_metrics),
    )
    .max_decoding_message_size(MAX_SYNC_MESSAGE)
    .max_encoding_message_size(MAX_SYNC_MESSAGE);

    let mut services = RoutesBuilder::default();
    services
        .add_service(TenantServiceServer::with_interceptor(
            TenantApi::new(state.clone()),
            admin.clone(),
        ))
        .add_service(ProviderServiceServer::with_interceptor(
            ProviderApi::new(state.clone()),
            admin.clone(),
        ))
        .add_service(ModelServiceServer::with_interceptor(
            ModelApi::new(state.clone()),
            admin.clone(),
        ))
        .add_service(RouteServiceServer::with_interceptor(
            RouteApi::new(state.clone()),
            admin.clone(),
        ))
        .add_service(KeyServiceServer::with_interceptor(
            KeyApi::new(state.clone()),
            admin.clone(),
        ))
        .add_service(GuardrailServiceServer::with_interceptor(
            crate::api::guardrails::GuardrailApi::new(state.clone()),
            admin.clone(),
        ))
        .add_service(UsageServiceServer::with_interceptor(
            UsageApi::new(state.clone()),
            admin.clone(),
        ))
        .add_service(UsageQueryServiceServer::with_interceptor(
            UsageQueryApi::new(state.clone()),
            admin.clone(),
        ))
        .add_service(BillingServiceServer::with_interceptor(
            crate::api::billing::BillingApi::new(state.clone()),
            admin.clone(),
        ))
        .add_service(
            tollgate_proto::admin::v1::cache_policy_service_server::CachePolicyServiceServer::with_interceptor(
                crate::api::cache::CachePolicyApi::new(state.clone()),
                admin.clone(),
            ),
        )
        .add_service(
            tollgate_proto::admin::v1::console_service_server::ConsoleServiceServer::with_interceptor(
                crate::api::console::ConsoleApi::new(state.clone()),
                admin.clone(),
            ),
        )
        .add_service(
            tollgate_proto::admin::v1::rate_limit_service_server::RateLimitServiceServer::with_interceptor(
                crate::api::rate_limits::RateLimitApi::new(state.clone()),
                admin.clone(),
            ),
        )
        .add_service(DataPlaneServiceServer::with_interceptor(
            DataPlaneApi::new(state.clone()),
            admin.clone(),
        ))
        .add_service(
            tollgate_proto::admin::v1::data_plane_group_service_server::DataPlaneGroupServiceServer::with_interceptor(
                crate::api::dp_groups::DpGroupApi::new(state.clone(), dp_tokens),
                admin.clone(),
            ),
        )
        .add_service(
            tollgate_proto::admin::v1::status_service_server::StatusServiceServer::with_interceptor(
                crate::api::incidents::IncidentApi::new(state.clone()),
                admin.clone(),
            ),
        )
        .add_service(
            tollgate_proto::admin::v1::audit_service_server::AuditServiceServer::with_interceptor(
                crate::api::audit::AuditApi::new(state.clone()),
                admin.clone(),
            ),
        )
        // Sign-in needs no token; the other auth calls check their own.
        .add_service(AuthServiceServer::with_interceptor(
            UserApi::new(state.clone()),
            admin.optional(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            sync, dp,
        ));
    // gRPC-web (HTTP/1.1, for the browser dashboard) on the gRPC routes only;
    // every other path falls through to the dashboard's static files.
    let app = services
        .routes()
        .into_axum_router()
        // Audit log of admin changes (inside gRPC-web: sees plain gRPC).
        .route_layer(axum::middleware::from_fn_with_state(
            crate::audit::AuditLayer::new(state, admin),
            crate::audit::record,
        ))
        .route_layer(tonic_web::GrpcWebLayer::new())
        .merge(crate::status_page::router(public))
        .merge(crate::cluster::router(
            cluster_state.clone(),
            store.clone(),
            shutdown_rx.clone(),
        ));
    let dashboard_dir = crate::dashboard::resolve_dir(config.dashboard_dir.as_deref());
    if let Some(dir) = &dashboard_dir {
        tracing::info!(dir = %dir.display(), "serving the dashboard");
    }
    let app = crate::dashboard::with_static_files(app, dashboard_dir.clone());

    let router = Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(KEEPALIVE_INTERVAL))
        .accept_http1(true)
        .add_routes(Routes::from(app));

    // Background jobs run on the leader only (always, without etcd).
    let retention = {
        let (store, policy) = (store.clone(), config.usage_retention);
        let audit_policy = config.audit_retention;
        crate::cluster::run_while_leader(
            "usage_retention",
            cluster_state.clone(),
            shutdown_rx.clone(),
            move |stop| {
                let usage = crate::usage_retention::spawn(
                    store.clone(),
                    policy,
                    Arc::new(tollgate_core::time::now_ms),
                    stop.clone(),
                );
                crate::audit::retention::spawn_alongside(
                    usage,
                    store.clone(),
                    audit_policy,
                    Arc::new(tollgate_core::time::now_ms),
                    stop,
                )
                .map(|_| ())
            },
        )
    };
    let shutdown_rx_billing = shutdown_rx.clone();
    let mut stop = shutdown_rx;
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let server = match &tls {
        Some(tls) => {
            tls.spawn_reloader(shutdown_rx_billing.clone());
            let incoming = tls.incoming(listener, shutdown_rx_billing.clone());
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
        }
        None => tokio::spawn(
            router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped),
        ),
    };

    // Billing: release leases of data planes that vanished.
    let reclaim = {
        let (store, billing) = (store.clone(), config.billing);
        crate::cluster::run_while_leader(
            "lease_reclaim",
            cluster_state,
            shutdown_rx_billing,
            move |stop| crate::billing::reclaim_leases(store.clone(), billing, stop),
        )
    };

    let url_file = data_dir.join(URL_FILE);
    if let Err(e) = secrets_files::replace_file(&url_file, url.as_bytes(), 0o644) {
        tracing::warn!(path = %url_file.display(), error = %e, "could not write the URL file");
    }
    tracing::info!(%url, data_dir = %data_dir.display(), "control plane listening");

    Ok(RunningControlPlane {
        url,
        addr,
        admin_token: admin_token.into_exposed(),
        dp_token: dp_token.into_exposed(),
        data_dir,
        dashboard_dir,
        shutdown: shutdown_tx,
        server,
        broadcaster,
        retention,
        reclaim,
        cluster,
        store,
    })
}

impl RunningControlPlane {
    /// Graceful stop: no new connections, subscription streams ended,
    /// in-flight calls finished, database pool closed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.finish().await
    }

    /// Runs until the server stops on its own (an error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until `signal` completes, then shuts down gracefully; returns
    /// early with the error if the server fails first.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let ended_early = tokio::select! {
            () = signal => None,
            res = &mut self.server => Some(res),
        };
        let _ = self.shutdown.send(true);
        match ended_early {
            None => self.finish().await,
            Some(res) => {
                let _ = self.broadcaster.await;
                let _ = self.retention.await;
                let _ = self.reclaim.await;
                if let Some(c) = self.cluster {
                    c.finish().await;
                }
                self.store.close().await;
                res.context("server task")?.context("server")?;
                Ok(())
            }
        }
    }

    async fn finish(self) -> anyhow::Result<()> {
        let served = self.server.await;
        let _ = self.broadcaster.await;
        let _ = self.retention.await;
        let _ = self.reclaim.await;
        if let Some(c) = self.cluster {
            c.finish().await;
        }
        self.store.close().await;
        served.context("server task")?.context("server")?;
        Ok(())
    }
}
