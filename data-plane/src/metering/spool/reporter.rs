//! Sends spooled usage to the control plane: takes committed records in
//! order (batches of up to 500, or whatever arrived within 1 s) — from the
//! writer's in-memory queue, or from the segment files after a restart or
//! when it fell behind —, sends them encoded as they are, re-sends a batch
//! until every record in it is stored, then moves the watermark past it.
//! After a restart it starts at the persisted watermark, so what the
//! control plane never acknowledged is sent again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{ReadCursor, Spool};
use crate::backoff::Backoff;
use crate::metering::reporter::{deliver, UsageTransport, MAX_BATCH, MAX_BATCH_DELAY};
use crate::sync::shutdown_requested;

pub struct SpoolReporter {
    transport: Box<dyn UsageTransport>,
    node_id: String,
    spool: Arc<Spool>,
    pub(crate) base_delay: Duration,
}

impl SpoolReporter {
    pub fn new(transport: Box<dyn UsageTransport>, node_id: String, spool: Arc<Spool>) -> Self {
        SpoolReporter {
            transport,
            node_id,
            spool,
            base_delay: Duration::from_millis(200),
        }
    }

    /// Waits until at least one durable record lies at or after `seq`,
    /// then gives a batch up to [`MAX_BATCH_DELAY`] to fill. `false` on
    /// shutdown.
    async fn wait_for_batch(&self, seq: u64, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            let available = self.spool.available_from(seq);
            if available > 0 {
                break;
            }
            tokio::select! {
                _ = shutdown_requested(shutdown) => return false,
                _ = self.spool.appended_to(self.spool.appended() + 1) => {}
            }
        }
        // One timer and one wake-up per batch, not one per commit.
        let deadline = tokio::time::sleep(MAX_BATCH_DELAY);
        tokio::pin!(deadline);
        loop {
            let available = self.spool.available_from(seq);
            if available >= MAX_BATCH as u64 {
                break;
            }
            // Each commit adds to both: wake when the batch would be full.
            let full_at = self.spool.appended() + (MAX_BATCH as u64 - available);
            tokio::select! {
                _ = shutdown_requested(shutdown) => return false,
                _ = self.spool.appended_to(full_at) => {}
                _ = &mut deadline => break,
            }
        }
        true
    }

    /// Runs until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.base_delay, Duration::from_secs(30));
        let mut cursor: ReadCursor = self.spool.start_cursor();
        loop {
            if !self.wait_for_batch(cursor.seq, &mut shutdown).await {
                return;
            }
            let read = match self.spool.take_tail(cursor, MAX_BATCH) {
                // Kept up with the writer: no file I/O, no thread hop.
                Some(batch) => Ok(Ok(batch)),
                None => {
                    let spool = self.spool.clone();
                    tokio::task::spawn_blocking(move || spool.read_files(cursor, MAX_BATCH)).await
                }
            };
            let (records, next) = match read {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the usage spool; retrying");
                    tokio::select! {
                        _ = shutdown_requested(&mut shutdown) => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                    continue;
                }
                Err(_) => {
                    tracing::error!("usage spool reader failed; usage is no longer reported");
                    return;
                }
            };
            let sent = deliver(
                self.transport.as_ref(),
                &self.node_id,
                records,
                &mut backoff,
                &mut shutdown,
                // The spool's depth already counts these.
                |_| {},
            )
            .await;
            let Ok(rejected) = sent else {
                // Durable: sent again after the restart.
                return;
            };
            if !rejected.is_empty() {
                let spool = self.spool.clone();
                match tokio::task::spawn_blocking(move || spool.quarantine(&rejected)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        // Not acknowledged: retried (and rejected again)
                        // rather than lost.
                        tracing::error!(error = %e, "cannot set rejected usage records aside; retrying");
                        tokio::select! {
                            _ = shutdown_requested(&mut shutdown) => return,
                            _ = tokio::time::sleep(backoff.next_delay()) => {}
                        }
                        continue;
                    }
                    Err(_) => return,
                }
            }
            let spool = self.spool.clone();
            match tokio::task::spawn_blocking(move || spool.ack_through(next.seq)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot persist the usage watermark; acknowledged records may be re-sent after a restart");
                }
                Err(_) => return,
            }
            cursor = next;
        }
    }
}
