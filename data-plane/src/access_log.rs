//! One access-log event per call (tracing target `access`; one JSON line
//! with `--log-format json`). Metadata only: never bodies, never keys.

use pingora_proxy::Session;

use crate::pipeline::CallContext;

pub fn log(session: &Session, ctx: &CallContext, latency_ms: i64) {
    let req = session.req_header();
    let usage = ctx.usage.unwrap_or_default();
    let (model, provider, upstream_model) = match &ctx.route {
        Some(r) => (
            r.public_name.as_str(),
            r.provider.name.as_str(),
            r.upstream_model.as_str(),
        ),
        None => ("", "", ""),
    };
    let (tenant_id, key_id) = match &ctx.key {
        Some(k) => (k.tenant_id.as_str(), k.id.as_str()),
        None => ("", ""),
    };
    // The trace id when the call is traced (otel), else empty.
    let trace_hex = ctx
        .trace
        .trace_id()
        .map(crate::telemetry::trace::trace_id_hex);
    let trace_id = trace_hex
        .as_ref()
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("");
    tracing::info!(
        target: "access",
        request_id = %ctx.request_id,
        method = %req.method,
        path = req.uri.path(),
        status = ctx.status,
        latency_ms,
        tenant_id,
        key_id,
        model,
        provider,
        upstream_model,
        attempts = ctx.attempts.len(),
        stream = ctx.stream,
        prompt_tokens = usage.prompt_tokens,
        completion_tokens = usage.completion_tokens,
        cache_read_tokens = usage.cache_read_tokens,
        reasoning_tokens = usage.reasoning_tokens,
        error_code = ctx.error_code.unwrap_or(""),
        guardrails = %ctx.guard.log_field(),
        bytes_sent = session.body_bytes_sent(),
        config_version = ctx.config.as_ref().map_or(0, |c| c.version),
        trace_id,
        "request"
    );
}
