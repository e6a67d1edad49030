//! OpenAI chat request → Anthropic Messages request.
//!
//! System and developer messages become `system` blocks; user content parts
//! become text and image blocks (data URLs as `base64` sources, other URLs
//! as `url` sources); assistant `tool_calls` become `tool_use` blocks and
//! `tool` messages `tool_result` blocks in a user turn; consecutive turns of
//! one role are merged (Anthropic requires alternation). Features with no
//! Anthropic equivalent are refused with a 400 naming the parameter, never
//! dropped silently.

use serde_json::{json, Map, Value};

use crate::http::errors::GatewayError;

/// Name of the forced tool that carries a `json_schema` response format.
pub const JSON_TOOL: &str = "json_response";

/// What the response translation must know about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// The tool whose input is the answer (`response_format: json_schema`):
    /// its arguments are returned as the message content.
    pub json_tool: Option<String>,
}

fn invalid(message: impl Into<String>, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param),
    }
}

/// `max_tokens` when the caller sets none (Anthropic requires it): 4096
/// for the Claude 3 models whose output limit it is, else 8192 — within
/// every newer model's limit, and short enough for non-streamed calls.
pub fn default_max_tokens(model: &str) -> u64 {
    if model.starts_with("claude-3-opus")
        || model.starts_with("claude-3-haiku")
        || model.starts_with("claude-3-sonnet")
    {
        4096
    } else {
        8192
    }
}

/// Text of an OpenAI message `content` (string, or text parts joined).
fn plain_text(content: Option<&Value>) -> Result<String, GatewayError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => out.push(p.get("text").and_then(Value::as_str).unwrap_or("")),
                    _ => {
                        return Err(invalid(
                            "Only text parts are allowed in system, developer and tool messages.",
                            "messages",
                        ))
                    }
                }
            }
            Ok(out.join("\n"))
        }
        Some(_) => Err(invalid(
            "'content' must be a string or an array.",
            "messages",
        )),
    }
}

/// An OpenAI `image_url` part as an Anthropic image block.
fn image_block(part: &Value) -> Result<Value, GatewayError> {
    let url = part
        .pointer("/image_url/url")
        .or_else(|| part.get("image_url"))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("'image_url.url' must be a string.", "messages"))?;
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| invalid("Malformed data URL in 'image_url'.", "messages"))?;
        let media_type = meta
            .strip_suffix(";base64")
            .ok_or_else(|| invalid("Image data URLs must be base64-encoded.", "messages"))?;
        return Ok(json!({"type": "image", "source":
            {"type": "base64", "media_type": media_type, "data": data}}));
    }
    Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
}

/// User content as Anthropic content (a string stays a string).
fn user_content(content: Option<&Value>) -> Result<Value, GatewayError> {
    match content {
        Some(Value::String(s)) => Ok(Value::String(s.clone())),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for p in parts {
                let block = match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let mut b = json!({"type": "text",
                            "text": p.get("text").and_then(Value::as_str).unwrap_or("")});
                        if let Some(cc) = p.get("cache_control") {
                            b["cache_control"] = cc.clone();
                        }
                        b
                    }
                    Some("image_url") => image_block(p)?,
                    Some(other) => {
                        return Err(invalid(
                            format!("Content parts of type '{other}' are not supported by this model's provider (Anthropic)."),
                            "messages",
                        ))
                    }
                    None => return Err(invalid("Content parts need a 'type'.", "messages")),
                };
                blocks.push(block);
            }
            Ok(Value::Array(blocks))
        }
        None | Some(Value::Null) => Err(invalid("User messages need 'content'.", "messages")),
        Some(_) => Err(invalid(
            "'content' must be a string or an array.",
            "messages",
        )),
    }
}

fn as_blocks(content: Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(a) => a,
        _ => Vec::new(),
    }
}

/// Appends a turn, merging it into the previous one of the same role.
fn push_turn(turns: &mut Vec<Value>, role: &str, content: Value) {
    if let Some(last) = turns.last_mut() {
        if last.get("role").and_then(Value::as_str) == Some(role) {
            let prev = last
                .get_mut("content")
                .map(Value::take)
                .unwrap_or(Value::Null);
            let mut blocks = as_blocks(prev);
            blocks.extend(as_blocks(content));
            last["content"] = Value::Array(blocks);
            return;
        }
    }
    turns.push(json!({"role": role, "content": content}));
}

fn assistant_content(m: &Value) -> Result<Value, GatewayError> {
    let mut blocks = Vec::new();
    let text = plain_text(m.get("content")).or_else(|_| {
        // Assistant parts may include refusals; keep their text.
        Ok::<_, GatewayError>(
            m.get("content")
                .and_then(Value::as_array)
                .map(|parts| {
                    parts
                        .iter()
                        .filter_map(|p| p.get("text").or_else(|| p.get("refusal")))
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
        )
    })?;
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
        for c in calls {
            let id = c.get("id").and_then(Value::as_str).unwrap_or_default();
            let name = c
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("'tool_calls[].function.name' is required.", "messages"))?;
            let args = c
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            let input: Value = if args.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(args).map_err(|_| {
                    invalid(
                        format!("The arguments of tool call '{id}' are not valid JSON."),
                        "messages",
                    )
                })?
            };
            blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
    }
    if blocks.is_empty() {
        // Anthropic refuses empty assistant turns.
        blocks.push(json!({"type": "text", "text": " "}));
    }
    Ok(Value::Array(blocks))
}

fn translate_tools(tools: &[Value]) -> Result<Vec<Value>, GatewayError> {
    tools
        .iter()
        .map(|t| {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(invalid(
                    "Only tools of type 'function' are supported by this model's provider (Anthropic).",
                    "tools",
                ));
            }
            let f = t
                .get("function")
                .ok_or_else(|| invalid("'tools[].function' is required.", "tools"))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("'tools[].function.name' is required.", "tools"))?;
            let mut tool = json!({"name": name, "input_schema": f.get("parameters")
                .cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}))});
            if let Some(d) = f.get("description") {
                tool["description"] = d.clone();
            }
            Ok(tool)
        })
        .collect()
}

fn translate_tool_choice(choice: &Value) -> Result<Value, GatewayError> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(json!({"type": "auto"})),
            "none" => Ok(json!({"type": "none"})),
            "required" => Ok(json!({"type": "any"})),
            _ => Err(invalid(
                format!("Unknown tool_choice '{s}'."),
                "tool_choice",
            )),
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid("'tool_choice.function.name' is required.", "tool_choice")
                })?;
            Ok(json!({"type": "tool", "name": name}))
        }
        _ => Err(invalid(
            "'tool_choice' must be a string or an object.",
            "tool_choice",
        )),
    }
}

/// Parameters with no Anthropic equivalent: refused unless at their
/// neutral value.
fn refuse_unsupported(body: &Map<String, Value>) -> Result<(), GatewayError> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(invalid(
            "'n' greater than 1 is not supported by this model's provider (Anthropic).",
            "n",
        ));
    }
    if body.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(invalid(
            "'logprobs' is not supported by this model's provider (Anthropic).",
            "logprobs",
        ));
    }
    for p in ["presence_penalty", "frequency_penalty"] {
        if body
            .get(p)
            .and_then(Value::as_f64)
            .is_some_and(|v| v != 0.0)
        {
            let param: &'static str = if p == "presence_penalty" {
                "presence_penalty"
            } else {
                "frequency_penalty"
            };
            return Err(invalid(
                format!("'{p}' is not supported by this model's provider (Anthropic)."),
                param,
            ));
        }
    }
    if body
        .get("logit_bias")
        .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    {
        return Err(invalid(
            "'logit_bias' is not supported by this model's provider (Anthropic).",
            "logit_bias",
        ));
    }
    if body.get("audio").is_some_and(|v| !v.is_null())
        || body
            .get("modalities")
            .and_then(Value::as_array)
            .is_some_and(|m| m.iter().any(|x| x != "text"))
    {
        return Err(invalid(
            "Audio output is not supported by this model's provider (Anthropic).",
            "modalities",
        ));
    }
    Ok(())
}

/// Translates an OpenAI chat body (model already the upstream name) into an
/// Anthropic Messages body.
pub fn to_anthropic(body: &Map<String, Value>) -> Result<(Value, RequestFacts), GatewayError> {
    refuse_unsupported(body)?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("'messages' must be an array.", "messages"))?;
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<Value> = Vec::with_capacity(messages.len());
    for m in messages {
        match m.get("role").and_then(Value::as_str).unwrap_or_default() {
            "system" | "developer" => match m.get("content") {
                // Parts stay blocks, so a part's `cache_control` is kept.
                Some(Value::Array(parts)) => {
                    plain_text(m.get("content"))?;
                    for p in parts {
                        let mut b = json!({"type": "text",
                            "text": p.get("text").and_then(Value::as_str).unwrap_or("")});
                        if let Some(cc) = p.get("cache_control") {
                            b["cache_control"] = cc.clone();
                        }
                        system.push(b);
                    }
                }
                content => {
                    let text = plain_text(content)?;
                    system.push(json!({"type": "text", "text": text}));
                }
            },
            "user" => push_turn(&mut turns, "user", user_content(m.get("content"))?),
            "assistant" => push_turn(&mut turns, "assistant", assistant_content(m)?),
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
                    invalid("Tool messages need 'tool_call_id'.", "messages")
                })?;
                let text = plain_text(m.get("content"))?;
                push_turn(
                    &mut turns,
                    "user",
                    json!([{"type": "tool_result", "tool_use_id": id, "content": text}]),
                );
            }
            other => {
                return Err(invalid(
                    format!("Messages with role '{other}' are not supported by this model's provider (Anthropic)."),
                    "messages",
                ))
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    let mut facts = RequestFacts::default();

    let mut tools = match body.get("tools") {
        Some(Value::Array(t)) => translate_tools(t)?,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(invalid("'tools' must be an array.", "tools")),
    };
    let mut tool_choice = match body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(c) => Some(translate_tool_choice(c)?),
    };
    match body
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some("json_object") => system.push(json!({"type": "text",
            "text": "Respond with a single JSON object and nothing else."})),
        Some("json_schema") => {
            let schema = body
                .get("response_format")
                .and_then(|f| f.pointer("/json_schema/schema"))
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"}));
            tools.push(json!({"name": JSON_TOOL,
                "description": "Respond by calling this tool with the answer as its input.",
                "input_schema": schema}));
            tool_choice = Some(json!({"type": "tool", "name": JSON_TOOL}));
            facts.json_tool = Some(JSON_TOOL.to_string());
        }
        Some(other) => {
            return Err(invalid(
                format!("response_format '{other}' is not supported."),
                "response_format",
            ))
        }
    }
    if body.get("parallel_tool_calls") == Some(&Value::Bool(false)) && !tools.is_empty() {
        let c = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c.get("type").and_then(Value::as_str) != Some("none") {
            c["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }

    // Anthropic refuses forced tool use with extended thinking: the JSON
    // tool is then requested by instruction instead.
    let thinking_on = body.get("thinking").is_some_and(Value::is_object)
        || body.get("reasoning_effort").is_some_and(Value::is_string);
    if thinking_on && facts.json_tool.is_some() {
        tool_choice = Some(json!({"type": "auto"}));
        system.push(json!({"type": "text",
            "text": format!("Answer only by calling the {JSON_TOOL} tool.")}));
    }
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(turns));

    // Reasoning: an explicit Anthropic `thinking` object wins; else
    // `reasoning_effort` picks a budget.
    let thinking = match (
        body.get("thinking"),
        body.get("reasoning_effort").and_then(Value::as_str),
    ) {
        (Some(t), _) if t.is_object() => Some(t.clone()),
        (_, Some("minimal")) | (_, Some("low")) => {
            Some(json!({"type": "enabled", "budget_tokens": 1024}))
        }
        (_, Some("medium")) => Some(json!({"type": "enabled", "budget_tokens": 4096})),
        (_, Some("high")) => Some(json!({"type": "enabled", "budget_tokens": 16384})),
        (_, Some(other)) => {
            return Err(invalid(
                format!("Unknown reasoning_effort '{other}'."),
                "reasoning_effort",
            ))
        }
        _ => None,
    };
    let budget = thinking
        .as_ref()
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| default_max_tokens(model).max(budget + 1024));
    out.insert("max_tokens".into(), json!(max_tokens));
    if let Some(t) = thinking {
        out.insert("thinking".into(), t);
    }
    match body.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        Some(_) => return Err(invalid("'stop' must be a string or an array.", "stop")),
    }
    if let Some(t) = body.get("temperature").and_then(Value::as_f64) {
        // OpenAI's range is 0–2, Anthropic's 0–1.
        out.insert("temperature".into(), json!(t.min(1.0)));
    }
    for k in ["top_p", "top_k"] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(c) = tool_choice {
        out.insert("tool_choice".into(), c);
    }
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), Value::Bool(true));
    }
    Ok((Value::Object(out), facts))
}
