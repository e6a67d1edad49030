//! Writing responses downstream. Every response carries `x-request-id`;
//! proxied calls also carry `x-tollgate-provider`, `x-tollgate-model` and
//! `x-tollgate-attempts`.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::pipeline::CallContext;

pub const CONTENT_TYPE_JSON: &str = "application/json";
pub const CONTENT_TYPE_SSE: &str = "text/event-stream; charset=utf-8";

/// A response head with the gateway's headers.
pub fn head(
    status: u16,
    ctx: &CallContext,
    content_type: &'static str,
    content_length: Option<usize>,
) -> pingora_core::Result<Box<ResponseHeader>> {
    // Sized for the real count (a rate-limited call has ~13 headers), so
    // the map never grows; no case map: every name we write is lower-case
    // or a standard one, which Pingora titles the same way either way.
    let mut h = ResponseHeader::build_no_case(status, Some(16))?;
    h.insert_header(http::header::CONTENT_TYPE, content_type)?;
    h.insert_header("x-request-id", ctx.request_id.as_str())?;
    // Only once an upstream was tried: the provider and model of the last
    // attempt, and how many there were.
    // Routed calls record their attempts; single-target routes (messages,
    // responses, embeddings) call the provider of `ctx.route` directly.
    if let Some(route) = &ctx.route {
        if !ctx.attempts.is_empty() || status < 400 {
            h.insert_header("x-tollgate-provider", route.provider.name.as_str())?;
            h.insert_header("x-tollgate-model", route.upstream_model.as_str())?;
        }
        if !ctx.attempts.is_empty() {
            h.insert_header("x-tollgate-attempts", ctx.attempts.len())?;
        }
        // Billing: a complete answer's cost, as charged in its usage record.
        if content_length.is_some() && status < 400 {
            let cost = route
                .billing
                .map_or(0, |b| b.cost(&ctx.usage.unwrap_or_default()));
            h.insert_header("x-tollgate-cost-micros", cost)?;
        }
    }
    // Rate limits of the key (docs/rate-limits.md), success or not.
    if let Some(limits) = &ctx.rate_limit.headers {
        limits.write_to(&mut h)?;
    }
    if let Some(cache) = ctx.cache {
        h.insert_header(crate::cache::control::CACHE_HEADER, cache.as_str())?;
    }
    match content_length {
        Some(n) => h.insert_header(http::header::CONTENT_LENGTH, n)?,
        None => {
            h.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
            // Without a length, chunked framing is what lets the body end
            // without closing the caller's (keep-alive) connection.
            h.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
    }
    Ok(Box::new(h))
}

/// Writes a complete JSON response.
pub async fn write_json(
    session: &mut Session,
    ctx: &mut CallContext,
    status: u16,
    body: Bytes,
) -> pingora_core::Result<()> {
    let h = head(status, ctx, CONTENT_TYPE_JSON, Some(body.len()))?;
    ctx.status = status;
    session.write_response_header(h, false).await?;
    session.write_response_body(Some(body), true).await
}

/// Writes a failure as its status and a body in the caller's protocol, with the
/// provider's `Retry-After` when it sent one.
pub async fn write_error(
    session: &mut Session,
    ctx: &mut CallContext,
    e: &crate::http::errors::GatewayError,
) -> pingora_core::Result<()> {
    // In the caller's protocol (OpenAI or Anthropic shape).
    let (status, body) = e.render(ctx.api);
    let mut h = head(status, ctx, CONTENT_TYPE_JSON, Some(body.len()))?;
    if let Some(secs) = e.retry_after_secs() {
        h.insert_header(http::header::RETRY_AFTER, secs)?;
    }
    ctx.status = status;
    session.write_response_header(h, false).await?;
    session.write_response_body(Some(body), true).await
}
