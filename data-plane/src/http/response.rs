//! Writing responses downstream. Every response carries `x-request-id`;
//! proxied calls also carry `x-tollgate-provider`, `x-tollgate-model` and
//! `x-tollgate-attempts`.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora_core::{ErrorType::InvalidHTTPHeader, OrErr};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use crate::pipeline::CallContext;

pub const CONTENT_TYPE_JSON: &str = "application/json";
pub const CONTENT_TYPE_SSE: &str = "text/event-stream; charset=utf-8";

/// `x-request-id`, on every response.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_TOLLGATE_PROVIDER: HeaderName = HeaderName::from_static("x-tollgate-provider");
const X_TOLLGATE_MODEL: HeaderName = HeaderName::from_static("x-tollgate-model");
const X_TOLLGATE_ATTEMPTS: HeaderName = HeaderName::from_static("x-tollgate-attempts");
const X_TOLLGATE_COST_MICROS: HeaderName = HeaderName::from_static("x-tollgate-cost-micros");

/// A response head with the gateway's headers.
///
/// Built as `http` parts with `const` header names and handed to Pingora
/// whole: its `insert_header` re-parses every name into a `HeaderName`
/// (about 1–2k instructions a header, a dozen headers on a rate-limited
/// call; docs/rate-limits.md, Cost). The head has no case map: every name we
/// write is lower-case or a standard one, which Pingora titles the same way
/// either way.
pub fn head(
    status: u16,
    ctx: &CallContext,
    content_type: &'static str,
    content_length: Option<usize>,
) -> pingora_core::Result<Box<ResponseHeader>> {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status =
        http::StatusCode::from_u16(status).or_err(InvalidHTTPHeader, "invalid response status")?;
    // Sized for the real count (a rate-limited call has ~13 headers), so
    // the map never grows.
    let mut h = HeaderMap::with_capacity(16);
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(X_REQUEST_ID, value(ctx.request_id.as_str())?);
    // Only once an upstream was tried: the provider and model of the last
    // attempt, and how many there were.
    // Routed calls record their attempts; single-target routes (messages,
    // responses, embeddings) call the provider of `ctx.route` directly.
    if let Some(route) = &ctx.route {
        if !ctx.attempts.is_empty() || status < 400 {
            h.insert(X_TOLLGATE_PROVIDER, value(route.provider.name.as_str())?);
            h.insert(X_TOLLGATE_MODEL, value(route.upstream_model.as_str())?);
        }
        if !ctx.attempts.is_empty() {
            h.insert(X_TOLLGATE_ATTEMPTS, HeaderValue::from(ctx.attempts.len()));
        }
        // Billing: a complete answer's cost, as charged in its usage record.
        if content_length.is_some() && status < 400 {
            let cost = route
                .billing
                .map_or(0, |b| b.cost(&ctx.usage.unwrap_or_default()));
            h.insert(X_TOLLGATE_COST_MICROS, HeaderValue::from(cost));
        }
    }
    // Rate limits of the key (docs/rate-limits.md), success or not.
    if let Some(limits) = &ctx.rate_limit.headers {
        limits.write_to(&mut h);
    }
    if let Some(cache) = ctx.cache {
        h.insert(
            crate::cache::control::CACHE_HEADER_NAME,
            HeaderValue::from_static(cache.as_str()),
        );
    }
    match content_length {
        Some(n) => {
            h.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            // Without a length, chunked framing is what lets the body end
            // without closing the caller's (keep-alive) connection.
            h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
    }
    parts.headers = h;
    Ok(Box::new(ResponseHeader::from(parts)))
}

/// A header value from text we hold (ids, provider and model names).
fn value(text: &str) -> pingora_core::Result<HeaderValue> {
    HeaderValue::from_str(text).or_err(InvalidHTTPHeader, "invalid header value")
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
