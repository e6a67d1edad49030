//! The HTTP edge: request identification, caller credentials, bounded body
//! reading, response writing and the error mapping.

pub mod conn_guard;
pub mod errors;
pub mod limits;
pub mod response;

use bytes::{Bytes, BytesMut};
use pingora_http::RequestHeader;
use pingora_proxy::Session;

/// Longest caller-provided `x-request-id` echoed back.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The caller's `x-request-id` when it is sane (1–128 characters of
/// `[A-Za-z0-9._:-]`), else a new one.
pub fn request_id(req: &RequestHeader) -> String {
    if let Some(v) = req.headers.get("x-request-id") {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= MAX_REQUEST_ID_LEN
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
        {
            // Checked ASCII above.
            return String::from_utf8_lossy(b).into_owned();
        }
    }
    tollgate_core::ids::new_request_id()
}

/// The caller key from `Authorization: Bearer <key>`, `api-key: <key>`
/// (Azure SDKs) or `x-api-key: <key>` (Anthropic SDKs).
pub fn caller_key(req: &RequestHeader) -> Option<&str> {
    if let Some(v) = req.headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let (scheme, key) = v.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            let key = key.trim();
            return (!key.is_empty()).then_some(key);
        }
        return None;
    }
    let key = req
        .headers
        .get("api-key")
        .or_else(|| req.headers.get("x-api-key"))?
        .to_str()
        .ok()?
        .trim();
    (!key.is_empty()).then_some(key)
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    /// The caller's connection failed.
    Downstream(Box<pingora_core::Error>),
}

/// Reads the whole request body, refusing more than `limit` bytes. A
/// declared `Content-Length` over the limit is refused before reading.
pub async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, BodyError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        if declared.is_some_and(|n| n > (limit as u64).saturating_mul(16)) {
            // Not worth draining: answer and close.
            session.set_keepalive(None);
        }
        return Err(BodyError::TooLarge);
    }
    let capacity = declared.map_or(8 * 1024, |n| n as usize);
    let mut buf = BytesMut::with_capacity(capacity);
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    // A chunked body of unknown length: close rather than
                    // drain an unbounded remainder after the 413.
                    session.set_keepalive(None);
                    return Err(BodyError::TooLarge);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => return Err(BodyError::Downstream(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn request_id_is_echoed_only_when_sane() {
        assert_eq!(
            request_id(&req(&[("x-request-id", "abc-123_X.y:z")])),
            "abc-123_X.y:z"
        );
        for bad in ["", "has space", "a\"b", &"x".repeat(129)] {
            let id = request_id(&req(&[("x-request-id", bad)]));
            assert!(id.starts_with("req_"), "{bad:?} → {id}");
        }
        assert!(request_id(&req(&[])).starts_with("req_"));
    }

    #[test]
    fn keys_from_bearer_or_api_key() {
        assert_eq!(
            caller_key(&req(&[("authorization", "Bearer tg-abc")])),
            Some("tg-abc")
        );
        assert_eq!(
            caller_key(&req(&[("authorization", "bearer  tg-abc ")])),
            Some("tg-abc")
        );
        assert_eq!(caller_key(&req(&[("api-key", "tg-abc")])), Some("tg-abc"));
        assert_eq!(caller_key(&req(&[("x-api-key", "tg-abc")])), Some("tg-abc"));
        assert_eq!(
            caller_key(&req(&[("authorization", "Basic dXNlcg==")])),
            None
        );
        assert_eq!(caller_key(&req(&[("authorization", "Bearer ")])), None);
        assert_eq!(caller_key(&req(&[])), None);
    }
}
