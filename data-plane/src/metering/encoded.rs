//! Usage records as their protobuf encoding, sent without being decoded.
//!
//! The spool already holds each record as an encoded
//! `tollgate.sync.v1.UsageRecord`. On the wire a `repeated UsageRecord
//! records = 2` field is, per record, the key of field 2, the payload's
//! length and the payload: exactly what a `bytes` field 2 holding the
//! payload encodes to. So [`EncodedUsageBatch`] is byte for byte the
//! `UsageBatch` the control plane expects, built from the spool's payloads
//! with one copy into the request and no decode or re-encode (the
//! reporter's cost per record used to be dominated by decoding its own
//! frames, cloning and re-encoding them).

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};
use tollgate_proto::sync::v1 as pb;

/// `UsageBatch.node_id`.
const BATCH_NODE_ID: u32 = 1;
/// `UsageBatch.records`.
const BATCH_RECORDS: u32 = 2;
/// `UsageRecord.id`.
const RECORD_ID: u32 = 1;
/// `UsageBatchAck.stored_ids`.
const ACK_STORED_IDS: u32 = 1;
/// `UsageBatchAck.duplicates`.
const ACK_DUPLICATES: u32 = 2;

/// A `tollgate.sync.v1.UsageBatch` whose records are already encoded.
/// The records are shared, so a re-send costs no copy of the batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedUsageBatch {
    pub node_id: String,
    /// Each an encoded `UsageRecord`.
    pub records: Arc<[Bytes]>,
}

impl Message for EncodedUsageBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.node_id.is_empty() {
            encoding::string::encode(BATCH_NODE_ID, &self.node_id, buf);
        }
        for record in self.records.iter() {
            encoding::bytes::encode(BATCH_RECORDS, record, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            BATCH_NODE_ID => encoding::string::merge(wire_type, &mut self.node_id, buf, ctx),
            BATCH_RECORDS => {
                let mut record = Bytes::new();
                encoding::bytes::merge(wire_type, &mut record, buf, ctx)?;
                let mut records = self.records.to_vec();
                records.push(record);
                self.records = records.into();
                Ok(())
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let node = if self.node_id.is_empty() {
            0
        } else {
            encoding::string::encoded_len(BATCH_NODE_ID, &self.node_id)
        };
        node + encoding::bytes::encoded_len_repeated(BATCH_RECORDS, &self.records)
    }

    fn clear(&mut self) {
        self.node_id.clear();
        self.records = Arc::from([]);
    }
}

/// A `tollgate.sync.v1.UsageBatchAck` whose ids stay bytes: they are only
/// compared with the ids sent, never used as strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedUsageAck {
    pub stored_ids: Vec<Bytes>,
    pub duplicates: u32,
}

impl Message for EncodedUsageAck {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for id in &self.stored_ids {
            encoding::bytes::encode(ACK_STORED_IDS, id, buf);
        }
        if self.duplicates != 0 {
            encoding::uint32::encode(ACK_DUPLICATES, &self.duplicates, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            ACK_STORED_IDS => {
                let mut id = Bytes::new();
                encoding::bytes::merge(wire_type, &mut id, buf, ctx)?;
                self.stored_ids.push(id);
                Ok(())
            }
            ACK_DUPLICATES => encoding::uint32::merge(wire_type, &mut self.duplicates, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::bytes::encoded_len_repeated(ACK_STORED_IDS, &self.stored_ids)
            + if self.duplicates != 0 {
                encoding::uint32::encoded_len(ACK_DUPLICATES, &self.duplicates)
            } else {
                0
            }
    }

    fn clear(&mut self) {
        self.stored_ids.clear();
        self.duplicates = 0;
    }
}

/// The `id` of an encoded `UsageRecord` (a slice of `payload`), without
/// decoding the rest; `None` when the payload has no id or is not a
/// message. Our encoder writes the id first, so this reads one key.
pub fn record_id(payload: &[u8]) -> Option<&[u8]> {
    let mut buf = payload;
    while buf.has_remaining() {
        let (tag, wire_type) = encoding::decode_key(&mut buf).ok()?;
        if tag == RECORD_ID && wire_type == WireType::LengthDelimited {
            let len = usize::try_from(encoding::decode_varint(&mut buf).ok()?).ok()?;
            return buf.get(..len);
        }
        encoding::skip_field(wire_type, tag, &mut buf, DecodeContext::default()).ok()?;
    }
    None
}

/// Decodes encoded records (for a transport that needs them decoded, and
/// for logging a rejected record).
pub fn decode_records(records: &[Bytes]) -> Result<Vec<pb::UsageRecord>, DecodeError> {
    records
        .iter()
        .map(|r| pb::UsageRecord::decode(r.as_ref()))
        .collect()
}

/// Encodes a record for sending (the in-memory reporter; the spool's
/// records are encoded by its writer).
pub fn encode_record(record: &pb::UsageRecord) -> Bytes {
    Bytes::from(record.encode_to_vec())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metering::tests::record;

    fn protos(n: u32) -> Vec<pb::UsageRecord> {
        (0..n)
            .map(|i| {
                let mut r = record(i).to_proto();
                r.cost_micros = i64::from(i) * 1_000;
                r.attempts.push(pb::UpstreamAttempt::default());
                r
            })
            .collect()
    }

    #[test]
    fn encoded_batch_is_byte_for_byte_a_usage_batch() {
        let records = protos(3);
        let generated = pb::UsageBatch {
            node_id: "dp-1".into(),
            records: records.clone(),
        }
        .encode_to_vec();
        let encoded = EncodedUsageBatch {
            node_id: "dp-1".into(),
            records: records.iter().map(encode_record).collect(),
        };
        assert_eq!(encoded.encoded_len(), generated.len());
        assert_eq!(encoded.encode_to_vec(), generated);
        // And the control plane's decoder reads it back as the same records.
        let decoded = pb::UsageBatch::decode(encoded.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.records, records);
        assert_eq!(decoded.node_id, "dp-1");
        // Our own decoder too (used by nothing but this check).
        let back = EncodedUsageBatch::decode(generated.as_slice()).unwrap();
        assert_eq!(back, encoded);
        // Empty node id and no records: an empty message, as generated.
        assert!(EncodedUsageBatch::default().encode_to_vec().is_empty());
    }

    #[test]
    fn encoded_ack_reads_the_generated_ack() {
        let ack = pb::UsageBatchAck {
            stored_ids: vec!["ur_a".into(), "ur_b".into()],
            duplicates: 1,
        };
        let raw = EncodedUsageAck::decode(ack.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            raw.stored_ids,
            vec![Bytes::from_static(b"ur_a"), Bytes::from_static(b"ur_b")]
        );
        assert_eq!(raw.duplicates, 1);
        assert_eq!(raw.encode_to_vec(), ack.encode_to_vec());
    }

    #[test]
    fn record_id_reads_the_id_field_wherever_it_is() {
        let r = protos(1).remove(0);
        let payload = r.encode_to_vec();
        assert_eq!(record_id(&payload), Some(r.id.as_bytes()));
        // A record whose id is not the first field (another encoder).
        let mut later = pb::UsageRecord {
            request_id: "req_9".into(),
            ..pb::UsageRecord::default()
        }
        .encode_to_vec();
        encoding::string::encode(RECORD_ID, &"ur_late".to_string(), &mut later);
        assert_eq!(record_id(&later), Some(&b"ur_late"[..]));
        // No id, and garbage.
        assert_eq!(record_id(&pb::UsageRecord::default().encode_to_vec()), None);
        assert_eq!(record_id(&[0xff, 0xff, 0xff]), None);
        assert_eq!(decode_records(&[Bytes::from(payload)]).unwrap(), vec![r]);
    }
}
