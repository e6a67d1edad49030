//! Anthropic Messages API wire format of the mock provider: the same
//! deterministic reply as [`crate::openai`], as a `message` object or as the
//! exact event sequence Anthropic streams (`message_start`,
//! `content_block_start`, `ping`, `content_block_delta`, `content_block_stop`,
//! `message_delta`, `message_stop`), each event with its `event:` line.
//!
//! Deterministic extras, driven by the request:
//! - `tools` present and the last user turn is not a `tool_result`: a short
//!   text block, then a `tool_use` block calling the first tool with
//!   `{"query": <quote>}` (streamed as `input_json_delta` pieces), stop reason
//!   `tool_use`;
//! - `thinking: {"type": "enabled"}`: a `thinking` block first (with a
//!   `signature_delta`); its words count as output tokens;
//! - any `cache_control` marker in the request: half of the prompt is
//!   reported as `cache_read_input_tokens` and 2 tokens as
//!   `cache_creation_input_tokens`; `input_tokens` is the rest, as Anthropic
//!   reports it (excluding both).

use bytes::Bytes;
use serde_json::{json, Value};

/// Thinking text of the mock.
pub const THINKING: &str = "The caller wants a greeting; keep it short.";

/// One content block of the mock's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Thinking(String),
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

/// What the mock answers to one Messages request.
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicReply {
    pub blocks: Vec<Block>,
    pub stop_reason: &'static str,
    /// Excludes cache reads and writes.
    pub input_tokens: u32,
    pub cache_read: u32,
    pub cache_write: u32,
    pub output_tokens: u32,
}

fn words(s: &str) -> u32 {
    u32::try_from(s.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// Text of a `content` that is a string or an array of blocks.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn is_tool_result_turn(m: &Value) -> bool {
    m.get("content").and_then(Value::as_array).is_some_and(|b| {
        b.iter()
            .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
    })
}

/// The deterministic reply to a Messages request.
pub fn reply_for(body: &Value) -> AnthropicReply {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("mock");
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut prompt: u32 = 0;
    let system = content_text(body.get("system"));
    if !system.is_empty() {
        prompt = prompt.saturating_add(words(&system) + 3);
    }
    let mut last_user = String::new();
    for m in messages {
        let text = content_text(m.get("content"));
        prompt = prompt.saturating_add(words(&text) + 3);
        if m.get("role").and_then(Value::as_str) == Some("user") && !is_tool_result_turn(m) {
            last_user = text;
        }
    }
    let quote: String = last_user
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(60)
        .collect();
    let mut blocks = Vec::new();
    let mut output: u32 = 0;
    if body.pointer("/thinking/type").and_then(Value::as_str) == Some("enabled") {
        blocks.push(Block::Thinking(THINKING.into()));
        output += words(THINKING);
    }
    let tools = body.get("tools").and_then(Value::as_array);
    // A forced tool (`tool_choice: tool`) is the one called.
    let forced = body.pointer("/tool_choice/name").and_then(Value::as_str);
    let first_tool = forced.or_else(|| {
        tools
            .and_then(|t| t.first())
            .and_then(|t| t.get("name"))
            .and_then(Value::as_str)
    });
    // Forced tool use (`any`, `tool`) answers with the call alone.
    let preamble = !matches!(
        body.pointer("/tool_choice/type").and_then(Value::as_str),
        Some("any") | Some("tool")
    );
    let last_is_result = messages.last().is_some_and(is_tool_result_turn);
    let stop_reason = match first_tool {
        Some(name)
            if !last_is_result && body.pointer("/tool_choice/type") != Some(&json!("none")) =>
        {
            let text = format!("Calling {name}.");
            output += 5;
            if preamble {
                output += words(&text);
                blocks.push(Block::Text(text));
            }
            blocks.push(Block::ToolUse {
                id: format!("toolu_mock{:08x}", prompt),
                name: name.to_string(),
                input: json!({"query": quote}),
            });
            "tool_use"
        }
        _ => {
            let text = if last_is_result {
                format!(
                    "Hello from {model}, the Tollgate mock provider. The tool said: \"{}\"",
                    content_text(
                        messages
                            .last()
                            .and_then(|m| m.get("content"))
                            .and_then(|c| c.get(0))
                            .and_then(|b| b.get("content"))
                    )
                )
            } else {
                format!("Hello from {model}, the Tollgate mock provider. You said: \"{quote}\"")
            };
            let all: Vec<&str> = text.split_whitespace().collect();
            let limit = body
                .get("max_tokens")
                .and_then(Value::as_u64)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            let (kept, reason) = match limit {
                Some(n) if n < all.len() => (&all[..n], "max_tokens"),
                _ => (&all[..], "end_turn"),
            };
            output += u32::try_from(kept.len()).unwrap_or(u32::MAX);
            blocks.push(Block::Text(kept.join(" ")));
            reason
        }
    };
    let (cache_read, cache_write) = if body.to_string().contains("\"cache_control\"") {
        (prompt / 2, 2.min(prompt - prompt / 2))
    } else {
        (0, 0)
    };
    AnthropicReply {
        blocks,
        stop_reason,
        input_tokens: prompt - cache_read - cache_write,
        cache_read,
        cache_write,
        output_tokens: output,
    }
}

fn usage_json(r: &AnthropicReply, output_tokens: u32) -> Value {
    json!({
        "input_tokens": r.input_tokens,
        "cache_creation_input_tokens": r.cache_write,
        "cache_read_input_tokens": r.cache_read,
        "output_tokens": output_tokens,
        "service_tier": "standard"
    })
}

fn block_json(b: &Block) -> Value {
    match b {
        Block::Thinking(t) => {
            json!({"type": "thinking", "thinking": t, "signature": "mock-signature"})
        }
        Block::Text(t) => json!({"type": "text", "text": t}),
        Block::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
    }
}

/// The `message` object of a non-streamed reply.
pub fn message_body(id: &str, model: &str, r: &AnthropicReply) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": r.blocks.iter().map(block_json).collect::<Vec<_>>(),
        "stop_reason": r.stop_reason,
        "stop_sequence": null,
        "usage": usage_json(r, r.output_tokens)
    })
}

/// One SSE event with its `event:` line.
pub fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The events of a streamed reply, in Anthropic's order.
pub fn stream_events(id: &str, model: &str, r: &AnthropicReply) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = message_body(id, model, r);
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"] = usage_json(r, 1);
    out.push(event(
        "message_start",
        &json!({"type": "message_start", "message": start}),
    ));
    for (index, b) in r.blocks.iter().enumerate() {
        let (empty, deltas): (Value, Vec<Value>) = match b {
            Block::Thinking(t) => (
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                pieces(t)
                    .into_iter()
                    .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                    .chain([json!({"type": "signature_delta", "signature": "mock-signature"})])
                    .collect(),
            ),
            Block::Text(t) => (
                json!({"type": "text", "text": ""}),
                pieces(t)
                    .into_iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect(),
            ),
            Block::ToolUse { id, name, input } => {
                let args = input.to_string();
                // Anthropic splits the JSON at arbitrary places.
                let chars: Vec<char> = args.chars().collect();
                let parts: Vec<Value> = std::iter::once(String::new())
                    .chain(chars.chunks(7).map(|c| c.iter().collect::<String>()))
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect();
                (
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    parts,
                )
            }
        };
        out.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": empty}),
        ));
        if index == 0 {
            out.push(event("ping", &json!({"type": "ping"})));
        }
        for d in deltas {
            out.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": d}),
            ));
        }
        out.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.push(event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": r.stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": r.output_tokens}}),
    ));
    out.push(event("message_stop", &json!({"type": "message_stop"})));
    out
}

/// Word pieces as a stream sends them: the first bare, the rest with their
/// leading space.
fn pieces(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|w| !w.is_empty())
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

/// The Anthropic `error.type` for a status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// An Anthropic-shaped error body.
pub fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plain_reply_and_usage() {
        let r = reply_for(
            &json!({"model": "claude-mock", "max_tokens": 100, "system": "be brief",
            "messages": [{"role": "user", "content": "hi there"}]}),
        );
        assert_eq!(
            r.blocks,
            vec![Block::Text(
                "Hello from claude-mock, the Tollgate mock provider. You said: \"hi there\"".into()
            )]
        );
        assert_eq!((r.input_tokens, r.output_tokens), (10, 11));
        assert_eq!(r.stop_reason, "end_turn");
    }

    #[test]
    fn cache_markers_split_the_prompt() {
        let r = reply_for(&json!({"model": "m", "max_tokens": 100,
            "system": [{"type": "text", "text": "long context here", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}]}));
        // prompt 6 + 4 = 10: 5 read, 2 written, 3 uncached.
        assert_eq!((r.input_tokens, r.cache_read, r.cache_write), (3, 5, 2));
    }

    #[test]
    fn stream_events_are_in_anthropic_order() {
        let r = reply_for(&json!({"model": "m", "max_tokens": 100,
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "find x"}]}));
        let names: Vec<String> = stream_events("msg_1", "m", &r)
            .iter()
            .map(|e| {
                let s = std::str::from_utf8(e).unwrap();
                s.lines()
                    .next()
                    .unwrap()
                    .trim_start_matches("event: ")
                    .to_string()
            })
            .collect();
        assert_eq!(names[0], "message_start");
        assert_eq!(names[1], "content_block_start");
        assert_eq!(names[2], "ping");
        assert_eq!(names.last().unwrap(), "message_stop");
        assert_eq!(names[names.len() - 2], "message_delta");
        assert_eq!(r.stop_reason, "tool_use");
    }
}
