//! Sends spooled usage to the control plane: reads committed records in
//! order (batches of up to 500, or whatever arrived within 1 s), re-sends a
//! batch until every record in it is stored, then moves the watermark past
//! it. After a restart it starts at the persisted watermark, so what the
//! control plane never acknowledged is sent again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{ReadCursor, Spool};
use crate::backoff::Backoff;
use crate::metering::reporter::{send_until_stored, UsageTransport, MAX_BATCH, MAX_BATCH_DELAY};
use crate::sync::shutdown_requested;

/// Between two depth log lines.
const DEPTH_LOG_INTERVAL: Duration = Duration::from_secs(30);

pub struct SpoolReporter {
    transport: Box<dyn UsageTransport>,
    node_id: String,
    spool: Arc<Spool>,
    in_flight: Arc<AtomicUsize>,
    pub(crate) base_delay: Duration,
}

impl SpoolReporter {
    pub fn new(transport: Box<dyn UsageTransport>, node_id: String, spool: Arc<Spool>) -> Self {
        SpoolReporter {
            transport,
            node_id,
            spool,
            in_flight: Arc::new(AtomicUsize::new(0)),
            base_delay: Duration::from_millis(200),
        }
    }

    /// Records of the batch being sent that are not yet acknowledged.
    pub fn in_flight(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }

    /// Waits until at least one durable record lies at or after `seq`,
    /// then gives a batch up to [`MAX_BATCH_DELAY`] to fill. `false` on
    /// shutdown.
    async fn wait_for_batch(&self, seq: u64, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut next_depth_log = tokio::time::Instant::now() + DEPTH_LOG_INTERVAL;
        while self.spool.available_from(seq) == 0 {
            tokio::select! {
                _ = shutdown_requested(shutdown) => return false,
                _ = self.spool.committed() => {}
                _ = tokio::time::sleep_until(next_depth_log) => {
                    self.spool.log_depth();
                    next_depth_log += DEPTH_LOG_INTERVAL;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + MAX_BATCH_DELAY;
        while self.spool.available_from(seq) < MAX_BATCH as u64 {
            tokio::select! {
                _ = shutdown_requested(shutdown) => return false,
                _ = self.spool.committed() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        true
    }

    /// Runs until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.base_delay, Duration::from_secs(30));
        let mut cursor: ReadCursor = self.spool.start_cursor();
        let mut last_depth_log = tokio::time::Instant::now();
        loop {
            if !self.wait_for_batch(cursor.seq, &mut shutdown).await {
                return;
            }
            let spool = self.spool.clone();
            let read =
                tokio::task::spawn_blocking(move || spool.read_batch(cursor, MAX_BATCH)).await;
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
            let in_flight = self.in_flight.clone();
            let sent = send_until_stored(
                self.transport.as_ref(),
                &self.node_id,
                records,
                &mut backoff,
                &mut shutdown,
                |left| in_flight.store(left, Ordering::Relaxed),
            )
            .await;
            if sent.is_err() {
                // Durable: sent again after the restart.
                return;
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
            if last_depth_log.elapsed() >= DEPTH_LOG_INTERVAL {
                last_depth_log = tokio::time::Instant::now();
                self.spool.log_depth();
            }
        }
    }
}
