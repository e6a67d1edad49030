//! OpenAI chat request → Gemini `generateContent` request.
//!
//! System and developer messages become `systemInstruction`; user and
//! assistant turns become `user` and `model` contents (consecutive turns of
//! one role merged); image parts become `inlineData` (data URLs) or
//! `fileData` (other URLs); assistant `tool_calls` become `functionCall`
//! parts and `tool` messages `functionResponse` parts (named after the call
//! they answer); sampling parameters go to `generationConfig`. What Gemini
//! cannot do is refused with a 400.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::http::errors::GatewayError;

fn invalid(message: impl Into<String>, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param),
    }
}

fn text_of(content: Option<&Value>) -> Result<String, GatewayError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")),
        Some(_) => Err(invalid(
            "'content' must be a string or an array.",
            "messages",
        )),
    }
}

fn mime_from_url(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    if path.ends_with(".png") {
        "image/png"
    } else if path.ends_with(".webp") {
        "image/webp"
    } else if path.ends_with(".gif") {
        "image/gif"
    } else if path.ends_with(".pdf") {
        "application/pdf"
    } else {
        "image/jpeg"
    }
}

fn user_parts(content: Option<&Value>) -> Result<Vec<Value>, GatewayError> {
    match content {
        Some(Value::String(s)) => Ok(vec![json!({"text": s})]),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"text": p.get("text").cloned().unwrap_or_default()})),
                Some("image_url") => {
                    let url = p
                        .pointer("/image_url/url")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid("'image_url.url' must be a string.", "messages"))?;
                    if let Some(rest) = url.strip_prefix("data:") {
                        let (meta, data) = rest
                            .split_once(',')
                            .ok_or_else(|| invalid("Malformed data URL in 'image_url'.", "messages"))?;
                        let mime = meta.strip_suffix(";base64").ok_or_else(|| {
                            invalid("Image data URLs must be base64-encoded.", "messages")
                        })?;
                        Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
                    } else {
                        Ok(json!({"fileData": {"mimeType": mime_from_url(url), "fileUri": url}}))
                    }
                }
                Some(other) => Err(invalid(
                    format!("Content parts of type '{other}' are not supported by this model's provider (Gemini)."),
                    "messages",
                )),
                None => Err(invalid("Content parts need a 'type'.", "messages")),
            })
            .collect(),
        _ => Err(invalid("User messages need 'content'.", "messages")),
    }
}

fn push(contents: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    if let Some(last) = contents.last_mut() {
        if last.get("role").and_then(Value::as_str) == Some(role) {
            if let Some(Value::Array(p)) = last.get_mut("parts") {
                p.extend(parts);
                return;
            }
        }
    }
    contents.push(json!({"role": role, "parts": parts}));
}

/// Gemini's function schemas are an OpenAPI subset: JSON-Schema keywords it
/// refuses are removed.
fn clean_schema(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "additionalProperties" | "$schema" | "strict" | "$id"
                    )
                })
                .map(|(k, v)| {
                    // Inside `properties` the keys are field names, not keywords.
                    if k == "properties" {
                        let props = v
                            .as_object()
                            .map(|p| {
                                p.iter()
                                    .map(|(n, s)| (n.clone(), clean_schema(s)))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (k.clone(), Value::Object(props))
                    } else {
                        (k.clone(), clean_schema(v))
                    }
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(clean_schema).collect()),
        other => other.clone(),
    }
}

fn refuse_unsupported(body: &Map<String, Value>) -> Result<(), GatewayError> {
    if body.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(invalid(
            "'logprobs' is not supported by this model's provider (Gemini).",
            "logprobs",
        ));
    }
    if body
        .get("logit_bias")
        .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    {
        return Err(invalid(
            "'logit_bias' is not supported by this model's provider (Gemini).",
            "logit_bias",
        ));
    }
    if body.get("audio").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "Audio output is not supported by this model's provider (Gemini).",
            "audio",
        ));
    }
    Ok(())
}

/// Translates an OpenAI chat body into a Gemini request body (the model
/// goes in the URL, not the body).
pub fn to_gemini(body: &Map<String, Value>) -> Result<Value, GatewayError> {
    refuse_unsupported(body)?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("'messages' must be an array.", "messages"))?;
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::with_capacity(messages.len());
    // Gemini answers a function by name: remember which call id was which.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for m in messages {
        match m.get("role").and_then(Value::as_str).unwrap_or_default() {
            "system" | "developer" => system.push(json!({"text": text_of(m.get("content"))?})),
            "user" => push(&mut contents, "user", user_parts(m.get("content"))?),
            "assistant" => {
                let mut parts = Vec::new();
                let text = text_of(m.get("content"))?;
                if !text.is_empty() {
                    parts.push(json!({"text": text}));
                }
                for c in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let name = c
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid("'tool_calls[].function.name' is required.", "messages"))?;
                    if let Some(id) = c.get("id").and_then(Value::as_str) {
                        call_names.insert(id, name);
                    }
                    let args = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                    let args: Value = if args.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(args).map_err(|_| {
                            invalid("Tool call arguments must be valid JSON.", "messages")
                        })?
                    };
                    parts.push(json!({"functionCall": {"name": name, "args": args}}));
                }
                if parts.is_empty() {
                    parts.push(json!({"text": ""}));
                }
                push(&mut contents, "model", parts);
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or_default();
                let name = call_names.get(id).copied().ok_or_else(|| {
                    invalid(
                        format!("Tool message answers unknown tool call '{id}'."),
                        "messages",
                    )
                })?;
                let text = text_of(m.get("content"))?;
                push(
                    &mut contents,
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": {"content": text}}})],
                );
            }
            other => {
                return Err(invalid(
                    format!("Messages with role '{other}' are not supported by this model's provider (Gemini)."),
                    "messages",
                ))
            }
        }
    }
    let mut out = Map::new();
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    out.insert("contents".into(), Value::Array(contents));

    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let mut decls = Vec::with_capacity(tools.len());
        for t in tools {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(invalid("Only tools of type 'function' are supported by this model's provider (Gemini).", "tools"));
            }
            let f = t.get("function").cloned().unwrap_or_default();
            let mut d = json!({"name": f.get("name").cloned().unwrap_or_default()});
            if let Some(desc) = f.get("description") {
                d["description"] = desc.clone();
            }
            if let Some(p) = f.get("parameters") {
                d["parameters"] = clean_schema(p);
            }
            decls.push(d);
        }
        if !decls.is_empty() {
            out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
        }
    }
    if let Some(choice) = body.get("tool_choice").filter(|c| !c.is_null()) {
        let config = match choice {
            Value::String(s) if s == "auto" => json!({"mode": "AUTO"}),
            Value::String(s) if s == "none" => json!({"mode": "NONE"}),
            Value::String(s) if s == "required" => json!({"mode": "ANY"}),
            Value::Object(o) => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .cloned()
                    .ok_or_else(|| {
                        invalid("'tool_choice.function.name' is required.", "tool_choice")
                    })?;
                json!({"mode": "ANY", "allowedFunctionNames": [name]})
            }
            _ => return Err(invalid("Unknown 'tool_choice'.", "tool_choice")),
        };
        out.insert(
            "toolConfig".into(),
            json!({"functionCallingConfig": config}),
        );
    }

    let mut config = Map::new();
    let copy = |from: &str, to: &str, config: &mut Map<String, Value>| {
        if let Some(v) = body.get(from).filter(|v| !v.is_null()) {
            config.insert(to.into(), v.clone());
        }
    };
    copy("temperature", "temperature", &mut config);
    copy("top_p", "topP", &mut config);
    copy("top_k", "topK", &mut config);
    copy("n", "candidateCount", &mut config);
    copy("presence_penalty", "presencePenalty", &mut config);
    copy("frequency_penalty", "frequencyPenalty", &mut config);
    copy("seed", "seed", &mut config);
    copy("max_tokens", "maxOutputTokens", &mut config);
    copy("max_completion_tokens", "maxOutputTokens", &mut config);
    match body.get("stop") {
        Some(Value::String(s)) => {
            config.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            config.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    match body
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            config.insert("responseMimeType".into(), json!("application/json"));
            if let Some(s) = body
                .get("response_format")
                .and_then(|f| f.pointer("/json_schema/schema"))
            {
                config.insert("responseSchema".into(), clean_schema(s));
            }
        }
        Some(other) => {
            return Err(invalid(
                format!("response_format '{other}' is not supported."),
                "response_format",
            ))
        }
    }
    if let Some(effort) = body.get("reasoning_effort").and_then(Value::as_str) {
        let budget = match effort {
            "minimal" => 0,
            "low" => 1024,
            "medium" => 8192,
            "high" => 24576,
            other => {
                return Err(invalid(
                    format!("Unknown reasoning_effort '{other}'."),
                    "reasoning_effort",
                ))
            }
        };
        config.insert(
            "thinkingConfig".into(),
            json!({"thinkingBudget": budget, "includeThoughts": budget > 0}),
        );
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(out))
}
