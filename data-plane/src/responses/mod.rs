//! The OpenAI Responses API (`POST /v1/responses`) for providers that only
//! have chat: the request is translated to chat ([`request`]), the answer
//! back to a `response` object ([`to_response`]) or to the Responses event
//! stream ([`stream`]). OpenAI and Azure targets are passed through instead
//! (see `pipeline/responses.rs`).

pub mod request;
pub mod stream;

use serde_json::{json, Value};
use tollgate_core::usage::Usage;

/// The Responses `usage` object of a normalised usage.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens(),
    })
}

/// The normalised usage of a Responses `usage` object (passthrough
/// metering).
pub fn usage_from(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    let n = |p: &str| u.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    Some(Usage {
        prompt_tokens: n("/input_tokens"),
        completion_tokens: n("/output_tokens"),
        cache_read_tokens: n("/input_tokens_details/cached_tokens"),
        cache_write_tokens: 0,
        reasoning_tokens: n("/output_tokens_details/reasoning_tokens"),
    })
}

/// The `response` object's fields that echo the request.
pub fn echo(request: &serde_json::Map<String, Value>, model: &str) -> Value {
    json!({
        "object": "response",
        "model": model,
        "instructions": request.get("instructions").cloned().unwrap_or(Value::Null),
        "tools": request.get("tools").cloned().unwrap_or_else(|| json!([])),
        "tool_choice": request.get("tool_choice").cloned().unwrap_or_else(|| json!("auto")),
        "parallel_tool_calls": request.get("parallel_tool_calls").cloned().unwrap_or(Value::Bool(true)),
        "temperature": request.get("temperature").cloned().unwrap_or(Value::Null),
        "top_p": request.get("top_p").cloned().unwrap_or(Value::Null),
        "max_output_tokens": request.get("max_output_tokens").cloned().unwrap_or(Value::Null),
        "text": request.get("text").cloned().unwrap_or_else(|| json!({"format": {"type": "text"}})),
        "metadata": request.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "error": null,
        "incomplete_details": null,
        "store": false,
    })
}

/// Translates a complete `chat.completion` into a `response` object.
pub fn to_response(
    completion: &Value,
    usage: &Usage,
    request: &serde_json::Map<String, Value>,
    model: &str,
    created: i64,
) -> Value {
    let id = completion
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("chat");
    let choice = completion
        .pointer("/choices/0")
        .cloned()
        .unwrap_or_default();
    let msg = choice.get("message").cloned().unwrap_or_default();
    let mut output = Vec::new();
    if let Some(r) = msg
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        output.push(json!({"type": "reasoning", "id": format!("rs_{id}"),
            "summary": [{"type": "summary_text", "text": r}]}));
    }
    if let Some(t) = msg
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        output.push(
            json!({"type": "message", "id": format!("msg_{id}"), "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": t, "annotations": []}]}),
        );
    }
    for (i, c) in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        output.push(
            json!({"type": "function_call", "id": format!("fc_{id}_{i}"),
            "call_id": c.get("id").cloned().unwrap_or_default(),
            "name": c.pointer("/function/name").cloned().unwrap_or_default(),
            "arguments": c.pointer("/function/arguments").cloned().unwrap_or_else(|| json!("{}")),
            "status": "completed"}),
        );
    }
    let mut r = echo(request, model);
    r["id"] = json!(format!("resp_{id}"));
    r["created_at"] = json!(created);
    r["output"] = Value::Array(output);
    r["usage"] = usage_json(usage);
    if choice.get("finish_reason").and_then(Value::as_str) == Some("length") {
        r["status"] = json!("incomplete");
        r["incomplete_details"] = json!({"reason": "max_output_tokens"});
    } else if choice.get("finish_reason").and_then(Value::as_str) == Some("content_filter") {
        r["status"] = json!("incomplete");
        r["incomplete_details"] = json!({"reason": "content_filter"});
    } else {
        r["status"] = json!("completed");
    }
    r
}
