//! Telling the control plane that a provider credential was rejected, so it
//! is taken out of rotation everywhere and shows in the admin API. Reports
//! go through a bounded channel to a background task: the request never
//! waits on the control plane.

use tokio::sync::mpsc;

/// One credential rejected by its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRejected {
    pub tenant_id: String,
    pub provider_id: String,
    pub status_code: u16,
}

/// Where rejections go. `report` must not block.
pub trait HealthSink: Send + Sync {
    fn report(&self, event: CredentialRejected);
}

/// Static-config mode: only the local rotation changes (and the log).
#[derive(Debug, Default)]
pub struct NullHealthSink;

impl HealthSink for NullHealthSink {
    fn report(&self, _event: CredentialRejected) {}
}

/// Hands reports to a background task that calls the control plane.
#[derive(Debug)]
pub struct ChannelHealthSink {
    tx: mpsc::Sender<CredentialRejected>,
}

impl ChannelHealthSink {
    pub fn new(capacity: usize) -> (ChannelHealthSink, mpsc::Receiver<CredentialRejected>) {
        let (tx, rx) = mpsc::channel(capacity);
        (ChannelHealthSink { tx }, rx)
    }
}

impl HealthSink for ChannelHealthSink {
    fn report(&self, event: CredentialRejected) {
        if self.tx.try_send(event).is_err() {
            tracing::warn!("credential health report dropped (queue full)");
        }
    }
}

/// Sends credential rejections to the control plane until shutdown, retrying
/// each a few times with backoff (the CP also learns from every other DP
/// that hits the same credential).
pub async fn report_to_cp(
    client: crate::sync::grpc::SyncClient,
    node_id: String,
    mut rx: mpsc::Receiver<CredentialRejected>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use std::time::Duration;
    use tollgate_proto::sync::v1 as pb;
    loop {
        let event = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => e,
                None => return,
            },
            () = crate::sync::shutdown_requested(&mut shutdown) => return,
        };
        let mut backoff =
            crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        for _ in 0..5 {
            let mut client = client.clone();
            let report = pb::TargetHealthReport {
                node_id: node_id.clone(),
                tenant_id: event.tenant_id.clone(),
                provider_id: event.provider_id.clone(),
                status_code: u32::from(event.status_code),
                reason: format!("provider answered {}", event.status_code),
            };
            match client.report_target_health(report).await {
                Ok(_) => break,
                Err(status) => {
                    tracing::warn!(error = %status.message(), "could not report a rejected credential to the control plane");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}
