//! Inbound Anthropic Messages API (`POST /v1/messages`): passed through to
//! an Anthropic provider, translated for an OpenAI one; the caller sees
//! Anthropic's shapes (message, event sequence, usage, errors) either way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{http, TestDp, KEY, UPSTREAM_KEY};
use serde_json::{json, Value};
use tollgate_mock::{MockOptions, MockServer};

async fn setup() -> (MockServer, TestDp) {
    let mock = MockServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        MockOptions {
            required_api_key: Some(UPSTREAM_KEY.into()),
            ..MockOptions::recording()
        },
    )
    .await
    .unwrap();
    let base = &mock.base_url;
    let yaml = format!(
        r#"
tenants:
  - name: acme
    id: tn_acme
    providers:
      - {{name: claude, kind: anthropic, base_url: "{base}", api_key: {UPSTREAM_KEY}}}
      - {{name: oai, kind: openai, base_url: "{base}", api_key: {UPSTREAM_KEY}}}
    models:
      - {{name: claude-test, provider: claude, upstream_model: mock-small}}
      - {{name: gpt-test, provider: oai, upstream_model: mock-small}}
      - {{name: claude-overloaded, provider: claude, upstream_model: mock-error-529}}
      - {{name: gpt-failing, provider: oai, upstream_model: mock-error-500}}
      - {{name: gpt-limited, provider: oai, upstream_model: mock-error-429}}
      - {{name: claude-midstream, provider: claude, upstream_model: mock-overloaded-midstream}}
    keys:
      - {{name: backend, key: {KEY}}}
"#
    );
    let dp = TestDp::start_yaml(&yaml, |c| c.upstream_timeout = Duration::from_secs(5));
    (mock, dp)
}

async fn post(dp: &TestDp, path: &str, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{}{path}", dp.url))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "tools-2099-01-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn req(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 200, "stream": stream, "system": "be brief",
           "messages": [{"role": "user", "content": "hello gateway"}]})
}

/// `(event name, data)` of every event of an SSE body.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_string();
            let data: String = e.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (name, serde_json::from_str(&data).unwrap())
        })
        .collect()
}

const HELLO: &str =
    "Hello from mock-small, the Tollgate mock provider. You said: \"hello gateway\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_stream_message_from_both_providers() {
    let (mock, dp) = setup().await;
    for model in ["claude-test", "gpt-test"] {
        let r = post(&dp, "/v1/messages", &req(model, false)).await;
        assert_eq!(r.status(), 200, "{model}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(
            v["content"],
            json!([{"type": "text", "text": HELLO}]),
            "{model}"
        );
        assert_eq!(v["stop_reason"], "end_turn");
        // system (2+3) + user (2+3)
        assert_eq!(v["usage"]["input_tokens"], 10, "{model}");
        assert_eq!(v["usage"]["output_tokens"], 11, "{model}");
    }
    let seen = mock.requests();
    // Passthrough: the Anthropic provider got the caller's body with the
    // upstream model and the provider key.
    assert_eq!(seen[0].path, "/v1/messages");
    assert_eq!(seen[0].body["system"], "be brief");
    assert_eq!(seen[0].body["model"], "mock-small");
    assert_eq!(seen[0].header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(seen[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen[0].header("anthropic-beta"), Some("tools-2099-01-01"));
    // Translation: the OpenAI provider got a chat request.
    assert_eq!(seen[1].path, "/v1/chat/completions");
    assert_eq!(
        seen[1].body["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(seen[1].body["max_tokens"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_anthropics_event_sequence_from_both_providers() {
    let (_mock, dp) = setup().await;
    for model in ["claude-test", "gpt-test"] {
        let r = post(&dp, "/v1/messages", &req(model, true)).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let ev = events(&r.text().await.unwrap());
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[..3],
            ["message_start", "content_block_start", "ping"],
            "{model}"
        );
        assert_eq!(
            names[names.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        // The event name and the data's type agree.
        assert!(ev.iter().all(|(n, d)| d["type"] == n.as_str()));
        let text: String = ev
            .iter()
            .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
            .collect();
        assert_eq!(text, HELLO, "{model}");
        let delta = &ev[ev.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["output_tokens"], 11);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_through_the_openai_provider() {
    let (_mock, dp) = setup().await;
    let body = json!({"model": "gpt-test", "max_tokens": 100,
        "tools": [{"name": "lookup", "description": "search", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "find the docs"}]});
    let v: Value = post(&dp, "/v1/messages", &body).await.json().await.unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][1]["type"], "tool_use");
    assert_eq!(v["content"][1]["name"], "lookup");
    assert_eq!(v["content"][1]["input"], json!({"query": "find the docs"}));
    let id = v["content"][1]["id"].as_str().unwrap().to_string();

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let ev = events(
        &post(&dp, "/v1/messages", &sbody)
            .await
            .text()
            .await
            .unwrap(),
    );
    let json: String = ev
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Value::as_str))
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        json!({"query": "find the docs"})
    );
    assert_eq!(ev[ev.len() - 2].1["delta"]["stop_reason"], "tool_use");

    let v: Value = post(
        &dp,
        "/v1/messages",
        &json!({"model": "gpt-test", "max_tokens": 100, "messages": [
            {"role": "user", "content": "find the docs"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "lookup",
                "input": {"query": "find the docs"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "42 results"}]}
        ]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        v["content"][0]["text"],
        "Hello from mock-small, the Tollgate mock provider. The tool said: \"42 results\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_anthropic_shaped() {
    let (_mock, dp) = setup().await;
    let check = |status: u16, kind: &'static str| {
        move |(s, v): (u16, Value)| {
            assert_eq!(s, status, "{v}");
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["error"]["type"], kind, "{v}");
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
    };
    async fn call(dp: &TestDp, key: &str, body: &Value) -> (u16, Value) {
        let r = http()
            .post(format!("{}/v1/messages", dp.url))
            .header("x-api-key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
    check(401, "authentication_error")(call(&dp, "tg-wrong", &req("claude-test", false)).await);
    check(404, "not_found_error")(call(&dp, KEY, &req("nope", false)).await);
    check(400, "invalid_request_error")(
        call(&dp, KEY, &json!({"model": "claude-test", "messages": []})).await,
    );
    // Anthropic's own 529 passes through as is; an OpenAI provider's
    // failures get Anthropic's shape with their status.
    check(529, "overloaded_error")(call(&dp, KEY, &req("claude-overloaded", false)).await);
    check(500, "api_error")(call(&dp, KEY, &req("gpt-failing", false)).await);
    check(429, "rate_limit_error")(call(&dp, KEY, &req("gpt-limited", true)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn midstream_error_event_is_relayed() {
    let (_mock, dp) = setup().await;
    let r = post(&dp, "/v1/messages", &req("claude-midstream", true)).await;
    assert_eq!(r.status(), 200);
    let ev = events(&r.text().await.unwrap());
    let (name, last) = ev.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(last["error"]["type"], "overloaded_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_for_anthropic_models_only() {
    let (_mock, dp) = setup().await;
    let body = json!({"model": "claude-test", "system": "be brief",
        "messages": [{"role": "user", "content": "hello gateway"}]});
    let r = post(&dp, "/v1/messages/count_tokens", &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["input_tokens"], 10);
    let mut body = body;
    body["model"] = json!("gpt-test");
    let r = post(&dp, "/v1/messages/count_tokens", &body).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn midstream_provider_error_reaches_openai_callers_with_its_message() {
    let (_mock, dp) = setup().await;
    let r = http()
        .post(format!("{}/v1/chat/completions", dp.url))
        .bearer_auth(KEY)
        .json(&json!({"model": "claude-midstream", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let last = common::sse_data(&text).pop().unwrap();
    let v: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["error"]["code"], "upstream_stream_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(529): Overloaded"),
        "{v}"
    );
}
