//! The acknowledgement watermark, `<spool>/acked`:
//! `TGACKED1 | u64 LE | crc32 of the first 16 bytes`. Every record whose
//! sequence number is below it is acknowledged by the control plane.

use std::io::Write;
use std::path::Path;

use super::SpoolError;

const ACK_FILE: &str = "acked";
const ACK_MAGIC: &[u8; 8] = b"TGACKED1";

/// The persisted watermark; 0 (send everything again) when missing or
/// damaged, which at worst re-sends records the control plane already has.
pub(super) fn read_ack_file(dir: &Path) -> u64 {
    let path = dir.join(ACK_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return 0;
    };
    match parse_ack(&bytes) {
        Some(seq) => seq,
        None => {
            tracing::warn!(path = %path.display(), "usage spool: damaged watermark; re-sending all spooled usage");
            0
        }
    }
}

fn parse_ack(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != 20 || &bytes[..8] != ACK_MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    (crc32fast::hash(&bytes[..16]) == crc).then_some(seq)
}

/// Written to a temp file and renamed over the old one. Not fsynced: a
/// stale watermark after a power cut only re-sends acknowledged records,
/// which the control plane counts once.
pub(super) fn write_ack_file(dir: &Path, seq: u64) -> Result<(), SpoolError> {
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(ACK_MAGIC);
    bytes.extend_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(format!("{ACK_FILE}.tmp"));
    let path = dir.join(ACK_FILE);
    let mut f = std::fs::File::create(&tmp).map_err(|e| SpoolError::io(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| SpoolError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| SpoolError::io(&path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_ack_file(dir.path()), 0);
        write_ack_file(dir.path(), 12_345).unwrap();
        assert_eq!(read_ack_file(dir.path()), 12_345);
        let path = dir.path().join(ACK_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        // Damaged: start over from 0 (re-send, counted once by the CP).
        assert_eq!(read_ack_file(dir.path()), 0);
    }
}
