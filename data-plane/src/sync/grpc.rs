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

/// Subscribes to the control plane at `endpoint` (the first of the list
/// that answers; the next one when it goes away).
pub struct GrpcSource {
    endpoint: CpTarget,
    auth: BearerAuth,
    node_id: String,
    /// Connected or not, for `/readyz` and `/metrics` (telemetry).
    sync_state: Option<Arc<crate::telemetry::SyncState>>,
}

impl std::fmt::Debug for GrpcSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcSource")
            .field("endpoint", &self.endpoint)
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

/// One or several control-plane replicas (`--cp a,b`). The subscription
/// uses one at a time, moving to the next in the list when its stream ends
/// or cannot be opened; every other call (usage, leases, quota, health)
/// goes through [`CpTarget::connect_lazy`] to the replica the subscription
/// is on, so a data plane talks to one replica at a time and follows it.
#[derive(Clone)]
pub struct CpTarget {
    endpoints: Arc<[Endpoint]>,
    active: Arc<std::sync::atomic::AtomicUsize>,
    /// Balanced channel holding just the active endpoint (several only).
    balanced: Arc<std::sync::OnceLock<(Channel, BalanceSender)>>,
}

type BalanceSender = mpsc::Sender<tonic::transport::channel::Change<usize, Endpoint>>;

impl std::fmt::Debug for CpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.endpoints.iter().map(|e| e.uri()))
            .finish()
    }
}

impl CpTarget {
    pub fn new(endpoints: Vec<Endpoint>) -> Option<CpTarget> {
        (!endpoints.is_empty()).then(|| CpTarget {
            endpoints: endpoints.into(),
            active: Arc::default(),
            balanced: Arc::default(),
        })
    }

    /// The same replicas with each endpoint transformed (e.g. TLS added).
    pub fn try_map<E>(self, f: impl FnMut(Endpoint) -> Result<Endpoint, E>) -> Result<CpTarget, E> {
        let endpoints = self
            .endpoints
            .iter()
            .cloned()
            .map(f)
            .collect::<Result<Vec<_>, E>>()?;
        Ok(CpTarget {
            endpoints: endpoints.into(),
            active: Arc::default(),
            balanced: Arc::default(),
        })
    }

    /// How many replicas are listed.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    fn endpoint(&self, index: usize) -> &Endpoint {
        &self.endpoints[index % self.endpoints.len()]
    }

    /// A lazily connecting channel to the active replica (it follows
    /// [`CpTarget::set_active`]). Needs a Tokio runtime.
    pub fn connect_lazy(&self) -> Channel {
        if self.endpoints.len() == 1 {
            return self.endpoint(0).connect_lazy();
        }
        let (channel, _) = self.balanced.get_or_init(|| {
            let (channel, tx) = Channel::balance_channel(8);
            let active = self.active.load(std::sync::atomic::Ordering::Relaxed);
            let _ = tx.try_send(tonic::transport::channel::Change::Insert(
                active,
                self.endpoint(active).clone(),
            ));
            (channel, tx)
        });
        channel.clone()
    }

    /// Moves every call to replica `index`.
    fn set_active(&self, index: usize) {
        let index = index % self.endpoints.len();
        let old = self
            .active
            .swap(index, std::sync::atomic::Ordering::Relaxed);
        if old == index {
            return;
        }
        if let Some((_, tx)) = self.balanced.get() {
            use tonic::transport::channel::Change;
            let _ = tx.try_send(Change::Insert(index, self.endpoint(index).clone()));
            let _ = tx.try_send(Change::Remove(old));
        }
    }
}

/// Endpoints for a comma-separated list of control-plane URLs, checked up
/// front.
pub fn cp_target(urls: &str, token: &str) -> Result<(CpTarget, BearerAuth), CpTargetError> {
    let mut endpoints = Vec::new();
    let mut auth = None;
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let (e, a) = cp_endpoint(url, token)?;
        endpoints.push(e);
        auth = Some(a);
    }
    match (CpTarget::new(endpoints), auth) {
        (Some(t), Some(a)) => Ok((t, a)),
        _ => Err(CpTargetError::Url(urls.to_string())),
    }
}

/// A client whose calls carry the data-plane token.
pub type SyncClient =
    SyncServiceClient<tonic::service::interceptor::InterceptedService<Channel, BearerAuth>>;

impl GrpcSource {
    pub fn new(endpoint: CpTarget, auth: BearerAuth, node_id: String) -> Self {
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
    async fn session(
        &self,
        index: usize,
        applier: &SnapshotApplier,
        received: &mut u64,
    ) -> Result<(), String> {
        let channel = self
            .endpoint
            .endpoint(index)
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
        // Usage, leases and quota follow the subscription to this replica.
        self.endpoint.set_active(index);
        tracing::info!(node_id = %self.node_id, control_plane = %self.endpoint.endpoint(index).uri(), "subscribed to the control plane");
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
        let mut index = 0_usize;
        // Failed attempts since the last replica that served a snapshot.
        let mut failed_in_row = 0_usize;
        loop {
            let mut received = 0;
            let result = tokio::select! {
                _ = shutdown_requested(&mut shutdown) => return,
                r = self.session(index, &applier, &mut received) => r,
            };
            self.set_sync(crate::telemetry::SyncStatus::Disconnected);
            if received > 0 {
                backoff.reset();
                failed_in_row = 0;
            } else {
                failed_in_row += 1;
            }
            // Several replicas: try the next one at once; back off only
            // once every replica of the list failed in a row.
            index = (index + 1) % self.endpoint.len();
            let delay =
                if self.endpoint.len() > 1 && !failed_in_row.is_multiple_of(self.endpoint.len()) {
                    Duration::from_millis(50)
                } else {
                    backoff.next_delay()
                };
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
