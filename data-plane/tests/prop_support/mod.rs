//! Strategies shared by the `prop_*` property tests: arbitrary JSON values
//! and request-shaped objects that reach deep into the parsers.
#![allow(dead_code)] // each prop_* test binary uses a part

use proptest::prelude::*;
use serde_json::{Map, Value};

/// Cases per property: enough to find shallow bugs, small enough that all
/// `prop_*` tests together run in seconds in CI.
pub const CASES: u32 = 256;

pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Keys the gateway's parsers look at, plus noise.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "stream",
    "stream_options",
    "include_usage",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "tools",
    "tool_choice",
    "function",
    "name",
    "arguments",
    "type",
    "text",
    "input",
    "instructions",
    "system",
    "temperature",
    "response_format",
    "json_schema",
    "schema",
    "tool_calls",
    "id",
    "tool_call_id",
    "image_url",
    "url",
    "source",
    "data",
    "media_type",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "choices",
    "delta",
    "index",
    "finish_reason",
    "candidates",
    "parts",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "functionCall",
    "args",
    "stop_reason",
    "encoding_format",
    "dimensions",
    "user",
    "n",
    "seed",
    "x",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{0,8}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Binary fractions: printed and parsed back exactly (serde_json
        // without `float_roundtrip` may be off by an ulp on others).
        (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        proptest::sample::select(KEYS).prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
    ]
}

/// Any JSON value, at most 5 levels deep and a few dozen nodes.
pub fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A JSON object whose top-level keys are the parsers' keys.
pub fn object() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::vec((key(), json()), 0..8).prop_map(|kv| kv.into_iter().collect())
}

/// A message-like object: role and content of plausible or wrong shapes.
fn message() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just(Value::from("user")),
            Just(Value::from("assistant")),
            Just(Value::from("system")),
            Just(Value::from("tool")),
            json()
        ],
        json(),
        object(),
    )
        .prop_map(|(role, content, mut rest)| {
            rest.insert("role".into(), role);
            rest.insert("content".into(), content);
            Value::Object(rest)
        })
}

/// A request body close to a valid chat/messages/responses request, with
/// random values in every field.
pub fn request() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop_oneof![Just(Value::from("gpt-test")), json()],
        proptest::collection::vec(message(), 0..4),
        object(),
    )
        .prop_map(|(model, messages, mut rest)| {
            rest.insert("model".into(), model);
            rest.insert("messages".into(), Value::Array(messages.clone()));
            rest.entry("input")
                .or_insert_with(|| Value::Array(messages));
            rest
        })
}
