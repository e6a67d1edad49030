//! Routing and resilience against real (scripted) mock upstreams: the exact
//! attempt sequence of retries and failovers, no duplicate bytes or usage
//! records after a failover, breakers opening and closing on a manual
//! clock, rejected credentials leaving the rotation, the caller's provider
//! preference, wildcard routes, and a caller leaving cancelling upstream work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{http, sse_data, TestDp, KEY};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tollgate_dp::metering::{UsageRecord, UsageSink};
use tollgate_dp::routing::ManualClock;
use tollgate_dp::UsageSinkHandle;
use tollgate_mock::{Fault, MockServer};

struct Collect(mpsc::UnboundedSender<UsageRecord>);

impl UsageSink for Collect {
    fn submit(&self, record: UsageRecord) {
        let _ = self.0.send(record);
    }
}

struct Setup {
    a: MockServer,
    b: MockServer,
    c: MockServer,
    dp: TestDp,
    usage: mpsc::UnboundedReceiver<UsageRecord>,
    clock: Arc<ManualClock>,
}

fn yaml(a: &str, b: &str, c: &str) -> String {
    format!(
        r#"
tenants:
  - name: acme
    id: tn_acme
    providers:
      - {{name: a, kind: openai, base_url: "{a}", api_key: sk-a-000000}}
      - {{name: b, kind: openai, base_url: "{b}", api_key: sk-b-000000}}
      - {{name: c, kind: openai, base_url: "{c}", api_key: sk-c-000000}}
    models:
      - name: chain
        upstream_model: mock-small
        targets:
          - {{provider: a, priority: 0}}
          - {{provider: b, priority: 1}}
          - {{provider: c, priority: 2}}
        routing:
          strategy: ordered
          max_attempts: 5
          retry_base_ms: 10
          retry_max_ms: 300
          ttft_timeout_ms: 800
          idle_timeout_ms: 800
          total_timeout_ms: 2000
          breaker_failures: 2
          breaker_cooldown_ms: 1000
      - name: once
        upstream_model: mock-small
        targets:
          - {{provider: a, priority: 0}}
          - {{provider: b, priority: 1}}
          - {{provider: c, priority: 2}}
        routing:
          strategy: ordered
          retries_per_target: 0
          ttft_timeout_ms: 800
          idle_timeout_ms: 800
      - name: "openai/*"
        targets:
          - {{provider: a}}
      - name: spread
        upstream_model: mock-small
        targets:
          - {{provider: a, weight: 1}}
          - {{provider: b, weight: 3}}
      - name: short
        provider: c
        upstream_model: mock-short
        routing: {{fallback_model: long}}
      - name: long
        provider: b
        upstream_model: mock-long
    keys:
      - name: backend
        key: {KEY}
"#
    )
}

async fn setup() -> Setup {
    let a = MockServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let b = MockServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let c = MockServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (tx, usage) = mpsc::unbounded_channel();
    let clock = Arc::new(ManualClock::new(1_000));
    let dp_clock = clock.clone();
    let dp = TestDp::start_yaml(&yaml(&a.base_url, &b.base_url, &c.base_url), move |cfg| {
        cfg.clock = Some(dp_clock);
        cfg.usage_sink = Some(UsageSinkHandle(Arc::new(Collect(tx))));
    });
    Setup {
        a,
        b,
        c,
        dp,
        usage,
        clock,
    }
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream,
           "messages": [{"role": "user", "content": "hello gateway"}]})
}

async fn post(s: &Setup, body: &Value, providers: Option<&str>) -> reqwest::Response {
    let mut req = http()
        .post(format!("{}/v1/chat/completions", s.dp.url))
        .bearer_auth(KEY)
        .json(body);
    if let Some(p) = providers {
        req = req.header("x-tollgate-providers", p);
    }
    req.send().await.unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

async fn next_usage(s: &mut Setup) -> UsageRecord {
    tokio::time::timeout(Duration::from_secs(5), s.usage.recv())
        .await
        .expect("a usage record")
        .expect("usage channel open")
}

/// (provider name, status, error code) of each attempt.
fn attempts(r: &UsageRecord) -> Vec<(String, u16, String)> {
    r.attempts
        .iter()
        .map(|a| {
            (
                a.provider_name.clone(),
                a.status_code,
                a.error_code.to_string(),
            )
        })
        .collect()
}

fn att(p: &str, status: u16, code: &str) -> (String, u16, String) {
    (p.to_string(), status, code.to_string())
}

const CLEAN_STREAM_EVENTS: usize = 14; // role + 11 words + finish + [DONE]

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_fails_over_with_the_exact_attempt_sequence() {
    let mut s = setup().await;
    s.a.script([Fault::status(500), Fault::status(503)]);
    s.b.script([Fault::retry_after(429, "0.05")]);
    let resp = post(&s, &chat("chain", false), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-provider"), "b");
    assert_eq!(header(&resp, "x-tollgate-model"), "mock-small");
    assert_eq!(header(&resp, "x-tollgate-attempts"), "4");
    let v: Value = resp.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Hello from mock-small"));
    assert_eq!(
        (s.a.chat_calls(), s.b.chat_calls(), s.c.chat_calls()),
        (2, 2, 0)
    );
    let r = next_usage(&mut s).await;
    assert_eq!(r.status_code, 200);
    assert_eq!(r.provider_id, "tn_acme/b");
    assert_eq!(
        attempts(&r),
        vec![
            att("a", 500, "upstream_status"),
            att("a", 503, "upstream_status"),
            att("b", 429, "upstream_status"),
            att("b", 200, ""),
        ]
    );
    assert_eq!(r.usage.prompt_tokens, 5);
    // Exactly one record per call.
    assert!(s.usage.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_error_is_not_retried_or_failed_over() {
    let mut s = setup().await;
    s.a.script([Fault::status(400)]);
    let resp = post(&s, &chat("chain", false), None).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(header(&resp, "x-tollgate-attempts"), "1");
    assert_eq!((s.a.chat_calls(), s.b.chat_calls()), (1, 0));
    let r = next_usage(&mut s).await;
    assert_eq!(attempts(&r), vec![att("a", 400, "upstream_status")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_fails_over_before_the_first_byte_without_duplicates() {
    let mut s = setup().await;
    // a never sends a head (TTFT 800 ms), b dies before its first event.
    s.a.script([Fault::HangBeforeHeaders]);
    s.b.script([Fault::CutMidStream { after: 0 }]);
    let resp = post(&s, &chat("once", true), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-provider"), "c");
    assert_eq!(header(&resp, "x-tollgate-attempts"), "3");
    let body = resp.text().await.unwrap();
    let data = sse_data(&body);
    assert_eq!(data.len(), CLEAN_STREAM_EVENTS, "{body}");
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
    assert_eq!(body.matches("\"role\":\"assistant\"").count(), 1, "{body}");
    assert!(!body.contains("\"error\""), "{body}");
    let r = next_usage(&mut s).await;
    assert_eq!(
        attempts(&r),
        vec![
            att("a", 0, "upstream_timeout"),
            att("b", 0, "upstream_error"),
            att("c", 200, ""),
        ]
    );
    assert_eq!(r.status_code, 200);
    assert_eq!(r.usage.completion_tokens, 11);
    assert!(s.usage.try_recv().is_err());
    // The hung request on a was abandoned, not left running.
    assert!(s.a.wait_abandoned(1, Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_after_the_first_byte_ends_with_an_error_event_and_no_failover() {
    let mut s = setup().await;
    s.a.script([Fault::CutMidStream { after: 3 }]);
    let resp = post(&s, &chat("chain", true), None).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let data = sse_data(&body);
    assert_eq!(data.len(), 4, "3 events then the error: {body}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_error");
    assert_eq!((s.a.chat_calls(), s.b.chat_calls()), (1, 0));
    let r = next_usage(&mut s).await;
    assert_eq!(r.status_code, 502);
    assert_eq!(attempts(&r), vec![att("a", 200, "")]);
    // Partial usage: the 2 words relayed after the role chunk.
    assert_eq!(r.usage.completion_tokens, 2);

    // Hanging mid-stream: the idle timeout (800 ms) ends it the same way.
    s.a.script([Fault::HangMidStream { after: 2 }]);
    let body = post(&s, &chat("chain", true), None)
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&body);
    assert_eq!(data.len(), 3, "{body}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout");
    assert_eq!(next_usage(&mut s).await.status_code, 504);
    // Both broke after their first byte: too late to fail over, but they
    // count against a's breaker (threshold 2), which is now open.
    let resp = post(&s, &chat("chain", false), None).await;
    assert_eq!(header(&resp, "x-tollgate-provider"), "b");
    assert_eq!(header(&resp, "x-tollgate-attempts"), "1");
    assert_eq!((s.a.chat_calls(), s.b.chat_calls()), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_skips_the_target_then_probes_and_closes() {
    let mut s = setup().await;
    s.a.set_default(Fault::status(500));
    // Two failures in a row open a's breaker (threshold 2); b answers.
    let resp = post(&s, &chat("chain", false), None).await;
    assert_eq!(header(&resp, "x-tollgate-provider"), "b");
    assert_eq!(s.a.chat_calls(), 2);
    next_usage(&mut s).await;
    // Open: a is skipped without a network attempt.
    for _ in 0..3 {
        let resp = post(&s, &chat("chain", false), None).await;
        assert_eq!(header(&resp, "x-tollgate-provider"), "b");
        assert_eq!(header(&resp, "x-tollgate-attempts"), "1");
        let r = next_usage(&mut s).await;
        assert_eq!(attempts(&r), vec![att("b", 200, "")]);
    }
    assert_eq!(s.a.chat_calls(), 2);
    // After the cool-down one probe goes to a; it fails: open again.
    s.clock.advance(1_000);
    let resp = post(&s, &chat("chain", false), None).await;
    assert_eq!(header(&resp, "x-tollgate-provider"), "b");
    let r = next_usage(&mut s).await;
    assert_eq!(
        attempts(&r),
        vec![att("a", 500, "upstream_status"), att("b", 200, "")]
    );
    assert_eq!(s.a.chat_calls(), 3);
    let resp = post(&s, &chat("chain", false), None).await;
    assert_eq!(header(&resp, "x-tollgate-provider"), "b");
    assert_eq!(s.a.chat_calls(), 3);
    next_usage(&mut s).await;
    // a recovers; the next probe succeeds and closes the breaker.
    s.a.set_default(Fault::Ok);
    s.clock.advance(1_000);
    for _ in 0..2 {
        let resp = post(&s, &chat("chain", false), None).await;
        assert_eq!(header(&resp, "x-tollgate-provider"), "a");
        next_usage(&mut s).await;
    }
    assert_eq!(s.a.chat_calls(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_breakers_open_answers_503_without_calling_anyone() {
    let mut s = setup().await;
    for m in [&s.a, &s.b, &s.c] {
        m.set_default(Fault::status(502));
    }
    // max_attempts 5: a, a, b, b, c — a and b open (2 in a row each).
    let resp = post(&s, &chat("chain", false), None).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(header(&resp, "x-tollgate-attempts"), "5");
    next_usage(&mut s).await;
    // c failed once; one more call opens it too (after which all are open).
    post(&s, &chat("chain", false), None).await;
    next_usage(&mut s).await;
    let calls = s.a.chat_calls() + s.b.chat_calls() + s.c.chat_calls();
    let resp = post(&s, &chat("chain", false), None).await;
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_target_available");
    assert_eq!(
        s.a.chat_calls() + s.b.chat_calls() + s.c.chat_calls(),
        calls
    );
    let r = next_usage(&mut s).await;
    assert_eq!(r.status_code, 503);
    assert!(r.attempts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credential_leaves_the_rotation() {
    let mut s = setup().await;
    s.a.set_default(Fault::status(401));
    let resp = post(&s, &chat("chain", false), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-provider"), "b");
    let r = next_usage(&mut s).await;
    assert_eq!(
        attempts(&r),
        vec![att("a", 401, "upstream_auth_error"), att("b", 200, "")]
    );
    // Out of rotation: never called again, even after any cool-down.
    s.clock.advance(60_000);
    for _ in 0..3 {
        let resp = post(&s, &chat("chain", false), None).await;
        assert_eq!(header(&resp, "x-tollgate-provider"), "b");
        next_usage(&mut s).await;
    }
    assert_eq!(s.a.chat_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_restricts_and_orders_providers() {
    let s = setup().await;
    let resp = post(&s, &chat("chain", false), Some("c, b")).await;
    assert_eq!(header(&resp, "x-tollgate-provider"), "c");
    s.c.script([Fault::status(500), Fault::status(500)]);
    let resp = post(&s, &chat("chain", false), Some("c,b")).await;
    assert_eq!(header(&resp, "x-tollgate-provider"), "b");
    assert_eq!(s.a.chat_calls(), 0);
    let resp = post(&s, &chat("chain", false), Some("zzz")).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-tollgate-providers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_route_sends_the_matched_suffix_upstream() {
    let s = setup().await;
    let resp = post(&s, &chat("openai/mock-large", false), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-model"), "mock-large");
    assert_eq!(s.a.requests()[0].body["model"], "mock-large");
    // The pattern itself is not a model, nor is a bare prefix.
    assert_eq!(post(&s, &chat("openai/", false), None).await.status(), 404);
    let models: Value = http()
        .get(format!("{}/v1/models", s.dp.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!models.to_string().contains("openai/*"), "{models}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_upstream_request() {
    let mut s = setup().await;
    // Before the head: the caller gives up while a hangs.
    s.a.script([Fault::HangBeforeHeaders]);
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let r = quick
        .post(format!("{}/v1/chat/completions", s.dp.url))
        .bearer_auth(KEY)
        .json(&chat("chain", false))
        .send()
        .await;
    assert!(r.is_err());
    assert!(s.a.wait_abandoned(1, Duration::from_secs(3)).await);
    let r = next_usage(&mut s).await;
    assert_eq!(r.error_code, "client_disconnected");
    assert_eq!(attempts(&r), vec![att("a", 0, "client_disconnected")]);
    assert_eq!(s.b.chat_calls(), 0, "no failover for a caller who left");

    // Mid-stream: a drips slowly; the caller reads the first bytes and leaves.
    s.a.script([Fault::SlowDrip {
        delay: Duration::from_millis(200),
    }]);
    let mut resp = post(&s, &chat("chain", true), None).await;
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    let second = resp.chunk().await.unwrap().unwrap();
    assert!(second.starts_with(b"data: "));
    drop(resp);
    assert!(s.a.wait_abandoned(2, Duration::from_secs(3)).await);
    let r = next_usage(&mut s).await;
    assert_eq!(r.error_code, "client_disconnected");
    // What was produced is metered: at least the word relayed before leaving.
    assert!(r.usage.completion_tokens >= 1, "{:?}", r.usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_length_refusal_falls_back_to_the_configured_model() {
    let mut s = setup().await;
    s.c.script([Fault::ErrorCode {
        status: 400,
        code: "context_length_exceeded".into(),
    }]);
    let resp = post(&s, &chat("short", false), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-tollgate-provider"), "b");
    assert_eq!(header(&resp, "x-tollgate-model"), "mock-long");
    assert_eq!(header(&resp, "x-tollgate-attempts"), "2");
    // The fallback got the caller's body with its own upstream model.
    let seen = s.b.requests();
    assert_eq!(seen[0].body["model"], "mock-long");
    assert_eq!(seen[0].body["messages"], chat("short", false)["messages"]);
    let r = next_usage(&mut s).await;
    assert_eq!(
        attempts(&r),
        vec![att("c", 400, "upstream_status"), att("b", 200, "")]
    );
    // Other 400s are answered as they are.
    s.c.script([Fault::status(400)]);
    let resp = post(&s, &chat("short", false), None).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(s.b.chat_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_extension_orders_providers_and_is_not_sent_upstream() {
    let s = setup().await;
    let mut body = chat("chain", false);
    body["tollgate"] = json!({"providers": ["c"]});
    let resp = post(&s, &body, None).await;
    assert_eq!(header(&resp, "x-tollgate-provider"), "c");
    assert!(s.c.requests()[0].body.get("tollgate").is_none());
    // The header wins over the body.
    let resp = post(&s, &body, Some("b")).await;
    assert_eq!(header(&resp, "x-tollgate-provider"), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_targets_share_real_calls_by_weight() {
    let s = setup().await;
    const CALLS: usize = 200;
    for _ in 0..CALLS {
        let resp = post(&s, &chat("spread", false), None).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-tollgate-attempts"), "1");
    }
    let (a, b) = (s.a.chat_calls(), s.b.chat_calls());
    assert_eq!(a + b, CALLS);
    // Expected 50 / 150; binomial sd ≈ 6, tolerance 4 sd.
    assert!((25..=75).contains(&a), "a={a} b={b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_beyond_the_cap_moves_on_and_reaches_the_caller() {
    let s = setup().await;
    // 30 s is beyond the route's 300 ms cap: no waiting on a, next target.
    s.a.script([Fault::retry_after(429, "30")]);
    let started = std::time::Instant::now();
    let resp = post(&s, &chat("chain", false), None).await;
    assert_eq!(header(&resp, "x-tollgate-provider"), "b");
    assert_eq!(header(&resp, "x-tollgate-attempts"), "2");
    assert!(started.elapsed() < Duration::from_secs(5));
    // When the throttled answer is the last one, the caller gets the
    // provider's Retry-After with it.
    for m in [&s.a, &s.b, &s.c] {
        m.set_default(Fault::retry_after(429, "30"));
    }
    let resp = post(&s, &chat("chain", false), None).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after"), "30");
    assert_eq!(header(&resp, "x-tollgate-attempts"), "3");
}
