//! The OTLP/gRPC trace exporter: a background task drains the tracer's
//! bounded queue, turns finished calls into OTLP spans (GenAI semantic
//! conventions, see `docs/observability.md`), and exports them in batches
//! with the collector's `TraceService/Export`. Nothing here runs on a proxy
//! thread; a failed export is counted and dropped (traces are best effort,
//! usage records are the source of truth).

use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prometheus::IntCounter;
use tokio::sync::mpsc;

use super::trace::{FinishedAttempt, FinishedCall, TraceSettings};
use crate::cache::CacheStatus;
use crate::config::{ProviderKind, Route};

/// `tollgate_trace_spans_total` by result.
struct TraceMetrics {
    exported: IntCounter,
    dropped: IntCounter,
    failed: IntCounter,
}

static TRACE_METRICS: LazyLock<Option<TraceMetrics>> = LazyLock::new(|| {
    let v = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "tollgate_trace_spans_total",
            "Trace spans by result: exported, dropped (the export queue was full), failed (the collector did not take them).",
        ),
        &["result"],
    )
    .ok()?;
    if let Err(e) = super::metrics().registry.register(Box::new(v.clone())) {
        tracing::error!(error = %e, "trace metrics not registered");
    }
    Some(TraceMetrics {
        exported: v.with_label_values(&["exported"]),
        dropped: v.with_label_values(&["dropped"]),
        failed: v.with_label_values(&["failed"]),
    })
});

/// Registers the trace counters (at start, so they show as 0).
pub fn register_metrics() {
    LazyLock::force(&TRACE_METRICS);
}

/// Spans dropped because the export queue was full.
pub fn count_dropped(spans: usize) {
    if let Some(m) = TRACE_METRICS.as_ref() {
        m.dropped.inc_by(spans as u64);
    }
}

fn count_exported(exported: usize, failed: usize) {
    if let Some(m) = TRACE_METRICS.as_ref() {
        m.exported.inc_by(exported as u64);
        m.failed.inc_by(failed as u64);
    }
}

fn kv(key: &'static str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &'static str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn i(key: &'static str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn f(key: &'static str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

fn b(key: &'static str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}

/// `gen_ai.operation.name` of an endpoint.
pub fn operation_name(endpoint: &str) -> &'static str {
    match endpoint {
        "embeddings" => "embeddings",
        "messages.count_tokens" => "count_tokens",
        _ => "chat",
    }
}

/// `gen_ai.provider.name` of a provider kind (the conventions' well-known
/// values; the built-in mock is `tollgate.mock`).
pub fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "openai",
        ProviderKind::Azure => "azure.ai.openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::Mock => "tollgate.mock",
    }
}

fn http_route(endpoint: &str) -> &'static str {
    match endpoint {
        "chat.completions" => "/v1/chat/completions",
        "messages" => "/v1/messages",
        "messages.count_tokens" => "/v1/messages/count_tokens",
        "responses" => "/v1/responses",
        "embeddings" => "/v1/embeddings",
        _ => "",
    }
}

/// Host and port of a provider's base URL (never its path or query).
fn server_address(route: &Route) -> Option<(String, i64)> {
    let url = reqwest::Url::parse(&route.provider.base_url).ok()?;
    let host = url.host_str()?.to_string();
    let port = url.port_or_known_default().map_or(0, i64::from);
    Some((host, port))
}

fn error_status(message: &str) -> Option<Status> {
    Some(Status {
        message: message.to_string(),
        code: status::StatusCode::Error as i32,
    })
}

fn call_span(call: &FinishedCall) -> Span {
    let op = operation_name(call.endpoint);
    let request_model = call
        .request
        .model
        .clone()
        .or_else(|| call.route.as_ref().map(|r| r.public_name.clone()))
        .unwrap_or_default();
    let mut a = vec![
        s("gen_ai.operation.name", op),
        s("gen_ai.request.model", request_model.clone()),
        s("http.request.method", "POST"),
        s("http.route", http_route(call.endpoint)),
        i("http.response.status_code", i64::from(call.status)),
        s("tollgate.request_id", call.request_id.clone()),
        b("tollgate.stream", call.stream),
        i("tollgate.attempts", call.attempts.len() as i64),
    ];
    if let Some(r) = &call.route {
        a.push(s("gen_ai.provider.name", provider_name(r.provider.kind)));
        a.push(s("tollgate.provider", r.provider.name.clone()));
        if (200..400).contains(&call.status) {
            a.push(s("gen_ai.response.model", r.upstream_model.clone()));
        }
    }
    if let Some(k) = &call.key {
        a.push(s("tollgate.tenant", k.tenant_id.clone()));
    }
    if let Some(n) = call.request.max_tokens {
        a.push(i("gen_ai.request.max_tokens", n));
    }
    if let Some(t) = call.request.temperature {
        a.push(f("gen_ai.request.temperature", t));
    }
    if let Some(p) = call.request.top_p {
        a.push(f("gen_ai.request.top_p", p));
    }
    if let Some(u) = &call.usage {
        a.push(i("gen_ai.usage.input_tokens", u.prompt_tokens));
        a.push(i("gen_ai.usage.output_tokens", u.completion_tokens));
        if u.cache_read_tokens > 0 {
            a.push(i(
                "gen_ai.usage.cache_read.input_tokens",
                u.cache_read_tokens,
            ));
        }
        if u.cache_write_tokens > 0 {
            a.push(i(
                "gen_ai.usage.cache_creation.input_tokens",
                u.cache_write_tokens,
            ));
        }
    }
    if let Some(c) = call.cost_micros {
        a.push(i("tollgate.cost_micros", c));
    }
    if let Some(c) = call.cache {
        let v = match c {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        };
        a.push(s("tollgate.cache", v));
    }
    if let Some(t) = call.ttft_ms {
        a.push(i("tollgate.time_to_first_token_ms", t));
    }
    let failed = call.status >= 500 || call.status == 0;
    if let Some(code) = call.error_code {
        a.push(s("error.type", code));
    } else if failed {
        a.push(s("error.type", "_OTHER"));
    }
    let name = if request_model.is_empty() {
        op.to_string()
    } else {
        format!("{op} {request_model}")
    };
    Span {
        trace_id: call.trace_id.to_vec(),
        span_id: call.span_id.to_vec(),
        parent_span_id: call.parent.map(|p| p.to_vec()).unwrap_or_default(),
        // Sampled; the parent (if any) is remote.
        flags: 0x1 | 0x100 | if call.parent.is_some() { 0x200 } else { 0 },
        name,
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: call.start_unix_ns,
        end_time_unix_nano: call.end_unix_ns,
        attributes: a,
        status: if failed {
            error_status(call.error_code.unwrap_or("error"))
        } else {
            None
        },
        ..Default::default()
    }
}

fn attempt_span(call: &FinishedCall, n: usize, at: &FinishedAttempt) -> Span {
    let op = operation_name(call.endpoint);
    let route = &at.route;
    let mut a = vec![
        s("gen_ai.operation.name", op),
        s("gen_ai.provider.name", provider_name(route.provider.kind)),
        s("gen_ai.request.model", route.upstream_model.clone()),
        s("tollgate.provider", route.provider.name.clone()),
        i("tollgate.attempt", n as i64),
    ];
    if let Some((host, port)) = server_address(route) {
        a.push(s("server.address", host));
        a.push(i("server.port", port));
    }
    if at.status != 0 {
        a.push(i("http.response.status_code", i64::from(at.status)));
    }
    let failed = !at.error_code.is_empty();
    if failed {
        a.push(s("error.type", at.error_code));
    } else {
        a.push(s("gen_ai.response.model", route.upstream_model.clone()));
    }
    Span {
        trace_id: call.trace_id.to_vec(),
        span_id: at.span_id.to_vec(),
        parent_span_id: call.span_id.to_vec(),
        flags: 0x1 | 0x100,
        name: format!("{op} {}", route.upstream_model),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: at.start_unix_ns,
        end_time_unix_nano: at.end_unix_ns,
        attributes: a,
        status: if failed {
            error_status(at.error_code)
        } else {
            None
        },
        ..Default::default()
    }
}

/// The spans of one call: the call's, then one per attempt.
pub fn spans_of(call: &FinishedCall) -> Vec<Span> {
    let mut out = Vec::with_capacity(call.span_count());
    out.push(call_span(call));
    for (n, at) in call.attempts.iter().enumerate() {
        out.push(attempt_span(call, n + 1, at));
    }
    out
}

/// The resource every batch names.
pub fn resource(settings: &TraceSettings, node_id: &str) -> Resource {
    let mut attributes = vec![
        s("service.name", settings.service_name.clone()),
        s("service.version", env!("CARGO_PKG_VERSION")),
        s("service.instance.id", node_id.to_string()),
        s("telemetry.sdk.name", "tollgate"),
        s("telemetry.sdk.language", "rust"),
    ];
    for (k, v) in &settings.resource_attributes {
        if k == "service.name" {
            continue;
        }
        attributes.push(KeyValue {
            key: k.clone(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.clone())),
            }),
            ..Default::default()
        });
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

fn request(resource: &Resource, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tollgate-dp".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Exports one batch; failures are counted and logged (at most one warning
/// a minute).
async fn export(
    client: &mut TraceServiceClient<tonic::transport::Channel>,
    resource: &Resource,
    spans: Vec<Span>,
    last_warning: &mut Option<tokio::time::Instant>,
) {
    let n = spans.len();
    if n == 0 {
        return;
    }
    let req = request(resource, spans);
    let result = tokio::time::timeout(Duration::from_secs(10), client.export(req)).await;
    let error = match result {
        Ok(Ok(resp)) => {
            let rejected = resp
                .into_inner()
                .partial_success
                .map_or(0, |p| usize::try_from(p.rejected_spans).unwrap_or(0))
                .min(n);
            count_exported(n - rejected, rejected);
            return;
        }
        Ok(Err(status)) => status.message().to_string(),
        Err(_) => "timed out".to_string(),
    };
    count_exported(0, n);
    let now = tokio::time::Instant::now();
    if last_warning.is_none_or(|t| now.duration_since(t) > Duration::from_secs(60)) {
        *last_warning = Some(now);
        tracing::warn!(spans = n, error = %error, "trace export failed; spans dropped");
    }
}

/// The exporter task: batches of up to `settings.batch` spans, sent when
/// full or `settings.batch_delay` after the first span of the batch; on
/// shutdown, what is queued is exported once.
pub async fn run(
    mut rx: mpsc::Receiver<FinishedCall>,
    settings: TraceSettings,
    node_id: String,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let channel = match tonic::transport::Endpoint::from_shared(settings.endpoint.clone()) {
        Ok(e) => e
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_lazy(),
        Err(e) => {
            tracing::error!(endpoint = %settings.endpoint, error = %e, "invalid OTLP endpoint: traces are not exported");
            return;
        }
    };
    let mut client = TraceServiceClient::new(channel);
    let resource = resource(&settings, &node_id);
    let mut batch: Vec<Span> = Vec::with_capacity(settings.batch);
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut last_warning = None;
    loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            call = rx.recv() => {
                let Some(call) = call else { break };
                if batch.is_empty() {
                    deadline = Some(tokio::time::Instant::now() + settings.batch_delay);
                }
                batch.extend(spans_of(&call));
                if batch.len() >= settings.batch {
                    deadline = None;
                    export(&mut client, &resource, std::mem::take(&mut batch), &mut last_warning).await;
                }
            }
            () = sleep => {
                deadline = None;
                export(&mut client, &resource, std::mem::take(&mut batch), &mut last_warning).await;
            }
            () = crate::sync::shutdown_requested(&mut shutdown) => break,
        }
    }
    // Shutting down: what is queued goes out once.
    while let Ok(call) = rx.try_recv() {
        batch.extend(spans_of(&call));
    }
    export(&mut client, &resource, batch, &mut last_warning).await;
}
