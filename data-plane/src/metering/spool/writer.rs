//! The one writer of the spool: drains the usage queue and makes each
//! group of records durable with a single `write` + `fdatasync` (group
//! commit). While one group is being synced the next one accumulates in the
//! queue, so the number of syncs per second adapts to the load and the
//! request path never waits for the disk.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::sync::{mpsc, watch};
use tollgate_proto::sync::v1 as pb;

use super::segment::{self, Segment};
use super::{frame, Spool, SpoolError};
use crate::backoff::Backoff;
use crate::metering::UsageRecord;
use crate::sync::shutdown_requested;

/// Largest group made durable by one sync.
pub const MAX_GROUP: usize = 4096;
/// Refusals (spool full) are logged at most this often.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What one append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub written: usize,
    /// Records not written because the spool reached its bound.
    pub refused: usize,
}

struct Active {
    file: File,
    base: u64,
    len: u64,
}

/// Appends to the newest segment. Blocking methods: run them on a
/// blocking thread.
pub struct SpoolWriter {
    spool: Arc<Spool>,
    active: Option<Active>,
    /// The group's frames; after the commit its payloads go to the
    /// reporter as slices of it (no copy per record).
    buf: BytesMut,
    /// Where each record's payload is in `buf`.
    payloads: Vec<Range<usize>>,
    last_refusal_log: Option<Instant>,
}

impl SpoolWriter {
    pub fn new(spool: Arc<Spool>) -> SpoolWriter {
        SpoolWriter {
            spool,
            active: None,
            buf: BytesMut::with_capacity(256 * 1024),
            payloads: Vec::new(),
            last_refusal_log: None,
        }
    }

    /// Appends `records` in order and syncs them; records past the spool's
    /// bound are refused (the oldest are kept). On error nothing of this
    /// group counts as written and the caller may retry the whole group.
    pub fn append(&mut self, records: &[pb::UsageRecord]) -> Result<Appended, SpoolError> {
        let options = self.spool.options();
        let room = options.max_bytes.saturating_sub(self.spool.bytes());
        self.buf.clear();
        self.payloads.clear();
        let mut written = 0;
        for r in records {
            let before = self.buf.len();
            let payload = frame::encode_into(r, &mut self.buf);
            // A new segment costs its magic too.
            if (self.buf.len() + segment::MAGIC.len()) as u64 > room {
                self.buf.truncate(before);
                break;
            }
            self.payloads.push(payload);
            written += 1;
        }
        let refused = records.len() - written;
        if refused > 0 {
            self.note_refused(refused);
        }
        if written == 0 {
            return Ok(Appended { written, refused });
        }
        let grow = self.buf.len() as u64;
        let needs_new = match &self.active {
            None => true,
            Some(a) => a.len > segment::MAGIC.len() as u64 && a.len + grow > options.segment_bytes,
        };
        if needs_new {
            self.start_segment()?;
        }
        let Some(active) = self.active.as_mut() else {
            return Err(SpoolError::io(
                self.spool.dir(),
                std::io::Error::other("no active segment"),
            ));
        };
        let result = active
            .file
            .write_all(&self.buf)
            .and_then(|()| active.file.sync_data());
        if let Err(e) = result {
            let path = self.spool.dir().join(segment::file_name(active.base));
            self.abandon_tail(&path);
            return Err(SpoolError::io(&path, e));
        }
        active.len += grow;
        let group = self.buf.split().freeze();
        self.spool.committed_to_active(
            written as u64,
            grow,
            self.payloads.drain(..).map(|p| group.slice(p)),
        );
        Ok(Appended { written, refused })
    }

    fn note_refused(&mut self, refused: usize) {
        let total = self
            .spool
            .refused
            .fetch_add(refused as u64, Ordering::Relaxed)
            + refused as u64;
        let due = self
            .last_refusal_log
            .is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL);
        if due {
            self.last_refusal_log = Some(Instant::now());
            tracing::error!(
                refused_now = refused,
                usage_records_refused_total = total,
                max_bytes = self.spool.options().max_bytes,
                "usage spool is full: usage records refused (not metered); \
                 the control plane has not acknowledged usage for a long time"
            );
        }
    }

    /// Creates `seg-<next seq>.log` with its magic, durably (file and
    /// directory entry).
    fn start_segment(&mut self) -> Result<(), SpoolError> {
        let base = self.spool.next_seq();
        let name = segment::file_name(base);
        let path = self.spool.dir().join(&name);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| SpoolError::io(&path, e))?;
        file.write_all(segment::MAGIC)
            .and_then(|()| file.sync_all())
            .map_err(|e| SpoolError::io(&path, e))?;
        sync_dir(self.spool.dir())?;
        let len = segment::MAGIC.len() as u64;
        self.active = Some(Active { file, base, len });
        self.spool.segment_started(Segment {
            base,
            count: 0,
            len,
            path,
        });
        Ok(())
    }

    /// After a failed write or sync the file's tail is unknown: cut it back
    /// to the last durable record, or give the segment up so the next group
    /// starts a new one (a record then found in both is counted once by the
    /// control plane: same id).
    fn abandon_tail(&mut self, path: &Path) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let restored = active
            .file
            .set_len(active.len)
            .and_then(|()| active.file.seek(SeekFrom::Start(active.len)).map(|_| ()));
        if restored.is_err() {
            tracing::warn!(path = %path.display(), "usage spool: segment given up after a write error");
            self.active = None;
            self.spool.segment_abandoned();
        }
    }

    /// Drains `rx` into the spool until shutdown, then writes what is still
    /// queued and returns. The writing happens on a thread of its own that
    /// waits for records and syncs in place: a group costs no runtime task
    /// wake-up and no hop to the blocking pool and back (per-call cost).
    pub async fn run(self, rx: mpsc::Receiver<UsageRecord>, shutdown: watch::Receiver<bool>) {
        let handle = tokio::runtime::Handle::current();
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("tollgate-usage-spool".into())
            .spawn(move || {
                self.run_on_thread(rx, shutdown, &handle);
                let _ = done.send(());
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the usage spool writer; usage is no longer durable");
            return;
        }
        if finished.await.is_err() {
            tracing::error!("usage spool writer failed; usage is no longer durable");
        }
    }

    fn run_on_thread(
        mut self,
        mut rx: mpsc::Receiver<UsageRecord>,
        mut shutdown: watch::Receiver<bool>,
        handle: &tokio::runtime::Handle,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_secs(5));
        let mut stopping = false;
        loop {
            let first = if stopping {
                rx.try_recv().ok()
            } else {
                // Parks this thread until a record or shutdown (no timer:
                // works whatever runtime the handle belongs to).
                let next = handle.block_on(async {
                    tokio::select! {
                        r = rx.recv() => Some(r),
                        _ = shutdown_requested(&mut shutdown) => None,
                    }
                });
                match next {
                    Some(r) => r,
                    None => {
                        stopping = true;
                        continue;
                    }
                }
            };
            let Some(first) = first else { return };
            // Moved, not cloned, into their protobuf form.
            let mut group = Vec::with_capacity(1 + rx.len().min(MAX_GROUP));
            group.push(first.into_proto());
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r.into_proto()),
                    Err(_) => break,
                }
            }
            loop {
                let started = Instant::now();
                match self.append(&group) {
                    Ok(done) => {
                        self.spool
                            .handled
                            .fetch_add(group.len() as u64, Ordering::Relaxed);
                        tracing::trace!(
                            records = done.written,
                            sync_us =
                                u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                            "usage group committed"
                        );
                        backoff.reset();
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, records = group.len(), "usage spool write failed; retrying");
                        if stopping {
                            tracing::error!(
                                lost = group.len() + rx.len(),
                                "shutting down with usage records not written"
                            );
                            self.spool
                                .handled
                                .fetch_add(group.len() as u64, Ordering::Relaxed);
                            return;
                        }
                        stopping = pause(backoff.next_delay(), &mut shutdown);
                    }
                }
            }
        }
    }
}

/// Sleeps `delay` on this thread unless shutdown is requested meanwhile;
/// `true` when it was.
fn pause(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    const SLICE: Duration = Duration::from_millis(50);
    let until = Instant::now() + delay;
    loop {
        // Requested, or nobody left to request it.
        if *shutdown.borrow() || shutdown.has_changed().is_err() {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(SLICE));
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpoolError::io(dir, e))
}
