//! Routing and resilience end to end ("done means" of issue 5): three mock
//! upstreams behind one route, the failing ones failing in every way the
//! issue lists; callers get their answers from the healthy one with no
//! duplicated output, breakers open and close, a rejected credential is
//! reported to the control plane and re-enabled by an operator, and every
//! call is metered once with its attempts.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tollgate_e2e::{pb, sse_data, Gateway, MockServer};
use tollgate_mock::Fault;

/// role + 11 words + finish + [DONE] for the prompt used here.
const CLEAN_STREAM_EVENTS: usize = 14;

async fn mock() -> MockServer {
    MockServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn add_provider(gw: &Gateway, name: &str, base_url: &str, key: &str) -> String {
    gw.admin()
        .await
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: "acme".into(),
            name: name.into(),
            kind: "openai".into(),
            base_url: base_url.into(),
            api_key: key.into(),

            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn add_target(gw: &Gateway, model: &str, provider: &str, priority: u32) {
    gw.admin()
        .await
        .routes
        .add_route_target(pb::AddRouteTargetRequest {
            tenant: "acme".into(),
            model: model.into(),
            provider: provider.into(),
            upstream_model: String::new(),
            priority,
            weight: 1,
        })
        .await
        .unwrap();
}

async fn synced(gw: &Gateway) {
    let v = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", v).await;
}

fn chat(stream: bool) -> Value {
    json!({"model": "chat", "stream": stream,
           "messages": [{"role": "user", "content": "hello gateway"}]})
}

struct Answer {
    status: u16,
    provider: String,
    attempts: String,
    request_id: String,
    body: String,
}

async fn call(gw: &Gateway, body: &Value) -> Answer {
    let resp = gw.post("/v1/chat/completions", body).await;
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (provider, attempts, request_id) = (
        h("x-tollgate-provider"),
        h("x-tollgate-attempts"),
        h("x-request-id"),
    );
    let status = resp.status().as_u16();
    Answer {
        status,
        provider,
        attempts,
        request_id,
        body: resp.text().await.unwrap(),
    }
}

fn assert_clean_stream(body: &str) {
    let data = sse_data(body);
    assert_eq!(data.len(), CLEAN_STREAM_EVENTS, "{body}");
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1, "{body}");
    assert_eq!(body.matches("\"role\":\"assistant\"").count(), 1, "{body}");
    assert!(!body.contains("\"error\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_upstreams_failing_every_way_callers_get_healthy_answers() {
    let gw = Gateway::start().await;
    let (flaky, hang) = (mock().await, mock().await);
    let flaky_id = add_provider(&gw, "flaky", &flaky.base_url, "sk-flaky-0001").await;
    let hang_id = add_provider(&gw, "hang", &hang.base_url, "sk-hang-0001").await;
    // The healthy upstream is the harness mock behind provider `up`.
    let mut admin = gw.admin().await;
    admin
        .models
        .add_model(pb::AddModelRequest {
            tenant: "acme".into(),
            name: "chat".into(),
            provider: "flaky".into(),
            upstream_model: "mock-small".into(),
        })
        .await
        .unwrap();
    add_target(&gw, "chat", "hang", 1).await;
    add_target(&gw, "chat", "up", 2).await;
    let route = admin
        .routes
        .set_route_policy(pb::SetRoutePolicyRequest {
            tenant: "acme".into(),
            model: "chat".into(),
            policy: Some(pb::RoutePolicy {
                strategy: "ordered".into(),
                max_attempts: 5,
                total_timeout_ms: 800,
                ttft_timeout_ms: 800,
                idle_timeout_ms: 800,
                retry_base_ms: 10,
                retry_max_ms: 300,
                breaker_failures: 2,
                // Longer than calls 1–3 take, so both stay open through them.
                breaker_cooldown_ms: 2_500,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = route
        .targets
        .iter()
        .map(|t| t.provider_name.as_str())
        .collect();
    assert_eq!(names, ["flaky", "hang", "up"]);
    synced(&gw).await;

    let mut calls = 0;
    // 1. flaky answers 503 then 429 with Retry-After (retried after 50 ms),
    //    hang never sends a head (timeout, 800 ms): the healthy one answers.
    flaky.script([Fault::status(503), Fault::retry_after(429, "0.05")]);
    hang.set_default(Fault::HangBeforeHeaders);
    let a = call(&gw, &chat(false)).await;
    calls += 1;
    assert_eq!(
        (a.status, a.provider.as_str(), a.attempts.as_str()),
        (200, "up", "4"),
        "{}",
        a.body
    );
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Hello from mock-small"));
    let first_request = a.request_id.clone();
    // flaky's breaker is open (2 failures in a row); hang failed once.
    assert_eq!((flaky.chat_calls(), hang.chat_calls()), (2, 1));

    // 2. A stream: flaky skipped without a network attempt, hang times out
    //    again (its breaker opens) before any byte reached the caller.
    let a = call(&gw, &chat(true)).await;
    calls += 1;
    assert_eq!(
        (a.status, a.provider.as_str(), a.attempts.as_str()),
        (200, "up", "2")
    );
    assert_clean_stream(&a.body);
    assert_eq!((flaky.chat_calls(), hang.chat_calls()), (2, 2));
    assert!(hang.wait_abandoned(2, Duration::from_secs(5)).await);

    // 3. Both breakers open: straight to the healthy one.
    let a = call(&gw, &chat(true)).await;
    calls += 1;
    assert_eq!((a.provider.as_str(), a.attempts.as_str()), ("up", "1"));
    assert_clean_stream(&a.body);
    assert_eq!((flaky.chat_calls(), hang.chat_calls()), (2, 2));

    // 4. After the cool-down each gets one probe. flaky dies before its
    //    first byte (probe fails, open again); hang has recovered but now
    //    cuts its streams before the first byte too.
    flaky.set_default(Fault::CutMidStream { after: 0 });
    hang.set_default(Fault::CutMidStream { after: 0 });
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let a = call(&gw, &chat(true)).await;
    calls += 1;
    assert_eq!((a.provider.as_str(), a.attempts.as_str()), ("up", "3"));
    assert_clean_stream(&a.body);
    assert_eq!((flaky.chat_calls(), hang.chat_calls()), (3, 3));

    // 5. flaky recovers: its next probe succeeds and closes the breaker, so
    //    it serves again (it is first in the order), slow drip included.
    flaky.set_default(Fault::Ok);
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let a = call(&gw, &chat(true)).await;
    calls += 1;
    assert_eq!((a.provider.as_str(), a.attempts.as_str()), ("flaky", "1"));
    assert_clean_stream(&a.body);
    flaky.script([Fault::SlowDrip {
        delay: Duration::from_millis(20),
    }]);
    let a = call(&gw, &chat(true)).await;
    calls += 1;
    assert_eq!(a.provider, "flaky");
    assert_clean_stream(&a.body);

    // 6. Failure after the first byte: no failover (it would duplicate
    //    output) but a proper error event; the same for a mid-stream hang.
    let healthy_calls = gw.mock.requests().len();
    flaky.script([Fault::CutMidStream { after: 3 }]);
    let a = call(&gw, &chat(true)).await;
    calls += 1;
    let data = sse_data(&a.body);
    assert_eq!(data.len(), 4, "{}", a.body);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error");
    flaky.script([Fault::HangMidStream { after: 2 }]);
    let a = call(&gw, &chat(true)).await;
    calls += 1;
    let last: Value = serde_json::from_str(sse_data(&a.body).last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout");
    assert_eq!(gw.mock.requests().len(), healthy_calls);

    // 7. A credential the provider rejects: out of rotation at once, reported
    //    to the control plane, back after an operator re-enables it.
    let revoked_id = add_provider(&gw, "revoked", &gw.mock.base_url, "sk-wrong-key-0000").await;
    admin
        .models
        .add_model(pb::AddModelRequest {
            tenant: "acme".into(),
            name: "keyed".into(),
            provider: "revoked".into(),
            upstream_model: "mock-small".into(),
        })
        .await
        .unwrap();
    add_target(&gw, "keyed", "up", 1).await;
    synced(&gw).await;
    let keyed =
        json!({"model": "keyed", "messages": [{"role": "user", "content": "hello gateway"}]});
    let a = call(&gw, &keyed).await;
    calls += 1;
    assert_eq!(
        (a.status, a.provider.as_str(), a.attempts.as_str()),
        (200, "up", "2")
    );
    let started = Instant::now();
    let health = loop {
        let hs = admin
            .providers
            .list_provider_health(pb::ListProviderHealthRequest {
                tenant: "acme".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .providers;
        let h = hs
            .into_iter()
            .find(|h| h.provider_id == revoked_id)
            .unwrap();
        if h.disabled {
            break h;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(health.reason.contains("401"), "{}", health.reason);
    synced(&gw).await;
    let route = admin
        .routes
        .get_route(pb::GetRouteRequest {
            tenant: "acme".into(),
            model: "keyed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(route.targets[0].provider_disabled);
    let wrong_key_calls = || {
        gw.mock
            .requests()
            .iter()
            .filter(|r| r.header("authorization") == Some("Bearer sk-wrong-key-0000"))
            .count()
    };
    assert_eq!(wrong_key_calls(), 1);
    let a = call(&gw, &keyed).await;
    calls += 1;
    assert_eq!((a.provider.as_str(), a.attempts.as_str()), ("up", "1"));
    assert_eq!(wrong_key_calls(), 1);
    let h = admin
        .providers
        .enable_provider(pb::EnableProviderRequest {
            tenant: "acme".into(),
            provider: "revoked".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!h.disabled);
    // Back in rotation on the data plane: tried first again (and, as the
    // key is still wrong, taken out again).
    synced(&gw).await;
    let a = call(&gw, &keyed).await;
    calls += 1;
    assert_eq!((a.provider.as_str(), a.attempts.as_str()), ("up", "2"));
    assert_eq!(wrong_key_calls(), 2);

    // 8. Every call metered exactly once, with its attempts.
    let records = loop {
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
        if records.len() >= calls {
            break records;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} of {calls} records",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(records.len(), calls);
    let ids: HashSet<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids.len(), calls);
    let first = records
        .iter()
        .find(|r| r.request_id == first_request)
        .unwrap();
    let seq: Vec<(&str, u32)> = first
        .attempts
        .iter()
        .map(|a| (a.provider_id.as_str(), a.status_code))
        .collect();
    let up_id = route.targets[1].provider_id.as_str();
    assert_eq!(
        seq,
        [
            (flaky_id.as_str(), 503),
            (flaky_id.as_str(), 429),
            (hang_id.as_str(), 0),
            (up_id, 200)
        ]
    );
    assert_eq!(first.status_code, 200);
    assert_eq!(first.provider_id, up_id);
}

/// A listener whose accept queue is full: a connection attempt to it hangs
/// (the kernel drops the SYN), like a host that does not answer. The
/// returned values must stay alive for as long as the hole is needed.
async fn blackhole() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fill = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fill.push(s);
        }
    }
    (listener, fill, format!("http://{addr}/v1"))
}

/// A route's own connect timeout applies (not the data plane's default of
/// 10 s): a target that never completes the TCP handshake is abandoned
/// after the route's 300 ms and the call fails over to the next group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_connect_timeout_fails_over_quickly() {
    let gw = Gateway::start().await;
    let (_hole, _fill, hole_url) = blackhole().await;
    add_provider(&gw, "hole", &hole_url, "sk-hole-0001").await;
    let mut admin = gw.admin().await;
    admin
        .models
        .add_model(pb::AddModelRequest {
            tenant: "acme".into(),
            name: "chat".into(),
            provider: "hole".into(),
            upstream_model: "mock-small".into(),
        })
        .await
        .unwrap();
    add_target(&gw, "chat", "up", 1).await;
    admin
        .routes
        .set_route_policy(pb::SetRoutePolicyRequest {
            tenant: "acme".into(),
            model: "chat".into(),
            policy: Some(pb::RoutePolicy {
                strategy: "ordered".into(),
                connect_timeout_ms: 300,
                no_same_target_retry: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    synced(&gw).await;

    let started = Instant::now();
    let a = call(&gw, &chat(false)).await;
    let took = started.elapsed();
    assert_eq!(
        (a.status, a.provider.as_str(), a.attempts.as_str()),
        (200, "up", "2"),
        "{}",
        a.body
    );
    // Well under the data plane's 10 s default connect timeout.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let rows = gw.wait_for_usage_calls(1).await;
    assert_eq!(rows.iter().map(|r| r.calls).sum::<i64>(), 1);
}

/// The base URL of a port nothing listens on: connecting is refused.
async fn refused_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/v1")
}

/// `/v1/messages`, `/v1/responses` and `/v1/embeddings` route like chat:
/// a target that cannot be reached is left for the next one, including
/// across protocols (an Anthropic target failing over to an OpenAI one
/// whose answer is translated back to the Anthropic shape).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_routed_endpoint_fails_over() {
    let gw = Gateway::start().await;
    let mut admin = gw.admin().await;
    for (name, kind) in [("dead-openai", "openai"), ("dead-anthropic", "anthropic")] {
        admin
            .providers
            .add_provider(pb::AddProviderRequest {
                tenant: "acme".into(),
                name: name.into(),
                kind: kind.into(),
                base_url: refused_url().await,
                api_key: "sk-dead-0001".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    for (model, primary) in [("multi", "dead-openai"), ("claude-multi", "dead-anthropic")] {
        admin
            .models
            .add_model(pb::AddModelRequest {
                tenant: "acme".into(),
                name: model.into(),
                provider: primary.into(),
                upstream_model: "mock-small".into(),
            })
            .await
            .unwrap();
        add_target(&gw, model, "up", 1).await;
        admin
            .routes
            .set_route_policy(pb::SetRoutePolicyRequest {
                tenant: "acme".into(),
                model: model.into(),
                policy: Some(pb::RoutePolicy {
                    strategy: "ordered".into(),
                    no_same_target_retry: true,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    synced(&gw).await;

    let prompt = json!([{"role": "user", "content": "hello gateway"}]);
    let calls = [
        (
            "/v1/messages",
            json!({"model": "claude-multi", "max_tokens": 64, "messages": prompt}),
        ),
        (
            "/v1/messages",
            json!({"model": "claude-multi", "max_tokens": 64, "stream": true, "messages": prompt}),
        ),
        (
            "/v1/messages",
            json!({"model": "multi", "max_tokens": 64, "messages": prompt}),
        ),
        (
            "/v1/responses",
            json!({"model": "multi", "input": "hello gateway"}),
        ),
        (
            "/v1/responses",
            json!({"model": "multi", "input": "hello gateway", "stream": true}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "multi", "input": ["hello", "gateway"]}),
        ),
    ];
    for (path, body) in &calls {
        let resp = gw.post(path, body).await;
        let h = |n: &str| {
            resp.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let (status, provider, attempts) = (
            resp.status().as_u16(),
            h("x-tollgate-provider"),
            h("x-tollgate-attempts"),
        );
        let text = resp.text().await.unwrap();
        assert_eq!(
            (status, provider.as_str(), attempts.as_str()),
            (200, "up", "2"),
            "{path} {body}: {text}"
        );
        let stream = body["stream"] == json!(true);
        match (*path, stream) {
            ("/v1/messages", false) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["type"], "message", "{text}");
                assert_eq!(v["model"], body["model"], "{text}");
            }
            ("/v1/messages", true) => {
                assert!(text.contains("event: message_start"), "{text}");
                assert!(text.contains("event: message_stop"), "{text}");
            }
            ("/v1/responses", false) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["object"], "response", "{text}");
            }
            ("/v1/responses", true) => {
                assert!(text.contains("event: response.completed"), "{text}");
            }
            _ => {
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["data"].as_array().unwrap().len(), 2, "{text}");
            }
        }
    }
    // Each call metered once, with both attempts.
    let rows = gw.wait_for_usage_calls(calls.len() as i64).await;
    assert_eq!(
        rows.iter().map(|r| r.calls).sum::<i64>(),
        calls.len() as i64
    );
}

/// A key limited to some providers is only ever routed to those, and a
/// caller naming another one per request is refused (403), while an
/// unrestricted key may name it. The control plane resolves the providers
/// within the key's tenant only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_provider_allowlist_bounds_routing_and_caller_choice() {
    let gw = Gateway::start().await;
    let second = mock().await;
    add_provider(&gw, "second", &second.base_url, "sk-second-0001").await;
    let mut admin = gw.admin().await;
    admin
        .models
        .add_model(pb::AddModelRequest {
            tenant: "acme".into(),
            name: "pair".into(),
            provider: "up".into(),
            upstream_model: "mock-small".into(),
        })
        .await
        .unwrap();
    add_target(&gw, "pair", "second", 0).await;
    let limited = admin
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "acme".into(),
            name: "limited".into(),
            expires_at_ms: 0,
            providers: vec!["up".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(limited.key.unwrap().allowed_provider_ids.len(), 1);
    // Another tenant's provider is not found from this tenant.
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "other".into(),
        })
        .await
        .unwrap();
    admin
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: "other".into(),
            name: "theirs".into(),
            kind: "mock".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let e = admin
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "acme".into(),
            name: "sneaky".into(),
            expires_at_ms: 0,
            providers: vec!["theirs".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    synced(&gw).await;

    let body = json!({"model": "pair", "messages": [{"role": "user", "content": "hello gateway"}]});
    let call = |key: String, providers: Option<&'static str>| {
        let url = format!("{}/v1/chat/completions", gw.dp.url());
        let body = body.clone();
        async move {
            let mut req = tollgate_e2e::http().post(url).bearer_auth(key).json(&body);
            if let Some(p) = providers {
                req = req.header("x-tollgate-providers", p);
            }
            let resp = req.send().await.unwrap();
            let provider = resp
                .headers()
                .get("x-tollgate-provider")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let status = resp.status().as_u16();
            (status, provider, resp.text().await.unwrap())
        }
    };
    for _ in 0..20 {
        let (status, provider, text) = call(limited.secret.clone(), None).await;
        assert_eq!((status, provider.as_str()), (200, "up"), "{text}");
    }
    assert_eq!(second.chat_calls(), 0, "the limited key reached `second`");
    let (status, _, text) = call(limited.secret.clone(), Some("second")).await;
    assert_eq!(status, 403, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "provider_not_allowed", "{text}");
    // Without a restriction the caller may pick `second`.
    let (status, provider, text) = call(gw.key.clone(), Some("second")).await;
    assert_eq!((status, provider.as_str()), (200, "second"), "{text}");
}
