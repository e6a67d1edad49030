//! `POST /v1/messages` of the mock server: Anthropic's Messages API with its
//! auth (`x-api-key`), required `anthropic-version` header, error shape and
//! streaming events. Model names select failures as on the OpenAI routes;
//! `mock-overloaded-midstream` streams a few events, then an `error` event.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::anthropic;
use crate::server::{
    admit, behaviour, dialect_error, fnv, parse_body, sse_response, Behaviour, Dialect, Shared,
};

pub(crate) async fn messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body = match parse_body(&raw) {
        Ok(b) => b,
        Err(_) => {
            return dialect_error(
                Dialect::Anthropic,
                StatusCode::BAD_REQUEST,
                "The request body is not valid JSON.",
            )
        }
    };
    if let Err(r) = admit(&shared, Dialect::Anthropic, &method, &uri, &headers, &body) {
        return *r;
    }
    let bad = |m: &str| dialect_error(Dialect::Anthropic, StatusCode::BAD_REQUEST, m);
    if headers.get("anthropic-version").is_none() {
        return bad("anthropic-version: header is required");
    }
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return bad("model: Field required");
    };
    if !body.get("max_tokens").is_some_and(Value::is_u64) {
        return bad("max_tokens: Field required");
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return bad("messages: Field required");
    };
    // Anthropic refuses roles other than user/assistant in `messages`.
    if messages.iter().any(|m| {
        !matches!(
            m.get("role").and_then(Value::as_str),
            Some("user") | Some("assistant")
        )
    }) {
        return bad("messages: roles must be 'user' or 'assistant'");
    }
    if !shared.options.latency.is_zero() {
        tokio::time::sleep(shared.options.latency).await;
    }
    let mut drop_after = None;
    match behaviour(&model) {
        Behaviour::Error(status) => {
            let mut r = dialect_error(
                Dialect::Anthropic,
                status,
                &format!(
                    "The mock provider was asked to fail with {}",
                    status.as_u16()
                ),
            );
            if status == StatusCode::TOO_MANY_REQUESTS {
                r.headers_mut()
                    .insert("retry-after", http::HeaderValue::from_static("1"));
            }
            return r;
        }
        Behaviour::Slow(d) => tokio::time::sleep(d).await,
        Behaviour::DropAfter(n) => drop_after = Some(n),
        Behaviour::Normal => {}
    }
    let reply = anthropic::reply_for(&body);
    let id = format!("msg_mock{:016x}", fnv(&raw));
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        return axum::Json(anthropic::message_body(&id, &model, &reply)).into_response();
    }
    let mut events = anthropic::stream_events(&id, &model, &reply);
    if model == "mock-overloaded-midstream" {
        events.truncate(3);
        events.push(anthropic::event(
            "error",
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ));
    }
    sse_response(events, &shared.options, drop_after)
}

/// `POST /v1/messages/count_tokens`: the prompt tokens the reply would
/// report (cache included).
pub(crate) async fn count_tokens(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let Ok(mut body) = parse_body(&raw) else {
        return dialect_error(
            Dialect::Anthropic,
            StatusCode::BAD_REQUEST,
            "The request body is not valid JSON.",
        );
    };
    if let Err(r) = admit(&shared, Dialect::Anthropic, &method, &uri, &headers, &body) {
        return *r;
    }
    body["max_tokens"] = json!(1);
    let r = anthropic::reply_for(&body);
    axum::Json(json!({"input_tokens": r.input_tokens + r.cache_read + r.cache_write}))
        .into_response()
}
