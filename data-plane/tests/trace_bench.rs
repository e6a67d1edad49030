//! Micro-benchmark of OpenTelemetry tracing (issue 11: telemetry on vs off
//! ≤ 5 % of throughput). Measures what a call does with tracing on against
//! the same work with tracing off, on the request path (trace context,
//! one attempt span, the hand-off to the exporter queue) and on the
//! exporter task (OTLP spans built and encoded). Ignored in normal runs; run
//! with
//! `cargo nextest run -p tollgate-dp --release --test trace_bench --run-ignored only --no-capture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use serde_json::json;
use tollgate_dp::config::{compile, file::parse_yaml, Route};
use tollgate_dp::pipeline::CallContext;
use tollgate_dp::routing::Attempt;
use tollgate_dp::telemetry::trace::{FinishedCall, TraceSettings, Tracer};
use tollgate_dp::telemetry::trace_export::spans_of;

const YAML: &str = "tenants:\n  - name: t\n    providers:\n      - name: p\n        kind: openai\n        base_url: http://127.0.0.1:9/v1\n        api_key: k\n    models:\n      - name: m\n        provider: p\n    keys:\n      - name: k\n        key: tg-bench\n";

fn route() -> Arc<Route> {
    let snapshot = parse_yaml(YAML, 1, &|_| None).unwrap();
    let config = compile(&snapshot).unwrap();
    let tenant = config.tenants.values().next().unwrap();
    tenant.models.get("m").unwrap().clone()
}

/// One call's tracing hooks (or none), with the per-call work that is
/// there either way (context, one attempt record).
fn call(
    tracer: Option<&Tracer>,
    req: &pingora_http::RequestHeader,
    route: &Arc<Route>,
    body: &serde_json::Map<String, serde_json::Value>,
) {
    let mut ctx = CallContext::default();
    ctx.endpoint = "chat.completions";
    ctx.route = Some(route.clone());
    ctx.status = 200;
    if let Some(t) = tracer {
        ctx.trace = t.start_call(req, ctx.started);
    }
    ctx.trace.note_request(body);
    let tp = ctx.trace.begin_attempt(route);
    std::hint::black_box(&tp);
    ctx.trace.end_attempt();
    ctx.attempts.push(Attempt {
        provider_id: route.provider.id.clone(),
        provider_name: route.provider.name.clone(),
        upstream_model: route.upstream_model.clone(),
        status_code: 200,
        latency_ms: 1,
        error_code: "",
    });
    if let Some(t) = tracer {
        t.finish_call(&mut ctx);
    }
}

fn ns_per_call(
    tracer: Option<&Tracer>,
    req: &pingora_http::RequestHeader,
    route: &Arc<Route>,
    body: &serde_json::Map<String, serde_json::Value>,
    iters: u32,
) -> f64 {
    let started = Instant::now();
    for _ in 0..iters {
        call(tracer, req, route, body);
    }
    started.elapsed().as_nanos() as f64 / f64::from(iters)
}

#[test]
#[ignore = "micro-benchmark; run explicitly"]
fn tracing_cost_per_call() {
    let route = route();
    let body = json!({"model": "m", "max_tokens": 64, "temperature": 0.2,
                      "messages": [{"role": "user", "content": "hi"}]});
    let body = body.as_object().unwrap().clone();
    let mut req =
        pingora_http::RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
    req.insert_header(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .unwrap();
    let bare = pingora_http::RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
    let iters = 200_000;
    let settings = TraceSettings {
        queue: iters as usize + 1,
        ..TraceSettings::new("http://127.0.0.1:4317")
    };
    let unsampled_settings = TraceSettings {
        sample_ratio: 0.0,
        ..settings.clone()
    };
    let (tracer, mut rx) = Tracer::new(&settings);
    let (unsampled, _rx2) = Tracer::new(&unsampled_settings);

    // Warm up.
    ns_per_call(None, &bare, &route, &body, iters / 10);
    ns_per_call(Some(&tracer), &req, &route, &body, iters / 10);
    while rx.try_recv().is_ok() {}

    let off = ns_per_call(None, &bare, &route, &body, iters);
    let not_sampled = ns_per_call(Some(&unsampled), &bare, &route, &body, iters);
    let sampled = ns_per_call(Some(&tracer), &req, &route, &body, iters);

    // The exporter's share: OTLP spans built and encoded per call.
    let mut calls: Vec<FinishedCall> = Vec::new();
    while let Ok(c) = rx.try_recv() {
        calls.push(c);
    }
    assert_eq!(calls.len(), iters as usize, "no call dropped");
    let started = Instant::now();
    let mut bytes = 0usize;
    for c in &calls {
        for s in spans_of(c) {
            bytes += s.encoded_len();
            std::hint::black_box(s.encode_to_vec());
        }
    }
    let export = started.elapsed().as_nanos() as f64 / calls.len() as f64;
    println!(
        "tracing per call: off {off:.0} ns; on, not sampled +{:.0} ns; on, sampled +{:.0} ns on \
         the request path + {export:.0} ns on the exporter ({} bytes of OTLP per call: a call \
         span and one attempt span)",
        not_sampled - off,
        sampled - off,
        bytes / calls.len()
    );
}
