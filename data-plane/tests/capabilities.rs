//! Requests a model cannot serve (per the capability catalog) are refused
//! with a 400 naming the parameter, in the caller's protocol, before any
//! provider call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{http, TestDp, KEY, UPSTREAM_KEY};
use serde_json::{json, Value};
use tollgate_mock::MockServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_requests_never_reach_the_provider() {
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = &mock.base_url;
    let yaml = format!(
        r#"
tenants:
  - name: acme
    id: tn_acme
    providers:
      - {{name: oai, kind: openai, base_url: "{base}", api_key: {UPSTREAM_KEY}}}
      - {{name: claude, kind: anthropic, base_url: "{base}", api_key: {UPSTREAM_KEY}}}
    models:
      - {{name: tiny, provider: oai, upstream_model: mock-tiny}}
      - {{name: tiny-claude, provider: claude, upstream_model: mock-tiny}}
    keys:
      - {{name: backend, key: {KEY}}}
"#
    );
    let dp = TestDp::start_yaml(&yaml, |_| {});
    let post = |path: &'static str, body: Value| {
        let url = format!("{}{path}", dp.url);
        async move {
            let r = http()
                .post(url)
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let hi = json!([{"role": "user", "content": "hi"}]);
    let tool = json!([{"type": "function", "function": {"name": "f"}}]);
    for (body, param) in [
        (
            json!({"model": "tiny", "messages": hi, "max_tokens": 100}),
            "max_tokens",
        ),
        (
            json!({"model": "tiny", "messages": hi, "stream": true}),
            "stream",
        ),
        (
            json!({"model": "tiny", "messages": hi, "tools": tool}),
            "tools",
        ),
        (
            json!({"model": "tiny-claude", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
            "messages",
        ),
        (
            json!({"model": "tiny", "messages": [{"role": "user", "content": "w ".repeat(400)}]}),
            "messages",
        ),
    ] {
        let (status, v) = post("/v1/chat/completions", body).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    let (status, v) = post(
        "/v1/messages",
        json!({"model": "tiny-claude", "max_tokens": 500, "messages": hi}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 16"));
    let (status, v) = post(
        "/v1/responses",
        json!({"model": "tiny", "input": "hi", "max_output_tokens": 500}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (400, Some("max_tokens"))
    );
    assert!(mock.requests().is_empty());

    // Within the limits, the call goes through.
    let (status, _) = post(
        "/v1/chat/completions",
        json!({"model": "tiny", "messages": hi, "max_tokens": 5}),
    )
    .await;
    assert_eq!(status, 200);
}
