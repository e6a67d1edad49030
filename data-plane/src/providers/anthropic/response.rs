//! Anthropic `message` → OpenAI `chat.completion`, and Anthropic usage →
//! the normalised buckets.

use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_core::usage::Usage;

use super::request::RequestFacts;
use crate::providers::openai::usage_json;

/// Anthropic's usage object. `input_tokens` excludes cache reads and
/// writes; in a stream, `message_delta` carries cumulative counts.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct AnthropicUsage {
    #[serde(default)]
    pub input_tokens: Option<i64>,
    #[serde(default)]
    pub output_tokens: Option<i64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<i64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<i64>,
}

impl AnthropicUsage {
    /// Overwrites the counts `newer` reports (they are cumulative).
    pub fn update(&mut self, newer: &AnthropicUsage) {
        let keep = |old: &mut Option<i64>, new: Option<i64>| {
            if new.is_some() {
                *old = new;
            }
        };
        keep(&mut self.input_tokens, newer.input_tokens);
        keep(&mut self.output_tokens, newer.output_tokens);
        keep(
            &mut self.cache_read_input_tokens,
            newer.cache_read_input_tokens,
        );
        keep(
            &mut self.cache_creation_input_tokens,
            newer.cache_creation_input_tokens,
        );
    }

    /// The normalised usage: `prompt_tokens` includes the cached input.
    pub fn normalize(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: self.input_tokens.unwrap_or(0) + read + write,
            completion_tokens: self.output_tokens.unwrap_or(0),
            cache_read_tokens: read,
            cache_write_tokens: write,
            // Anthropic counts thinking in output_tokens without a split.
            reasoning_tokens: 0,
        }
    }
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> Option<&'static str> {
    Some(match stop_reason? {
        "end_turn" | "stop_sequence" | "pause_turn" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    })
}

/// Translates a complete Anthropic `message` body.
pub fn to_openai(message: &Value, facts: &RequestFacts, created: i64) -> (Value, Usage) {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    let mut answered_by_json_tool = false;
    if let Some(blocks) = message.get("content").and_then(Value::as_array) {
        for b in blocks {
            match b.get("type").and_then(Value::as_str) {
                Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
                Some("thinking") => {
                    reasoning.push_str(b.get("thinking").and_then(Value::as_str).unwrap_or(""))
                }
                Some("tool_use") => {
                    let name = b.get("name").and_then(Value::as_str).unwrap_or("");
                    let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                    if facts.json_tool.as_deref() == Some(name) {
                        text = input.to_string();
                        answered_by_json_tool = true;
                        continue;
                    }
                    tool_calls.push(json!({"id": b.get("id").cloned().unwrap_or(Value::Null),
                        "type": "function",
                        "function": {"name": name, "arguments": input.to_string()}}));
                }
                _ => {}
            }
        }
    }
    let usage = message
        .get("usage")
        .and_then(|u| serde_json::from_value::<AnthropicUsage>(u.clone()).ok())
        .unwrap_or_default()
        .normalize();
    let finish = if answered_by_json_tool {
        Some("stop")
    } else {
        finish_reason(message.get("stop_reason").and_then(Value::as_str))
    };
    let mut msg = json!({"role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null});
    if !reasoning.is_empty() {
        msg["reasoning_content"] = Value::String(reasoning);
    }
    if !tool_calls.is_empty() {
        msg["tool_calls"] = Value::Array(tool_calls);
    }
    let body = json!({
        "id": message.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": msg, "logprobs": null, "finish_reason": finish}],
        "usage": usage_json(&usage),
    });
    (body, usage)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn message_with_thinking_text_and_tool_use() {
        let m = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": "s"},
                {"type": "text", "text": "Calling lookup."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 7, "cache_read_input_tokens": 20,
                      "cache_creation_input_tokens": 3, "output_tokens": 12}});
        let (v, usage) = to_openai(&m, &RequestFacts::default(), 9);
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], "Calling lookup.");
        assert_eq!(msg["reasoning_content"], "Let me think.");
        assert_eq!(msg["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(
            msg["tool_calls"][0]["function"]["arguments"],
            r#"{"q":"x"}"#
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 30,
                completion_tokens: 12,
                cache_read_tokens: 20,
                cache_write_tokens: 3,
                reasoning_tokens: 0
            }
        );
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 20);
        assert_eq!(v["usage"]["total_tokens"], 42);
    }

    #[test]
    fn finish_reasons() {
        for (a, o) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason(Some(a)), Some(o));
        }
        assert_eq!(finish_reason(None), None);
    }
}
