//! Request limits the data plane enforces before any routing work: how deep
//! a JSON body may nest, how many messages a call may carry, how large and
//! how many request headers may be, how long a client may take to send its
//! header and body, and how many connections may be open at once.
//!
//! The connection-level limits (header size/count, header deadline, idle
//! keep-alive, connection cap) are enforced by
//! [`crate::http::conn_guard`] under Pingora's HTTP parser; the body-level
//! ones by the pipeline's body intake. Every refusal is a
//! [`GatewayError`] rendered by the one error map.

use std::time::Duration;

use serde_json::{Map, Value};

use super::errors::GatewayError;

/// Pingora's HTTP/1 parser refuses more than 256 header lines (with a bare
/// 400); a configured limit above it could never be reached.
pub const PINGORA_MAX_HEADERS: usize = 256;
/// Pingora's own bound on the request header section (1 MiB − 1).
pub const PINGORA_MAX_HEADER_BYTES: usize = 1_048_575;

/// Limits applied to every request and connection. Built once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Deepest accepted nesting of JSON arrays and objects in a body
    /// (400 `json_too_deep`).
    pub max_json_depth: usize,
    /// Most entries in `messages` (chat, messages, count_tokens) or in an
    /// `input` item list (responses) (400 `too_many_messages`).
    pub max_messages: usize,
    /// Most request header lines (431 `request_header_too_large`).
    pub max_headers: usize,
    /// Largest request line + header section in bytes (431).
    pub max_header_bytes: usize,
    /// Time a client has to send a whole request header, from the
    /// connection's accept (first request) or from the request's first
    /// byte (later requests on a kept-alive connection) (408).
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole request body once its header has
    /// been read (408).
    pub body_read_timeout: Duration,
    /// How long a kept-alive connection may sit idle between requests
    /// before it is closed (silently, as HTTP allows).
    pub keepalive_idle_timeout: Duration,
    /// Most client connections open at once; a connection over the limit
    /// is answered 503 `too_many_connections` and closed.
    pub max_connections: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_json_depth: 64,
            max_messages: 4096,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            keepalive_idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
        }
    }
}

impl RequestLimits {
    /// Refuses limits that are zero or that Pingora would hit first.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_headers == 0 || self.max_headers > PINGORA_MAX_HEADERS {
            return Err(format!(
                "max headers must be between 1 and {PINGORA_MAX_HEADERS} (got {})",
                self.max_headers
            ));
        }
        if self.max_header_bytes < 256 || self.max_header_bytes > PINGORA_MAX_HEADER_BYTES {
            return Err(format!(
                "max header bytes must be between 256 and {PINGORA_MAX_HEADER_BYTES} (got {})",
                self.max_header_bytes
            ));
        }
        if self.max_json_depth == 0 || self.max_messages == 0 || self.max_connections == 0 {
            return Err("JSON depth, message and connection limits must be at least 1".into());
        }
        if self.header_read_timeout.is_zero()
            || self.body_read_timeout.is_zero()
            || self.keepalive_idle_timeout.is_zero()
        {
            return Err("read and idle timeouts must be longer than zero".into());
        }
        Ok(())
    }

    /// 400 when `body` nests arrays/objects deeper than the limit. A linear
    /// scan of the bytes (strings skipped), run before the JSON parser so
    /// deep input never reaches its recursion.
    pub fn check_json_depth(&self, body: &[u8]) -> Result<(), GatewayError> {
        if json_depth_exceeds(body, self.max_json_depth) {
            return Err(GatewayError::JsonTooDeep {
                limit: self.max_json_depth,
            });
        }
        Ok(())
    }

    /// 400 when the array under `field` has more entries than the limit.
    pub fn check_items(
        &self,
        body: &Map<String, Value>,
        field: &'static str,
    ) -> Result<(), GatewayError> {
        match body.get(field) {
            Some(Value::Array(items)) if items.len() > self.max_messages => {
                Err(GatewayError::TooManyMessages {
                    limit: self.max_messages,
                    field,
                })
            }
            _ => Ok(()),
        }
    }
}

/// True when JSON text nests `[`/`{` more than `max` levels deep. Brackets
/// inside strings (escapes included) do not count; invalid JSON is left to
/// the parser.
pub fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert!(!json_depth_exceeds(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(json_depth_exceeds(br#"{"a":[1,{"b":2}]}"#, 2));
        // Brackets in strings, escaped quotes included, do not count.
        assert!(!json_depth_exceeds(br#"{"a":"[[[[\"[[[["}"#, 1));
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(json_depth_exceeds(deep.as_bytes(), 64));
        assert!(!json_depth_exceeds(deep.as_bytes(), 65));
        // Siblings do not add up.
        assert!(!json_depth_exceeds(b"[[],[],[],[]]", 2));
    }

    #[test]
    fn too_deep_and_too_many_are_400_with_codes() {
        let limits = RequestLimits {
            max_json_depth: 2,
            max_messages: 2,
            ..RequestLimits::default()
        };
        let e = limits.check_json_depth(b"[[[1]]]").unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "json_too_deep"));
        let body: Value = serde_json::json!({"messages": [{}, {}, {}]});
        let e = limits
            .check_items(body.as_object().unwrap(), "messages")
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "too_many_messages"));
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["param"], "messages");
        let ok: Value = serde_json::json!({"messages": [{}, {}]});
        assert!(limits
            .check_items(ok.as_object().unwrap(), "messages")
            .is_ok());
    }

    #[test]
    fn validation_refuses_limits_pingora_would_hit_first() {
        assert!(RequestLimits::default().validate().is_ok());
        let too_many = RequestLimits {
            max_headers: 300,
            ..RequestLimits::default()
        };
        assert!(too_many.validate().is_err());
        let zero = RequestLimits {
            header_read_timeout: Duration::ZERO,
            ..RequestLimits::default()
        };
        assert!(zero.validate().is_err());
    }
}
