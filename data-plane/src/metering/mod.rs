//! Usage records: one per proxied call that reached routing, handed to a
//! [`UsageSink`] without ever blocking the request.

pub(crate) mod assembly;
pub mod encoded;
pub mod reporter;
pub mod spool;

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tollgate_core::usage::Usage;
use tollgate_proto::sync::v1 as pb;

pub use reporter::CpUsageReporter;

/// What one call consumed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// `ur_<uuidv7>`: the idempotency key at the control plane.
    pub id: String,
    pub request_id: String,
    pub tenant_id: String,
    pub key_id: String,
    /// The public model name the caller asked for.
    pub model: String,
    pub provider_id: String,
    pub upstream_model: String,
    pub started_at_ms: i64,
    pub latency_ms: i64,
    pub status_code: u16,
    /// Empty on success.
    pub error_code: String,
    pub stream: bool,
    pub usage: Usage,
    /// Upstream attempts in order (retries and failovers); the last one
    /// answered the caller.
    pub attempts: Vec<crate::routing::Attempt>,
    /// Time to the first chunk sent to the caller (streams), if one was.
    pub ttft_ms: Option<i64>,
    /// Endpoint called: chat.completions, messages, responses, embeddings.
    pub api: &'static str,
    /// Guardrails that matched (guardrails).
    pub guardrail_verdicts: Vec<crate::guardrails::Verdict>,
    /// Billing: what the call cost, and the lease it was reserved from.
    pub cost_micros: i64,
    pub lease_id: String,
    /// The key budget's lease the call was also reserved from.
    pub key_lease_id: String,
    /// Answered from the response cache: the share of the full price billed
    /// for the hit, in basis points (`usage` holds the tokens saved).
    pub cache_hit: Option<u32>,
}

impl UsageRecord {
    pub fn to_proto(&self) -> pb::UsageRecord {
        self.clone().into_proto()
    }

    /// The protobuf form, moving the strings (the spool writer owns the
    /// record: no copy).
    pub fn into_proto(self) -> pb::UsageRecord {
        pb::UsageRecord {
            id: self.id,
            request_id: self.request_id,
            tenant_id: self.tenant_id,
            key_id: self.key_id,
            model: self.model,
            provider_id: self.provider_id,
            upstream_model: self.upstream_model,
            started_at_ms: self.started_at_ms,
            latency_ms: self.latency_ms,
            status_code: u32::from(self.status_code),
            error_code: self.error_code,
            stream: self.stream,
            prompt_tokens: self.usage.prompt_tokens,
            completion_tokens: self.usage.completion_tokens,
            cache_read_tokens: self.usage.cache_read_tokens,
            cache_write_tokens: self.usage.cache_write_tokens,
            reasoning_tokens: self.usage.reasoning_tokens,
            cost_micros: self.cost_micros,
            attempts: self
                .attempts
                .into_iter()
                .map(crate::routing::Attempt::into_proto)
                .collect(),
            ttft_ms: self.ttft_ms,
            api: self.api.to_owned(),
            guardrail_verdicts: self
                .guardrail_verdicts
                .iter()
                .map(|v| v.to_proto())
                .collect(),
            lease_id: self.lease_id,
            key_lease_id: self.key_lease_id,
            cache_hit: self.cache_hit.is_some(),
            cache_hit_cost_bps: self.cache_hit.unwrap_or(0),
        }
    }
}

/// Where usage records go. `submit` must not block or do I/O.
pub trait UsageSink: Send + Sync {
    fn submit(&self, record: UsageRecord);
}

/// Discards records (static `--config` mode: usage is in the access log).
#[derive(Debug, Default)]
pub struct NullSink;

impl UsageSink for NullSink {
    fn submit(&self, _record: UsageRecord) {}
}

/// Hands records to a background consumer (the spool writer, or the
/// in-memory reporter) over a bounded channel. When the channel is full the
/// record is counted and dropped with a warning: the request never waits.
#[derive(Debug)]
pub struct ChannelSink {
    tx: mpsc::Sender<UsageRecord>,
    accepted: AtomicU64,
    dropped: AtomicU64,
}

impl ChannelSink {
    pub fn new(capacity: usize) -> (ChannelSink, mpsc::Receiver<UsageRecord>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            ChannelSink {
                tx,
                accepted: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            },
            rx,
        )
    }

    /// Records waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Records queued so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Records dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl UsageSink for ChannelSink {
    fn submit(&self, record: UsageRecord) {
        // Counted before the send: whoever compares it with what the
        // consumer has handled must never see a record handled but not
        // accepted.
        self.accepted.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.tx.try_send(record) {
            self.accepted.fetch_sub(1, Ordering::Relaxed);
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "reporter stopped",
            };
            tracing::warn!(
                usage_records_dropped_total = n,
                reason,
                "usage record dropped"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(n: u32) -> UsageRecord {
        UsageRecord {
            id: tollgate_core::ids::new_id(tollgate_core::ids::prefix::USAGE_RECORD),
            request_id: format!("req_{n}"),
            tenant_id: "tn_acme".into(),
            key_id: "ck_1".into(),
            model: "gpt-test".into(),
            provider_id: "pv_up".into(),
            upstream_model: "mock-small".into(),
            started_at_ms: 1,
            latency_ms: 2,
            status_code: 200,
            error_code: String::new(),
            stream: false,
            usage: Usage {
                prompt_tokens: 5,
                completion_tokens: 11,
                ..Usage::default()
            },
            attempts: Vec::new(),
            ttft_ms: Some(1),
            api: "chat.completions",
            guardrail_verdicts: Vec::new(),
            cost_micros: 0,
            lease_id: String::new(),
            key_lease_id: String::new(),
            cache_hit: None,
        }
    }

    #[test]
    fn full_channel_counts_drops_without_blocking() {
        let (sink, mut rx) = ChannelSink::new(2);
        for n in 0..5 {
            sink.submit(record(n));
        }
        assert_eq!(sink.dropped(), 3);
        assert_eq!(sink.accepted(), 2);
        assert_eq!(rx.try_recv().unwrap().request_id, "req_0");
        assert_eq!(rx.try_recv().unwrap().request_id, "req_1");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn proto_carries_every_bucket() {
        let mut r = record(1);
        r.usage.cache_read_tokens = 3;
        r.usage.reasoning_tokens = 4;
        let p = r.to_proto();
        assert_eq!(p.id, r.id);
        assert!(p.id.starts_with("ur_"));
        assert_eq!((p.prompt_tokens, p.completion_tokens), (5, 11));
        assert_eq!((p.cache_read_tokens, p.reasoning_tokens), (3, 4));
        assert_eq!(p.status_code, 200);
    }
}
