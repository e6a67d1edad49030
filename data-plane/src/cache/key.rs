//! Cache keys: the tenant plus a keyed BLAKE3 of the canonical request.
//!
//! The canonical request is the parsed body with the fields that do not
//! change the answer removed (`model`, `user`, `stream`, `stream_options`,
//! and Anthropic's `metadata`), serialized with object keys sorted at every
//! depth and no whitespace, prefixed by the endpoint and the RESOLVED public
//! model (the route's name, so an alias and its model share entries). JSON
//! key order and whitespace in the caller's body therefore never matter; the
//! value of every other parameter does.
//!
//! The canonical bytes are written into a reused per-thread buffer and
//! hashed with one call (the walk used to feed the hasher many tiny updates).
//! The hash is BLAKE3 in keyed mode with a random key drawn once per process
//! (ADR 0025): keys live only in this process' memory (the cache is local,
//! ADR 0012), so they need not be stable across processes, and a key the
//! callers cannot know makes crafted collisions within a tenant infeasible.

use std::cell::Cell;
use std::io::Write as _;
use std::sync::OnceLock;

use serde_json::{Map, Value};

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

/// This process' BLAKE3 key: random, drawn on first use.
fn process_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        use rand::RngCore as _;
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        k
    })
}

thread_local! {
    /// The canonical-bytes buffer, reused by every key of this thread.
    static BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A buffer that grew beyond this is dropped after use, not kept.
const KEEP_BUF_BYTES: usize = 64 * 1024;

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
    CacheKey {
        tenant_id: tenant_id.to_string(),
        digest: digest_with(process_key(), endpoint, model, extra, body),
    }
}

/// The keyed digest of the canonical request under `key`.
fn digest_with(
    key: &[u8; 32],
    endpoint: CacheEndpoint,
    model: &str,
    extra: &str,
    body: &Map<String, Value>,
) -> [u8; 32] {
    let mut buf = BUF.take();
    buf.clear();
    canonical(&mut buf, endpoint, model, extra, body);
    let digest = *blake3::keyed_hash(key, &buf).as_bytes();
    if buf.capacity() <= KEEP_BUF_BYTES {
        BUF.set(buf);
    }
    digest
}

/// Appends the canonical bytes of a request to `out`: what the key hashes.
pub fn canonical(
    out: &mut Vec<u8>,
    endpoint: CacheEndpoint,
    model: &str,
    extra: &str,
    body: &Map<String, Value>,
) {
    out.extend_from_slice(endpoint.tag());
    // Lengths first: no two (model, extra) pairs give the same bytes.
    out.extend_from_slice(&(model.len() as u64).to_le_bytes());
    out.extend_from_slice(model.as_bytes());
    out.extend_from_slice(&(extra.len() as u64).to_le_bytes());
    out.extend_from_slice(extra.as_bytes());
    write_object(out, body, Some(endpoint));
}

/// Objects with at most this many keys sort them in a stack array (chat
/// bodies have 3–8), larger ones in a `Vec`.
const STACK_KEYS: usize = 16;

/// Writes an object with sorted keys; `top` drops the endpoint's excluded
/// fields (top level only: a nested `"user"` is content).
fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>, top: Option<CacheEndpoint>) {
    let kept = map
        .iter()
        .filter(|(k, _)| top.is_none_or(|ep| !ep.excluded(k)));
    if map.len() <= STACK_KEYS {
        // No allocation for the common small object.
        static NULL: Value = Value::Null;
        let mut slots: [(&str, &Value); STACK_KEYS] = [("", &NULL); STACK_KEYS];
        let mut n = 0;
        for (k, v) in kept {
            slots[n] = (k.as_str(), v);
            n += 1;
        }
        write_sorted(out, &mut slots[..n]);
    } else {
        let mut entries: Vec<(&str, &Value)> = kept.map(|(k, v)| (k.as_str(), v)).collect();
        write_sorted(out, &mut entries);
    }
}

fn write_sorted(out: &mut Vec<u8>, entries: &mut [(&str, &Value)]) {
    // Keys of a JSON object are unique: an unstable sort is deterministic.
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// A JSON string literal (the escaping `serde_json` produces), copied in
/// runs between the bytes that need escaping.
fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = write!(out, "\\u{b:04x}");
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    // Writing into a Vec cannot fail: the `write!` results are ignored.
    match v {
        Value::Object(m) => write_object(out, m, None),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Number(n) => {
            // 1 and 1.0 are the same parameter value.
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    let _ = write!(out, "{}", f as i64);
                }
                _ => {
                    let _ = write!(out, "{n}");
                }
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Null => out.extend_from_slice(b"null"),
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

    fn canon(endpoint: CacheEndpoint, body: &str) -> String {
        let Value::Object(m) = serde_json::from_str::<Value>(body).unwrap() else {
            panic!()
        };
        let mut out = Vec::new();
        canonical(&mut out, endpoint, "gpt", "", &m);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn canonical_bytes_are_pinned() {
        // Golden: the exact bytes the key hashes (the digest itself is keyed
        // per process, so only the bytes can be pinned).
        let got = canon(
            CacheEndpoint::ChatCompletions,
            r#"{"temperature":0.0,"model":"x","stream":true,"n":1.5,"top_p":1e2,
                "messages":[{"role":"user","content":"a\"b\\c\nd\u0001é","name":null}],
                "logprobs":false,"zeta":{"b":[true,-3],"a":{}}}"#,
        );
        let want = concat!(
            "chat\n",
            "\u{3}\0\0\0\0\0\0\0gpt",
            "\0\0\0\0\0\0\0\0",
            r#"{"logprobs":false,"messages":[{"content":"a\"b\\c\nd\u0001é","name":null,"role":"user"}],"#,
            r#""n":1.5,"temperature":0,"top_p":100,"zeta":{"a":{},"b":[true,-3]}}"#
        );
        assert_eq!(got, want);
    }

    #[test]
    fn strings_are_escaped_like_serde_json() {
        let mut all_controls = String::new();
        for c in 0u8..0x20 {
            all_controls.push(char::from(c));
        }
        for s in [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            all_controls.as_str(),
            "unicode é ✓ 😀 \u{7f} \u{2028}",
        ] {
            let mut out = Vec::new();
            write_string(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn every_output_changing_parameter_changes_the_key() {
        let base =
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":5}"#;
        let a = key("t1", "gpt", base);
        for changed in [
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":6}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":5,"top_p":0.5}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":5,"seed":7}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":5,"stop":["x"]}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":5,"n":2}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":5,
                "response_format":{"type":"json_object"}}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":5,
                "tool_choice":"none"}"#,
            r#"{"messages":[{"role":"system","content":"hi"}],"temperature":0,"max_tokens":5}"#,
            r#"{"messages":[{"role":"user","content":"hi "}],"temperature":0,"max_tokens":5}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":null,"max_tokens":5}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":"0","max_tokens":5}"#,
            r#"{"messages":[],"temperature":0,"max_tokens":5}"#,
        ] {
            assert_ne!(a, key("t1", "gpt", changed), "{changed}");
        }
        // Excluded fields do not change it.
        for same in [
            r#"{"max_tokens":5.0,"temperature":0,"messages":[{"content":"hi","role":"user"}]}"#,
            r#"{"messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":5,
                "model":"other","user":"u1","stream":false,"stream_options":{"include_usage":true}}"#,
        ] {
            assert_eq!(a, key("t1", "gpt", same), "{same}");
        }
    }

    #[test]
    fn large_objects_sort_their_keys_too() {
        // More keys than the stack array holds: the Vec path.
        let fields: Vec<String> = (0..(STACK_KEYS + 4))
            .map(|i| format!(r#""k{i:02}":{i}"#))
            .collect();
        let forward = format!("{{{}}}", fields.join(","));
        let backward = format!(
            "{{{}}}",
            fields.iter().rev().cloned().collect::<Vec<_>>().join(",")
        );
        assert_eq!(key("t1", "gpt", &forward), key("t1", "gpt", &backward));
        let nested_f = format!(r#"{{"tools":[{forward}]}}"#);
        let nested_b = format!(r#"{{"tools":[{backward}]}}"#);
        assert_eq!(key("t1", "gpt", &nested_f), key("t1", "gpt", &nested_b));
        assert_ne!(
            key("t1", "gpt", &forward),
            key("t1", "gpt", &forward.replace(r#""k19":19"#, r#""k19":21"#))
        );
    }

    #[test]
    fn the_digest_is_keyed_and_stable_within_the_process() {
        let Value::Object(m) = serde_json::from_str::<Value>(BASE).unwrap() else {
            panic!()
        };
        let ep = CacheEndpoint::ChatCompletions;
        assert_eq!(
            digest_with(&[1; 32], ep, "gpt", "", &m),
            digest_with(&[1; 32], ep, "gpt", "", &m)
        );
        // Another process (another key) files the same request elsewhere.
        assert_ne!(
            digest_with(&[1; 32], ep, "gpt", "", &m),
            digest_with(&[2; 32], ep, "gpt", "", &m)
        );
        // The process key is drawn once: repeated keys agree, also across
        // threads, and the buffer reuse leaves no trace of earlier bodies.
        let first = key("t1", "gpt", BASE);
        let _ = key(
            "t1",
            "gpt",
            r#"{"messages":[{"role":"user","content":"much longer"}]}"#,
        );
        assert_eq!(first, key("t1", "gpt", BASE));
        let other = std::thread::spawn(|| key("t1", "gpt", BASE))
            .join()
            .unwrap();
        assert_eq!(first, other);
        assert_eq!(first.digest, digest_with(process_key(), ep, "gpt", "", &m));
    }
}
