#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::*;
use crate::metering::reporter::{ReportError, UsageTransport};
use crate::metering::tests::record;
use crate::metering::{ChannelSink, UsageSink};

fn records(range: std::ops::Range<u32>) -> Vec<pb::UsageRecord> {
    range.map(|n| record(n).to_proto()).collect()
}

fn ids(records: &[pb::UsageRecord]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

fn small_segments() -> SpoolOptions {
    SpoolOptions {
        max_bytes: DEFAULT_MAX_BYTES,
        // Room for a handful of records (~90 bytes each) per segment.
        segment_bytes: 400,
    }
}

fn read_all(spool: &Spool) -> Vec<pb::UsageRecord> {
    spool.read_batch(spool.start_cursor(), 10_000).unwrap().0
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    segment::list(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

#[test]
fn append_then_recover_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let written = records(0..10);
    {
        let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        let mut w = SpoolWriter::new(spool.clone());
        let a = w.append(&written[..4]).unwrap();
        assert_eq!((a.written, a.refused), (4, 0));
        w.append(&written[4..]).unwrap();
        assert_eq!(spool.depth().records, 10);
        assert_eq!(read_all(&spool), written);
    }
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert_eq!(spool.depth().records, 10);
    assert_eq!(read_all(&spool), written);
    assert_eq!(Spool::inspect(dir.path()).unwrap().records, 10);
    // Appending after a restart continues the sequence in a new segment.
    let more = records(10..12);
    SpoolWriter::new(spool.clone()).append(&more).unwrap();
    assert_eq!(spool.depth().records, 12);
    assert_eq!(ids(&read_all(&spool)[10..]), ids(&more));
    assert_eq!(segment_files(dir.path()).len(), 2);
}

#[test]
fn torn_tail_is_truncated_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let written = records(0..5);
    {
        let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        SpoolWriter::new(spool).append(&written).unwrap();
    }
    let seg = segment_files(dir.path()).remove(0);
    let full = std::fs::metadata(&seg).unwrap().len();
    // Cut the last record in the middle, as a crash during `write` would.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(full - 5).unwrap();
    drop(f);
    // A read-only look does not count the torn record.
    assert_eq!(Spool::inspect(dir.path()).unwrap().records, 4);

    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert_eq!(spool.depth().records, 4);
    assert_eq!(ids(&read_all(&spool)), ids(&written[..4]));
    let frame_len = (full - segment::MAGIC.len() as u64) / 5;
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        full - frame_len,
        "the torn bytes are gone from the file"
    );
    // The spool keeps working after the repair.
    let more = records(5..7);
    SpoolWriter::new(spool.clone()).append(&more).unwrap();
    drop(spool);
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let all = ids(&read_all(&spool));
    assert_eq!(all.len(), 6);
    assert_eq!(all[4..], ids(&more)[..]);
}

#[test]
fn torn_header_of_a_new_segment_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(segment::file_name(0)), b"TGSP").unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert_eq!(spool.depth(), SpoolDepth::default());
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(Spool::inspect(dir.path()).unwrap(), SpoolDepth::default());
}

#[test]
fn corrupt_checksum_is_detected_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    let written = records(0..5);
    {
        let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        SpoolWriter::new(spool).append(&written).unwrap();
    }
    let seg = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let frame_len = (bytes.len() - segment::MAGIC.len()) / 5;
    // One flipped bit in the payload of the fourth record.
    let at = segment::MAGIC.len() + 3 * frame_len + frame::HEADER_LEN + 10;
    bytes[at] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();

    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert_eq!(ids(&read_all(&spool)), ids(&written[..3]));
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        (segment::MAGIC.len() + 3 * frame_len) as u64
    );
}

#[test]
fn foreign_file_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(segment::file_name(7)),
        b"not a spool segment",
    )
    .unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert_eq!(spool.depth().records, 0);
    assert!(dir.path().join("seg-00000000000000000007.bad").exists());
}

#[test]
fn watermark_deletes_only_wholly_acknowledged_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small_segments()).unwrap();
    let mut w = SpoolWriter::new(spool.clone());
    let written = records(0..12);
    for chunk in written.chunks(2) {
        w.append(chunk).unwrap();
    }
    let bases: Vec<u64> = segment::list(dir.path())
        .unwrap()
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    assert!(bases.len() >= 3, "{bases:?}");
    assert_eq!(bases[0], 0);

    // Acknowledge up to the middle of the second segment.
    let mid = bases[1] + 1;
    spool.ack_through(mid).unwrap();
    let left: Vec<u64> = segment::list(dir.path())
        .unwrap()
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    assert_eq!(left, bases[1..].to_vec());
    assert_eq!(spool.depth().records, 12 - mid);
    assert_eq!(spool.depth().segments, bases.len() - 1);

    // Everything acknowledged: the active segment stays (the writer owns
    // it), the rest goes.
    spool.ack_through(12).unwrap();
    assert_eq!(spool.depth().records, 0);
    assert_eq!(segment_files(dir.path()).len(), 1);
    // The watermark is persisted: after a restart nothing is pending and
    // the old active segment is deleted too.
    drop(w);
    drop(spool);
    let spool = Spool::open(dir.path(), small_segments()).unwrap();
    assert_eq!(
        spool.depth(),
        SpoolDepth {
            appended: 12,
            ..SpoolDepth::default()
        }
    );
    assert_eq!(Spool::inspect(dir.path()).unwrap().appended, 12);
    assert!(segment_files(dir.path()).is_empty());
    assert!(read_all(&spool).is_empty());
    // Sequence numbers keep growing after everything was deleted.
    SpoolWriter::new(spool.clone())
        .append(&records(20..21))
        .unwrap();
    assert_eq!(segment::list(dir.path()).unwrap()[0].0, 12);
}

#[test]
fn restart_reads_back_only_unacknowledged_records() {
    let dir = tempfile::tempdir().unwrap();
    let written = records(0..10);
    {
        let spool = Spool::open(dir.path(), small_segments()).unwrap();
        SpoolWriter::new(spool.clone()).append(&written).unwrap();
        let (batch, next) = spool.read_batch(spool.start_cursor(), 6).unwrap();
        assert_eq!(ids(&batch), ids(&written[..6]));
        spool.ack_through(next.seq).unwrap();
        // Read (sent) but never acknowledged before the "crash".
        let (rest, _) = spool.read_batch(next, 100).unwrap();
        assert_eq!(ids(&rest), ids(&written[6..]));
    }
    let spool = Spool::open(dir.path(), small_segments()).unwrap();
    assert_eq!(spool.depth().records, 4);
    assert_eq!(ids(&read_all(&spool)), ids(&written[6..]));
}

#[test]
fn batches_continue_from_the_cursor_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small_segments()).unwrap();
    let written = records(0..23);
    let mut w = SpoolWriter::new(spool.clone());
    for chunk in written.chunks(3) {
        w.append(chunk).unwrap();
    }
    let mut cursor = spool.start_cursor();
    let mut seen = Vec::new();
    loop {
        let (batch, next) = spool.read_batch(cursor, 4).unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 4);
        seen.extend(ids(&batch));
        cursor = next;
    }
    assert_eq!(seen, ids(&written));
    assert_eq!(spool.available_from(cursor.seq), 0);
}

#[test]
fn full_spool_refuses_new_records_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        max_bytes: 500,
        segment_bytes: DEFAULT_SEGMENT_BYTES,
    };
    let spool = Spool::open(dir.path(), options).unwrap();
    let mut w = SpoolWriter::new(spool.clone());
    let burst = records(0..10);
    let a = w.append(&burst).unwrap();
    assert!(a.written > 0 && a.refused > 0, "{a:?}");
    assert_eq!(a.written + a.refused, 10);
    assert!(spool.depth().bytes <= 500);
    // The oldest are kept.
    assert_eq!(ids(&read_all(&spool)), ids(&burst)[..a.written].to_vec());
    let b = w.append(&records(10..11)).unwrap();
    assert_eq!((b.written, b.refused), (0, 1));
    assert_eq!(spool.refused(), (a.refused + 1) as u64);
    // Once acknowledged segments are gone there is room again.
    spool.ack_through(100).unwrap();
    drop(w);
    drop(spool);
    let spool = Spool::open(dir.path(), options).unwrap();
    let c = SpoolWriter::new(spool.clone())
        .append(&records(11..12))
        .unwrap();
    assert_eq!((c.written, c.refused), (1, 0));
}

/// Stores every record unless told to fail; rejects any batch holding the
/// `poison` id; remembers what it stored.
#[derive(Default)]
struct FakeCp {
    fail: bool,
    poison: Option<String>,
    stored: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl UsageTransport for FakeCp {
    async fn report(&self, batch: pb::UsageBatch) -> Result<Vec<String>, ReportError> {
        if self.fail {
            return Err(ReportError::Unavailable("unavailable".into()));
        }
        let ids: Vec<String> = batch.records.iter().map(|r| r.id.clone()).collect();
        if self.poison.as_ref().is_some_and(|p| ids.contains(p)) {
            return Err(ReportError::Rejected("tenant_id must not be empty".into()));
        }
        self.stored.lock().unwrap().extend(ids.clone());
        Ok(ids)
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn queue_to_cp_and_restart_resends_only_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let first = records(0..5);
    let second = records(5..8);

    // Run 1: queue → writer → spool → reporter → CP, all acknowledged.
    {
        let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        let (sink, rx) = ChannelSink::new(100);
        let (stop, stop_rx) = watch::channel(false);
        let writer = tokio::spawn(SpoolWriter::new(spool.clone()).run(rx, stop_rx.clone()));
        let cp = FakeCp::default();
        let stored = cp.stored.clone();
        let mut reporter = SpoolReporter::new(Box::new(cp), "dp-1".into(), spool.clone());
        reporter.base_delay = Duration::from_millis(1);
        let reporter = tokio::spawn(reporter.run(stop_rx));
        for r in &first {
            sink.submit(crate::metering::UsageRecord {
                id: r.id.clone(),
                ..record(0)
            });
        }
        wait_for("first run reported", || stored.lock().unwrap().len() == 5).await;
        wait_for("first run acknowledged", || spool.depth().records == 0).await;
        assert_eq!(*stored.lock().unwrap(), ids(&first));
        stop.send(true).unwrap();
        writer.await.unwrap();
        reporter.await.unwrap();
    }
    // Run 2: the control plane is down; records are durable, then "crash".
    {
        let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let down = FakeCp {
            fail: true,
            ..FakeCp::default()
        };
        let mut reporter = SpoolReporter::new(Box::new(down), "dp-1".into(), spool.clone());
        reporter.base_delay = Duration::from_millis(1);
        let reporter = tokio::spawn(reporter.run(stop_rx));
        SpoolWriter::new(spool.clone()).append(&second).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(spool.depth().records, 3);
        stop.send(true).unwrap();
        reporter.await.unwrap();
    }
    // Run 3: back up; exactly the unacknowledged records are sent.
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert_eq!(spool.depth().records, 3);
    let cp = FakeCp::default();
    let stored = cp.stored.clone();
    let (_stop, stop_rx) = watch::channel(false);
    let mut reporter = SpoolReporter::new(Box::new(cp), "dp-1".into(), spool.clone());
    reporter.base_delay = Duration::from_millis(1);
    let reporter = tokio::spawn(reporter.run(stop_rx));
    wait_for("restart acknowledged", || spool.depth().records == 0).await;
    assert_eq!(*stored.lock().unwrap(), ids(&second));
    reporter.abort();
}

#[tokio::test]
async fn writer_groups_a_burst_into_few_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let (sink, rx) = ChannelSink::new(10_000);
    let burst = writer::MAX_GROUP + 904;
    for n in 0..burst {
        sink.submit(record(u32::try_from(n).unwrap()));
    }
    let (stop, stop_rx) = watch::channel(false);
    let writer = tokio::spawn(SpoolWriter::new(spool.clone()).run(rx, stop_rx));
    // `handled` moves last, after the group is durable.
    wait_for("burst written", || spool.handled() == burst as u64).await;
    assert_eq!(spool.depth().records, burst as u64);
    // Queued before the writer starts, at most MAX_GROUP per sync: exactly
    // two syncs.
    assert_eq!(spool.commits(), 2);
    assert_eq!(sink.accepted(), burst as u64);
    assert_eq!(Spool::inspect(dir.path()).unwrap().records, burst as u64);
    stop.send(true).unwrap();
    writer.await.unwrap();
}

#[tokio::test]
async fn a_rejected_record_is_set_aside_and_does_not_block_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let written = records(0..7);
    let poison = written[4].id.clone();
    SpoolWriter::new(spool.clone()).append(&written).unwrap();
    let cp = FakeCp {
        poison: Some(poison.clone()),
        ..FakeCp::default()
    };
    let stored = cp.stored.clone();
    let (_stop, stop_rx) = watch::channel(false);
    let mut reporter = SpoolReporter::new(Box::new(cp), "dp-1".into(), spool.clone());
    reporter.base_delay = Duration::from_millis(1);
    let reporter = tokio::spawn(reporter.run(stop_rx));
    wait_for("all but the poison acknowledged", || {
        spool.depth().records == 0
    })
    .await;
    reporter.abort();
    let mut want = ids(&written);
    want.retain(|i| i != &poison);
    let mut got = stored.lock().unwrap().clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // The poison is on disk for an operator, in the segment format.
    let path = dir.path().join(REJECTED_FILE);
    let mut reader = segment::FrameReader::open(&path, 0, None).unwrap();
    match reader.next_frame() {
        Next::Record(r) => assert_eq!(r.id, poison),
        _ => panic!("no rejected record in {}", path.display()),
    }
    assert!(matches!(reader.next_frame(), Next::End));
}

// The in-memory tail (records handed from the writer to the reporter) and
// the file path after a restart or an overflow.

fn decoded(payloads: &[bytes::Bytes]) -> Vec<pb::UsageRecord> {
    crate::metering::encoded::decode_records(payloads).unwrap()
}

#[test]
fn tail_and_files_give_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small_segments()).unwrap();
    let mut w = SpoolWriter::new(spool.clone());
    let written = records(0..23);
    for chunk in written.chunks(5) {
        w.append(chunk).unwrap();
    }
    let start = spool.start_cursor();
    let (from_files, files_next) = spool.read_files(start, 100).unwrap();
    let (from_tail, tail_next) = spool.take_tail(start, 100).unwrap();
    assert_eq!(from_tail, from_files, "same encoded bytes");
    assert_eq!(decoded(&from_tail), written);
    assert_eq!((tail_next.seq, files_next.seq), (23, 23));
    // Taken: the next read finds nothing at 23 in memory or on disk.
    assert!(spool.take_tail(tail_next, 100).is_none());
    assert!(spool.read_encoded(tail_next, 100).unwrap().0.is_empty());
    // Batches from memory stop at `max` and continue where they stopped.
    let more = records(23..30);
    w.append(&more).unwrap();
    let (a, next) = spool.read_encoded(tail_next, 4).unwrap();
    let (b, next) = spool.read_encoded(next, 4).unwrap();
    assert_eq!((a.len(), b.len(), next.seq), (4, 3, 30));
    assert_eq!(decoded(&[a, b].concat()), more);
    assert_eq!(spool.tail_evicted(), 0);
}

/// Stores what it is sent, encoded as is (like the gRPC transport: no
/// decode), listing the stored ids in reverse order; withholds the ids in
/// `withhold_once` the first time it sees them.
#[derive(Default)]
struct EncodedCp {
    withhold_once: Mutex<Vec<String>>,
    batches: Arc<Mutex<Vec<Vec<String>>>>,
    stored: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl UsageTransport for EncodedCp {
    async fn report(&self, _batch: pb::UsageBatch) -> Result<Vec<String>, ReportError> {
        panic!("the spool reporter sends encoded records");
    }

    async fn report_encoded(
        &self,
        batch: crate::metering::encoded::EncodedUsageBatch,
    ) -> Result<Vec<bytes::Bytes>, ReportError> {
        let ids: Vec<String> = batch
            .records
            .iter()
            .map(|r| {
                String::from_utf8(crate::metering::encoded::record_id(r).unwrap().to_vec()).unwrap()
            })
            .collect();
        self.batches.lock().unwrap().push(ids.clone());
        let mut withhold = self.withhold_once.lock().unwrap();
        let mut stored = Vec::new();
        for id in ids {
            if let Some(i) = withhold.iter().position(|w| *w == id) {
                withhold.remove(i);
                continue;
            }
            stored.push(id);
        }
        let mut db = self.stored.lock().unwrap();
        for id in &stored {
            if !db.contains(id) {
                db.push(id.clone());
            }
        }
        Ok(stored.into_iter().rev().map(bytes::Bytes::from).collect())
    }
}

fn start_reporter(
    spool: &Arc<Spool>,
    cp: EncodedCp,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stop_rx) = watch::channel(false);
    let mut reporter = SpoolReporter::new(Box::new(cp), "dp-1".into(), spool.clone());
    reporter.base_delay = Duration::from_millis(1);
    (stop, tokio::spawn(reporter.run(stop_rx)))
}

#[tokio::test]
async fn a_reporter_behind_the_tail_sends_every_record_once_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    // Room for 4 records in memory; 30 are committed before the reporter
    // runs (as during a control-plane outage), so 26 are only on disk.
    let spool = Spool::open_with_tail(dir.path(), small_segments(), 4).unwrap();
    let written = records(0..30);
    let mut w = SpoolWriter::new(spool.clone());
    for chunk in written.chunks(3) {
        w.append(chunk).unwrap();
    }
    assert_eq!(spool.tail_evicted(), 26);
    let cp = EncodedCp::default();
    let (stored, batches) = (cp.stored.clone(), cp.batches.clone());
    let (stop, reporter) = start_reporter(&spool, cp);
    wait_for("all acknowledged", || spool.depth().records == 0).await;
    // Caught up: what is committed now comes from memory.
    let later = records(30..33);
    w.append(&later).unwrap();
    wait_for("later acknowledged", || spool.depth().records == 0).await;
    stop.send(true).unwrap();
    reporter.await.unwrap();
    let all: Vec<String> = written.iter().chain(&later).map(|r| r.id.clone()).collect();
    assert_eq!(*stored.lock().unwrap(), all, "every record, in order");
    let sent: Vec<String> = batches.lock().unwrap().concat();
    assert_eq!(sent, all, "each sent exactly once");
}

#[tokio::test]
async fn records_the_cp_did_not_store_are_sent_again_until_stored() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let written = records(0..6);
    let all = ids(&written);
    SpoolWriter::new(spool.clone()).append(&written).unwrap();
    let cp = EncodedCp {
        withhold_once: Mutex::new(vec![all[1].clone(), all[4].clone()]),
        ..EncodedCp::default()
    };
    let (stored, batches) = (cp.stored.clone(), cp.batches.clone());
    let (stop, reporter) = start_reporter(&spool, cp);
    wait_for("all acknowledged", || spool.depth().records == 0).await;
    stop.send(true).unwrap();
    reporter.await.unwrap();
    let batches = batches.lock().unwrap().clone();
    // The whole batch, then exactly the two it did not store.
    assert_eq!(
        batches,
        vec![all.clone(), vec![all[1].clone(), all[4].clone()]]
    );
    let mut got = stored.lock().unwrap().clone();
    got.sort();
    let mut want = all;
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn records_sent_from_memory_but_not_acknowledged_are_replayed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let written = records(0..8);
    {
        let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        let mut w = SpoolWriter::new(spool.clone());
        w.append(&written[..5]).unwrap();
        // Acknowledged: the first five, taken from memory.
        let (batch, next) = spool.take_tail(spool.start_cursor(), 100).unwrap();
        assert_eq!(batch.len(), 5);
        spool.ack_through(next.seq).unwrap();
        // Taken from memory (sent) but never acknowledged: the "crash".
        w.append(&written[5..]).unwrap();
        let (sent, _) = spool.take_tail(next, 100).unwrap();
        assert_eq!(decoded(&sent), written[5..].to_vec());
    }
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert_eq!(spool.depth().records, 3);
    let cp = EncodedCp::default();
    let stored = cp.stored.clone();
    let (stop, reporter) = start_reporter(&spool, cp);
    wait_for("replayed", || spool.depth().records == 0).await;
    stop.send(true).unwrap();
    reporter.await.unwrap();
    assert_eq!(*stored.lock().unwrap(), ids(&written[5..]));
}
