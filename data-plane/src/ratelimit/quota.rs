//! Where window slices come from: the control plane (`AcquireQuota`,
//! batched by one background task, off the request path) or, without a
//! control plane or while it is unreachable, the data plane's local share
//! of each limit. A call waits for a slice only when its limiter's slice is
//! empty, once, at most [`QuotaSettings::wait`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tollgate_core::time::now_ms;
use tollgate_proto::sync::v1 as pb;

use super::window::WindowCounter;
use super::{LimiterState, WINDOWED};

/// Slice sizing and timing.
#[derive(Debug, Clone, Copy)]
pub struct QuotaSettings {
    /// Data planes expected to share each limit: the local share, used
    /// without a control plane, is `ceil(limit / expected_data_planes)`;
    /// concurrency is capped at the same share on each data plane.
    pub expected_data_planes: u32,
    /// Longest a call waits for a slice when its limiter's slice is empty.
    pub wait: Duration,
    /// After a failed control-plane call, local shares are used for this
    /// long before the control plane is asked again.
    pub cp_retry: Duration,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            expected_data_planes: 1,
            wait: Duration::from_millis(500),
            cp_retry: Duration::from_secs(2),
        }
    }
}

/// A slice wanted for one window counter.
#[derive(Debug)]
pub struct Refill {
    pub state: Arc<LimiterState>,
    pub index: usize,
    pub limit: i64,
}

/// Shared by every limiter of the data plane.
#[derive(Debug, Default)]
pub struct QuotaHub {
    settings: OnceLock<QuotaSettings>,
    refills: OnceLock<mpsc::Sender<Refill>>,
    /// Until when (epoch ms) the control plane is considered unreachable.
    cp_down_until: AtomicI64,
    /// Calls refused, per dimension (rps, rpm, rpd, tpm, tpd, concurrency).
    pub rejections: [AtomicU64; 6],
    /// Slices asked of the control plane.
    pub cp_asks: AtomicU64,
}

/// The local share of `limit` for one of `n` data planes.
pub fn local_share(limit: i64, n: u32) -> i64 {
    let n = i64::from(n.max(1));
    (limit + n - 1) / n
}

/// Slice asked for at a time: a twentieth of the limit (at least 1), so a
/// data plane holds little that others could have used.
pub fn chunk(limit: i64) -> i64 {
    (limit / 20).max(1)
}

impl QuotaHub {
    pub fn settings(&self) -> QuotaSettings {
        self.settings.get().copied().unwrap_or_default()
    }

    /// Sets the sizing (once, at start; later calls are ignored).
    pub fn configure(&self, settings: QuotaSettings) {
        let _ = self.settings.set(settings);
    }

    /// Connects the hub to the refill task (control-plane mode).
    pub fn attach(&self, refills: mpsc::Sender<Refill>) {
        let _ = self.refills.set(refills);
    }

    fn use_control_plane(&self, now: i64) -> Option<&mpsc::Sender<Refill>> {
        let tx = self.refills.get()?;
        (now >= self.cp_down_until.load(Ordering::Acquire)).then_some(tx)
    }

    pub(crate) fn mark_cp_down(&self, now: i64) {
        let retry = i64::try_from(self.settings().cp_retry.as_millis()).unwrap_or(2_000);
        self.cp_down_until.store(now + retry, Ordering::Release);
    }

    /// Grants the local share's rest of window `w` (no control plane).
    pub fn local_grant(&self, c: &WindowCounter, w: i64, limit: i64, asked: i64) {
        let share = local_share(limit, self.settings().expected_data_planes);
        let grant = asked.min(share - c.granted()).max(0);
        c.apply_grant(w, grant, asked, (share - c.granted() - grant).max(0));
    }

    /// Makes sure counter `index` of `state` gets a slice covering `need`
    /// (or learns there is none): at once from the local share, or by
    /// queueing a control-plane ask and waiting for its answer.
    pub async fn obtain(&self, state: &Arc<LimiterState>, index: usize, limit: i64, need: i64) {
        let c = &state.windows[index];
        let now = now_ms();
        let w = c.roll(now);
        let Some(tx) = self.use_control_plane(now) else {
            self.local_grant(c, w, limit, (need - c.available()).max(chunk(limit)));
            return;
        };
        c.want.fetch_max(need, Ordering::AcqRel);
        let notified = c.refilled.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        self.queue(tx, state, index, limit);
        let _ = tokio::time::timeout(self.settings().wait, notified).await;
    }

    /// Tops a counter up in the background when its slice runs low.
    pub fn top_up(&self, state: &Arc<LimiterState>, index: usize, limit: i64) {
        let c = &state.windows[index];
        if c.is_exhausted() || c.available() > chunk(limit) / 2 {
            return;
        }
        let now = now_ms();
        match self.use_control_plane(now) {
            Some(tx) => self.queue(tx, state, index, limit),
            None => {
                let w = c.roll(now);
                self.local_grant(c, w, limit, chunk(limit));
            }
        }
    }

    fn queue(
        &self,
        tx: &mpsc::Sender<Refill>,
        state: &Arc<LimiterState>,
        index: usize,
        limit: i64,
    ) {
        let c = &state.windows[index];
        if c.refilling
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            && tx
                .try_send(Refill {
                    state: state.clone(),
                    index,
                    limit,
                })
                .is_err()
        {
            c.refilling.store(false, Ordering::Release);
        }
    }
}

/// Quota calls to the control plane.
#[async_trait::async_trait]
pub trait QuotaTransport: Send + Sync {
    async fn acquire(&self, req: pb::QuotaRequest) -> Result<pb::QuotaGrants, tonic::Status>;
}

/// gRPC transport over the sync service.
pub struct GrpcQuotaTransport {
    client: pb::sync_service_client::SyncServiceClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            tollgate_proto::client::BearerAuth,
        >,
    >,
}

impl GrpcQuotaTransport {
    pub fn new(
        endpoint: &crate::sync::grpc::CpTarget,
        auth: tollgate_proto::client::BearerAuth,
    ) -> Self {
        GrpcQuotaTransport {
            client: pb::sync_service_client::SyncServiceClient::with_interceptor(
                endpoint.connect_lazy(),
                auth,
            ),
        }
    }
}

/// Longest one quota call may take (calls wait at most `wait` anyway).
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

#[async_trait::async_trait]
impl QuotaTransport for GrpcQuotaTransport {
    async fn acquire(&self, req: pb::QuotaRequest) -> Result<pb::QuotaGrants, tonic::Status> {
        let mut client = self.client.clone();
        let mut request = tonic::Request::new(req);
        request.set_timeout(CALL_TIMEOUT);
        Ok(client.acquire_quota(request).await?.into_inner())
    }
}

/// Most slices asked in one call.
const BATCH: usize = 256;

/// Answers one batch of refills: asks the control plane, or grants local
/// shares when it cannot be reached.
pub async fn refill_batch(
    hub: &QuotaHub,
    transport: &dyn QuotaTransport,
    node_id: &str,
    batch: Vec<Refill>,
) {
    let now = now_ms();
    let mut asks = Vec::with_capacity(batch.len());
    let mut plan = Vec::with_capacity(batch.len());
    for r in &batch {
        let c = &r.state.windows[r.index];
        let w = c.roll(now);
        let want = c.want.swap(0, Ordering::AcqRel);
        let amount = (want.max(chunk(r.limit)) - c.available()).max(1);
        plan.push((w, amount));
        asks.push(pb::QuotaAsk {
            limiter: r.state.id.clone(),
            dimension: WINDOWED[r.index].as_str().to_string(),
            window_start_ms: w,
            window_ms: c.window_ms,
            limit: u64::try_from(r.limit).unwrap_or(0),
            amount: u64::try_from(amount).unwrap_or(0),
        });
    }
    hub.cp_asks.fetch_add(asks.len() as u64, Ordering::Relaxed);
    let req = pb::QuotaRequest {
        node_id: node_id.to_owned(),
        asks,
    };
    match transport.acquire(req).await {
        Ok(g) if g.grants.len() == batch.len() => {
            for ((r, (w, amount)), g) in batch.iter().zip(plan).zip(g.grants) {
                let c = &r.state.windows[r.index];
                let granted = i64::try_from(g.granted).unwrap_or(0);
                let left = i64::try_from(g.remaining).unwrap_or(0);
                c.apply_grant(w, granted, amount, left);
                c.finish_refill();
            }
        }
        other => {
            match other {
                Err(e) => {
                    tracing::warn!(code = ?e.code(), "rate-limit quota request failed; using local shares")
                }
                Ok(_) => tracing::warn!("malformed quota answer; using local shares"),
            }
            hub.mark_cp_down(now);
            for (r, (w, amount)) in batch.iter().zip(plan) {
                let c = &r.state.windows[r.index];
                hub.local_grant(c, w, r.limit, amount);
                c.finish_refill();
            }
        }
    }
}

/// The refill task: batches queued refills into `AcquireQuota` calls.
pub async fn run(
    hub: Arc<QuotaHub>,
    transport: Box<dyn QuotaTransport>,
    node_id: String,
    mut requests: mpsc::Receiver<Refill>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            r = requests.recv() => match r {
                Some(r) => r,
                None => break,
            },
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        refill_batch(&hub, transport.as_ref(), &node_id, batch).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_chunks() {
        assert_eq!(local_share(60, 2), 30);
        assert_eq!(local_share(61, 2), 31);
        assert_eq!(local_share(5, 0), 5);
        assert_eq!(chunk(10), 1);
        assert_eq!(chunk(6_000), 300);
    }

    struct Down;

    #[async_trait::async_trait]
    impl QuotaTransport for Down {
        async fn acquire(&self, _: pb::QuotaRequest) -> Result<pb::QuotaGrants, tonic::Status> {
            Err(tonic::Status::unavailable("down"))
        }
    }

    #[tokio::test]
    async fn without_the_control_plane_a_data_plane_spends_only_its_share() {
        let hub = Arc::new(QuotaHub::default());
        hub.configure(QuotaSettings {
            expected_data_planes: 4,
            ..QuotaSettings::default()
        });
        let (tx, _rx) = mpsc::channel(16);
        hub.attach(tx);
        let state = Arc::new(LimiterState::new("k/t/k".into(), hub.clone()));
        // RPM 100 over 4 data planes: 25 here, whatever is asked.
        let batch = (0..3)
            .map(|_| Refill {
                state: state.clone(),
                index: 1,
                limit: 100,
            })
            .collect();
        state.windows[1].want.store(60, Ordering::Release);
        refill_batch(&hub, &Down, "dp", batch).await;
        let c = &state.windows[1];
        assert_eq!(c.granted(), 25);
        assert!(c.is_exhausted());
        // Marked down: the next slice is granted locally at once (none left).
        hub.obtain(&state, 1, 100, 1).await;
        assert_eq!(c.granted(), 25);
        let mut admitted = 0;
        while c.try_take(1) {
            admitted += 1;
        }
        assert_eq!(admitted, 25);
    }
}
