//! Waits until a CP-configured gateway has reported the usage of every call
//! the harness sent it, so that a callgrind window holds the whole
//! metering cost of its own calls and nothing of earlier ones (the spool
//! reporter batches for up to a second, so without this a window's records
//! are sent in the next window, or in the "idle" window).
//!
//! The signal is the spool's acknowledgement watermark,
//! `<data-dir>/spool/acked` (`TGACKED1 | u64 LE | crc32`, written by the
//! gateway after the control plane stored a batch): on a fresh spool it is
//! the number of records the control plane has stored. The harness reads
//! the file itself, so waiting costs the measured gateway no instruction
//! (polling `/metrics` or `/healthz` would be counted in the window).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ACK_MAGIC: &[u8; 8] = b"TGACKED1";
/// Between two reads of the watermark.
const POLL: Duration = Duration::from_millis(20);

/// The acknowledged-record count in an `acked` file's bytes, if valid.
pub fn parse_acked(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != 20 || &bytes[..8] != ACK_MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    (crc32fast::hash(&bytes[..16]) == crc).then_some(seq)
}

/// The usage the harness expects a metered gateway to report: one record
/// per successful call.
#[derive(Debug)]
pub struct UsageDrain {
    acked_file: PathBuf,
    expected: u64,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every expected record is stored (`acked` ≥ expected).
    Yes { acked: u64 },
    /// Not within the timeout.
    TimedOut { acked: u64, expected: u64 },
}

impl UsageDrain {
    /// For the gateway whose `--data-dir` is `data_dir`.
    pub fn new(data_dir: &Path) -> UsageDrain {
        UsageDrain {
            acked_file: data_dir.join("spool").join("acked"),
            expected: 0,
        }
    }

    /// `calls` more successful calls were sent (each makes one record).
    pub fn sent(&mut self, calls: u64) {
        self.expected += calls;
    }

    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// Records the control plane has stored so far (0 before the first
    /// acknowledgement).
    pub fn acked(&self) -> u64 {
        std::fs::read(&self.acked_file)
            .ok()
            .and_then(|b| parse_acked(&b))
            .unwrap_or(0)
    }

    /// Waits until every expected record is acknowledged, up to `within`.
    pub async fn wait(&self, within: Duration) -> Drained {
        let deadline = Instant::now() + within;
        loop {
            let acked = self.acked();
            if acked >= self.expected {
                return Drained::Yes { acked };
            }
            if Instant::now() >= deadline {
                return Drained::TimedOut {
                    acked,
                    expected: self.expected,
                };
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ack_bytes(seq: u64) -> Vec<u8> {
        let mut b = ACK_MAGIC.to_vec();
        b.extend_from_slice(&seq.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn watermark_parses_and_damage_is_refused() {
        assert_eq!(parse_acked(&ack_bytes(1234)), Some(1234));
        let mut bad = ack_bytes(1234);
        bad[9] ^= 1;
        assert_eq!(parse_acked(&bad), None);
        assert_eq!(parse_acked(b"short"), None);
    }

    #[tokio::test]
    async fn waits_for_the_expected_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("spool")).unwrap();
        let mut drain = UsageDrain::new(dir.path());
        // Nothing sent: drained at once, even without a watermark file.
        assert_eq!(drain.wait(Duration::ZERO).await, Drained::Yes { acked: 0 });
        drain.sent(5);
        assert_eq!(
            drain.wait(Duration::from_millis(50)).await,
            Drained::TimedOut {
                acked: 0,
                expected: 5
            }
        );
        let acked = dir.path().join("spool").join("acked");
        std::fs::write(&acked, ack_bytes(5)).unwrap();
        assert_eq!(
            drain.wait(Duration::from_secs(1)).await,
            Drained::Yes { acked: 5 }
        );
    }
}
