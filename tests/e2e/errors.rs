//! Bad input and upstream failures get OpenAI-shaped errors with the right
//! status, and every response carries x-request-id.

use serde_json::{json, Value};
use tollgate_e2e::{http, pb, Gateway};

async fn add_model(gw: &Gateway, name: &str, provider: &str, upstream: &str) {
    gw.admin()
        .await
        .models
        .add_model(pb::AddModelRequest {
            tenant: "acme".into(),
            name: name.into(),
            provider: provider.into(),
            upstream_model: upstream.into(),
        })
        .await
        .unwrap();
}

async fn raw(gw: &Gateway, body: Vec<u8>) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/v1/chat/completions", gw.dp.url()))
        .bearer_auth(&gw.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("x-request-id"));
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"].get("type").is_some(), "{body}");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_404_413() {
    let gw = Gateway::start_with_dp_args(&["--max-body-bytes", "2048"]).await;

    let (s, b) = raw(&gw, b"{not json".to_vec()).await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["type"], "invalid_request_error");

    let (s, b) = raw(
        &gw,
        br#"{"messages":[{"role":"user","content":"x"}]}"#.to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["param"], "model");

    let (s, b) = raw(&gw, br#"{"model":"gpt-test"}"#.to_vec()).await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["param"], "messages");

    let (s, b) = raw(&gw, br#"{"model":"gpt-test","messages":"hi"}"#.to_vec()).await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["param"], "messages");

    let (s, b) = raw(
        &gw,
        br#"{"model":"no-such-model","messages":[{"role":"user","content":"x"}]}"#.to_vec(),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(b["error"]["code"], "model_not_found");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-such-model"));

    let big =
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let (s, b) = raw(&gw, serde_json::to_vec(&big).unwrap()).await;
    assert_eq!(s, 413);
    assert_eq!(b["error"]["type"], "invalid_request_error");

    // Nothing of the above reached the provider.
    assert!(gw.mock.requests().is_empty());

    // Unknown route: JSON 404 too.
    let resp = http()
        .get(format!("{}/v1/nope", gw.dp.url()))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.headers().contains_key("x-request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_map_to_gateway_errors() {
    let gw = Gateway::start_with_dp_args(&["--upstream-timeout-secs", "1"]).await;
    let mut admin = gw.admin().await;
    // A provider nobody listens on.
    admin
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: "acme".into(),
            name: "dead".into(),
            kind: "openai".into(),
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: "sk-dead-000000000000".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    add_model(&gw, "dead-model", "dead", "x").await;
    add_model(&gw, "bad-request", "up", "mock-error-400").await;
    add_model(&gw, "limited", "up", "mock-error-429").await;
    add_model(&gw, "slow", "up", "mock-slow-3000").await;
    let v = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", v).await;

    let call =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "x"}]});

    let (s, b) = raw(&gw, serde_json::to_vec(&call("dead-model")).unwrap()).await;
    assert_eq!(s, 502, "{b}");
    // Upstream secrets never show in errors.
    assert!(!b.to_string().contains("sk-dead"));

    let (s, b) = raw(&gw, serde_json::to_vec(&call("slow")).unwrap()).await;
    assert_eq!(s, 504, "{b}");

    // Upstream 4xx pass through with their status and an OpenAI-shaped body.
    let (s, b) = raw(&gw, serde_json::to_vec(&call("bad-request")).unwrap()).await;
    assert_eq!(s, 400, "{b}");
    let resp = gw.post("/v1/chat/completions", &call("limited")).await;
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
}
