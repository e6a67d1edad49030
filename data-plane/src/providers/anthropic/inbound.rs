//! The inbound direction of `POST /v1/messages` for targets that are not
//! Anthropic: an Anthropic Messages request → an OpenAI chat request, and
//! the OpenAI `chat.completion` answer → an Anthropic `message`.

use serde_json::{json, Map, Value};
use tollgate_core::usage::Usage;

use crate::http::errors::GatewayError;

fn invalid(message: impl Into<String>, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param),
    }
}

/// Checks what the gateway itself needs of a Messages request: the model
/// name (returned), `messages` and `max_tokens`.
pub fn validate(body: &Map<String, Value>) -> Result<String, GatewayError> {
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(invalid(
                "model: Field required (a non-empty string).",
                "model",
            ))
        }
    };
    match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {}
        Some(Value::Array(_)) => {
            return Err(invalid(
                "messages: at least one message is required.",
                "messages",
            ))
        }
        _ => return Err(invalid("messages: Field required (an array).", "messages")),
    }
    if !body.get("max_tokens").is_some_and(Value::is_u64) {
        return Err(invalid(
            "max_tokens: Field required (a positive integer).",
            "max_tokens",
        ));
    }
    Ok(model)
}

/// An Anthropic image block as an OpenAI `image_url` part.
fn image_part(block: &Value) -> Result<Value, GatewayError> {
    let source = block.get("source").cloned().unwrap_or_default();
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("image/png"),
            source.get("data").and_then(Value::as_str).unwrap_or("")
        ),
        Some("url") => source
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => {
            return Err(invalid(
                "Only base64 and url image sources can be sent to this model's provider.",
                "messages",
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn block_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn unsupported_block(kind: &str) -> GatewayError {
    invalid(
        format!("Content blocks of type '{kind}' cannot be translated for this model's provider."),
        "messages",
    )
}

/// Appends the OpenAI messages of one user turn: tool results first (as
/// `tool` messages), then the rest of the content.
fn user_turn(content: Option<&Value>, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let blocks = match content {
        Some(Value::String(s)) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Some(Value::Array(b)) => b,
        _ => {
            return Err(invalid(
                "messages: content must be a string or an array.",
                "messages",
            ))
        }
    };
    let mut parts = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str).unwrap_or_default() {
            "text" => parts
                .push(json!({"type": "text", "text": b.get("text").cloned().unwrap_or_default()})),
            "image" => parts.push(image_part(b)?),
            "tool_result" => {
                let mut text = block_text(b.get("content"));
                if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                    text = format!("Error: {text}");
                }
                out.push(json!({"role": "tool",
                    "tool_call_id": b.get("tool_use_id").cloned().unwrap_or_default(),
                    "content": text}));
            }
            other => return Err(unsupported_block(other)),
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn assistant_turn(content: Option<&Value>, out: &mut Vec<Value>) -> Result<(), GatewayError> {
    let blocks = match content {
        Some(Value::String(s)) => {
            out.push(json!({"role": "assistant", "content": s}));
            return Ok(());
        }
        Some(Value::Array(b)) => b,
        _ => {
            return Err(invalid(
                "messages: content must be a string or an array.",
                "messages",
            ))
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str).unwrap_or_default() {
            "text" => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            "tool_use" => calls.push(json!({"id": b.get("id").cloned().unwrap_or_default(),
                "type": "function",
                "function": {"name": b.get("name").cloned().unwrap_or_default(),
                    "arguments": b.get("input").cloned().unwrap_or_else(|| json!({})).to_string()}})),
            // Earlier reasoning is the other provider's business only.
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported_block(other)),
        }
    }
    let mut m = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    out.push(m);
    Ok(())
}

/// Translates a Messages request (model already the upstream name) into an
/// OpenAI chat request.
pub fn to_chat(body: &Map<String, Value>) -> Result<Map<String, Value>, GatewayError> {
    let mut messages = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(s @ (Value::String(_) | Value::Array(_))) => {
            messages.push(json!({"role": "system", "content": block_text(Some(s))}))
        }
        Some(_) => return Err(invalid("system: must be a string or an array.", "system")),
    }
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match m.get("role").and_then(Value::as_str) {
            Some("user") => user_turn(m.get("content"), &mut messages)?,
            Some("assistant") => assistant_turn(m.get("content"), &mut messages)?,
            _ => {
                return Err(invalid(
                    "messages: role must be 'user' or 'assistant'.",
                    "messages",
                ))
            }
        }
    }
    let mut out = Map::new();
    out.insert(
        "model".into(),
        body.get("model").cloned().unwrap_or_default(),
    );
    out.insert("messages".into(), Value::Array(messages));
    if let Some(n) = body.get("max_tokens") {
        out.insert("max_tokens".into(), n.clone());
    }
    for k in ["temperature", "top_p", "top_k"] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(s) = body.get("stop_sequences").filter(|v| !v.is_null()) {
        out.insert("stop".into(), s.clone());
    }
    if let Some(u) = body
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .filter(|u| u.is_string())
    {
        out.insert("user".into(), u.clone());
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let mut t = Vec::with_capacity(tools.len());
        for tool in tools {
            if tool
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|k| k != "custom")
            {
                return Err(invalid(
                    "Anthropic server tools cannot be used with this model's provider.",
                    "tools",
                ));
            }
            let mut f = json!({"name": tool.get("name").cloned().unwrap_or_default(),
                "parameters": tool.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"}))});
            if let Some(d) = tool.get("description") {
                f["description"] = d.clone();
            }
            t.push(json!({"type": "function", "function": f}));
        }
        out.insert("tools".into(), Value::Array(t));
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| v.is_object()) {
        let c = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function",
                "function": {"name": choice.get("name").cloned().unwrap_or_default()}}),
            _ => return Err(invalid("tool_choice: unknown type.", "tool_choice")),
        };
        out.insert("tool_choice".into(), c);
        if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            out.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
    }
    if body
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        == Some("enabled")
    {
        let budget = body
            .get("thinking")
            .and_then(|t| t.get("budget_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let effort = match budget {
            0..2048 => "low",
            2048..8192 => "medium",
            _ => "high",
        };
        out.insert("reasoning_effort".into(), json!(effort));
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok(out)
}

/// Anthropic `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// The Anthropic usage object of a normalised usage (`input_tokens`
/// excludes the cache reads and writes).
pub fn anthropic_usage(u: &Usage) -> Value {
    json!({
        "input_tokens": (u.prompt_tokens - u.cache_read_tokens - u.cache_write_tokens).max(0),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.completion_tokens,
    })
}

/// Translates a complete OpenAI `chat.completion` into an Anthropic
/// `message`; `model` is the name the caller asked for.
pub fn to_message(completion: &Value, usage: &Usage, model: &str) -> Value {
    let choice = completion
        .pointer("/choices/0")
        .cloned()
        .unwrap_or_default();
    let msg = choice.get("message").cloned().unwrap_or_default();
    let mut content = Vec::new();
    if let Some(r) = msg
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    if let Some(t) = msg
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": t}));
    }
    for c in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let args = c
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        content.push(
            json!({"type": "tool_use", "id": c.get("id").cloned().unwrap_or_default(),
            "name": c.pointer("/function/name").cloned().unwrap_or_default(), "input": input}),
        );
    }
    json!({
        "id": completion.get("id").cloned().unwrap_or_default(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": anthropic_usage(usage),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_of_tools_images_and_results() {
        let body = json!({"model": "m", "max_tokens": 50, "system": [{"type": "text", "text": "sys"}],
        "stop_sequences": ["X"], "metadata": {"user_id": "u1"},
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"},
                {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "found"},
                {"type": "text", "text": "and?"}]}
        ]});
        let chat = to_chat(body.as_object().unwrap()).unwrap();
        assert_eq!(
            Value::Object(chat),
            json!({"model": "m", "max_tokens": 50, "stop": ["X"], "user": "u1",
            "reasoning_effort": "medium",
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
            "tool_choice": "required", "parallel_tool_calls": false,
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
                {"role": "assistant", "content": "ok", "tool_calls": [{"id": "t1", "type": "function",
                    "function": {"name": "lookup", "arguments": "{\"q\":1}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "found"},
                {"role": "user", "content": [{"type": "text", "text": "and?"}]}
            ]})
        );
    }

    #[test]
    fn completion_to_message_with_usage_buckets() {
        let c = json!({"id": "chatcmpl-1", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "Calling.", "tool_calls": [{"id": "c1",
                "type": "function", "function": {"name": "f", "arguments": "{\"a\":2}"}}]}}]});
        let u = Usage {
            prompt_tokens: 100,
            completion_tokens: 7,
            cache_read_tokens: 60,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        };
        let m = to_message(&c, &u, "public");
        assert_eq!(m["model"], "public");
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(m["content"][0], json!({"type": "text", "text": "Calling."}));
        assert_eq!(
            m["content"][1],
            json!({"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 2}})
        );
        assert_eq!(m["usage"]["input_tokens"], 40);
        assert_eq!(m["usage"]["cache_read_input_tokens"], 60);
    }

    #[test]
    fn validation_names_the_field() {
        let e = validate(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})
                .as_object()
                .unwrap(),
        )
        .unwrap_err();
        assert!(matches!(
            e,
            GatewayError::InvalidRequest {
                param: Some("max_tokens"),
                ..
            }
        ));
    }
}
