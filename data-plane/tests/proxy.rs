//! The proxy against a real OpenAI-compatible mock provider: what callers get
//! equals what the provider produced, what the provider sees is what the
//! gateway should send, and every failure has the right status and shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{gateway_yaml, http, sse_data, sse_events, TestDp, KEY, OTHER_KEY, UPSTREAM_KEY};
use serde_json::{json, Value};
use tollgate_mock::MockServer;

async fn setup() -> (MockServer, TestDp) {
    let mock = MockServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dp = TestDp::start_yaml(&gateway_yaml(&mock.base_url), |c| {
        c.max_body_bytes = 2048;
        c.upstream_timeout = Duration::from_secs(1);
    });
    (mock, dp)
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream,
           "messages": [{"role": "user", "content": "hello gateway"}]})
}

async fn post(dp: &TestDp, key: &str, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{}/v1/chat/completions", dp.url))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Replaces the value of every `"created":<n>` with 0 (the mock stamps the
/// current second).
fn without_created(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\"created\":") {
        let (head, tail) = rest.split_at(i + "\"created\":".len());
        out.push_str(head);
        out.push('0');
        rest = tail.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_stream_answer_is_the_providers_answer() {
    let (mock, dp) = setup().await;
    let resp = post(&dp, KEY, &chat("gpt-test", false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    assert_eq!(resp.headers()["x-tollgate-provider"], "up");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body = resp.text().await.unwrap();

    // The upstream saw the provider key, the upstream model and the body.
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(
        seen[0].header("authorization"),
        Some(&*format!("Bearer {UPSTREAM_KEY}"))
    );
    assert_eq!(seen[0].body["model"], "mock-small");
    assert_eq!(
        seen[0].body["messages"],
        chat("gpt-test", false)["messages"]
    );
    assert!(seen[0].body.get("stream_options").is_none());
    assert!(seen[0].headers.iter().all(|(_, v)| !v.contains(KEY)));

    // Sending the same upstream body straight to the provider gives the
    // same bytes (the mock's id derives from the body).
    let direct = http()
        .post(format!("{}/chat/completions", mock.base_url))
        .bearer_auth(UPSTREAM_KEY)
        .body(serde_json::to_vec(&seen[0].body).unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(without_created(&body), without_created(&direct));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from mock-small, the Tollgate mock provider. You said: \"hello gateway\""
    );
    assert_eq!(v["usage"]["prompt_tokens"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_relayed_event_for_event_without_the_extra_usage_chunk() {
    let (mock, dp) = setup().await;
    let resp = post(&dp, KEY, &chat("gpt-test", true)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(resp.headers()["x-tollgate-provider"], "up");
    let body = resp.text().await.unwrap();

    let seen = mock.requests();
    assert_eq!(seen[0].body["stream_options"]["include_usage"], true);
    assert_eq!(seen[0].body["model"], "mock-small");

    // What the provider streams for the same upstream body.
    let direct = http()
        .post(format!("{}/chat/completions", mock.base_url))
        .bearer_auth(UPSTREAM_KEY)
        .body(serde_json::to_vec(&seen[0].body).unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let expected: Vec<String> = sse_events(&direct)
        .into_iter()
        .filter(|e| !e.contains("\"choices\":[]"))
        .map(|e| without_created(&e))
        .collect();
    let got: Vec<String> = sse_events(&body)
        .iter()
        .map(|e| without_created(e))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(got.len(), 14, "role + 11 words + finish + [DONE]");
    assert_eq!(got.last().unwrap(), "data: [DONE]\n\n");
    assert!(!body.contains("\"usage\":{"), "usage chunk leaked: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_asking_for_usage_gets_the_usage_chunk() {
    let (_mock, dp) = setup().await;
    let mut req = chat("gpt-test", true);
    req["stream_options"] = json!({"include_usage": true});
    let body = post(&dp, KEY, &req).await.text().await.unwrap();
    let usage: Vec<Value> = sse_data(&body)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|v| v["usage"].is_object())
        .collect();
    assert_eq!(usage.len(), 1, "{body}");
    assert_eq!(usage[0]["choices"], json!([]));
    assert_eq!(usage[0]["usage"]["prompt_tokens"], 5);
    assert_eq!(usage[0]["usage"]["completion_tokens"], 11);
    assert_eq!(sse_data(&body).last().unwrap(), "[DONE]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_mock_provider_needs_no_network() {
    let (mock, dp) = setup().await;
    let resp = post(&dp, KEY, &chat("local", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-provider"], "builtin");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from mock-small, the Tollgate mock provider. You said: \"hello gateway\""
    );
    let body = post(&dp, KEY, &chat("local", true))
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&body);
    assert_eq!(data.len(), 14, "{body}");
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(mock.requests().is_empty());
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    assert!(resp.headers().contains_key("x-request-id"));
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"].get("type").is_some(), "{body}");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_a_valid_key_get_401_and_inactive_tenants_403() {
    let (mock, dp) = setup().await;
    let no_key = http()
        .post(format!("{}/v1/chat/completions", dp.url))
        .json(&chat("gpt-test", false))
        .send()
        .await
        .unwrap();
    let (s, b) = error_of(no_key).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );

    let (s, b) = error_of(post(&dp, "tg-not-a-real-key", &chat("gpt-test", false)).await).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    assert!(!b.to_string().contains("tg-not-a-real-key"));

    let (s, _) = error_of(post(&dp, "tg-expired-key", &chat("gpt-test", false)).await).await;
    assert_eq!(s, 401);

    let (s, b) = error_of(post(&dp, "tg-frozen-key", &chat("gpt-test", false)).await).await;
    assert_eq!(
        (s, b["error"]["type"].as_str()),
        (403, Some("permission_error"))
    );

    let api_key = http()
        .post(format!("{}/v1/chat/completions", dp.url))
        .header("api-key", KEY)
        .json(&chat("gpt-test", false))
        .send()
        .await
        .unwrap();
    assert_eq!(api_key.status(), 200);
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_404_405_413() {
    let (mock, dp) = setup().await;
    let raw = |body: &'static [u8]| {
        http()
            .post(format!("{}/v1/chat/completions", dp.url))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (s, b) = error_of(raw(b"{not json").await.unwrap()).await;
    assert_eq!(
        (s, b["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let (s, b) = error_of(
        raw(br#"{"messages":[{"role":"user","content":"x"}]}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("model")));
    let (s, b) = error_of(raw(br#"{"model":"gpt-test"}"#).await.unwrap()).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("messages")));
    let (s, b) = error_of(
        raw(br#"{"model":"gpt-test","messages":"hi"}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("messages")));

    let (s, b) = error_of(post(&dp, KEY, &chat("no-such-model", false)).await).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-such-model"));
    // Another tenant's model does not exist for this key.
    let (s, _) = error_of(post(&dp, KEY, &chat("secret-model", false)).await).await;
    assert_eq!(s, 404);

    let big =
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let (s, b) = error_of(post(&dp, KEY, &big).await).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("request_too_large"))
    );
    assert!(b["error"]["message"].as_str().unwrap().contains("2048"));

    let (s, _) = error_of(
        http()
            .get(format!("{}/v1/chat/completions", dp.url))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 405);
    let resp = http()
        .get(format!("{}/v1/nope", dp.url))
        .header("x-request-id", "caller-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "caller-chosen-42");
    let (s, b) = error_of(resp).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("unknown_route"))
    );

    // Nothing of the above reached the provider.
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_only_the_callers_tenant() {
    let (_mock, dp) = setup().await;
    let ids = |v: Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let resp = http()
        .get(format!("{}/v1/models", dp.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let list: Value = resp.json().await.unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(
        ids(list),
        vec![
            "bad-request",
            "dead-model",
            "dropping",
            "failing",
            "gpt-test",
            "limited",
            "local",
            "slow"
        ]
    );
    let other: Value = http()
        .get(format!("{}/v1/models", dp.url))
        .bearer_auth(OTHER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(other), vec!["secret-model"]);
    let anonymous = http()
        .get(format!("{}/v1/models", dp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_map_to_gateway_errors() {
    let (_mock, dp) = setup().await;
    // Provider 5xx: an OpenAI-shaped error with a 5xx status.
    let (s, b) = error_of(post(&dp, KEY, &chat("failing", false)).await).await;
    assert_eq!(s, 500, "{b}");
    assert_eq!(b["error"]["type"], "server_error");
    // Provider 4xx pass through.
    let (s, _) = error_of(post(&dp, KEY, &chat("bad-request", false)).await).await;
    assert_eq!(s, 400);
    let (s, b) = error_of(post(&dp, KEY, &chat("limited", true)).await).await;
    assert_eq!(
        (s, b["error"]["type"].as_str()),
        (429, Some("rate_limit_error"))
    );
    // Nobody listens: 502, and the provider key never shows.
    let (s, b) = error_of(post(&dp, KEY, &chat("dead-model", false)).await).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (502, Some("upstream_connect_error"))
    );
    assert!(!b.to_string().contains("sk-dead"));
    // Too slow for the 1 s upstream timeout: 504, stream or not.
    let started = std::time::Instant::now();
    let (s, b) = error_of(post(&dp, KEY, &chat("slow", false)).await).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (504, Some("upstream_timeout"))
    );
    let (s, _) = error_of(post(&dp, KEY, &chat("slow", true)).await).await;
    assert_eq!(s, 504);
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dying_mid_stream_ends_with_an_error_event() {
    let (_mock, dp) = setup().await;
    let resp = post(&dp, KEY, &chat("dropping", true)).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let data = sse_data(&body);
    assert_eq!(data.len(), 4, "3 relayed events then the error: {body}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error");
    assert!(!body.contains("[DONE]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let (_mock, dp) = setup().await;
    let h = http()
        .get(format!("{}/healthz", dp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    assert!(h.headers().contains_key("x-request-id"));
    let r = http()
        .get(format!("{}/readyz", dp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["config_version"], 1);
    dp.stop().unwrap();
}
