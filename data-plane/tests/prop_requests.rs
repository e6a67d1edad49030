//! Property tests of request parsing, validation, translation and cache-key
//! canonicalization: arbitrary bytes and arbitrary request-shaped JSON never
//! panic, and the cache key ignores key order and whitespace.
#![allow(clippy::unwrap_used)]

mod prop_support;

use proptest::prelude::*;
use serde_json::{Map, Value};
use tollgate_dp::cache::key::{cache_key, CacheEndpoint};
use tollgate_dp::http::limits::{json_depth_exceeds, RequestLimits};
use tollgate_dp::pipeline::chat_request::ChatRequest;
use tollgate_dp::providers::{anthropic, embeddings, gemini};
use tollgate_dp::responses;

/// Every request parser and translator the data plane runs on a body.
fn run_all(body: &Map<String, Value>) {
    let _ = anthropic::inbound::validate(body);
    if let Ok(chat) = anthropic::inbound::to_chat(body) {
        let _ = anthropic::request::to_anthropic(&chat);
        let _ = gemini::request::to_gemini(&chat);
    }
    let _ = anthropic::request::to_anthropic(body);
    let _ = gemini::request::to_gemini(body);
    let _ = responses::request::validate(body);
    if let Ok(chat) = responses::request::to_chat(body) {
        let _ = anthropic::request::to_anthropic(&chat);
    }
    let _ = embeddings::text_inputs(body);
    let _ = embeddings::wants_base64(body);
    let _ = tollgate_dp::billing::max_output_tokens(body);
    let limits = RequestLimits::default();
    let _ = limits.check_items(body, "messages");
    let _ = limits.check_items(body, "input");
}

/// Re-serializes with keys in reverse order and extra whitespace.
fn reorder(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .rev()
                .map(|(k, v)| format!("{} :  {}", Value::from(k.as_str()), reorder(v)))
                .collect();
            format!("{{ {} }}", parts.join(" ,\n "))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(reorder).collect();
            format!("[ {} ]", parts.join(" , "))
        }
        other => other.to_string(),
    }
}

proptest! {
    #![proptest_config(prop_support::config())]

    #[test]
    fn prop_arbitrary_bytes_never_panic_the_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ChatRequest::parse(&bytes);
        let _ = json_depth_exceeds(&bytes, 64);
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes) {
            run_all(&m);
        }
    }

    #[test]
    fn prop_request_shaped_json_never_panics(body in prop_support::request()) {
        let bytes = serde_json::to_vec(&body).unwrap();
        if let Ok(chat) = ChatRequest::parse(&bytes) {
            prop_assert_eq!(&chat.body, &body);
            run_all(&chat.body);
        }
        run_all(&body);
    }

    #[test]
    fn prop_any_json_object_never_panics(body in prop_support::object()) {
        run_all(&body);
        let _ = ChatRequest::parse(&serde_json::to_vec(&body).unwrap());
    }

    #[test]
    fn prop_depth_scan_agrees_with_the_structure(v in prop_support::json()) {
        fn depth(v: &Value) -> usize {
            match v {
                Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
                Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
                _ => 0,
            }
        }
        let d = depth(&v);
        let text = serde_json::to_vec(&v).unwrap();
        prop_assert!(!json_depth_exceeds(&text, d));
        if d > 0 {
            prop_assert!(json_depth_exceeds(&text, d - 1));
        }
    }

    #[test]
    fn prop_cache_key_ignores_key_order_and_whitespace(body in prop_support::request()) {
        let text = reorder(&Value::Object(body.clone()));
        let again: Map<String, Value> = serde_json::from_str(&text).unwrap();
        for ep in [CacheEndpoint::ChatCompletions, CacheEndpoint::Messages, CacheEndpoint::Embeddings] {
            prop_assert_eq!(
                cache_key("t1", ep, "m", "", &body),
                cache_key("t1", ep, "m", "", &again)
            );
        }
        // Another tenant never shares the key.
        prop_assert_ne!(
            cache_key("t1", CacheEndpoint::ChatCompletions, "m", "", &body),
            cache_key("t2", CacheEndpoint::ChatCompletions, "m", "", &body)
        );
    }
}
