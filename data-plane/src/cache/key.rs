//! Cache keys: the tenant plus a SHA-256 of the canonical request.
//!
//! The canonical request is the parsed body with the fields that do not
//! change the answer removed (`model`, `user`, `stream`, `stream_options`,
//! and Anthropic's `metadata`), serialized with object keys sorted at every
//! depth and no whitespace, prefixed by the endpoint and the RESOLVED public
//! model (the route's name, so an alias and its model share entries). JSON
//! key order and whitespace in the caller's body therefore never matter; the
//! value of every other parameter does.

use std::io::Write;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Which API the answer is in (entries never cross endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheEndpoint {
    ChatCompletions,
    Embeddings,
    Messages,
}

impl CacheEndpoint {
    fn tag(self) -> &'static [u8] {
        match self {
            CacheEndpoint::ChatCompletions => b"chat\n",
            CacheEndpoint::Embeddings => b"embeddings\n",
            CacheEndpoint::Messages => b"messages\n",
        }
    }

    /// Top-level fields that never change the answer.
    fn excluded(self, field: &str) -> bool {
        match self {
            CacheEndpoint::ChatCompletions | CacheEndpoint::Embeddings => {
                matches!(field, "model" | "user" | "stream" | "stream_options")
            }
            CacheEndpoint::Messages => matches!(field, "model" | "stream" | "metadata"),
        }
    }
}

/// One cache entry's identity: answers of one tenant are never found under
/// another tenant's key, whatever the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub tenant_id: String,
    pub digest: [u8; 32],
}

/// Feeds serialized bytes straight into the hash (no intermediate string).
struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The key of a request of `tenant_id` to `endpoint`, for the resolved
/// public model `model` (plus, on Anthropic routes, the `anthropic-beta`
/// header, which changes what the model may do).
pub fn cache_key(
    tenant_id: &str,
    endpoint: CacheEndpoint,
    model: &str,
    extra: &str,
    body: &Map<String, Value>,
) -> CacheKey {
    let mut h = Sha256::new();
    h.update(endpoint.tag());
    // Lengths first: no two (model, extra) pairs hash the same bytes.
    h.update((model.len() as u64).to_le_bytes());
    h.update(model.as_bytes());
    h.update((extra.len() as u64).to_le_bytes());
    h.update(extra.as_bytes());
    let mut w = HashWriter(&mut h);
    write_object(&mut w, body, Some(endpoint));
    CacheKey {
        tenant_id: tenant_id.to_string(),
        digest: h.finalize().into(),
    }
}

/// Writes an object with sorted keys; `top` drops the endpoint's excluded
/// fields (top level only: a nested `"user"` is content).
fn write_object(w: &mut HashWriter<'_>, map: &Map<String, Value>, top: Option<CacheEndpoint>) {
    let mut keys: Vec<&String> = map
        .keys()
        .filter(|k| top.is_none_or(|ep| !ep.excluded(k)))
        .collect();
    keys.sort_unstable();
    w.0.update(b"{");
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            w.0.update(b",");
        }
        write_string(w, k);
        w.0.update(b":");
        if let Some(v) = map.get(k) {
            write_value(w, v);
        }
    }
    w.0.update(b"}");
}

fn write_string(w: &mut HashWriter<'_>, s: &str) {
    // Writing to a hasher cannot fail.
    let _ = serde_json::to_writer(&mut *w, s);
}

fn write_value(w: &mut HashWriter<'_>, v: &Value) {
    match v {
        Value::Object(m) => write_object(w, m, None),
        Value::Array(items) => {
            w.0.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w.0.update(b",");
                }
                write_value(w, item);
            }
            w.0.update(b"]");
        }
        Value::Number(n) => {
            // 1 and 1.0 are the same parameter value.
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    w.0.update(format!("{}", f as i64).as_bytes())
                }
                _ => w.0.update(n.to_string().as_bytes()),
            }
        }
        other => {
            let _ = serde_json::to_writer(&mut *w, other);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn key(tenant: &str, model: &str, body: &str) -> CacheKey {
        let v: Value = serde_json::from_str(body).unwrap();
        let Value::Object(m) = v else { panic!() };
        cache_key(tenant, CacheEndpoint::ChatCompletions, model, "", &m)
    }

    const BASE: &str =
        r#"{"model":"gpt","messages":[{"role":"user","content":"hi"}],"temperature":0}"#;

    #[test]
    fn key_order_whitespace_and_excluded_fields_collide() {
        let a = key("t1", "gpt", BASE);
        let b = key(
            "t1",
            "gpt",
            r#"{ "temperature" : 0.0,
                 "messages": [ { "content": "hi", "role": "user" } ],
                 "model": "gpt-alias", "user": "u-42", "stream": true,
                 "stream_options": {"include_usage": true} }"#,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn anything_that_changes_the_answer_differs() {
        let a = key("t1", "gpt", BASE);
        // Resolved model.
        assert_ne!(a, key("t1", "gpt-4", BASE));
        // Messages.
        assert_ne!(
            a,
            key(
                "t1",
                "gpt",
                r#"{"messages":[{"role":"user","content":"hi!"}],"temperature":0}"#
            )
        );
        // Temperature.
        assert_ne!(
            a,
            key(
                "t1",
                "gpt",
                r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0.7}"#
            )
        );
        // Tools.
        assert_ne!(
            a,
            key(
                "t1",
                "gpt",
                r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0,
                    "tools":[{"type":"function","function":{"name":"f"}}]}"#
            )
        );
        // A nested "user" is content, not the excluded top-level field.
        assert_ne!(
            key(
                "t1",
                "gpt",
                r#"{"messages":[{"role":"user","content":"hi","user":"a"}]}"#
            ),
            key(
                "t1",
                "gpt",
                r#"{"messages":[{"role":"user","content":"hi","user":"b"}]}"#
            )
        );
        // Message order matters (arrays are not sorted).
        assert_ne!(
            key(
                "t1",
                "gpt",
                r#"{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}"#
            ),
            key(
                "t1",
                "gpt",
                r#"{"messages":[{"role":"user","content":"b"},{"role":"user","content":"a"}]}"#
            )
        );
    }

    #[test]
    fn tenants_and_endpoints_never_share_a_key() {
        assert_ne!(key("t1", "gpt", BASE), key("t2", "gpt", BASE));
        let Value::Object(m) = serde_json::from_str::<Value>(BASE).unwrap() else {
            panic!()
        };
        assert_ne!(
            cache_key("t1", CacheEndpoint::ChatCompletions, "gpt", "", &m),
            cache_key("t1", CacheEndpoint::Messages, "gpt", "", &m)
        );
        assert_ne!(
            cache_key("t1", CacheEndpoint::Messages, "gpt", "", &m),
            cache_key("t1", CacheEndpoint::Messages, "gpt", "beta-x", &m)
        );
        // The length prefix keeps model/extra boundaries apart.
        assert_ne!(
            cache_key("t1", CacheEndpoint::Messages, "ab", "c", &m),
            cache_key("t1", CacheEndpoint::Messages, "a", "bc", &m)
        );
    }

    #[test]
    fn anthropic_metadata_is_excluded_but_chat_keeps_it() {
        let a: Value = serde_json::from_str(
            r#"{"model":"c","max_tokens":5,"messages":[],"metadata":{"user_id":"1"}}"#,
        )
        .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"model":"c","max_tokens":5,"messages":[]}"#).unwrap();
        let (Value::Object(a), Value::Object(b)) = (a, b) else {
            panic!()
        };
        assert_eq!(
            cache_key("t", CacheEndpoint::Messages, "c", "", &a),
            cache_key("t", CacheEndpoint::Messages, "c", "", &b)
        );
        assert_ne!(
            cache_key("t", CacheEndpoint::ChatCompletions, "c", "", &a),
            cache_key("t", CacheEndpoint::ChatCompletions, "c", "", &b)
        );
    }
}
