//! Response cache through the real binaries: policies set through the admin
//! API, answers served from cache without contacting the upstream, per
//! tenant, streamed or not, with the `x-tollgate-cache` header.

use serde_json::{json, Value};
use tollgate_e2e::{http, pb, sse_data, Gateway, UPSTREAM_KEY};

/// Sets a cache policy and waits until the data plane serves it.
async fn set_policy(gw: &Gateway, tenant: &str, kind: &str, target: &str, enabled: bool) {
    gw.admin()
        .await
        .cache
        .set_cache_policy(pb::SetCachePolicyRequest {
            tenant: tenant.into(),
            scope: Some(pb::CacheScope {
                kind: kind.into(),
                target: target.into(),
            }),
            settings: Some(pb::CacheSettings {
                enabled,
                ttl_ms: 60_000,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let version = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", version).await;
}

/// Chat completion calls the mock received so far.
fn upstream_chats(gw: &Gateway) -> usize {
    gw.mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .count()
}

/// POSTs a raw body with extra headers; returns status, cache header, body.
async fn call(
    gw: &Gateway,
    key: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut req = http()
        .post(format!("{}{path}", gw.dp.url()))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("x-tollgate-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, cache, resp.text().await.unwrap())
}

const CHAT: &str = r#"{"model":"gpt-test","messages":[{"role":"user","content":"cache me if you can"}],"temperature":0}"#;
/// The same request: other key order, whitespace, `user` and `stream: false`.
const CHAT_REORDERED: &str = r#"{ "temperature": 0, "user": "someone",
    "messages": [ { "content": "cache me if you can", "role": "user" } ],
    "stream": false, "model": "gpt-test" }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_calls_are_answered_from_cache() {
    let gw = Gateway::start().await;
    // No policy: bypass, every call goes upstream.
    let (s, cache, _) = call(&gw, &gw.key, "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!((s, cache.as_str()), (200, "bypass"));
    assert_eq!(upstream_chats(&gw), 1);

    set_policy(&gw, "acme", "tenant", "", true).await;
    let (s, cache, first) = call(&gw, &gw.key, "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!((s, cache.as_str()), (200, "miss"));
    assert_eq!(upstream_chats(&gw), 2);
    let (s, cache, second) = call(&gw, &gw.key, "/v1/chat/completions", CHAT_REORDERED, &[]).await;
    assert_eq!((s, cache.as_str()), (200, "hit"));
    assert_eq!(second, first, "a hit returns the stored answer");
    assert_eq!(upstream_chats(&gw), 2, "a hit never contacts the upstream");

    // A streaming caller is served the same answer as a well-formed stream,
    // with the usage chunk it asked for.
    let stream_body = json!({"model": "gpt-test", "stream": true,
        "stream_options": {"include_usage": true}, "temperature": 0,
        "messages": [{"role": "user", "content": "cache me if you can"}]})
    .to_string();
    let (s, cache, sse) = call(&gw, &gw.key, "/v1/chat/completions", &stream_body, &[]).await;
    assert_eq!((s, cache.as_str()), (200, "hit"));
    assert_eq!(upstream_chats(&gw), 2);
    let data = sse_data(&sse);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        text,
        first["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(
        chunks.last().unwrap()["usage"]["completion_tokens"],
        first["usage"]["completion_tokens"]
    );

    // no-store: neither read nor written.
    let (_, cache, _) = call(
        &gw,
        &gw.key,
        "/v1/chat/completions",
        CHAT,
        &[("x-tollgate-cache", "no-store")],
    )
    .await;
    assert_eq!(cache, "bypass");
    let (_, cache, _) = call(
        &gw,
        &gw.key,
        "/v1/chat/completions",
        CHAT,
        &[("cache-control", "no-store")],
    )
    .await;
    assert_eq!(cache, "bypass");
    assert_eq!(upstream_chats(&gw), 4);
    // refresh: goes upstream and stores the fresh answer.
    let (_, cache, _) = call(
        &gw,
        &gw.key,
        "/v1/chat/completions",
        CHAT,
        &[("x-tollgate-cache", "refresh")],
    )
    .await;
    assert_eq!(cache, "miss");
    assert_eq!(upstream_chats(&gw), 5);
    let (_, cache, _) = call(&gw, &gw.key, "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!(cache, "hit");
    assert_eq!(upstream_chats(&gw), 5);

    // A different request is a miss.
    let other = CHAT.replace("cache me", "do not cache me");
    let (_, cache, _) = call(&gw, &gw.key, "/v1/chat/completions", &other, &[]).await;
    assert_eq!(cache, "miss");
    assert_eq!(upstream_chats(&gw), 6);

    // A key-level "off" overrides the tenant's "on".
    set_policy(&gw, "acme", "key", "backend", false).await;
    let (_, cache, _) = call(&gw, &gw.key, "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!(cache, "bypass");
    assert_eq!(upstream_chats(&gw), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_is_stored_and_replayed_in_both_protocols() {
    let gw = Gateway::start().await;
    set_policy(&gw, "acme", "model", "gpt-test", true).await;
    let body = |stream: bool| {
        json!({"model": "gpt-test", "stream": stream,
            "messages": [{"role": "user", "content": "stream then replay"}]})
        .to_string()
    };
    let (s, cache, live) = call(&gw, &gw.key, "/v1/chat/completions", &body(true), &[]).await;
    assert_eq!((s, cache.as_str()), (200, "miss"));
    assert_eq!(upstream_chats(&gw), 1);
    let live_text: String = sse_data(&live)
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    // Non-stream hit: the assembled completion.
    let (s, cache, complete) = call(&gw, &gw.key, "/v1/chat/completions", &body(false), &[]).await;
    assert_eq!((s, cache.as_str()), (200, "hit"));
    let v: Value = serde_json::from_str(&complete).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], live_text.as_str());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(upstream_chats(&gw), 1);

    // Anthropic Messages on the same model: its own entries (another
    // protocol), then a hit, replayed as Anthropic's event sequence.
    let msg = |stream: bool| {
        json!({"model": "gpt-test", "max_tokens": 50, "stream": stream,
            "messages": [{"role": "user", "content": "anthropic shaped"}]})
        .to_string()
    };
    let (s, cache, message) = call(&gw, &gw.key, "/v1/messages", &msg(false), &[]).await;
    assert_eq!((s, cache.as_str()), (200, "miss"), "{message}");
    assert_eq!(upstream_chats(&gw), 2);
    let (s, cache, replay) = call(&gw, &gw.key, "/v1/messages", &msg(true), &[]).await;
    assert_eq!((s, cache.as_str()), (200, "hit"));
    assert_eq!(upstream_chats(&gw), 2);
    let events: Vec<Value> = sse_data(&replay)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"message_start"));
    assert_eq!(types.last(), Some(&"message_stop"));
    let text: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    let message: Value = serde_json::from_str(&message).unwrap();
    assert_eq!(text, message["content"][0]["text"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_share_cached_answers() {
    let gw = Gateway::start().await;
    let mut admin = gw.admin().await;
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "globex".into(),
        })
        .await
        .unwrap();
    admin
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: "globex".into(),
            name: "up".into(),
            kind: "openai".into(),
            base_url: gw.mock.base_url.clone(),
            api_key: UPSTREAM_KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .models
        .add_model(pb::AddModelRequest {
            tenant: "globex".into(),
            name: "gpt-test".into(),
            provider: "up".into(),
            upstream_model: "mock-small".into(),
        })
        .await
        .unwrap();
    let globex_key = admin
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "globex".into(),
            name: "backend".into(),
            expires_at_ms: 0,
            providers: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    set_policy(&gw, "acme", "tenant", "", true).await;
    set_policy(&gw, "globex", "tenant", "", true).await;

    let (_, cache, _) = call(&gw, &gw.key, "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!(cache, "miss");
    let (_, cache, _) = call(&gw, &gw.key, "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!(cache, "hit");
    // The identical request of another tenant is not served acme's answer.
    let (s, cache, _) = call(&gw, &globex_key, "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!((s, cache.as_str()), (200, "miss"));
    assert_eq!(upstream_chats(&gw), 2);
    let (_, cache, _) = call(&gw, &globex_key, "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!(cache, "hit");
    assert_eq!(upstream_chats(&gw), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_truncated_streams_are_never_cached() {
    let gw = Gateway::start().await;
    let mut admin = gw.admin().await;
    for (name, upstream) in [("broken", "mock-error-400"), ("cut", "mock-drop-after-3")] {
        admin
            .models
            .add_model(pb::AddModelRequest {
                tenant: "acme".into(),
                name: name.into(),
                provider: "up".into(),
                upstream_model: upstream.into(),
            })
            .await
            .unwrap();
    }
    set_policy(&gw, "acme", "tenant", "", true).await;
    let broken = CHAT.replace("gpt-test", "broken");
    for _ in 0..2 {
        let (s, cache, _) = call(&gw, &gw.key, "/v1/chat/completions", &broken, &[]).await;
        assert_eq!((s, cache.as_str()), (400, "miss"));
    }
    assert_eq!(
        upstream_chats(&gw),
        2,
        "an error is never served from cache"
    );

    let cut = json!({"model": "cut", "stream": true, "temperature": 0,
        "messages": [{"role": "user", "content": "cache me if you can"}]})
    .to_string();
    let (s, cache, body) = call(&gw, &gw.key, "/v1/chat/completions", &cut, &[]).await;
    assert_eq!((s, cache.as_str()), (200, "miss"));
    assert!(!body.contains("[DONE]"), "{body}");
    let before = upstream_chats(&gw);
    // The same request again (non-stream shares the entry): not cached.
    let (_, cache, _) = call(
        &gw,
        &gw.key,
        "/v1/chat/completions",
        &cut.replace("\"stream\":true", "\"stream\":false"),
        &[],
    )
    .await;
    assert_eq!(cache, "miss");
    assert_eq!(upstream_chats(&gw), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_cacheable() {
    let gw = Gateway::start().await;
    set_policy(&gw, "acme", "tenant", "", true).await;
    let body = r#"{"model":"gpt-test","input":["alpha","beta"]}"#;
    let (s, cache, first) = call(&gw, &gw.key, "/v1/embeddings", body, &[]).await;
    assert_eq!((s, cache.as_str()), (200, "miss"), "{first}");
    let (s, cache, second) = call(&gw, &gw.key, "/v1/embeddings", body, &[]).await;
    assert_eq!((s, cache.as_str()), (200, "hit"));
    assert_eq!(first, second);
    let calls = gw
        .mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/embeddings"))
        .count();
    assert_eq!(calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_are_metered_as_cache_hits_with_the_policy_price() {
    let gw = Gateway::start().await;
    gw.admin()
        .await
        .cache
        .set_cache_policy(pb::SetCachePolicyRequest {
            tenant: "acme".into(),
            scope: Some(pb::CacheScope {
                kind: "tenant".into(),
                target: String::new(),
            }),
            settings: Some(pb::CacheSettings {
                enabled: true,
                hit_cost_bps: 2_500,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let version = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", version).await;
    let (_, cache, _) = call(&gw, &gw.key, "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!(cache, "miss");
    let (_, cache, _) = call(&gw, &gw.key, "/v1/chat/completions", CHAT, &[]).await;
    assert_eq!(cache, "hit");
    gw.wait_for_usage_calls(2).await;
    let records = gw
        .admin()
        .await
        .usage
        .list_usage_records(pb::ListUsageRecordsRequest {
            tenant: "acme".into(),
            limit: 10,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(records.len(), 2);
    let hits: Vec<_> = records.iter().filter(|r| r.cache_hit).collect();
    let misses: Vec<_> = records.iter().filter(|r| !r.cache_hit).collect();
    assert_eq!((hits.len(), misses.len()), (1, 1), "{records:?}");
    let (hit, miss) = (hits[0], misses[0]);
    assert_eq!(hit.cache_hit_cost_bps, 2_500);
    assert_eq!(hit.status_code, 200);
    assert_eq!(hit.key_id, gw.key_id);
    // Tokens saved: those of the cached answer.
    assert_eq!(hit.prompt_tokens, miss.prompt_tokens);
    assert_eq!(hit.completion_tokens, miss.completion_tokens);
    assert!(hit.completion_tokens > 0);
    // No upstream attempt behind a hit.
    assert!(hit.attempts.is_empty(), "{hit:?}");
    assert_eq!(upstream_chats(&gw), 1);
}
