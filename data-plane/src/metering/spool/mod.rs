//! The durable usage spool: an append-only log of usage records under
//! `<data-dir>/spool/`, so that neither a data-plane crash nor a
//! control-plane outage of any length loses usage (see
//! `docs/usage-spool.md`).
//!
//! - The request path only puts a record on the bounded in-memory queue
//!   ([`super::ChannelSink`]); it never touches the disk.
//! - One [`writer::SpoolWriter`] drains the queue, appends whatever has
//!   accumulated as one group and makes it durable with one `fdatasync`
//!   (group commit).
//! - After each commit the writer hands the encoded records to a bounded
//!   in-memory queue ([`tail`]); the [`reporter::SpoolReporter`] takes its
//!   batches from there, in order, and reads the segment files only after a
//!   restart or when it fell behind the queue. It sends the encoded records
//!   as they are to the control plane and moves the acknowledgement
//!   watermark (file `acked`) once every record of a batch is stored.
//!   Segments wholly below the watermark are deleted.
//! - On start the spool is recovered: a torn or damaged tail is truncated,
//!   and everything above the watermark is sent again (the control plane
//!   counts a record id once).

pub mod frame;
pub mod reporter;
pub mod segment;
pub(crate) mod tail;
mod watermark;
pub mod writer;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use prost::Message;
use tokio::sync::Notify;
use tollgate_proto::sync::v1 as pb;

#[cfg(test)]
use segment::Next;
use segment::{FrameReader, NextPayload, Segment};
use tail::Tail;
use watermark::{read_ack_file, write_ack_file};

pub use reporter::SpoolReporter;
pub use writer::SpoolWriter;

/// Directory under the data directory.
pub const SPOOL_DIR: &str = "spool";
/// Default disk bound: 1 GiB (about four million records of ~260 bytes).
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Default segment size; a segment is deleted once wholly acknowledged.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Between two depth log lines.
const DEPTH_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// Above this share of the bound the spool warns that it is filling up.
const WARN_PERCENT: u64 = 80;

/// Records the control plane rejected as invalid, kept for an operator.
pub const REJECTED_FILE: &str = "rejected.log";

/// Why the spool cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("usage spool I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a usage spool segment")]
    NotASegment(String),
}

impl SpoolError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> SpoolError {
        SpoolError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Limits of the spool.
#[derive(Debug, Clone, Copy)]
pub struct SpoolOptions {
    /// Bytes of segment files the spool may hold; records that would go
    /// beyond are refused (counted and logged, see `docs/usage-spool.md`).
    pub max_bytes: u64,
    /// A new segment starts once the current one would grow beyond this.
    pub segment_bytes: u64,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// How much usage waits in the spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolDepth {
    /// Durable records the control plane has not acknowledged.
    pub records: u64,
    /// Bytes of segment files on disk.
    pub bytes: u64,
    pub segments: usize,
    /// Records ever appended to this spool (its next sequence number).
    pub appended: u64,
}

/// Where the reporter continues reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCursor {
    /// Next sequence number to send.
    pub seq: u64,
    /// Segment and byte offset where `seq` starts (a hint; 0 = unknown).
    segment: u64,
    offset: u64,
}

#[derive(Debug)]
struct State {
    /// Oldest first; the last one may be the writer's active segment.
    segments: Vec<Segment>,
    /// Base of the segment the writer appends to.
    active: Option<u64>,
    /// Every record below this sequence number is acknowledged.
    acked: u64,
    /// Sequence number of the next record appended.
    next_seq: u64,
    bytes: u64,
}

/// The spool shared by its writer, its reporter and whoever watches its
/// depth. Never used on the request path.
pub struct Spool {
    dir: PathBuf,
    options: SpoolOptions,
    state: Mutex<State>,
    /// The newest committed records, for the reporter (not the state's
    /// lock: the writer fills it while the reporter takes from it).
    tail: Mutex<Tail>,
    /// Signalled after a group commit that reaches `wake_at`.
    committed: Notify,
    /// The sequence number the reporter waits for (`u64::MAX`: none): it is
    /// woken once per batch, not after every commit.
    wake_at: AtomicU64,
    /// Records the writer has dealt with since start: made durable,
    /// refused (spool full) or given up at shutdown. With the queue's
    /// accepted count this tells shutdown what is not yet on disk.
    handled: AtomicU64,
    /// Records refused because the spool was full.
    refused: AtomicU64,
    /// Group commits (one sync each) since start.
    commits: AtomicU64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir` and recovers it:
    /// damaged tails are truncated, fully acknowledged and empty segments
    /// deleted. Blocking: call before serving or from a blocking task.
    pub fn open(dir: &Path, options: SpoolOptions) -> Result<Arc<Spool>, SpoolError> {
        Spool::open_with_tail(dir, options, tail::TAIL_RECORDS)
    }

    /// [`Spool::open`] keeping up to `tail_records` committed records in
    /// memory for the reporter.
    pub fn open_with_tail(
        dir: &Path,
        options: SpoolOptions,
        tail_records: usize,
    ) -> Result<Arc<Spool>, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|e| SpoolError::io(dir, e))?;
        let acked = read_ack_file(dir);
        let mut segments = Vec::new();
        let mut next_seq = acked;
        for (base, path) in segment::list(dir)? {
            let scan = match segment::scan(&path) {
                Ok(scan) => scan,
                Err(SpoolError::NotASegment(p)) => {
                    let aside = path.with_extension("bad");
                    tracing::error!(path = %p, moved_to = %aside.display(), "usage spool: file is not a segment; set aside");
                    std::fs::rename(&path, &aside).map_err(|e| SpoolError::io(&path, e))?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(why) = &scan.damage {
                tracing::warn!(
                    path = %path.display(),
                    reason = %why,
                    records_kept = scan.count,
                    bytes_truncated = scan.file_len - scan.valid_len,
                    "usage spool: damaged or torn tail truncated"
                );
                truncate(&path, scan.valid_len)?;
            }
            let seg = Segment {
                base,
                count: scan.count,
                len: scan.valid_len,
                path,
            };
            next_seq = next_seq.max(seg.end());
            if seg.count == 0 || seg.end() <= acked {
                remove(&seg.path);
                continue;
            }
            segments.push(seg);
        }
        let bytes = segments.iter().map(|s| s.len).sum();
        let spool = Arc::new(Spool {
            dir: dir.to_path_buf(),
            options,
            state: Mutex::new(State {
                segments,
                active: None,
                acked,
                next_seq,
                bytes,
            }),
            tail: Mutex::new(Tail::new(tail_records)),
            committed: Notify::new(),
            wake_at: AtomicU64::new(u64::MAX),
            handled: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        });
        let depth = spool.depth();
        tracing::info!(
            dir = %dir.display(),
            unacknowledged_records = depth.records,
            bytes = depth.bytes,
            segments = depth.segments,
            "usage spool opened"
        );
        Ok(spool)
    }

    /// Reads the depth of the spool in `dir` without changing anything
    /// (a damaged or still-being-written tail is simply not counted).
    pub fn inspect(dir: &Path) -> Result<SpoolDepth, SpoolError> {
        let acked = read_ack_file(dir);
        let mut depth = SpoolDepth {
            appended: acked,
            ..SpoolDepth::default()
        };
        for (base, path) in segment::list(dir)? {
            let scan = match segment::scan(&path) {
                Ok(scan) => scan,
                // Deleted (fully acknowledged) by a running spool since it
                // was listed: nothing left in it.
                Err(SpoolError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let end = base + scan.count;
            depth.records += end.saturating_sub(acked.max(base));
            depth.bytes += scan.file_len;
            depth.segments += 1;
            depth.appended = depth.appended.max(end);
        }
        Ok(depth)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> SpoolOptions {
        self.options
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements: a panic elsewhere
        // cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tail(&self) -> MutexGuard<'_, Tail> {
        // Same: every Tail method leaves it consistent.
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Committed records the in-memory queue dropped unread because it
    /// was full (the reporter read them from the files).
    pub fn tail_evicted(&self) -> u64 {
        self.tail().evicted()
    }

    pub fn depth(&self) -> SpoolDepth {
        let s = self.state();
        SpoolDepth {
            records: s
                .segments
                .iter()
                .map(|g| g.end().saturating_sub(s.acked.max(g.base)))
                .sum(),
            bytes: s.bytes,
            segments: s.segments.len(),
            appended: s.next_seq,
        }
    }

    /// Records the writer has made durable, refused or given up since
    /// start.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Records refused so far because the spool was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Group commits (one `fdatasync` each) since start.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Durable records at or after `seq`.
    pub fn available_from(&self, seq: u64) -> u64 {
        let s = self.state();
        s.segments
            .iter()
            .map(|g| g.end().saturating_sub(seq.max(g.base)))
            .sum()
    }

    /// Where sending starts: the acknowledgement watermark.
    pub fn start_cursor(&self) -> ReadCursor {
        ReadCursor {
            seq: self.state().acked,
            segment: 0,
            offset: 0,
        }
    }

    /// Records ever committed (the next sequence number).
    pub fn appended(&self) -> u64 {
        self.next_seq()
    }

    /// Waits until the records below `target` are committed.
    pub async fn appended_to(&self, target: u64) {
        loop {
            // Published before the check: a commit either sees it and
            // notifies, or happened before the check (the state's lock
            // orders the two).
            self.wake_at.store(target, Ordering::SeqCst);
            if self.next_seq() >= target {
                break;
            }
            self.committed.notified().await;
        }
        self.wake_at.store(u64::MAX, Ordering::SeqCst);
    }

    /// Reads up to `max` durable records from `cursor` on, decoded.
    /// Blocking.
    pub fn read_batch(
        &self,
        cursor: ReadCursor,
        max: usize,
    ) -> Result<(Vec<pb::UsageRecord>, ReadCursor), SpoolError> {
        let (payloads, next) = self.read_files(cursor, max)?;
        let records = payloads
            .iter()
            .filter_map(|p| match pb::UsageRecord::decode(p.as_ref()) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(error = %e, "usage spool: a record does not decode; skipped");
                    None
                }
            })
            .collect();
        Ok((records, next))
    }

    /// Up to `max` encoded records from `cursor` on: from memory when the
    /// in-memory queue holds `cursor`, else from the files. Blocking when
    /// it reads files.
    pub fn read_encoded(
        &self,
        cursor: ReadCursor,
        max: usize,
    ) -> Result<(Vec<Bytes>, ReadCursor), SpoolError> {
        match self.take_tail(cursor, max) {
            Some(batch) => Ok(batch),
            None => self.read_files(cursor, max),
        }
    }

    /// Up to `max` encoded records from `cursor` on, if the in-memory queue
    /// holds `cursor` (the normal case: the reporter keeps up with the
    /// writer). Never blocks on I/O.
    pub fn take_tail(&self, cursor: ReadCursor, max: usize) -> Option<(Vec<Bytes>, ReadCursor)> {
        let payloads = self.tail().take(cursor.seq, max)?;
        let next = ReadCursor {
            seq: cursor.seq + payloads.len() as u64,
            // Position in the files unknown: a later file read scans the
            // segment from its start.
            segment: 0,
            offset: 0,
        };
        Some((payloads, next))
    }

    /// Up to `max` encoded records from `cursor` on, read from the segment
    /// files (checksums verified). Blocking.
    pub fn read_files(
        &self,
        cursor: ReadCursor,
        max: usize,
    ) -> Result<(Vec<Bytes>, ReadCursor), SpoolError> {
        let segments: Vec<Segment> = {
            let s = self.state();
            s.segments
                .iter()
                .filter(|g| g.end() > cursor.seq)
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        let mut next = cursor;
        for seg in segments {
            let (offset, mut seq) = if seg.base == cursor.segment && cursor.offset > 0 {
                (cursor.offset, cursor.seq)
            } else {
                (0, seg.base)
            };
            let mut reader = FrameReader::open(&seg.path, offset, Some(seg.len))?;
            loop {
                if out.len() >= max {
                    return Ok((
                        out,
                        ReadCursor {
                            seq,
                            segment: seg.base,
                            offset: reader.offset,
                        },
                    ));
                }
                match reader.next_payload() {
                    NextPayload::Record(payload) => {
                        if seq >= cursor.seq {
                            out.push(payload);
                        }
                        seq += 1;
                    }
                    NextPayload::End => break,
                    NextPayload::Damaged(why) => {
                        // Damaged after its fsync (media error): the rest of
                        // this segment cannot be read.
                        tracing::error!(
                            path = %seg.path.display(),
                            reason = %why,
                            records_lost = seg.end().saturating_sub(seq),
                            "usage spool: unreadable records skipped"
                        );
                        seq = seg.end();
                        break;
                    }
                }
            }
            next = ReadCursor {
                seq: seq.max(next.seq),
                segment: seg.base,
                offset: reader.offset,
            };
        }
        Ok((out, next))
    }

    /// Everything below `seq` is acknowledged: persists the watermark and
    /// deletes segments wholly below it. Blocking.
    pub fn ack_through(&self, seq: u64) -> Result<(), SpoolError> {
        {
            let mut s = self.state();
            if seq <= s.acked {
                return Ok(());
            }
            s.acked = seq;
        }
        write_ack_file(&self.dir, seq)?;
        self.sweep();
        Ok(())
    }

    /// Appends records the control plane refused as invalid to
    /// `rejected.log` (same format as a segment) and logs each one, so they
    /// neither block the records behind them nor vanish. Blocking.
    pub fn quarantine(&self, rejected: &[(Bytes, String)]) -> Result<(), SpoolError> {
        let path = self.dir.join(REJECTED_FILE);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| SpoolError::io(&path, e))?;
        let empty = file.metadata().map_err(|e| SpoolError::io(&path, e))?.len() == 0;
        let mut buf = Vec::new();
        if empty {
            buf.extend_from_slice(segment::MAGIC);
        }
        for (payload, _) in rejected {
            frame::encode_payload(payload, &mut buf);
        }
        file.write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(|e| SpoolError::io(&path, e))?;
        for (payload, reason) in rejected {
            let (record_id, tenant_id) = match pb::UsageRecord::decode(payload.as_ref()) {
                Ok(r) => (r.id, r.tenant_id),
                Err(_) => ("(undecodable)".to_string(), String::new()),
            };
            tracing::error!(
                %record_id,
                %tenant_id,
                %reason,
                path = %path.display(),
                "usage record rejected by the control plane; set aside"
            );
        }
        Ok(())
    }

    /// Deletes sealed segments wholly below the watermark.
    pub(crate) fn sweep(&self) {
        let doomed: Vec<Segment> = {
            let mut s = self.state();
            let (acked, active) = (s.acked, s.active);
            let (doomed, kept): (Vec<Segment>, Vec<Segment>) = std::mem::take(&mut s.segments)
                .into_iter()
                .partition(|g| g.end() <= acked && Some(g.base) != active);
            s.segments = kept;
            s.bytes -= doomed.iter().map(|g| g.len).sum::<u64>();
            doomed
        };
        for seg in doomed {
            remove(&seg.path);
        }
    }

    /// The writer started a segment (its file holds the magic only).
    fn segment_started(&self, seg: Segment) {
        {
            let mut s = self.state();
            // A segment given up before its first record is started again
            // under the same name.
            if let Some(i) = s.segments.iter().position(|g| g.base == seg.base) {
                let old = s.segments.remove(i);
                s.bytes -= old.len;
            }
            s.active = Some(seg.base);
            s.bytes += seg.len;
            s.segments.push(seg);
        }
        // The previous segment is sealed now: drop it if wholly acknowledged.
        self.sweep();
    }

    /// The writer made `records` more records (`bytes` bytes) of the
    /// active segment durable; `payloads` are their encodings, in order.
    fn committed_to_active(
        &self,
        records: u64,
        bytes: u64,
        payloads: impl IntoIterator<Item = Bytes>,
    ) {
        // Into the in-memory queue before the state says they exist, so a
        // reader who sees them committed finds them there (or in the files
        // when the queue dropped them).
        let first = self.next_seq();
        self.tail().push(first, payloads);
        let next = {
            let mut s = self.state();
            let active = s.active;
            if let Some(seg) = s.segments.iter_mut().rev().find(|g| Some(g.base) == active) {
                seg.count += records;
                seg.len += bytes;
            }
            s.bytes += bytes;
            s.next_seq += records;
            s.next_seq
        };
        self.commits.fetch_add(1, Ordering::Relaxed);
        if next >= self.wake_at.load(Ordering::SeqCst) {
            self.committed.notify_one();
        }
    }

    /// The writer gave up its active segment (after an I/O error).
    fn segment_abandoned(&self) {
        self.state().active = None;
    }

    fn next_seq(&self) -> u64 {
        self.state().next_seq
    }

    fn bytes(&self) -> u64 {
        self.state().bytes
    }

    /// Logs the depth every 30 s until shutdown (a control-plane outage
    /// shows in the log as a growing spool).
    pub async fn monitor(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(DEPTH_LOG_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = crate::sync::shutdown_requested(&mut shutdown) => return,
                _ = tick.tick() => self.log_depth(),
            }
        }
    }

    /// Logs the depth: at info while records wait, at warn above 80 % of
    /// the bound or once records were refused.
    pub fn log_depth(&self) {
        let depth = self.depth();
        let refused = self.refused();
        let percent = depth.bytes.saturating_mul(100) / self.options.max_bytes.max(1);
        if percent >= WARN_PERCENT || refused > 0 {
            tracing::warn!(
                unacknowledged_records = depth.records,
                bytes = depth.bytes,
                max_bytes = self.options.max_bytes,
                percent_full = percent,
                refused_total = refused,
                "usage spool filling up: the control plane is not taking usage"
            );
        } else if depth.records > 0 {
            tracing::info!(
                unacknowledged_records = depth.records,
                bytes = depth.bytes,
                segments = depth.segments,
                "usage spool depth"
            );
        }
    }
}

fn truncate(path: &Path, len: u64) -> Result<(), SpoolError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| SpoolError::io(path, e))?;
    file.set_len(len).map_err(|e| SpoolError::io(path, e))?;
    file.sync_all().map_err(|e| SpoolError::io(path, e))
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "usage spool: cannot delete segment");
        }
    }
}

#[cfg(test)]
mod tests;
