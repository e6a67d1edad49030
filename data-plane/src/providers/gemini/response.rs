//! Gemini `GenerateContentResponse` → OpenAI `chat.completion` (and the
//! pieces the stream translation shares): parts, finish reasons, usage.

use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_core::usage::Usage;

use crate::providers::openai::usage_json;

/// Gemini's `usageMetadata`. `promptTokenCount` includes
/// `cachedContentTokenCount`; `candidatesTokenCount` excludes
/// `thoughtsTokenCount`.
#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GeminiUsage {
    #[serde(default)]
    pub prompt_token_count: i64,
    #[serde(default)]
    pub candidates_token_count: i64,
    #[serde(default)]
    pub cached_content_token_count: i64,
    #[serde(default)]
    pub thoughts_token_count: i64,
}

impl GeminiUsage {
    pub fn normalize(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_token_count,
            // OpenAI's completion count includes reasoning.
            completion_tokens: self.candidates_token_count + self.thoughts_token_count,
            cache_read_tokens: self.cached_content_token_count,
            cache_write_tokens: 0,
            reasoning_tokens: self.thoughts_token_count,
        }
    }
}

/// OpenAI `finish_reason` for a Gemini `finishReason`.
pub fn finish_reason(reason: &str, called_tools: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if called_tools => "tool_calls",
        _ => "stop",
    }
}

/// A content part, classified.
pub enum Part<'a> {
    Text(&'a str),
    Thought(&'a str),
    Call { name: &'a str, args: String },
    Other,
}

pub fn classify(part: &Value) -> Part<'_> {
    if let Some(call) = part.get("functionCall") {
        return Part::Call {
            name: call.get("name").and_then(Value::as_str).unwrap_or(""),
            args: call
                .get("args")
                .cloned()
                .unwrap_or_else(|| json!({}))
                .to_string(),
        };
    }
    match (
        part.get("text").and_then(Value::as_str),
        part.get("thought"),
    ) {
        (Some(t), Some(Value::Bool(true))) => Part::Thought(t),
        (Some(t), _) => Part::Text(t),
        _ => Part::Other,
    }
}

/// The id given to the `n`th function call of an answer (Gemini has none).
pub fn call_id(response_id: &str, n: usize) -> String {
    format!("call_{response_id}_{n}")
}

/// Translates a complete Gemini response.
pub fn to_openai(resp: &Value, model: &str, created: i64) -> (Value, Usage) {
    let id = resp
        .get("responseId")
        .and_then(Value::as_str)
        .unwrap_or("gemini");
    let candidate = resp.pointer("/candidates/0");
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for part in candidate
        .and_then(|c| c.pointer("/content/parts"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match classify(part) {
            Part::Text(t) => text.push_str(t),
            Part::Thought(t) => reasoning.push_str(t),
            Part::Call { name, args } => {
                let n = calls.len();
                calls.push(json!({"id": call_id(id, n), "type": "function",
                    "function": {"name": name, "arguments": args}}));
            }
            Part::Other => {}
        }
    }
    let finish = match candidate
        .and_then(|c| c.get("finishReason"))
        .and_then(Value::as_str)
    {
        Some(r) => finish_reason(r, !calls.is_empty()),
        // No candidate at all: the prompt itself was blocked.
        None if resp.pointer("/promptFeedback/blockReason").is_some() => "content_filter",
        None => "stop",
    };
    let usage = resp
        .get("usageMetadata")
        .and_then(|u| serde_json::from_value::<GeminiUsage>(u.clone()).ok())
        .unwrap_or_default()
        .normalize();
    let mut msg = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null});
    if !reasoning.is_empty() {
        msg["reasoning_content"] = Value::String(reasoning);
    }
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    let body = json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
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
    fn response_with_thought_call_and_usage_buckets() {
        let r = json!({"responseId": "r1", "candidates": [{"content": {"role": "model", "parts": [
                {"text": "hmm", "thought": true}, {"text": "Calling."},
                {"functionCall": {"name": "f", "args": {"a": 1}}}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 60,
                "candidatesTokenCount": 10, "thoughtsTokenCount": 5, "totalTokenCount": 115}});
        let (v, u) = to_openai(&r, "gemini-x", 1);
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], "Calling.");
        assert_eq!(m["reasoning_content"], "hmm");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], r#"{"a":1}"#);
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 100,
                completion_tokens: 15,
                cache_read_tokens: 60,
                cache_write_tokens: 0,
                reasoning_tokens: 5
            }
        );
    }

    #[test]
    fn blocked_prompt_is_content_filter() {
        let r = json!({"promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 4}});
        let (v, _) = to_openai(&r, "g", 1);
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(v["choices"][0]["message"]["content"], "");
    }
}
