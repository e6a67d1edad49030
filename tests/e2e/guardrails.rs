//! Guardrails configured through the admin API and enforced by a real data
//! plane: blocks in both protocols' shapes (nothing sent upstream, nothing
//! charged), redaction visible to the upstream mock, log-only verdicts in
//! usage records, output checks (streamed and not), webhooks with both fail
//! modes, attachment scopes, and no matched text in the CP database or logs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tollgate_e2e::{http, pb, sse_data, Gateway};

/// Creates a guardrail, attaches it, and waits until the DP serves it.
#[allow(clippy::too_many_arguments)]
async fn guardrail(
    gw: &Gateway,
    name: &str,
    kind: &str,
    action: &str,
    direction: &str,
    settings: Value,
    scope: &str,
    target: &str,
) {
    let mut admin = gw.admin().await;
    admin
        .guardrails
        .create_guardrail(pb::CreateGuardrailRequest {
            tenant: "acme".into(),
            name: name.into(),
            kind: kind.into(),
            action: action.into(),
            direction: direction.into(),
            settings: settings.to_string(),
        })
        .await
        .unwrap();
    admin
        .guardrails
        .attach_guardrail(pb::AttachGuardrailRequest {
            tenant: "acme".into(),
            guardrail: name.into(),
            scope: scope.into(),
            target: target.into(),
        })
        .await
        .unwrap();
    let version = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", version).await;
}

/// Waits for the usage record of a request id.
async fn record_of(gw: &Gateway, request_id: &str) -> pb::UsageRecordView {
    let mut admin = gw.admin().await;
    let start = Instant::now();
    loop {
        let records = admin
            .usage
            .list_usage_records(pb::ListUsageRecordsRequest {
                tenant: "acme".into(),
                limit: 100,
            })
            .await
            .unwrap()
            .into_inner()
            .records;
        if let Some(r) = records.into_iter().find(|r| r.request_id == request_id) {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no usage record for {request_id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_string()
}

fn chat(text: &str, stream: bool) -> Value {
    json!({"model": "gpt-test", "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

/// Every file under `dir`, as lossy text.
fn all_text_under(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_block_redact_and_log() {
    let gw = Gateway::start().await;
    const SECRET: &str = "Project Zeus";
    const EMAIL: &str = "jane.roe@example.org";
    guardrail(
        &gw,
        "no-zeus",
        "keyword",
        "block",
        "input",
        json!({"words": ["project zeus"]}),
        "tenant",
        "",
    )
    .await;

    // OpenAI shape, nothing upstream, a record without cost.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &chat(&format!("tell me about {SECRET}"), false),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let rid = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "content_policy_violation");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-zeus"));
    assert!(!body.to_string().contains(SECRET));
    // Anthropic shape on /v1/messages.
    let resp = gw
        .post(
            "/v1/messages",
            &json!({"model": "gpt-test", "max_tokens": 50,
                    "messages": [{"role": "user", "content": format!("{SECRET} plans")}]}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-zeus"));
    // Responses and embeddings inputs are checked too.
    for (path, body) in [
        (
            "/v1/responses",
            json!({"model": "gpt-test", "input": format!("{SECRET}?")}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "gpt-test", "input": ["ok", SECRET]}),
        ),
    ] {
        let resp = gw.post(path, &body).await;
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "content_policy_violation", "{path}");
    }
    assert!(
        gw.mock.requests().is_empty(),
        "a blocked call went upstream"
    );

    let rec = record_of(&gw, &rid).await;
    assert_eq!(rec.status_code, 400);
    assert_eq!(rec.error_code, "content_policy_violation");
    assert_eq!(rec.cost_micros, 0);
    assert_eq!(rec.prompt_tokens + rec.completion_tokens, 0);
    assert_eq!(rec.guardrail_verdicts.len(), 1);
    let v = &rec.guardrail_verdicts[0];
    assert_eq!(
        (
            v.name.as_str(),
            v.action.as_str(),
            v.category.as_str(),
            v.direction.as_str()
        ),
        ("no-zeus", "block", "keyword", "input")
    );

    // The access log names the verdict (never the text).
    gw.dp.proc.wait_for_log("no-zeus:block:keyword").await;

    // Redaction attached to the key: the upstream sees the placeholder.
    guardrail(
        &gw,
        "pii",
        "pii",
        "redact",
        "input",
        json!({"types": ["email", "credit_card"]}),
        "key",
        "backend",
    )
    .await;
    let resp = gw
        .post(
            "/v1/chat/completions",
            &chat(&format!("mail {EMAIL} card 4111 1111 1111 1111"), false),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let rid = request_id(&resp);
    let _ = resp.bytes().await.unwrap();
    let sent = gw.mock.requests().last().unwrap().body.to_string();
    assert!(
        sent.contains("mail [REDACTED:EMAIL] card [REDACTED:CREDIT_CARD]"),
        "{sent}"
    );
    assert!(!sent.contains(EMAIL) && !sent.contains("4111"), "{sent}");
    let rec = record_of(&gw, &rid).await;
    assert_eq!(rec.status_code, 200);
    assert_eq!(rec.guardrail_verdicts[0].action, "redact");
    assert_eq!(rec.guardrail_verdicts[0].category, "email");

    // Log-only attached to the model: passes, verdict recorded.
    guardrail(
        &gw,
        "watch",
        "regex",
        "log",
        "input",
        json!({"patterns": [r"(?i)\bsalary\b"]}),
        "model",
        "gpt-test",
    )
    .await;
    let resp = gw
        .post("/v1/chat/completions", &chat("what is my salary", false))
        .await;
    assert_eq!(resp.status(), 200);
    let rid = request_id(&resp);
    let _ = resp.bytes().await.unwrap();
    let rec = record_of(&gw, &rid).await;
    let got: Vec<(String, String)> = rec
        .guardrail_verdicts
        .iter()
        .map(|v| (v.name.clone(), v.action.clone()))
        .collect();
    assert_eq!(got, vec![("watch".to_string(), "log".to_string())]);
    assert!(rec.cost_micros >= 0 && rec.prompt_tokens > 0);

    // Another tenant's guardrail never applies to acme.
    let mut admin = gw.admin().await;
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "other".into(),
        })
        .await
        .unwrap();
    admin
        .guardrails
        .create_guardrail(pb::CreateGuardrailRequest {
            tenant: "other".into(),
            name: "no-hello".into(),
            kind: "keyword".into(),
            action: "block".into(),
            settings: json!({"words": ["hello"]}).to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .guardrails
        .attach_guardrail(pb::AttachGuardrailRequest {
            tenant: "other".into(),
            guardrail: "no-hello".into(),
            scope: "tenant".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // acme cannot see or detach other's guardrail.
    let e = admin
        .guardrails
        .delete_guardrail(pb::DeleteGuardrailRequest {
            tenant: "acme".into(),
            guardrail: "no-hello".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let version = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", version).await;
    let resp = gw
        .post("/v1/chat/completions", &chat("hello there", false))
        .await;
    assert_eq!(resp.status(), 200);

    // A bad regex is refused at the CP with its position.
    let e = admin
        .guardrails
        .create_guardrail(pb::CreateGuardrailRequest {
            tenant: "acme".into(),
            name: "bad".into(),
            kind: "regex".into(),
            action: "block".into(),
            settings: json!({"patterns": ["a(b"]}).to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("patterns[0]"), "{}", e.message());

    // The matched text is in no CP file (database, WAL, log) and no DP file
    // (spool, persisted snapshot, log).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for dir in [&gw.cp.data_dir, &gw.dp.data_dir] {
        let text = all_text_under(dir);
        assert!(!text.is_empty());
        for needle in [SECRET, EMAIL, "4111 1111 1111 1111", "my salary"] {
            assert!(
                !text.contains(needle),
                "{needle:?} found under {}",
                dir.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_checks_streamed_and_not() {
    let gw = Gateway::start().await;
    // The mock answers "Hello from mock-small, the Tollgate mock provider. …".
    guardrail(
        &gw,
        "no-brand",
        "keyword",
        "block",
        "output",
        json!({"words": ["Tollgate"]}),
        "tenant",
        "",
    )
    .await;
    // Input is not checked by an output guardrail.
    let resp = gw
        .post("/v1/chat/completions", &chat("Tollgate rocks", false))
        .await;
    assert_eq!(resp.status(), 400);
    let rid = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "content_policy_violation");
    assert_eq!(gw.mock.requests().len(), 1, "the input went upstream");
    let rec = record_of(&gw, &rid).await;
    assert_eq!(rec.guardrail_verdicts[0].direction, "output");
    // The upstream produced (and charged) the answer: the call is metered.
    assert!(rec.completion_tokens > 0);

    // Stream: some deltas, then an error event, and no [DONE].
    let resp = gw.post("/v1/chat/completions", &chat("hi", true)).await;
    assert_eq!(resp.status(), 200);
    let rid = request_id(&resp);
    let text = resp.text().await.unwrap();
    let data = sse_data(&text);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "content_policy_violation", "{text}");
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-brand"));
    assert!(!text.contains("[DONE]"));
    let relayed: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")?
                .as_str()
                .map(String::from)
        })
        .collect();
    assert!(relayed.starts_with("Hello from"), "{relayed:?}");
    assert!(!relayed.contains("Tollgate"), "{relayed:?}");
    let rec = record_of(&gw, &rid).await;
    assert_eq!(rec.error_code, "content_policy_violation");

    // Anthropic stream: ends with `event: error`.
    let resp = gw
        .post(
            "/v1/messages",
            &json!({"model": "gpt-test", "max_tokens": 50, "stream": true,
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let text = resp.text().await.unwrap();
    assert!(text.contains("event: error\ndata: "), "{text}");
    assert!(!text.contains("message_stop"), "{text}");
    assert!(text.contains("invalid_request_error"), "{text}");
}

/// A webhook server: `/allow`, `/block`, `/rewrite`, `/slow` (2 s).
async fn webhook_server() -> String {
    use axum::routing::post;
    async fn allow() -> axum::Json<Value> {
        axum::Json(json!({"action": "allow"}))
    }
    async fn block() -> axum::Json<Value> {
        axum::Json(json!({"action": "block"}))
    }
    async fn rewrite(axum::Json(req): axum::Json<Value>) -> axum::Json<Value> {
        let texts: Vec<String> = req["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().replace("banana", "fruit"))
            .collect();
        axum::Json(json!({"action": "rewrite", "texts": texts}))
    }
    async fn slow() -> axum::Json<Value> {
        tokio::time::sleep(Duration::from_secs(2)).await;
        axum::Json(json!({"action": "allow"}))
    }
    let app = axum::Router::new()
        .route("/allow", post(allow))
        .route("/block", post(block))
        .route("/rewrite", post(rewrite))
        .route("/slow", post(slow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_verdicts_and_fail_modes() {
    let hook = webhook_server().await;
    let gw = Gateway::start().await;
    let mut admin = gw.admin().await;
    // Second key and model, so each webhook applies to its own calls.
    let k2 = admin
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "acme".into(),
            name: "k2".into(),
            expires_at_ms: 0,
            providers: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let post_as = |key: String, body: Value| {
        let url = format!("{}/v1/chat/completions", gw.dp.url());
        async move {
            http()
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let cases = [
        ("allow", "/allow", "closed", 200),
        ("block", "/block", "open", 400),
        ("slow-closed", "/slow", "closed", 400),
        ("slow-open", "/slow", "open", 200),
        ("rewrite", "/rewrite", "closed", 200),
    ];
    for (name, path, fail, status) in cases {
        // Attach each to the second key only, replacing the previous one.
        admin
            .guardrails
            .create_guardrail(pb::CreateGuardrailRequest {
                tenant: "acme".into(),
                name: name.into(),
                kind: "webhook".into(),
                action: "block".into(),
                direction: "input".into(),
                settings: json!({"url": format!("{hook}{path}"), "timeout_ms": 300, "fail": fail})
                    .to_string(),
            })
            .await
            .unwrap();
        admin
            .guardrails
            .attach_guardrail(pb::AttachGuardrailRequest {
                tenant: "acme".into(),
                guardrail: name.into(),
                scope: "key".into(),
                target: "k2".into(),
            })
            .await
            .unwrap();
        let version = gw.cp.version().await;
        gw.cp.wait_for_ack("dp-1", version).await;
        let started = Instant::now();
        let resp = post_as(k2.clone(), chat("a banana split", false)).await;
        assert_eq!(resp.status(), status, "{name}");
        let rid = request_id(&resp);
        let body = resp.text().await.unwrap();
        if name.starts_with("slow") {
            assert!(
                started.elapsed() < Duration::from_millis(1500),
                "{name}: timeout not honoured"
            );
        }
        if status == 400 {
            assert!(body.contains("content_policy_violation"), "{body}");
        }
        if name == "rewrite" {
            let sent = gw.mock.requests().last().unwrap().body.to_string();
            assert!(sent.contains("a fruit split"), "{sent}");
        }
        let rec = record_of(&gw, &rid).await;
        let v: Vec<(String, String)> = rec
            .guardrail_verdicts
            .iter()
            .map(|v| (v.action.clone(), v.category.clone()))
            .collect();
        let expected: Vec<(&str, &str)> = match name {
            "allow" => vec![],
            "block" => vec![("block", "webhook")],
            "slow-closed" => vec![("block", "webhook_timeout")],
            "slow-open" => vec![("allow", "webhook_timeout")],
            _ => vec![("redact", "webhook")],
        };
        let v: Vec<(&str, &str)> = v.iter().map(|(a, c)| (a.as_str(), c.as_str())).collect();
        assert_eq!(v, expected, "{name}");
        admin
            .guardrails
            .detach_guardrail(pb::DetachGuardrailRequest {
                tenant: "acme".into(),
                guardrail: name.into(),
                scope: "key".into(),
                target: "k2".into(),
            })
            .await
            .unwrap();
    }
    // The first key never had a webhook attached.
    let resp = gw
        .post("/v1/chat/completions", &chat("a banana split", false))
        .await;
    assert_eq!(resp.status(), 200);
}
