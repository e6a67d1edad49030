//! The refill task: the only place leases talk to the control plane
//! (AcquireLease / ReturnLease), off the request path.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tollgate_core::time::now_ms;
use tollgate_proto::sync::v1 as pb;

use super::lease::{LeaseBook, TenantLease};

/// Lease calls to the control plane.
#[async_trait::async_trait]
pub trait LeaseTransport: Send + Sync {
    async fn acquire(&self, req: pb::LeaseRequest) -> Result<pb::LeaseGrant, tonic::Status>;
    async fn give_back(&self, req: pb::LeaseReturn) -> Result<(), tonic::Status>;
}

/// gRPC transport over the sync service.
pub struct GrpcLeaseTransport {
    client: tollgate_proto::sync::v1::sync_service_client::SyncServiceClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            tollgate_proto::client::BearerAuth,
        >,
    >,
}

impl GrpcLeaseTransport {
    pub fn new(
        endpoint: &crate::sync::grpc::CpTarget,
        auth: tollgate_proto::client::BearerAuth,
    ) -> Self {
        GrpcLeaseTransport {
            client:
                tollgate_proto::sync::v1::sync_service_client::SyncServiceClient::with_interceptor(
                    endpoint.connect_lazy(),
                    auth,
                ),
        }
    }
}

/// Longest one lease call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[async_trait::async_trait]
impl LeaseTransport for GrpcLeaseTransport {
    async fn acquire(&self, req: pb::LeaseRequest) -> Result<pb::LeaseGrant, tonic::Status> {
        let mut client = self.client.clone();
        let mut request = tonic::Request::new(req);
        request.set_timeout(CALL_TIMEOUT);
        Ok(client.acquire_lease(request).await?.into_inner())
    }

    async fn give_back(&self, req: pb::LeaseReturn) -> Result<(), tonic::Status> {
        let mut client = self.client.clone();
        let mut request = tonic::Request::new(req);
        request.set_timeout(CALL_TIMEOUT);
        client.return_lease(request).await?;
        Ok(())
    }
}

/// Lease time-to-live assumed for keep-alive until the first grant says.
const DEFAULT_TTL_MS: i64 = 30_000;

async fn refill(
    book: &LeaseBook,
    transport: &dyn LeaseTransport,
    node_id: &str,
    lease: &TenantLease,
) {
    let now = now_ms();
    let asked = book.refill_amount(lease, now);
    book.refill_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let req = pb::LeaseRequest {
        node_id: node_id.to_owned(),
        tenant_id: lease.tenant_id.clone(),
        amount_micros: asked,
        lease_id: lease.lease_id().as_str().to_owned(),
        key_id: lease.key_id.clone(),
    };
    match transport.acquire(req).await {
        Ok(g) => {
            book.apply_grant(lease, &g.lease_id, g.granted_micros, g.expires_at_ms, asked);
        }
        Err(e) => {
            tracing::warn!(tenant_id = %lease.tenant_id, code = ?e.code(), "billing lease request failed");
            book.finish_refill(lease);
        }
    }
}

/// Serves refill requests, renews leases in use before they expire, and
/// returns what is left when the data plane shuts down gracefully.
pub async fn run(
    book: Arc<LeaseBook>,
    transport: Box<dyn LeaseTransport>,
    node_id: String,
    mut requests: mpsc::Receiver<Arc<TenantLease>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(lease) = requests.recv() => {
                refill(&book, transport.as_ref(), &node_id, &lease).await;
            }
            _ = tick.tick() => {
                let now = now_ms();
                for lease in book.due_for_renewal(now, DEFAULT_TTL_MS) {
                    book.request_refill(&lease);
                }
            }
        }
    }
    for lease in book.all() {
        let leftover = book.take_leftover(&lease);
        if leftover <= 0 {
            continue;
        }
        let req = pb::LeaseReturn {
            node_id: node_id.clone(),
            tenant_id: lease.tenant_id.clone(),
            lease_id: lease.lease_id().as_str().to_owned(),
            amount_micros: leftover,
            key_id: lease.key_id.clone(),
        };
        match transport.give_back(req).await {
            Ok(()) => {
                tracing::info!(tenant_id = %lease.tenant_id, leftover, "billing lease returned")
            }
            Err(e) => {
                tracing::warn!(tenant_id = %lease.tenant_id, code = ?e.code(), "could not return a billing lease; it expires instead")
            }
        }
    }
}
