#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The mock server speaks OpenAI's wire format and its failure switches work.

use serde_json::{json, Value};
use tollgate_mock::{MockOptions, MockServer};

fn addr() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test]
async fn non_stream_and_stream_agree_and_are_recorded() {
    let mock = MockServer::start(addr()).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", mock.base_url);
    let body = json!({"model": "mock-small", "messages": [{"role": "user", "content": "ping"}]});
    let r: Value = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["object"], "chat.completion");
    let text = r["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.ends_with("You said: \"ping\""), "{text}");

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let resp = client.post(&url).json(&sbody).send().await.unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let raw = resp.text().await.unwrap();
    let mut streamed = String::new();
    let mut saw_usage = false;
    for ev in raw.split("\n\n").filter(|e| !e.is_empty()) {
        let data = ev.strip_prefix("data: ").unwrap();
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            streamed.push_str(c);
        }
        saw_usage |= v["usage"]["total_tokens"].as_u64().is_some();
    }
    assert_eq!(streamed, text);
    assert!(saw_usage);
    assert!(raw.ends_with("data: [DONE]\n\n"));
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].body["stream"], true);
    assert_eq!(reqs[0].path, "/v1/chat/completions");
}

#[tokio::test]
async fn error_switch_and_required_key() {
    let mock = MockServer::start_with(
        addr(),
        MockOptions {
            required_api_key: Some("sk-test-1234".into()),
            ..MockOptions::recording()
        },
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", mock.base_url);
    let body = json!({"model": "mock-error-429", "messages": []});
    let unauth = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(unauth.status(), 401);
    let limited = client
        .post(&url)
        .bearer_auth("sk-test-1234")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    let v: Value = limited.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn drop_after_aborts_the_stream() {
    let mock = MockServer::start(addr()).await.unwrap();
    let body = json!({"model": "mock-drop-after-2", "stream": true,
        "messages": [{"role": "user", "content": "a b c"}]});
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", mock.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text().await.is_err(),
        "a dropped stream must not end cleanly"
    );
}

#[tokio::test]
async fn scripted_faults_apply_in_order_then_the_default() {
    use std::time::Duration;
    use tollgate_mock::Fault;
    let mock = MockServer::start(addr()).await.unwrap();
    mock.script([
        Fault::retry_after(429, "7"),
        Fault::status(503),
        Fault::CutMidStream { after: 2 },
    ]);
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", mock.base_url);
    let body = json!({"model": "mock-small", "stream": true,
                      "messages": [{"role": "user", "content": "ping"}]});
    let r = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let r = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_none());
    // Two events, then the connection is cut.
    let r = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.is_err());
    // Script used up: the default (normal answers).
    let r = client.post(&url).json(&body).send().await.unwrap();
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(mock.chat_calls(), 4);
    assert_eq!(mock.abandoned(), 0);

    // Hanging before the head: the client gives up, the mock sees it.
    mock.set_default(Fault::HangBeforeHeaders);
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(quick.post(&url).json(&body).send().await.is_err());
    assert!(mock.wait_abandoned(1, Duration::from_secs(5)).await);
}
