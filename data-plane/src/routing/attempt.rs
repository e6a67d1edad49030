//! The record of one upstream attempt, kept in the call's usage record for
//! the status page and for debugging failovers.

use tollgate_proto::sync::v1 as pb;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub provider_id: String,
    pub provider_name: String,
    pub upstream_model: String,
    /// 0 when no HTTP status came back (connect error, timeout).
    pub status_code: u16,
    pub latency_ms: i64,
    /// Empty on success.
    pub error_code: &'static str,
}

impl Attempt {
    pub fn to_proto(&self) -> pb::UpstreamAttempt {
        pb::UpstreamAttempt {
            provider_id: self.provider_id.clone(),
            upstream_model: self.upstream_model.clone(),
            status_code: u32::from(self.status_code),
            latency_ms: self.latency_ms,
            error_code: self.error_code.to_string(),
        }
    }

    /// The protobuf form, moving the strings (the usage spool's writer).
    pub fn into_proto(self) -> pb::UpstreamAttempt {
        pb::UpstreamAttempt {
            provider_id: self.provider_id,
            upstream_model: self.upstream_model,
            status_code: u32::from(self.status_code),
            latency_ms: self.latency_ms,
            error_code: self.error_code.to_string(),
        }
    }
}
