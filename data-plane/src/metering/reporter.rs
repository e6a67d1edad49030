//! Sends usage records to the control plane in batches (up to 500 records
//! or 1 s) and re-sends a batch, with the same record ids, until the control
//! plane has acknowledged every record in it. A record in memory is never
//! dropped because the control plane is down.
//!
//! Records travel encoded ([`super::encoded`]): the spool holds them that
//! way, and the gRPC transport sends the bytes as they are.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tollgate_proto::sync::v1 as pb;

use super::encoded::{
    decode_records, encode_record, record_id, EncodedUsageAck, EncodedUsageBatch,
};
use super::UsageRecord;
use crate::backoff::Backoff;
use crate::sync::grpc::SyncClient;
use crate::sync::shutdown_requested;

/// Largest batch sent in one call.
pub const MAX_BATCH: usize = 500;
/// Longest a record waits for its batch to fill.
pub const MAX_BATCH_DELAY: Duration = Duration::from_secs(1);

/// Why a report did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Worth retrying: the control plane is down, slow or overloaded.
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
    /// The control plane refuses the batch as invalid: sending the same
    /// records again cannot help.
    #[error("control plane rejected the batch: {0}")]
    Rejected(String),
}

/// How a batch reaches the control plane.
#[async_trait]
pub trait UsageTransport: Send + Sync {
    /// Sends a batch; returns the ids the control plane stored.
    async fn report(&self, batch: pb::UsageBatch) -> Result<Vec<String>, ReportError>;

    /// Sends a batch of encoded records; returns the ids the control plane
    /// stored. By default decodes them for [`UsageTransport::report`]; the
    /// gRPC transport sends the bytes as they are.
    async fn report_encoded(&self, batch: EncodedUsageBatch) -> Result<Vec<Bytes>, ReportError> {
        let records = decode_records(&batch.records)
            .map_err(|e| ReportError::Rejected(format!("usage record does not decode: {e}")))?;
        let stored = self
            .report(pb::UsageBatch {
                node_id: batch.node_id,
                records,
            })
            .await?;
        Ok(stored.into_iter().map(Bytes::from).collect())
    }
}

/// The method's path, as the generated client names it.
const REPORT_USAGE_PATH: &str = "/tollgate.sync.v1.SyncService/ReportUsage";

/// `SyncService/ReportUsage` over a lazily (re)connecting channel.
pub struct GrpcUsageTransport {
    client: SyncClient,
    /// The same channel, for requests built from encoded records.
    raw: tonic::client::Grpc<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            tollgate_proto::client::BearerAuth,
        >,
    >,
}

impl GrpcUsageTransport {
    pub fn new(
        channel: tonic::transport::Channel,
        auth: tollgate_proto::client::BearerAuth,
    ) -> Self {
        let service = tonic::service::interceptor::InterceptedService::new(channel, auth);
        GrpcUsageTransport {
            client: SyncClient::new(service.clone()),
            raw: tonic::client::Grpc::new(service),
        }
    }
}

fn status_error(s: &tonic::Status) -> ReportError {
    let why = format!("{} {}", s.code(), s.message());
    match s.code() {
        tonic::Code::InvalidArgument => ReportError::Rejected(why),
        _ => ReportError::Unavailable(why),
    }
}

#[async_trait]
impl UsageTransport for GrpcUsageTransport {
    async fn report(&self, batch: pb::UsageBatch) -> Result<Vec<String>, ReportError> {
        let mut client = self.client.clone();
        let mut req = tonic::Request::new(batch);
        req.set_timeout(Duration::from_secs(10));
        client
            .report_usage(req)
            .await
            .map(|r| r.into_inner().stored_ids)
            .map_err(|s| status_error(&s))
    }

    async fn report_encoded(&self, batch: EncodedUsageBatch) -> Result<Vec<Bytes>, ReportError> {
        // What the generated client's report_usage does, with our message
        // types: same path, same bytes on the wire.
        let mut grpc = self.raw.clone();
        grpc.ready()
            .await
            .map_err(|e| ReportError::Unavailable(format!("control plane channel: {e}")))?;
        let mut req = tonic::Request::new(batch);
        req.set_timeout(Duration::from_secs(10));
        req.extensions_mut().insert(tonic::GrpcMethod::new(
            "tollgate.sync.v1.SyncService",
            "ReportUsage",
        ));
        let codec = tonic_prost::ProstCodec::<EncodedUsageBatch, EncodedUsageAck>::default();
        grpc.unary(
            req,
            http::uri::PathAndQuery::from_static(REPORT_USAGE_PATH),
            codec,
        )
        .await
        .map(|r| r.into_inner().stored_ids)
        .map_err(|s| status_error(&s))
    }
}

/// Records the reporter holds that the control plane has not acknowledged
/// (those still queued in the channel are counted by the sink).
#[derive(Debug, Default)]
pub struct ReporterProgress {
    unacked: AtomicUsize,
}

impl ReporterProgress {
    pub fn unacked(&self) -> usize {
        self.unacked.load(Ordering::Relaxed)
    }
}

/// Drains the usage channel into the control plane.
pub struct CpUsageReporter {
    transport: Box<dyn UsageTransport>,
    node_id: String,
    rx: mpsc::Receiver<UsageRecord>,
    progress: Arc<ReporterProgress>,
    base_delay: Duration,
}

impl CpUsageReporter {
    /// `progress` is shared with whoever waits for usage to be reported
    /// (graceful shutdown).
    pub fn new(
        transport: Box<dyn UsageTransport>,
        node_id: String,
        rx: mpsc::Receiver<UsageRecord>,
        progress: Arc<ReporterProgress>,
    ) -> Self {
        CpUsageReporter {
            transport,
            node_id,
            rx,
            progress,
            base_delay: Duration::from_millis(200),
        }
    }

    /// Records taken off the queue and not yet acknowledged.
    fn note(&self, batch: usize) {
        self.progress.unacked.store(batch, Ordering::Relaxed);
    }

    /// Runs until shutdown (or until every sender is gone and all is sent).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.base_delay, Duration::from_secs(30));
        let mut batch: Vec<UsageRecord> = Vec::new();
        loop {
            // Wait for the first record of a batch.
            let first = tokio::select! {
                _ = shutdown_requested(&mut shutdown) => return,
                r = self.rx.recv() => r,
            };
            let Some(first) = first else { return };
            batch.push(first);
            self.note(batch.len());
            let deadline = tokio::time::Instant::now() + MAX_BATCH_DELAY;
            while batch.len() < MAX_BATCH {
                tokio::select! {
                    r = self.rx.recv() => match r {
                        Some(r) => {
                            batch.push(r);
                            self.note(batch.len());
                        }
                        None => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            self.note(batch.len());
            let records: Vec<Bytes> = batch
                .drain(..)
                .map(|r| encode_record(&r.into_proto()))
                .collect();
            let progress = self.progress.clone();
            let sent = deliver(
                self.transport.as_ref(),
                &self.node_id,
                records,
                &mut backoff,
                &mut shutdown,
                |left| progress.unacked.store(left, Ordering::Relaxed),
            )
            .await;
            progress.unacked.store(0, Ordering::Relaxed);
            match sent {
                Ok(rejected) => {
                    for (record, reason) in rejected {
                        let record_id = record_id(&record)
                            .map(String::from_utf8_lossy)
                            .unwrap_or_default();
                        tracing::error!(
                            %record_id,
                            %reason,
                            "usage record rejected by the control plane; dropped"
                        );
                    }
                }
                Err(left) => {
                    tracing::warn!(
                        lost = left + self.rx.len(),
                        "shutting down with usage records not acknowledged"
                    );
                    return;
                }
            }
        }
    }
}

/// Sends `records` (encoded) until each is stored or, on its own,
/// rejected: a batch the control plane rejects is split in halves until the
/// records it refuses are isolated, so one bad record never holds up the
/// others. Returns the rejected records with the reason; `Err(left)` when
/// shutdown interrupted it.
pub async fn deliver(
    transport: &dyn UsageTransport,
    node_id: &str,
    records: Vec<Bytes>,
    backoff: &mut Backoff,
    shutdown: &mut watch::Receiver<bool>,
    progress: impl Fn(usize),
) -> Result<Vec<(Bytes, String)>, usize> {
    let mut rejected = Vec::new();
    let mut parts = vec![records];
    while let Some(part) = parts.pop() {
        match send_until_stored(transport, node_id, part, backoff, shutdown, &progress).await {
            Ok(()) => {}
            Err(Stopped::Shutdown { left }) => {
                return Err(left + parts.iter().map(Vec::len).sum::<usize>());
            }
            Err(Stopped::Rejected {
                mut records,
                reason,
            }) => {
                if records.len() > 1 {
                    let second = records.split_off(records.len() / 2);
                    parts.push(second);
                    parts.push(records);
                } else {
                    rejected.extend(records.into_iter().map(|r| (r, reason.clone())));
                }
            }
        }
    }
    Ok(rejected)
}

/// Why [`send_until_stored`] stopped before every record was stored.
#[derive(Debug)]
pub enum Stopped {
    Shutdown {
        left: usize,
    },
    /// The control plane refused these records as invalid.
    Rejected {
        records: Vec<Bytes>,
        reason: String,
    },
}

/// Whether the control plane listed every record sent, in order (it
/// answers the ids of the batch as sent): the normal case, checked without
/// a set.
fn all_stored(sent: &[Bytes], stored: &[Bytes]) -> bool {
    sent.len() == stored.len()
        && sent
            .iter()
            .zip(stored)
            .all(|(r, id)| record_id(r) == Some(id.as_ref()))
}

/// The records of `sent` whose id the control plane did not list.
fn not_stored(sent: &[Bytes], stored: &[Bytes]) -> Vec<Bytes> {
    let stored: HashSet<&[u8]> = stored.iter().map(|id| id.as_ref()).collect();
    sent.iter()
        .filter(|r| record_id(r).is_none_or(|id| !stored.contains(id)))
        .cloned()
        .collect()
}

/// Sends `records` (encoded) until the control plane has stored every one
/// of them, re-sending the rest (same ids) with backoff while it is
/// unavailable. `progress` hears how many are still unacknowledged.
pub async fn send_until_stored(
    transport: &dyn UsageTransport,
    node_id: &str,
    records: Vec<Bytes>,
    backoff: &mut Backoff,
    shutdown: &mut watch::Receiver<bool>,
    progress: impl Fn(usize),
) -> Result<(), Stopped> {
    // Shared with each request: a re-send does not copy the batch.
    let mut records: Arc<[Bytes]> = records.into();
    progress(records.len());
    while !records.is_empty() {
        let request = EncodedUsageBatch {
            node_id: node_id.to_string(),
            records: records.clone(),
        };
        match transport.report_encoded(request).await {
            Ok(stored) => {
                let before = records.len();
                records = if all_stored(&records, &stored) {
                    Arc::from([])
                } else {
                    not_stored(&records, &stored).into()
                };
                tracing::debug!(
                    sent = before,
                    stored = before - records.len(),
                    "usage reported"
                );
                progress(records.len());
                if records.is_empty() {
                    backoff.reset();
                    break;
                }
                tracing::warn!(
                    unacknowledged = records.len(),
                    "control plane did not store every usage record; re-sending"
                );
            }
            Err(ReportError::Rejected(reason)) => {
                return Err(Stopped::Rejected {
                    records: records.to_vec(),
                    reason,
                });
            }
            Err(e @ ReportError::Unavailable(_)) => {
                tracing::warn!(error = %e, pending = records.len(), "usage report failed; will retry");
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = shutdown_requested(shutdown) => return Err(Stopped::Shutdown { left: records.len() }),
            _ = tokio::time::sleep(delay) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metering::tests::record;
    use std::sync::Mutex;

    /// Fails the first `fail` calls, then stores everything but `withhold`
    /// once; records every batch's ids.
    struct FakeCp {
        fail: Mutex<u32>,
        withhold_once: Mutex<Option<String>>,
        seen: Arc<Mutex<Vec<Vec<String>>>>,
    }

    #[async_trait]
    impl UsageTransport for FakeCp {
        async fn report(&self, batch: pb::UsageBatch) -> Result<Vec<String>, ReportError> {
            let ids: Vec<String> = batch.records.iter().map(|r| r.id.clone()).collect();
            self.seen.lock().unwrap().push(ids.clone());
            {
                let mut fail = self.fail.lock().unwrap();
                if *fail > 0 {
                    *fail -= 1;
                    return Err(ReportError::Unavailable("unavailable".into()));
                }
            }
            let withhold = self.withhold_once.lock().unwrap().take();
            Ok(ids
                .into_iter()
                .filter(|i| Some(i) != withhold.as_ref())
                .collect())
        }
    }

    #[tokio::test]
    async fn retries_with_the_same_ids_until_all_are_stored() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel(100);
        let records: Vec<UsageRecord> = (0..3).map(record).collect();
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let fake = FakeCp {
            fail: Mutex::new(2),
            withhold_once: Mutex::new(Some(ids[1].clone())),
            seen: seen.clone(),
        };
        let progress = Arc::new(ReporterProgress::default());
        let mut reporter =
            CpUsageReporter::new(Box::new(fake), "dp-1".into(), rx, progress.clone());
        reporter.base_delay = Duration::from_millis(1);
        for r in records {
            tx.send(r).await.unwrap();
        }
        drop(tx);
        let (_stop, stop_rx) = watch::channel(false);
        tokio::time::timeout(Duration::from_secs(10), reporter.run(stop_rx))
            .await
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        // Two failures and a partial ack: the same batch three times, then
        // only the withheld record.
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(seen[0], ids);
        assert_eq!(seen[1], ids);
        assert_eq!(seen[2], ids);
        assert_eq!(seen[3], vec![ids[1].clone()]);
        assert_eq!(progress.unacked(), 0);
    }
}
