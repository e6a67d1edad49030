//! The spool's newest committed records, kept in memory for the reporter.
//!
//! After each group commit (the records are durable) the writer hands the
//! encoded payloads to this bounded queue; the reporter takes its batches
//! from it instead of reading back and decoding the file it was just
//! written to. The queue always ends at the newest committed record: when
//! it is full the oldest entries are dropped (the reporter fell behind,
//! e.g. during a control-plane outage) and the reporter reads those from
//! the segment files, as it does after a restart.

use std::collections::VecDeque;

use bytes::Bytes;

/// Records kept (≈ 300 bytes each: about 2.5 MB when full); several
/// batches of [`crate::metering::reporter::MAX_BATCH`].
pub const TAIL_RECORDS: usize = 8192;

/// Committed payloads with the sequence numbers `first..first + len`.
#[derive(Debug)]
pub(crate) struct Tail {
    frames: VecDeque<Bytes>,
    first: u64,
    cap: usize,
    /// Records dropped unread because the queue was full.
    evicted: u64,
}

impl Tail {
    pub(crate) fn new(cap: usize) -> Tail {
        Tail {
            frames: VecDeque::new(),
            first: 0,
            cap: cap.max(1),
            evicted: 0,
        }
    }

    /// Appends the payloads of a commit whose first record is `seq`.
    pub(crate) fn push(&mut self, seq: u64, payloads: impl IntoIterator<Item = Bytes>) {
        if seq != self.first + self.frames.len() as u64 {
            // Not contiguous with what is held (cannot happen while one
            // writer commits in order): start over at `seq`; anything
            // older is read from the files.
            self.evicted += self.frames.len() as u64;
            self.frames.clear();
            self.first = seq;
        }
        for p in payloads {
            if self.frames.len() == self.cap {
                self.frames.pop_front();
                self.first += 1;
                self.evicted += 1;
            }
            self.frames.push_back(p);
        }
    }

    /// Takes up to `max` payloads starting exactly at `seq`. Entries below
    /// `seq` (already read from the files) are dropped. `None` when the
    /// queue does not hold `seq`: read the files.
    pub(crate) fn take(&mut self, seq: u64, max: usize) -> Option<Vec<Bytes>> {
        while self.first < seq && !self.frames.is_empty() {
            self.frames.pop_front();
            self.first += 1;
        }
        if self.frames.is_empty() || self.first != seq {
            return None;
        }
        let n = max.min(self.frames.len());
        let out: Vec<Bytes> = self.frames.drain(..n).collect();
        self.first += n as u64;
        Some(out)
    }

    /// The first sequence number held, if any.
    #[cfg(test)]
    pub(crate) fn first(&self) -> Option<u64> {
        (!self.frames.is_empty()).then_some(self.first)
    }

    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn payloads(range: std::ops::Range<u8>) -> Vec<Bytes> {
        range.map(|b| Bytes::from(vec![b])).collect()
    }

    #[test]
    fn takes_in_order_from_the_cursor() {
        let mut t = Tail::new(10);
        t.push(0, payloads(0..3));
        t.push(3, payloads(3..5));
        assert_eq!(t.take(0, 2).unwrap(), payloads(0..2));
        assert_eq!(t.take(2, 10).unwrap(), payloads(2..5));
        assert_eq!(t.take(5, 10), None);
        t.push(5, payloads(5..6));
        assert_eq!(t.take(5, 10).unwrap(), payloads(5..6));
    }

    #[test]
    fn overflow_drops_the_oldest_and_sends_the_reader_to_the_files() {
        let mut t = Tail::new(4);
        t.push(0, payloads(0..6));
        assert_eq!(t.evicted(), 2);
        assert_eq!(t.first(), Some(2));
        // Seqs 0 and 1 are gone: the reader must use the files.
        assert_eq!(t.take(0, 10), None);
        // Having read 0..3 from the files, it continues from memory.
        assert_eq!(t.take(3, 10).unwrap(), payloads(3..6));
    }

    #[test]
    fn a_gap_restarts_the_queue() {
        let mut t = Tail::new(4);
        t.push(0, payloads(0..2));
        t.push(7, payloads(7..8));
        assert_eq!(t.first(), Some(7));
        assert_eq!(t.take(0, 10), None);
        assert_eq!(t.take(7, 10).unwrap(), payloads(7..8));
    }
}
