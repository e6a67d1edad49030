//! Responses API request → chat request, for providers that only have
//! chat. The text + function-call subset translates; every other feature
//! (stored state, built-in tools, background runs, …) is refused with a 400
//! naming the parameter, never dropped.

use serde_json::{json, Map, Value};

use crate::http::errors::GatewayError;

fn invalid(message: impl Into<String>, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param),
    }
}

fn unsupported(param: &'static str) -> GatewayError {
    invalid(
        format!("'{param}' is not supported for models whose provider has no Responses API; use a model served by OpenAI or Azure."),
        param,
    )
}

/// Checks the model name (returned) and the features a translation cannot
/// honour.
pub fn validate(body: &Map<String, Value>) -> Result<String, GatewayError> {
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(m.clone()),
        _ => Err(invalid("Missing required parameter: 'model'.", "model")),
    }
}

fn refuse_stateful(body: &Map<String, Value>) -> Result<(), GatewayError> {
    for p in ["previous_response_id", "conversation", "prompt"] {
        if body.get(p).is_some_and(|v| !v.is_null()) {
            return Err(unsupported(match p {
                "previous_response_id" => "previous_response_id",
                "conversation" => "conversation",
                _ => "prompt",
            }));
        }
    }
    if body.get("background") == Some(&Value::Bool(true)) {
        return Err(unsupported("background"));
    }
    if body.get("store") == Some(&Value::Bool(true)) {
        return Err(unsupported("store"));
    }
    if body
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return Err(unsupported("include"));
    }
    Ok(())
}

fn content_parts(content: &Value) -> Result<Value, GatewayError> {
    match content {
        Value::String(s) => Ok(Value::String(s.clone())),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("input_text") | Some("output_text") => {
                    Ok(json!({"type": "text", "text": p.get("text").cloned().unwrap_or_default()}))
                }
                Some("input_image") => {
                    let url = p
                        .get("image_url")
                        .and_then(Value::as_str)
                        .ok_or_else(|| unsupported("input"))?;
                    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
                }
                _ => Err(invalid(
                    "Only input_text, output_text and input_image (by URL) content can be translated for this model's provider.",
                    "input",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => Err(invalid("'content' must be a string or an array.", "input")),
    }
}

/// Translates a Responses request (model already the upstream name) into a
/// chat request.
pub fn to_chat(body: &Map<String, Value>) -> Result<Map<String, Value>, GatewayError> {
    refuse_stateful(body)?;
    let mut messages: Vec<Value> = Vec::new();
    if let Some(i) = body.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": i}));
    }
    match body.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for item in items {
                match item.get("type").and_then(Value::as_str).unwrap_or("message") {
                    "message" => {
                        let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                        let content = content_parts(item.get("content").unwrap_or(&Value::Null))?;
                        // Chat assistant turns take text, not parts.
                        let content = if role == "assistant" {
                            match content {
                                Value::Array(parts) => Value::String(
                                    parts
                                        .iter()
                                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                                        .collect::<Vec<_>>()
                                        .join(""),
                                ),
                                other => other,
                            }
                        } else {
                            content
                        };
                        messages.push(json!({"role": role, "content": content}));
                    }
                    "function_call" => {
                        let call = json!({"id": item.get("call_id").cloned().unwrap_or_default(),
                            "type": "function",
                            "function": {"name": item.get("name").cloned().unwrap_or_default(),
                                "arguments": item.get("arguments").cloned().unwrap_or_else(|| json!("{}"))}});
                        // Consecutive calls belong to one assistant turn.
                        match messages.last_mut() {
                            Some(m) if m.get("role") == Some(&json!("assistant"))
                                && m.get("tool_calls").is_some() =>
                            {
                                if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
                                    calls.push(call);
                                }
                            }
                            _ => messages.push(
                                json!({"role": "assistant", "content": null, "tool_calls": [call]}),
                            ),
                        }
                    }
                    "function_call_output" => {
                        let output = match item.get("output") {
                            Some(Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                            None => String::new(),
                        };
                        messages.push(json!({"role": "tool",
                            "tool_call_id": item.get("call_id").cloned().unwrap_or_default(),
                            "content": output}));
                    }
                    // Earlier reasoning of a previous answer: not resent.
                    "reasoning" => {}
                    _ => return Err(invalid(
                        "Only message, function_call and function_call_output input items can be translated for this model's provider.",
                        "input",
                    )),
                }
            }
        }
        _ => return Err(invalid("'input' must be a string or an array.", "input")),
    }
    let mut out = Map::new();
    out.insert(
        "model".into(),
        body.get("model").cloned().unwrap_or_default(),
    );
    out.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let mut t = Vec::with_capacity(tools.len());
        for tool in tools {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(invalid(
                    "Only function tools can be translated for this model's provider (built-in tools need OpenAI or Azure).",
                    "tools",
                ));
            }
            let mut f = json!({"name": tool.get("name").cloned().unwrap_or_default()});
            for k in ["description", "parameters", "strict"] {
                if let Some(v) = tool.get(k).filter(|v| !v.is_null()) {
                    f[k] = v.clone();
                }
            }
            t.push(json!({"type": "function", "function": f}));
        }
        if !t.is_empty() {
            out.insert("tools".into(), Value::Array(t));
        }
    }
    match body.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            out.insert("tool_choice".into(), json!(s));
        }
        Some(Value::Object(o)) if o.get("type") == Some(&json!("function")) => {
            out.insert(
                "tool_choice".into(),
                json!({"type": "function", "function": {"name": o.get("name").cloned().unwrap_or_default()}}),
            );
        }
        Some(_) => return Err(unsupported("tool_choice")),
    }
    for (from, to) in [
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("user", "user"),
    ] {
        if let Some(v) = body.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    }
    if let Some(effort) = body
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|v| !v.is_null())
    {
        out.insert("reasoning_effort".into(), effort.clone());
    }
    match body.get("text").and_then(|t| t.get("format")) {
        None | Some(Value::Null) => {}
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => {
                out.insert("response_format".into(), json!({"type": "json_object"}));
            }
            Some("json_schema") => {
                let mut schema = json!({"name": f.get("name").cloned().unwrap_or_else(|| json!("response")),
                    "schema": f.get("schema").cloned().unwrap_or_else(|| json!({}))});
                if let Some(s) = f.get("strict") {
                    schema["strict"] = s.clone();
                }
                out.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": schema}),
                );
            }
            _ => return Err(unsupported("text")),
        },
    }
    if body.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok(out)
}
