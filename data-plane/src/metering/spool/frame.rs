//! One record on disk: `len: u32 LE | crc32: u32 LE | payload`, where the
//! payload is a protobuf `tollgate.sync.v1.UsageRecord` (metadata only: the
//! message has no field for a prompt or a completion) and the CRC-32 covers
//! the length bytes and the payload, so a damaged length is caught too.

use prost::Message;
use tollgate_proto::sync::v1 as pb;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 8;
/// A usage record is a few hundred bytes; a larger length is damage.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Why bytes on disk are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("record length {0} exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    #[error("checksum mismatch")]
    Checksum,
    #[error("payload does not decode: {0}")]
    Decode(String),
}

fn checksum(len_bytes: &[u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len_bytes);
    h.update(payload);
    h.finalize()
}

/// Appends the framed record to `out`; returns the frame's length.
pub fn encode(record: &pb::UsageRecord, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    encode_into(record, out);
    out.len() - start
}

/// Frames an already encoded record (`payload`) onto `out`.
pub fn encode_payload(payload: &[u8], out: &mut Vec<u8>) {
    // A usage record is far below u32::MAX.
    let len_bytes = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&checksum(&len_bytes, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends the framed record to `out` (a buffer reused across records:
/// the payload is encoded in place, not into a buffer of its own); returns
/// where the payload is in `out`.
pub fn encode_into<B>(record: &pb::UsageRecord, out: &mut B) -> std::ops::Range<usize>
where
    B: bytes::BufMut + AsRef<[u8]> + AsMut<[u8]>,
{
    let start = out.as_ref().len();
    // The header is written once the payload's length is known: encoding
    // first saves prost a pass over the record to compute it.
    out.put_bytes(0, HEADER_LEN);
    record.encode_raw(out);
    let payload = start + HEADER_LEN..out.as_ref().len();
    // A usage record is far below u32::MAX.
    let len_bytes = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let crc = checksum(&len_bytes, &out.as_ref()[payload.clone()]);
    let header = &mut out.as_mut()[start..start + HEADER_LEN];
    header[..4].copy_from_slice(&len_bytes);
    header[4..].copy_from_slice(&crc.to_le_bytes());
    payload
}

/// The payload length announced by a frame header, checked against the
/// limit.
pub fn payload_len(header: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Checks one frame's checksum given its header and payload.
pub fn verify(header: &[u8; HEADER_LEN], payload: &[u8]) -> Result<(), FrameError> {
    let len_bytes = [header[0], header[1], header[2], header[3]];
    let want = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if checksum(&len_bytes, payload) != want {
        return Err(FrameError::Checksum);
    }
    Ok(())
}

/// Verifies and decodes one frame given its header and payload.
pub fn decode(header: &[u8; HEADER_LEN], payload: &[u8]) -> Result<pb::UsageRecord, FrameError> {
    verify(header, payload)?;
    pb::UsageRecord::decode(payload).map_err(|e| FrameError::Decode(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn split(buf: &[u8]) -> ([u8; HEADER_LEN], &[u8]) {
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&buf[..HEADER_LEN]);
        (h, &buf[HEADER_LEN..])
    }

    #[test]
    fn round_trip() {
        let rec = crate::metering::tests::record(3).to_proto();
        let mut buf = Vec::new();
        let n = encode(&rec, &mut buf);
        assert_eq!(n, buf.len());
        let (h, payload) = split(&buf);
        assert_eq!(payload_len(&h).unwrap(), payload.len());
        assert_eq!(decode(&h, payload).unwrap(), rec);
    }

    #[test]
    fn encoding_in_place_matches_and_points_at_the_payload() {
        let rec = crate::metering::tests::record(3).to_proto();
        let mut framed = Vec::new();
        encode(&rec, &mut framed);
        let mut reused = bytes::BytesMut::from(&b"previous frame"[..]);
        let payload = encode_into(&rec, &mut reused);
        assert_eq!(&reused[14..], &framed[..]);
        assert_eq!(&reused[payload], &rec.encode_to_vec()[..]);
    }

    #[test]
    fn flipped_bit_fails_the_checksum() {
        let rec = crate::metering::tests::record(3).to_proto();
        let mut buf = Vec::new();
        encode(&rec, &mut buf);
        let last = buf.len() - 1;
        buf[last] ^= 0x01;
        let (h, payload) = split(&buf);
        assert_eq!(decode(&h, payload), Err(FrameError::Checksum));
    }

    #[test]
    fn absurd_length_is_rejected_before_reading() {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&(10_000_000u32).to_le_bytes());
        assert_eq!(payload_len(&h), Err(FrameError::TooLarge(10_000_000)));
    }
}
