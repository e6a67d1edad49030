//! What callers get through the gateway equals what the provider produced.

use serde_json::{json, Value};
use tollgate_e2e::{http, sse_data, Gateway, UPSTREAM_KEY};

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-test", "stream": stream,
           "messages": [{"role": "user", "content": "hello gateway"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_stream_answer_is_the_providers_answer() {
    let gw = Gateway::start().await;
    let resp = gw.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(resp.headers()["x-tollgate-provider"], "up");
    let body: Value = resp.json().await.unwrap();

    // The same request sent straight to the provider.
    let mut direct_req = chat(false);
    direct_req["model"] = json!("mock-small");
    let direct: Value = http()
        .post(format!("{}/chat/completions", gw.mock.base_url))
        .bearer_auth(UPSTREAM_KEY)
        .json(&direct_req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"], direct["choices"]);
    assert_eq!(body["usage"], direct["usage"]);
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from mock-small, the Tollgate mock provider. You said: \"hello gateway\""
    );

    // The upstream saw the provider key, the upstream model and the body.
    let seen = &gw.mock.requests()[0];
    assert_eq!(
        seen.header("authorization"),
        Some(&*format!("Bearer {UPSTREAM_KEY}"))
    );
    assert_eq!(seen.body["model"], "mock-small");
    assert_eq!(seen.body["messages"], chat(false)["messages"]);
    // The caller's key never travels upstream.
    assert!(seen.headers.iter().all(|(_, v)| !v.contains(&gw.key)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_relayed_event_for_event() {
    let gw = Gateway::start().await;
    // Caller does not ask for usage: the gateway asks upstream for it anyway
    // and strips the extra usage chunk.
    let resp = gw.post("/v1/chat/completions", &chat(true)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = resp.text().await.unwrap();
    let events = sse_data(&body);
    let seen = gw.mock.requests();
    assert_eq!(seen[0].body["stream_options"]["include_usage"], true);

    let mut direct_req = chat(true);
    direct_req["model"] = json!("mock-small");
    let direct = http()
        .post(format!("{}/chat/completions", gw.mock.base_url))
        .bearer_auth(UPSTREAM_KEY)
        .json(&direct_req)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let direct_events = sse_data(&direct);
    // Same chunks in the same order (ids and timestamps are the mock's own).
    assert_eq!(events.len(), direct_events.len(), "{body}");
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text = |evs: &[String]| -> String {
        evs.iter()
            .filter(|e| *e != "[DONE]")
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    assert_eq!(text(&events), text(&direct_events));
    assert!(!body.contains("\"usage\":{"), "usage chunk leaked: {body}");

    // Caller asks for usage: it gets the usage chunk with real counts.
    let mut with_usage = chat(true);
    with_usage["stream_options"] = json!({"include_usage": true});
    let body = gw
        .post("/v1/chat/completions", &with_usage)
        .await
        .text()
        .await
        .unwrap();
    let usage: Vec<Value> = sse_data(&body)
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|v| v["usage"].is_object())
        .collect();
    assert_eq!(usage.len(), 1, "{body}");
    assert_eq!(usage[0]["usage"]["prompt_tokens"], 5);
    assert_eq!(usage[0]["usage"]["completion_tokens"], 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_only_the_callers_tenant() {
    let gw = Gateway::start().await;
    let mut admin = gw.admin().await;
    admin
        .tenants
        .create_tenant(tollgate_e2e::pb::CreateTenantRequest {
            name: "other".into(),
        })
        .await
        .unwrap();
    admin
        .providers
        .add_provider(tollgate_e2e::pb::AddProviderRequest {
            tenant: "other".into(),
            name: "m".into(),
            kind: "mock".into(),
            base_url: String::new(),
            api_key: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .models
        .add_model(tollgate_e2e::pb::AddModelRequest {
            tenant: "other".into(),
            name: "secret-model".into(),
            provider: "m".into(),
            upstream_model: String::new(),
        })
        .await
        .unwrap();
    let v = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", v).await;
    let list: Value = http()
        .get(format!("{}/v1/models", gw.dp.url()))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["gpt-test"]);
    // And acme's key cannot call the other tenant's model.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &json!({"model": "secret-model", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answer_keeps_the_callers_connection_alive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start().await;
    let addr = gw.dp.url().trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = chat(true).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        gw.key,
        body.len()
    );
    for round in 0..2 {
        sock.write_all(request.as_bytes()).await.unwrap();
        // Read until the chunked terminator: the stream must end by framing,
        // not by closing the connection.
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while !got.ends_with(b"0\r\n\r\n") {
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), sock.read(&mut buf))
                .await
                .expect("stream ends by chunked framing")
                .unwrap();
            assert!(
                n > 0,
                "round {round}: connection closed before the chunked terminator"
            );
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"));
        assert!(text.contains("data: [DONE]"));
    }
}
