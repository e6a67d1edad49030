//! What a failed attempt means for the call: retry the same target (after a
//! backoff or the upstream's `Retry-After`, capped), move to the next
//! target, take the credential out of rotation, or give up because the
//! request itself is at fault.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::http::errors::GatewayError;

/// The verdict on one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transient: the same target may answer next time.
    Retry { retry_after: Option<Duration> },
    /// The target is slow: try another one rather than wait again.
    NextTarget,
    /// The provider rejected the gateway's credential (401/403).
    CredentialRejected,
    /// The request is at fault (4xx): no other target will do better.
    Final,
}

impl Verdict {
    /// Whether the target's breaker counts this as a failure.
    pub fn is_target_failure(&self) -> bool {
        !matches!(self, Verdict::Final)
    }
}

/// Upstream statuses worth another try: rate limited, overloaded, failing.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504 | 529)
}

pub fn classify(e: &GatewayError) -> Verdict {
    match e {
        GatewayError::UpstreamConnect | GatewayError::Upstream(_) => {
            Verdict::Retry { retry_after: None }
        }
        GatewayError::UpstreamTimeout => Verdict::NextTarget,
        GatewayError::UpstreamAuth { .. } => Verdict::CredentialRejected,
        GatewayError::UpstreamStatus { status, .. }
        | GatewayError::UpstreamNative { status, .. }
            if retryable_status(*status) =>
        {
            Verdict::Retry { retry_after: None }
        }
        GatewayError::UpstreamThrottled {
            status,
            retry_after_ms,
            ..
        } if retryable_status(*status) => Verdict::Retry {
            retry_after: Some(Duration::from_millis(*retry_after_ms)),
        },
        _ => Verdict::Final,
    }
}

/// Provider error codes that another model may not hit: the request is too
/// long for this model's context, or its content policy refused it.
const MODEL_FALLBACK_CODES: [&str; 4] = [
    "context_length_exceeded",
    "content_policy_violation",
    "content_filter",
    "string_above_max_length",
];

/// True when a refusal is specific to the model (context length, content
/// policy), so a route's `fallback_model` may succeed where it failed.
pub fn wants_model_fallback(e: &GatewayError) -> bool {
    let GatewayError::UpstreamStatus { status, body } = e else {
        return false;
    };
    if !(400..500).contains(status) {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let code = v.pointer("/error/code").and_then(|c| c.as_str());
    let message = v
        .pointer("/error/message")
        .and_then(|m| m.as_str())
        .unwrap_or("");
    code.is_some_and(|c| MODEL_FALLBACK_CODES.contains(&c))
        || message.contains("maximum context length")
}

/// A `Retry-After` value in seconds (integer or decimal). HTTP dates are not
/// honoured (providers send seconds); they count as absent.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// The wait before retrying the same target: the upstream's `Retry-After`
/// when given, else the next backoff step; never more than `cap`.
pub fn retry_delay(
    backoff: &mut Backoff,
    retry_after: Option<Duration>,
    cap: Duration,
) -> Duration {
    match retry_after {
        Some(d) => d.min(cap),
        None => backoff.next_delay().min(cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn status(s: u16) -> GatewayError {
        GatewayError::UpstreamStatus {
            status: s,
            body: Bytes::new(),
        }
    }

    #[test]
    fn classification() {
        for s in [429, 500, 502, 503, 504, 529] {
            assert_eq!(
                classify(&status(s)),
                Verdict::Retry { retry_after: None },
                "{s}"
            );
        }
        for s in [400, 404, 413, 422, 501] {
            assert_eq!(classify(&status(s)), Verdict::Final, "{s}");
        }
        assert_eq!(
            classify(&GatewayError::UpstreamConnect),
            Verdict::Retry { retry_after: None }
        );
        assert_eq!(
            classify(&GatewayError::UpstreamTimeout),
            Verdict::NextTarget
        );
        assert_eq!(
            classify(&GatewayError::UpstreamAuth { status: 403 }),
            Verdict::CredentialRejected
        );
        assert_eq!(
            classify(&GatewayError::UpstreamThrottled {
                status: 429,
                body: Bytes::new(),
                retry_after_ms: 1500
            }),
            Verdict::Retry {
                retry_after: Some(Duration::from_millis(1500))
            }
        );
        assert!(!Verdict::Final.is_target_failure());
        assert!(Verdict::NextTarget.is_target_failure());
    }

    #[test]
    fn model_specific_refusals_want_the_fallback_model() {
        let err = |status: u16, body: &str| GatewayError::UpstreamStatus {
            status,
            body: Bytes::from(body.to_string()),
        };
        assert!(wants_model_fallback(&err(
            400,
            r#"{"error":{"message":"too long","code":"context_length_exceeded"}}"#
        )));
        assert!(wants_model_fallback(&err(
            400,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":null}}"#
        )));
        assert!(wants_model_fallback(&err(
            400,
            r#"{"error":{"message":"no","code":"content_policy_violation"}}"#
        )));
        assert!(!wants_model_fallback(&err(
            400,
            r#"{"error":{"message":"bad","code":"invalid_value"}}"#
        )));
        assert!(!wants_model_fallback(&err(
            500,
            r#"{"error":{"code":"context_length_exceeded"}}"#
        )));
        assert!(!wants_model_fallback(&GatewayError::UpstreamTimeout));
        // Anthropic's and Gemini's own error shapes retry like OpenAI's.
        assert_eq!(
            classify(&GatewayError::UpstreamNative {
                status: 529,
                body: bytes::Bytes::new(),
                format: crate::http::errors::ApiFormat::Anthropic,
            }),
            Verdict::Retry { retry_after: None }
        );
    }

    #[test]
    fn retry_after_is_parsed_and_capped() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let cap = Duration::from_secs(2);
        assert_eq!(retry_delay(&mut b, Some(Duration::from_secs(30)), cap), cap);
        assert_eq!(
            retry_delay(&mut b, Some(Duration::from_millis(300)), cap),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn backoff_grows_with_jitter_under_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let cap = Duration::from_millis(350);
        let d0 = retry_delay(&mut b, None, cap);
        assert!(
            d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100),
            "{d0:?}"
        );
        let d1 = retry_delay(&mut b, None, cap);
        assert!(
            d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(200),
            "{d1:?}"
        );
        for _ in 0..10 {
            assert!(retry_delay(&mut b, None, cap) <= cap);
        }
    }
}
