//! `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse` (also under `/v1/models/…`) of the mock
//! server, with Gemini's auth (`x-goog-api-key` or `?key=`) and error shape.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::gemini;
use crate::server::{
    admit, behaviour, dialect_error, fnv, parse_body, sse_response, Behaviour, Dialect, Shared,
};

pub(crate) async fn model_action(
    State(shared): State<Arc<Shared>>,
    Path(model_action): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let Ok(body) = parse_body(&raw) else {
        return dialect_error(
            Dialect::Gemini,
            StatusCode::BAD_REQUEST,
            "Invalid JSON payload received.",
        );
    };
    if let Err(r) = admit(&shared, Dialect::Gemini, &method, &uri, &headers, &body) {
        return *r;
    }
    let Some((model, action)) = model_action.split_once(':') else {
        return dialect_error(Dialect::Gemini, StatusCode::NOT_FOUND, "Unknown method.");
    };
    if action == "batchEmbedContents" {
        return batch_embed(&body);
    }
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return dialect_error(Dialect::Gemini, StatusCode::NOT_FOUND, "Unknown method."),
    };
    if stream
        && !uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"))
    {
        return dialect_error(
            Dialect::Gemini,
            StatusCode::BAD_REQUEST,
            "The mock only streams with alt=sse.",
        );
    }
    if !body
        .get("contents")
        .is_some_and(serde_json::Value::is_array)
    {
        return dialect_error(
            Dialect::Gemini,
            StatusCode::BAD_REQUEST,
            "* GenerateContentRequest.contents: contents is not specified",
        );
    }
    if !shared.options.latency.is_zero() {
        tokio::time::sleep(shared.options.latency).await;
    }
    let mut drop_after = None;
    match behaviour(model) {
        Behaviour::Error(status) => {
            return dialect_error(
                Dialect::Gemini,
                status,
                &format!(
                    "The mock provider was asked to fail with {}",
                    status.as_u16()
                ),
            )
        }
        Behaviour::Slow(d) => tokio::time::sleep(d).await,
        Behaviour::DropAfter(n) => drop_after = Some(n),
        Behaviour::Normal => {}
    }
    let reply = gemini::reply_for(model, &body);
    let id = format!("mock{:016x}", fnv(&raw));
    if !stream {
        return axum::Json(gemini::response_body(model, &id, &reply)).into_response();
    }
    sse_response(
        gemini::stream_events(model, &id, &reply),
        &shared.options,
        drop_after,
    )
}

/// `batchEmbedContents`: the mock's deterministic vectors, one per request
/// (8 dimensions unless `outputDimensionality` says otherwise).
fn batch_embed(body: &serde_json::Value) -> Response {
    let Some(requests) = body.get("requests").and_then(serde_json::Value::as_array) else {
        return dialect_error(
            Dialect::Gemini,
            StatusCode::BAD_REQUEST,
            "* BatchEmbedContentsRequest.requests: requests is not specified",
        );
    };
    let embeddings: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| {
            let text: Vec<&str> = r
                .pointer("/content/parts")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("text").and_then(serde_json::Value::as_str))
                .collect();
            let dims = r
                .get("outputDimensionality")
                .and_then(serde_json::Value::as_u64)
                .and_then(|d| usize::try_from(d).ok())
                .unwrap_or(8)
                .min(4096);
            serde_json::json!({"values": crate::openai::embedding_for(&text.join(" "), dims)})
        })
        .collect();
    axum::Json(serde_json::json!({"embeddings": embeddings})).into_response()
}
