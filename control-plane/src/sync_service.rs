//! `tollgate.sync.v1.SyncService`: config push to data planes and usage
//! ingestion from them.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tollgate_core::time::now_ms;
use tollgate_core::usage::Usage;
use tollgate_proto::sync::v1 as pb;
use tollgate_proto::sync::v1::sync_service_server::SyncService;
use tonic::{Request, Response, Status, Streaming};

use crate::api::status::store_status;
use crate::data_planes::DataPlaneRegistry;
use crate::dp_auth::{identity_of, DpIdentity, DpTokenTable};
use crate::push::{GroupSnapshots, SnapshotBroadcaster};
use crate::store::{Store, UsageRecord};

/// Largest accepted usage batch; data planes send smaller ones.
pub const MAX_USAGE_BATCH: usize = 1000;

/// Longest the control plane waits for Hello on a new subscription.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest a new subscription waits for the snapshot of the latest commit.
const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// A data plane that does not take a snapshot off the wire within this long
/// is dropped (it reconnects and gets the newest one).
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct SyncApi {
    store: Store,
    snapshots: SnapshotBroadcaster,
    registry: Arc<DataPlaneRegistry>,
    shutdown: watch::Receiver<bool>,
    billing: crate::billing::BillingConfig,
    /// Registration tokens (data-plane groups); `None`: every caller is
    /// the built-in shared group (the interceptor decides who gets in).
    tokens: Option<Arc<DpTokenTable>>,
    groups: Arc<GroupSnapshots>,
    /// Usage ingestion counters (telemetry).
    metrics: Option<Arc<crate::telemetry::CpMetrics>>,
    /// Rate-limit quota slices granted per window (docs/rate-limits.md).
    quota: Arc<crate::quota::QuotaLedger>,
}

impl SyncApi {
    /// Sessions end when their registration token is revoked or expires.
    pub fn with_tokens(mut self, tokens: Arc<DpTokenTable>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Lease timing (default: [`crate::billing::BillingConfig::default`]).
    pub fn with_billing(mut self, billing: crate::billing::BillingConfig) -> Self {
        self.billing = billing;
        self
    }

    pub fn new(
        store: Store,
        snapshots: SnapshotBroadcaster,
        registry: Arc<DataPlaneRegistry>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            snapshots,
            registry,
            shutdown,
            billing: crate::billing::BillingConfig::default(),
            tokens: None,
            groups: Arc::new(GroupSnapshots::default()),
            metrics: None,
            quota: Arc::new(crate::quota::QuotaLedger::new(store.clone())),
            store,
        }
    }

    /// Counts ingested usage in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::telemetry::CpMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

type OutStream = Pin<Box<dyn Stream<Item = Result<pb::ControlPlaneMessage, Status>> + Send>>;

#[tonic::async_trait]
impl SyncService for SyncApi {
    type SubscribeStream = OutStream;

    /// Answers at once and reads Hello inside the stream: a data plane that
    /// waits for the response before sending Hello must not deadlock. A bad
    /// or missing Hello ends the stream with InvalidArgument.
    async fn subscribe(
        &self,
        request: Request<Streaming<pb::DataPlaneMessage>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let identity = identity_of(&request);
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let me = self.clone();
        tokio::spawn(async move {
            let mut inbound = inbound;
            let hello = match tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut inbound)).await {
                Ok(Ok(h)) => h,
                Ok(Err(status)) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                Err(_) => {
                    let _ = tx
                        .send(Err(Status::invalid_argument(format!(
                            "no Hello within {} s of opening Subscribe",
                            HELLO_TIMEOUT.as_secs()
                        ))))
                        .await;
                    return;
                }
            };
            // Nodes of a registration-token group are registered under their
            // group, so one group cannot take over another's node entry.
            let node_id = match identity.token_id {
                None => hello.node_id,
                Some(_) => format!("{}/{}", identity.group_name, hello.node_id),
            };
            let session = me.registry.connected(&node_id, &hello.software_version);
            me.registry.set_identity(&node_id, &identity);
            tracing::info!(
                node_id = %node_id,
                software_version = %hello.software_version,
                current_version = hello.current_version,
                group = %identity.group_name,
                "data plane subscribed"
            );
            let tokens = me.tokens.as_ref().map(|t| (t.clone(), t.subscribe()));
            Session {
                identity,
                groups: me.groups,
                tokens,
                store: me.store,
                node_id,
                session,
                inbound,
                out: tx,
                snapshots: me.snapshots.subscribe(),
                registry: me.registry,
                shutdown: me.shutdown,
            }
            .run()
            .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn report_usage(
        &self,
        request: Request<pb::UsageBatch>,
    ) -> Result<Response<pb::UsageBatchAck>, Status> {
        let identity = identity_of(&request);
        let batch = request.into_inner();
        // A tenant's self-hosted data plane reports for that tenant only.
        if let Some(r) = batch
            .records
            .iter()
            .find(|r| !identity.may_serve(&r.tenant_id))
        {
            return Err(Status::permission_denied(format!(
                "usage record {}: this data plane's group does not serve that tenant",
                r.id
            )));
        }
        if batch.records.len() > MAX_USAGE_BATCH {
            return Err(Status::invalid_argument(format!(
                "batch has {} records; at most {MAX_USAGE_BATCH} per call",
                batch.records.len()
            )));
        }
        let received_at_ms = now_ms();
        let records = batch
            .records
            .into_iter()
            .enumerate()
            .map(|(i, r)| usage_from_proto(i, r, &batch.node_id, received_at_ms))
            .collect::<Result<Vec<_>, Status>>()?;
        let stored = self.store.insert_usage_records(&records).await;
        if let Some(m) = &self.metrics {
            match &stored {
                Ok(d) => {
                    m.usage_duplicates.inc_by(u64::from(*d));
                    m.usage_stored
                        .inc_by((records.len() as u64).saturating_sub(u64::from(*d)));
                }
                Err(_) => m.usage_failed_batches.inc(),
            }
        }
        let duplicates = stored.map_err(store_status)?;
        Ok(Response::new(pb::UsageBatchAck {
            stored_ids: records.into_iter().map(|r| r.id).collect(),
            duplicates,
        }))
    }

    async fn acquire_lease(
        &self,
        request: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseGrant>, Status> {
        let identity = identity_of(&request);
        let r = request.into_inner();
        identity.check_tenant(&r.tenant_id)?;
        if r.tenant_id.is_empty() || r.node_id.is_empty() {
            return Err(Status::invalid_argument(
                "tenant_id and node_id are required",
            ));
        }
        let ttl = i64::try_from(self.billing.lease_ttl.as_millis()).unwrap_or(i64::MAX);
        let g = if r.key_id.is_empty() {
            self.store
                .acquire_lease(&r.tenant_id, &r.node_id, &r.lease_id, r.amount_micros, ttl)
                .await
        } else {
            self.store
                .acquire_key_lease(
                    &r.tenant_id,
                    &r.key_id,
                    &r.node_id,
                    &r.lease_id,
                    r.amount_micros,
                    ttl,
                )
                .await
        }
        .map_err(store_status)?;
        Ok(Response::new(pb::LeaseGrant {
            lease_id: g.lease_id,
            granted_micros: g.granted_micros,
            outstanding_micros: g.outstanding_micros,
            expires_at_ms: g.expires_at_ms,
        }))
    }

    async fn return_lease(
        &self,
        request: Request<pb::LeaseReturn>,
    ) -> Result<Response<pb::LeaseReturnAck>, Status> {
        let identity = identity_of(&request);
        let r = request.into_inner();
        identity.check_tenant(&r.tenant_id)?;
        self.store
            .return_lease(&r.tenant_id, &r.node_id, &r.lease_id, r.amount_micros)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::LeaseReturnAck {}))
    }

    async fn acquire_quota(
        &self,
        request: Request<pb::QuotaRequest>,
    ) -> Result<Response<pb::QuotaGrants>, Status> {
        let r = request.into_inner();
        if r.node_id.is_empty() {
            return Err(Status::invalid_argument("node_id is required"));
        }
        Ok(Response::new(self.quota.acquire(&r.asks, now_ms()).await?))
    }

    async fn report_target_health(
        &self,
        request: Request<pb::TargetHealthReport>,
    ) -> Result<Response<pb::TargetHealthAck>, Status> {
        let identity = identity_of(&request);
        let r = request.into_inner();
        identity.check_tenant(&r.tenant_id)?;
        if !(r.status_code == 401 || r.status_code == 403) {
            return Err(Status::invalid_argument(
                "only rejected credentials (401/403) are reported",
            ));
        }
        let reason = format!(
            "provider answered {} to data plane {}",
            r.status_code, r.node_id
        );
        let changed = self
            .store
            .disable_provider(&r.tenant_id, &r.provider_id, &reason)
            .await
            .map_err(store_status)?;
        if changed {
            tracing::warn!(tenant_id = %r.tenant_id, provider_id = %r.provider_id, node_id = %r.node_id, status = r.status_code, "provider credential taken out of rotation");
        }
        Ok(Response::new(pb::TargetHealthAck {}))
    }
}

async fn read_hello(inbound: &mut Streaming<pb::DataPlaneMessage>) -> Result<pb::Hello, Status> {
    match inbound.message().await? {
        Some(pb::DataPlaneMessage {
            kind: Some(pb::data_plane_message::Kind::Hello(h)),
        }) if !h.node_id.trim().is_empty() => Ok(h),
        Some(pb::DataPlaneMessage {
            kind: Some(pb::data_plane_message::Kind::Hello(_)),
        }) => Err(Status::invalid_argument("hello.node_id must not be empty")),
        _ => Err(Status::invalid_argument(
            "the first message on Subscribe must be Hello",
        )),
    }
}

/// Validates one record; a bad record rejects the whole batch, naming it, so
/// the data plane never believes an unstored record was stored.
fn usage_from_proto(
    index: usize,
    r: pb::UsageRecord,
    node_id: &str,
    received_at_ms: i64,
) -> Result<UsageRecord, Status> {
    if r.id.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "usage record #{index}: id must not be empty"
        )));
    }
    if r.tenant_id.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "usage record {}: tenant_id must not be empty",
            r.id
        )));
    }
    Ok(UsageRecord {
        id: r.id,
        request_id: r.request_id,
        tenant_id: r.tenant_id,
        key_id: r.key_id,
        model: r.model,
        provider_id: r.provider_id,
        upstream_model: r.upstream_model,
        started_at_ms: r.started_at_ms,
        latency_ms: r.latency_ms,
        status_code: r.status_code,
        error_code: r.error_code,
        stream: r.stream,
        usage: Usage {
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cache_read_tokens: r.cache_read_tokens,
            cache_write_tokens: r.cache_write_tokens,
            reasoning_tokens: r.reasoning_tokens,
        },
        cost_micros: r.cost_micros.max(0),
        lease_id: r.lease_id,
        key_lease_id: r.key_lease_id,
        cache_hit: r.cache_hit.then_some(r.cache_hit_cost_bps.min(10_000)),
        node_id: node_id.to_owned(),
        received_at_ms,
        attempts: r
            .attempts
            .into_iter()
            .map(|a| crate::store::UsageAttempt {
                provider_id: a.provider_id,
                upstream_model: a.upstream_model,
                status_code: a.status_code,
                latency_ms: a.latency_ms,
                error_code: a.error_code,
            })
            .collect(),
        ttft_ms: r.ttft_ms.map_or(-1, |t| t.max(0)),
        api: r.api,
        guardrail_verdicts: r
            .guardrail_verdicts
            .into_iter()
            .map(|v| crate::store::GuardrailVerdictRow {
                name: v.name,
                action: v.action,
                category: v.category,
                direction: v.direction,
            })
            .collect(),
    })
}

/// One subscribed data plane: forwards snapshots out and acks in, until the
/// data plane goes away or the control plane shuts down.
struct Session {
    identity: DpIdentity,
    groups: Arc<GroupSnapshots>,
    /// The token table and its reload generation.
    tokens: Option<(Arc<DpTokenTable>, watch::Receiver<u64>)>,
    store: Store,
    node_id: String,
    session: u64,
    inbound: Streaming<pb::DataPlaneMessage>,
    out: mpsc::Sender<Result<pb::ControlPlaneMessage, Status>>,
    snapshots: watch::Receiver<Arc<pb::Snapshot>>,
    registry: Arc<DataPlaneRegistry>,
    shutdown: watch::Receiver<bool>,
}

impl Session {
    async fn run(mut self) {
        let mut sent = 0_u64;
        self.catch_up().await;
        // The latest snapshot at once; `borrow_and_update` marks it seen so
        // `changed` below fires only for newer ones.
        let first = self.snapshots.borrow_and_update().clone();
        let first = self.groups.view(&first, self.identity.tenant_id.as_deref());
        if self.welcome().await && self.send(&first, &mut sent).await {
            loop {
                tokio::select! {
                    _ = self.shutdown.changed() => break,
                    changed = self.snapshots.changed() => {
                        if changed.is_err() { break; }
                        let snap = self.snapshots.borrow_and_update().clone();
                        let snap = self.groups.view(&snap, self.identity.tenant_id.as_deref());
                        if !self.send(&snap, &mut sent).await { break; }
                    }
                    Some(()) = token_reloaded(&mut self.tokens) => {
                        if !self.token_still_valid() {
                            tracing::warn!(node_id = %self.node_id, group = %self.identity.group_name, "registration token revoked or expired; disconnecting the data plane");
                            let _ = self.out.try_send(Err(Status::unauthenticated(
                                "the registration token of this data plane was revoked or has expired",
                            )));
                            break;
                        }
                    }
                    msg = self.inbound.message() => match msg {
                        Ok(Some(m)) => self.on_message(m),
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(node_id = %self.node_id, error = %status, "subscribe stream error");
                            break;
                        }
                    },
                }
            }
        }
        self.registry.disconnected(&self.node_id, self.session);
        tracing::info!(node_id = %self.node_id, "data plane unsubscribed");
    }

    /// Waits (briefly) until the published snapshot includes every write
    /// committed before this subscription, so a data plane that connects
    /// right after a change starts with it rather than one version behind.
    async fn catch_up(&mut self) {
        let committed = match self.store.config_version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read config version; sending the latest snapshot");
                return;
            }
        };
        let wait = self.snapshots.wait_for(|s| s.version >= committed);
        if tokio::time::timeout(CATCH_UP_TIMEOUT, wait).await.is_err() {
            tracing::warn!(node_id = %self.node_id, committed, "snapshot lags the committed version; sending the latest");
        }
    }

    fn token_still_valid(&self) -> bool {
        self.tokens
            .as_ref()
            .is_none_or(|(t, _)| t.still_valid(&self.identity))
    }

    /// Tells a node of a registration-token group who it is; false when it
    /// is gone. Nodes of the built-in token keep their own node id and get
    /// no Welcome (older data planes and tests expect a snapshot first).
    async fn welcome(&self) -> bool {
        if self.identity.token_id.is_none() {
            return true;
        }
        let msg = pb::ControlPlaneMessage {
            kind: Some(pb::control_plane_message::Kind::Welcome(pb::Welcome {
                node_id: self.node_id.clone(),
                group_id: self.identity.group_id.clone(),
                group_name: self.identity.group_name.clone(),
                tenant_id: self.identity.tenant_id.clone().unwrap_or_default(),
            })),
        };
        self.out.send(Ok(msg)).await.is_ok()
    }

    /// False when the data plane is gone.
    async fn send(&self, snap: &Arc<pb::Snapshot>, sent: &mut u64) -> bool {
        if snap.version <= *sent {
            return true;
        }
        *sent = snap.version;
        let msg = pb::ControlPlaneMessage {
            kind: Some(pb::control_plane_message::Kind::Snapshot(
                pb::Snapshot::clone(snap),
            )),
        };
        tracing::debug!(node_id = %self.node_id, version = snap.version, "sending snapshot");
        // Never block forever on a full stream: shutdown and a stuck peer
        // must both end the session.
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            sent = self.out.send(Ok(msg)) => sent.is_ok(),
            _ = shutdown.changed() => false,
            _ = tokio::time::sleep(SEND_TIMEOUT) => {
                tracing::warn!(node_id = %self.node_id, version = snap.version, "data plane did not take the snapshot in time; dropping its session");
                false
            }
        }
    }

    fn on_message(&self, m: pb::DataPlaneMessage) {
        match m.kind {
            Some(pb::data_plane_message::Kind::Ack(ack)) => {
                if ack.accepted {
                    tracing::debug!(node_id = %self.node_id, version = ack.version, "snapshot applied");
                } else {
                    tracing::warn!(node_id = %self.node_id, version = ack.version, reason = %ack.reason, "snapshot rejected");
                }
                self.registry
                    .ack(&self.node_id, ack.version, ack.accepted, &ack.reason);
            }
            Some(pb::data_plane_message::Kind::Hello(_)) | None => {
                // A repeated Hello is harmless; treat as a keep-alive.
                self.registry.ack(&self.node_id, 0, true, "");
            }
        }
    }
}

/// Resolves when the token table was reloaded; pending forever without one.
async fn token_reloaded(
    tokens: &mut Option<(Arc<DpTokenTable>, watch::Receiver<u64>)>,
) -> Option<()> {
    match tokens {
        Some((_, generation)) => match generation.changed().await {
            Ok(()) => {
                generation.borrow_and_update();
                Some(())
            }
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}
