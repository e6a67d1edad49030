//! Provider conformance: the same cases, through the gateway's OpenAI route,
//! against every provider module with a mock that speaks that provider's
//! real wire format. What the caller gets must not depend on which provider
//! answered (the mocks answer the same words in every format); where a
//! provider has no equivalent (e.g. the 529 status) the expected value is a
//! parameter of the suite. Every upstream stream is cut into 5-byte pieces,
//! so SSE framing is exercised at arbitrary byte boundaries end to end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{http, sse_data, TestDp, KEY, UPSTREAM_KEY};
use serde_json::{json, Value};
use tollgate_mock::{MockOptions, MockServer};

/// What differs between providers, and nothing else.
#[derive(Clone, Copy)]
pub struct Provider {
    pub kind: &'static str,
    /// Status an OpenAI caller gets for the provider's 529.
    pub status_529: u16,
    /// The provider streams tool arguments in pieces (Gemini sends each
    /// call whole).
    pub argument_pieces: bool,
    /// Extra YAML lines of the provider (settings).
    pub extra: &'static str,
    /// The provider reports cache reads for the test request (OpenAI:
    /// `prompt_cache_key`; Anthropic: `cache_control`; Gemini needs a
    /// `cachedContent` the OpenAI shape cannot name).
    pub reports_cache: bool,
    /// The provider reports reasoning tokens separately (Anthropic counts
    /// thinking inside `output_tokens`).
    pub reports_reasoning: bool,
}

pub struct Setup {
    pub mock: MockServer,
    pub dp: TestDp,
    pub p: Provider,
}

const FAILURES: &[u16] = &[400, 401, 429, 500, 529];

fn yaml(base_url: &str, p: Provider) -> String {
    let kind = p.kind;
    let extra = p.extra;
    // Azure's base URL is the resource root, not `/v1`.
    let base_url = if kind == "azure" {
        base_url.trim_end_matches("/v1")
    } else {
        base_url
    };
    let mut models = String::from(
        "      - {name: chat, provider: up, upstream_model: mock-small}\n      - {name: dropping, provider: up, upstream_model: mock-drop-after-3}\n",
    );
    for s in FAILURES {
        models.push_str(&format!(
            "      - {{name: e{s}, provider: up, upstream_model: mock-error-{s}}}\n"
        ));
    }
    format!(
        r#"
tenants:
  - name: acme
    id: tn_acme
    providers:
      - name: up
        kind: {kind}
        base_url: {base_url}
        api_key: {UPSTREAM_KEY}{extra}
    models:
{models}
    keys:
      - name: backend
        key: {KEY}
"#
    )
}

pub async fn setup(p: Provider) -> Setup {
    let mock = MockServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        MockOptions {
            required_api_key: Some(UPSTREAM_KEY.into()),
            // Every stream arrives cut into 5-byte pieces: events split
            // mid-line, mid-field and between CR and LF.
            split_stream_every: 5,
            ..MockOptions::recording()
        },
    )
    .await
    .unwrap();
    let dp = TestDp::start_yaml(&yaml(&mock.base_url, p), |c| {
        c.upstream_timeout = Duration::from_secs(5);
    });
    Setup { mock, dp, p }
}

impl Setup {
    pub async fn post(&self, body: &Value) -> reqwest::Response {
        http()
            .post(format!("{}/v1/chat/completions", self.dp.url))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn json(&self, body: &Value) -> Value {
        let r = self.post(body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{}: {text}", self.p.kind);
        serde_json::from_str(&text).unwrap()
    }

    /// The parsed chunks of a streamed answer, and whether it ended with
    /// `[DONE]`.
    pub async fn chunks(&self, body: &Value) -> (Vec<Value>, bool) {
        let r = self.post(body).await;
        assert_eq!(r.status(), 200, "{}", self.p.kind);
        let text = r.text().await.unwrap();
        let data = sse_data(&text);
        let done = data.last().is_some_and(|d| d == "[DONE]");
        let chunks = data
            .iter()
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        (chunks, done)
    }

    /// The last request the provider received.
    pub fn upstream_body(&self) -> Value {
        self.mock.requests().last().unwrap().body.clone()
    }
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn lookup_tool() -> Value {
    json!([{"type": "function", "function": {"name": "lookup",
        "description": "Search the docs",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}])
}

const HELLO: &str =
    "Hello from mock-small, the Tollgate mock provider. You said: \"hello gateway\"";

pub async fn plain(p: Provider) {
    let s = setup(p).await;
    let v = s
        .json(&json!({"model": "chat", "messages": [user("hello gateway")]}))
        .await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], HELLO);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 11);
    assert_eq!(v["usage"]["total_tokens"], 16);
}

pub async fn stream(p: Provider) {
    let s = setup(p).await;
    let body = json!({"model": "chat", "stream": true, "messages": [user("hello gateway")]});
    let (chunks, done) = s.chunks(&body).await;
    assert!(done);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, HELLO);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    // Not asked for: no usage chunk.
    assert!(chunks.iter().all(|c| !c["usage"].is_object()));

    let mut body = body;
    body["stream_options"] = json!({"include_usage": true});
    let (chunks, _) = s.chunks(&body).await;
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 5);
    assert_eq!(last["usage"]["completion_tokens"], 11);
}

pub async fn multi_turn_with_system(p: Provider) {
    let s = setup(p).await;
    let v = s
        .json(&json!({"model": "chat", "messages": [
            {"role": "system", "content": "be brief"},
            user("hi"),
            {"role": "assistant", "content": "hello"},
            user("how are you"),
        ]}))
        .await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from mock-small, the Tollgate mock provider. You said: \"how are you\""
    );
    // (2+3) + (1+3) + (1+3) + (3+3)
    assert_eq!(v["usage"]["prompt_tokens"], 19);
    let up = s.upstream_body();
    match s.p.kind {
        "anthropic" => {
            assert_eq!(up["system"], json!([{"type": "text", "text": "be brief"}]));
            assert_eq!(up["messages"].as_array().unwrap().len(), 3);
            assert_eq!(up["max_tokens"], 8192);
        }
        "gemini" => {
            assert_eq!(
                up["systemInstruction"],
                json!({"parts": [{"text": "be brief"}]})
            );
            let roles: Vec<&str> = up["contents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["role"].as_str().unwrap())
                .collect();
            assert_eq!(roles, ["user", "model", "user"]);
        }
        _ => assert_eq!(up["messages"].as_array().unwrap().len(), 4),
    }
    if s.p.kind == "azure" {
        let seen = s.mock.requests();
        let last = seen.last().unwrap();
        assert_eq!(last.path, "/openai/deployments/mock-small/chat/completions");
        assert_eq!(last.header("api-key"), Some(UPSTREAM_KEY));
        assert_eq!(last.header("authorization"), None);
    }
}

pub async fn tools(p: Provider) {
    let s = setup(p).await;
    let body = json!({"model": "chat", "tools": lookup_tool(), "tool_choice": "auto",
        "messages": [user("find the docs")]});
    let v = s.json(&body).await;
    let m = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(m["content"], "Calling lookup.");
    assert_eq!(m["tool_calls"][0]["type"], "function");
    assert_eq!(m["tool_calls"][0]["function"]["name"], "lookup");
    let args: Value = serde_json::from_str(
        m["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"query": "find the docs"}));
    let call_id = m["tool_calls"][0]["id"].as_str().unwrap().to_string();
    assert!(!call_id.is_empty());

    // The same streamed: the call arrives as index/id/name, then argument
    // pieces that concatenate to the JSON.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let (chunks, done) = s.chunks(&sbody).await;
    assert!(done);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    if s.p.argument_pieces {
        assert!(calls.len() > 2, "arguments arrive in pieces: {calls:?}");
    }
    assert!(calls.iter().all(|c| c["index"] == 0));
    assert_eq!(calls[0]["function"]["name"], "lookup");
    assert!(calls[0]["id"].as_str().is_some_and(|id| !id.is_empty()));
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"query": "find the docs"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    // The tool's result goes back and is answered.
    let v = s
        .json(&json!({"model": "chat", "tools": lookup_tool(), "messages": [
            user("find the docs"),
            {"role": "assistant", "content": null, "tool_calls": [{"id": call_id, "type": "function",
                "function": {"name": "lookup", "arguments": "{\"query\":\"find the docs\"}"}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "42 results"},
        ]}))
        .await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from mock-small, the Tollgate mock provider. The tool said: \"42 results\""
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    if s.p.kind == "gemini" {
        let up = s.upstream_body();
        assert_eq!(
            up["contents"][1]["parts"][0],
            json!({"functionCall": {"name": "lookup", "args": {"query": "find the docs"}}})
        );
        assert_eq!(
            up["contents"][2]["parts"][0],
            json!({"functionResponse": {"name": "lookup", "response": {"content": "42 results"}}})
        );
        assert_eq!(up["tools"][0]["functionDeclarations"][0]["name"], "lookup");
    }
    if s.p.kind == "anthropic" {
        let up = s.upstream_body();
        assert_eq!(
            up["messages"][1]["content"][0],
            json!({"type": "tool_use", "id": call_id, "name": "lookup",
                   "input": {"query": "find the docs"}})
        );
        assert_eq!(
            up["messages"][2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": call_id, "content": "42 results"})
        );
        assert_eq!(up["tools"][0]["input_schema"]["type"], "object");
    }
}

pub async fn images_and_stop(p: Provider) {
    let s = setup(p).await;
    let v = s
        .json(
            &json!({"model": "chat", "stop": ["END"], "temperature": 0.2, "top_p": 0.9,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "describe these"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ]}]}),
        )
        .await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from mock-small, the Tollgate mock provider. You said: \"describe these\""
    );
    let up = s.upstream_body();
    match s.p.kind {
        "anthropic" => {
            let blocks = &up["messages"][0]["content"];
            assert_eq!(
                blocks[1]["source"],
                json!({"type": "url", "url": "https://example.com/cat.png"})
            );
            assert_eq!(
                blocks[2]["source"],
                json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
            );
            assert_eq!(up["stop_sequences"], json!(["END"]));
            assert_eq!(up["temperature"], 0.2);
            assert_eq!(up["top_p"], 0.9);
        }
        "gemini" => {
            let parts = &up["contents"][0]["parts"];
            assert_eq!(
                parts[1],
                json!({"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}})
            );
            assert_eq!(
                parts[2],
                json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
            );
            assert_eq!(
                up["generationConfig"],
                json!({"stopSequences": ["END"], "temperature": 0.2, "topP": 0.9})
            );
        }
        _ => assert_eq!(up["stop"], json!(["END"])),
    }
}

pub async fn errors(p: Provider) {
    for status in FAILURES {
        // A fresh gateway per status: failures change routing state (a
        // refused credential leaves the rotation, breakers count failures).
        let s = setup(p).await;
        let r = s
            .post(&json!({"model": format!("e{status}"), "messages": [user("hi")]}))
            .await;
        let expected = match status {
            // The gateway's provider key was refused: not the caller's fault.
            401 => 502,
            529 => s.p.status_529,
            s => *s,
        };
        assert_eq!(r.status().as_u16(), expected, "{} {status}", s.p.kind);
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{} {status}: {v}",
            s.p.kind
        );
        assert!(v["error"]["type"].is_string(), "{v}");
        if *status == 429 {
            assert_eq!(v["error"]["type"], "rate_limit_error");
        }
        // Streamed calls fail the same way before the first byte, except that
        // a refused credential has meanwhile been taken out of rotation: its
        // route has no target left (503) until an operator re-enables it.
        let r = s
            .post(&json!({"model": format!("e{status}"), "stream": true, "messages": [user("hi")]}))
            .await;
        let expected = if *status == 401 { 503 } else { expected };
        assert_eq!(
            r.status().as_u16(),
            expected,
            "{} stream {status}",
            s.p.kind
        );
    }
}

pub async fn truncated_stream(p: Provider) {
    let s = setup(p).await;
    let r = s
        .post(&json!({"model": "dropping", "stream": true, "messages": [user("hi")]}))
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let data = sse_data(&text);
    assert_ne!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error", "{text}");
}

pub async fn usage_with_cache_and_reasoning(p: Provider) {
    let s = setup(p).await;
    let body = json!({"model": "chat", "reasoning_effort": "low", "prompt_cache_key": "k1",
    "messages": [
        {"role": "system", "content": [{"type": "text", "text": "long shared context words here",
            "cache_control": {"type": "ephemeral"}}]},
        user("hello gateway"),
    ]});
    let v = s.json(&body).await;
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let (chunks, _) = s.chunks(&sbody).await;
    for usage in [&v["usage"], &chunks.last().unwrap()["usage"]] {
        // (5 + 3) + (2 + 3), cached or not.
        assert_eq!(usage["prompt_tokens"], 13, "{}: {usage}", s.p.kind);
        let cached = usage["prompt_tokens_details"]["cached_tokens"]
            .as_i64()
            .unwrap();
        let reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
            .as_i64()
            .unwrap();
        let completion = usage["completion_tokens"].as_i64().unwrap();
        assert_eq!(cached > 0, s.p.reports_cache, "{}: {usage}", s.p.kind);
        assert!(cached <= 13);
        assert_eq!(
            reasoning > 0,
            s.p.reports_reasoning,
            "{}: {usage}",
            s.p.kind
        );
        // Reasoning is part of the completion count.
        assert!(completion >= 11 + reasoning, "{}: {usage}", s.p.kind);
        assert_eq!(
            usage["total_tokens"].as_i64().unwrap(),
            13 + completion,
            "{}",
            s.p.kind
        );
    }
    if s.p.kind == "anthropic" {
        let usage = &v["usage"];
        assert!(
            usage["prompt_tokens_details"]["cache_write_tokens"]
                .as_i64()
                .unwrap()
                > 0
        );
        let up = s.upstream_body();
        assert_eq!(
            up["system"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(up["thinking"]["type"], "enabled");
        // Thinking arrives as reasoning_content.
        assert!(v["choices"][0]["message"]["reasoning_content"].is_string());
    }
}

macro_rules! conformance {
    ($name:ident, $provider:expr) => {
        mod $name {
            use super::*;
            const P: Provider = $provider;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn plain_answer() {
                plain(P).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn streamed_answer_and_usage_chunk() {
                stream(P).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn multi_turn_with_system() {
                super::multi_turn_with_system(P).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tool_calls_streamed_and_results() {
                tools(P).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn images_stop_and_sampling() {
                images_and_stop(P).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn provider_errors_keep_status_and_shape() {
                errors(P).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn usage_with_cache_and_reasoning() {
                super::usage_with_cache_and_reasoning(P).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn truncated_stream_ends_with_an_error_event() {
                truncated_stream(P).await
            }
        }
    };
}

conformance!(
    openai,
    Provider {
        kind: "openai",
        reports_cache: true,
        reports_reasoning: true,
        extra: "",
        argument_pieces: true,
        status_529: 529
    }
);
conformance!(
    anthropic,
    Provider {
        kind: "anthropic",
        reports_cache: true,
        reports_reasoning: false,
        extra: "",
        argument_pieces: true,
        status_529: 503
    }
);
conformance!(
    gemini,
    Provider {
        kind: "gemini",
        reports_cache: false,
        reports_reasoning: true,
        extra: "",
        argument_pieces: false,
        status_529: 503
    }
);
conformance!(
    azure,
    Provider {
        kind: "azure",
        reports_cache: true,
        reports_reasoning: true,
        extra: "\n        settings: {api_version: 2024-10-21}",
        argument_pieces: true,
        status_529: 529
    }
);
