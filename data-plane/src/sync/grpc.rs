//! Snapshots from the control plane over `SyncService/Subscribe`.
//!
//! One bidi stream: `Hello` first, then an ack or reject for every snapshot.
//! When the control plane goes away the data plane keeps serving what it has
//! and reconnects with capped, jittered exponential backoff; it never exits
//! because of the control plane.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tollgate_proto::client::BearerAuth;
use tollgate_proto::sync::v1 as pb;
use tollgate_proto::sync::v1::sync_service_client::SyncServiceClient;
use tonic::transport::{Channel, Endpoint};

use super::{shutdown_requested, ConfigSource, SnapshotApplier};
use crate::backoff::Backoff;

/// How long to wait for a TCP connection to the control plane.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Subscribes to the control plane at `endpoint`.
pub struct GrpcSource {
    endpoint: Endpoint,
    auth: BearerAuth,
    node_id: String,
    /// Connected or not, for `/readyz` and `/metrics` (telemetry).
    sync_state: Option<Arc<crate::telemetry::SyncState>>,
}

impl std::fmt::Debug for GrpcSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcSource")
            .field("endpoint", &self.endpoint.uri())
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// A control-plane URL or token that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CpTargetError {
    #[error("invalid control-plane URL {0:?}")]
    Url(String),
    #[error("the data-plane token contains characters not allowed in a header")]
    Token,
}

/// An endpoint and credentials for the control plane, checked up front.
pub fn cp_endpoint(url: &str, token: &str) -> Result<(Endpoint, BearerAuth), CpTargetError> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|_| CpTargetError::Url(url.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let auth = BearerAuth::new(token).map_err(|_| CpTargetError::Token)?;
    Ok((endpoint, auth))
}

/// The cause of a failed connection, with a hint when it is the control
/// plane's certificate (tonic's own message is only "transport error").
fn connect_error(e: &tonic::transport::Error) -> String {
    let chain = tollgate_proto::client::error_chain(e);
    if chain.contains("certificate") || chain.contains("UnknownIssuer") {
        format!(
            "connect: TLS: the control plane's certificate is not trusted ({chain}); \
             pass its CA with --cp-ca-file"
        )
    } else {
        format!("connect: {chain}")
    }
}

/// A client whose calls carry the data-plane token.
pub type SyncClient =
    SyncServiceClient<tonic::service::interceptor::InterceptedService<Channel, BearerAuth>>;

impl GrpcSource {
    pub fn new(endpoint: Endpoint, auth: BearerAuth, node_id: String) -> Self {
        GrpcSource {
            endpoint,
            auth,
            node_id,
            sync_state: None,
        }
    }

    /// Reports whether the subscription is up to `state`.
    pub fn with_sync_state(mut self, state: Arc<crate::telemetry::SyncState>) -> Self {
        self.sync_state = Some(state);
        self
    }

    fn set_sync(&self, status: crate::telemetry::SyncStatus) {
        if let Some(s) = &self.sync_state {
            s.set(status);
        }
    }

    /// One subscription, until the stream ends or fails. Returns how many
    /// snapshots were received.
    async fn session(&self, applier: &SnapshotApplier, received: &mut u64) -> Result<(), String> {
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|e| connect_error(&e))?;
        let mut client = SyncServiceClient::with_interceptor(channel, self.auth.clone())
            .max_decoding_message_size(tollgate_proto::MAX_SYNC_MESSAGE_BYTES)
            .max_encoding_message_size(tollgate_proto::MAX_SYNC_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel::<pb::DataPlaneMessage>(8);
        let hello = pb::DataPlaneMessage {
            kind: Some(pb::data_plane_message::Kind::Hello(pb::Hello {
                node_id: self.node_id.clone(),
                software_version: env!("CARGO_PKG_VERSION").to_string(),
                current_version: applier.store().version(),
            })),
        };
        tx.send(hello)
            .await
            .map_err(|_| "stream closed before hello".to_string())?;
        let mut inbound = client
            .subscribe(ReceiverStream::new(rx))
            .await
            .map_err(|s| format!("subscribe: {} {}", s.code(), s.message()))?
            .into_inner();
        tracing::info!(node_id = %self.node_id, "subscribed to the control plane");
        self.set_sync(crate::telemetry::SyncStatus::Connected);
        loop {
            let msg = inbound
                .message()
                .await
                .map_err(|s| format!("stream: {} {}", s.code(), s.message()))?;
            let Some(msg) = msg else {
                return Err("the control plane closed the stream".into());
            };
            let snapshot = match msg.kind {
                Some(pb::control_plane_message::Kind::Snapshot(s)) => s,
                Some(pb::control_plane_message::Kind::Welcome(w)) => {
                    // Registration-token groups: the identity the control
                    // plane registered this node under.
                    tracing::info!(node_id = %w.node_id, group = %w.group_name, group_id = %w.group_id, tenant_id = %w.tenant_id, "joined a data-plane group");
                    continue;
                }
                None => continue,
            };
            *received += 1;
            let version = snapshot.version;
            let ack = match applier.apply(&snapshot) {
                Ok(_) => pb::SnapshotAck {
                    version,
                    accepted: true,
                    reason: String::new(),
                },
                Err(reason) => {
                    tracing::warn!(version, %reason, "snapshot rejected; still serving version {}", applier.store().version());
                    pb::SnapshotAck {
                        version,
                        accepted: false,
                        reason,
                    }
                }
            };
            tx.send(pb::DataPlaneMessage {
                kind: Some(pb::data_plane_message::Kind::Ack(ack)),
            })
            .await
            .map_err(|_| "the control plane closed the stream".to_string())?;
        }
    }
}

#[async_trait]
impl ConfigSource for GrpcSource {
    fn name(&self) -> &'static str {
        "control-plane"
    }

    async fn run(
        self: Box<Self>,
        applier: Arc<SnapshotApplier>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
        loop {
            let mut received = 0;
            let result = tokio::select! {
                _ = shutdown_requested(&mut shutdown) => return,
                r = self.session(&applier, &mut received) => r,
            };
            self.set_sync(crate::telemetry::SyncStatus::Disconnected);
            if received > 0 {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            if let Err(e) = result {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, serving_version = applier.store().version(), "control plane unavailable");
            }
            tokio::select! {
                _ = shutdown_requested(&mut shutdown) => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}
