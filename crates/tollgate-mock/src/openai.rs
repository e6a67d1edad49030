//! OpenAI Chat Completions wire format of the mock provider: a deterministic
//! reply derived from the request, its `chat.completion` body and its
//! `chat.completion.chunk` SSE stream, exactly as OpenAI frames them.

use bytes::Bytes;
use serde_json::{json, Value};

/// What the mock answers to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockReply {
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// `stop`, or `length` when `max_tokens` cut the reply, or
    /// `tool_calls`.
    pub finish_reason: &'static str,
    /// With `tools` (and the last message not a tool result): a call of the
    /// first tool with `{"query": <quote>}`, after a short text.
    pub tool_call: Option<MockToolCall>,
    /// With `prompt_cache_key`: half the prompt is reported as cached.
    pub cached_tokens: u32,
    /// With `reasoning_effort`: 4 reasoning tokens, counted in
    /// `completion_tokens` as OpenAI does.
    pub reasoning_tokens: u32,
}

/// A tool call the mock makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// Longest snippet of the caller's last message quoted in the reply.
const QUOTE_CHARS: usize = 60;

/// The deterministic reply to a chat completion request.
///
/// The text quotes (a prefix of) the last user message, so tests can tell
/// answers to different requests apart. A "token" is a whitespace-separated
/// word: each message costs its words plus 3, as OpenAI's framing does, and a
/// stream sends one word per chunk.
pub fn reply_for(body: &Value) -> MockReply {
    let mut r = reply_core(body);
    if body.get("prompt_cache_key").is_some_and(Value::is_string) {
        r.cached_tokens = r.prompt_tokens / 2;
    }
    if body.get("reasoning_effort").is_some_and(Value::is_string) {
        r.reasoning_tokens = 4;
        r.completion_tokens += 4;
    }
    r
}

fn reply_core(body: &Value) -> MockReply {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("mock");
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut prompt_tokens: u32 = 0;
    let mut last_user = String::new();
    for m in messages {
        let text = message_text(m);
        prompt_tokens = prompt_tokens.saturating_add(word_count(&text) + 3);
        if m.get("role").and_then(Value::as_str) == Some("user") {
            last_user = text;
        }
    }
    let quote: String = last_user
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(QUOTE_CHARS)
        .collect();
    let first_tool = body
        .pointer("/tools/0/function/name")
        .and_then(Value::as_str)
        .filter(|_| body.get("tool_choice").and_then(Value::as_str) != Some("none"));
    let last_is_tool = messages
        .last()
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        == Some("tool");
    if let (Some(name), false) = (first_tool, last_is_tool) {
        let text = format!("Calling {name}.");
        return MockReply {
            completion_tokens: word_count(&text) + 5,
            text,
            prompt_tokens,
            finish_reason: "tool_calls",
            tool_call: Some(MockToolCall {
                id: format!("call_mock{prompt_tokens:08x}"),
                name: name.to_string(),
                arguments: json!({"query": quote}).to_string(),
            }),
            cached_tokens: 0,
            reasoning_tokens: 0,
        };
    }
    let full = if last_is_tool {
        let result = messages.last().map(message_text).unwrap_or_default();
        format!("Hello from {model}, the Tollgate mock provider. The tool said: \"{result}\"")
    } else {
        format!("Hello from {model}, the Tollgate mock provider. You said: \"{quote}\"")
    };
    let words: Vec<&str> = full.split_whitespace().collect();
    let limit = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let (kept, finish_reason) = match limit {
        Some(n) if n < words.len() => (&words[..n], "length"),
        _ => (&words[..], "stop"),
    };
    MockReply {
        text: kept.join(" "),
        prompt_tokens,
        completion_tokens: u32::try_from(kept.len()).unwrap_or(u32::MAX),
        finish_reason,
        tool_call: None,
        cached_tokens: 0,
        reasoning_tokens: 0,
    }
}

fn word_count(s: &str) -> u32 {
    u32::try_from(s.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// Text of a message whose content is a string or an array of content parts.
fn message_text(m: &Value) -> String {
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn usage_json(reply: &MockReply) -> Value {
    json!({
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    })
}

/// The `chat.completion` object for a non-streamed reply.
pub fn completion_body(id: &str, model: &str, created: i64, reply: &MockReply) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message_json(reply),
            "logprobs": null,
            "finish_reason": reply.finish_reason
        }],
        "usage": usage_json(reply),
        "system_fingerprint": "fp_tollgate_mock"
    })
}

fn message_json(reply: &MockReply) -> Value {
    let mut m = json!({"role": "assistant", "content": reply.text, "refusal": null});
    if let Some(c) = &reply.tool_call {
        m["tool_calls"] = json!([{"id": c.id, "type": "function",
            "function": {"name": c.name, "arguments": c.arguments}}]);
    }
    m
}

fn chunk(id: &str, model: &str, created: i64, choices: Value, include_usage: bool) -> Value {
    let mut c = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_tollgate_mock",
        "choices": choices
    });
    if include_usage {
        // OpenAI sends `"usage": null` on every chunk but the last when usage
        // was asked for.
        c["usage"] = Value::Null;
    }
    c
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// The SSE events of a streamed reply, each complete (`data: ...\n\n`): a role
/// chunk, one chunk per word, a finish chunk, the usage chunk (empty
/// `choices`) when `include_usage`, and `data: [DONE]`.
pub fn stream_events(
    id: &str,
    model: &str,
    created: i64,
    reply: &MockReply,
    include_usage: bool,
) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(reply.completion_tokens as usize + 4);
    out.push(sse(&chunk(
        id,
        model,
        created,
        json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null},
                "logprobs": null, "finish_reason": null}]),
        include_usage,
    )));
    for (i, word) in reply.text.split(' ').filter(|w| !w.is_empty()).enumerate() {
        let piece = if i == 0 {
            word.to_string()
        } else {
            format!(" {word}")
        };
        out.push(sse(&chunk(
            id,
            model,
            created,
            json!([{"index": 0, "delta": {"content": piece}, "logprobs": null, "finish_reason": null}]),
            include_usage,
        )));
    }
    if let Some(c) = &reply.tool_call {
        out.push(sse(&chunk(
            id,
            model,
            created,
            json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": ""}}]}, "logprobs": null, "finish_reason": null}]),
            include_usage,
        )));
        let chars: Vec<char> = c.arguments.chars().collect();
        for piece in chars.chunks(7) {
            let piece: String = piece.iter().collect();
            out.push(sse(&chunk(
                id,
                model,
                created,
                json!([{"index": 0, "delta": {"tool_calls": [{"index": 0,
                    "function": {"arguments": piece}}]}, "logprobs": null, "finish_reason": null}]),
                include_usage,
            )));
        }
    }
    out.push(sse(&chunk(
        id,
        model,
        created,
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": reply.finish_reason}]),
        include_usage,
    )));
    if include_usage {
        let mut last = chunk(id, model, created, json!([]), false);
        last["usage"] = usage_json(reply);
        out.push(sse(&last));
    }
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

/// A deterministic embedding of `dims` floats for an input string.
pub fn embedding_for(input: &str, dims: usize) -> Vec<f32> {
    // FNV-1a seeded walk: cheap, deterministic, different per input.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..dims)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            // Map to [-1, 1).
            ((h >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// A vector as OpenAI's `encoding_format: base64`: the little-endian
/// bytes of its `f32`s.
pub fn embedding_base64(v: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An OpenAI-shaped error body.
pub fn error_body(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn req() -> Value {
        json!({"model": "mock-small", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi   there"}
        ]})
    }

    #[test]
    fn reply_is_deterministic_and_counts_words() {
        let a = reply_for(&req());
        assert_eq!(a, reply_for(&req()));
        assert_eq!(
            a.text,
            "Hello from mock-small, the Tollgate mock provider. You said: \"hi there\""
        );
        // (2 + 3) + (2 + 3)
        assert_eq!(a.prompt_tokens, 10);
        assert_eq!(a.completion_tokens, 11);
        assert_eq!(a.finish_reason, "stop");
    }

    #[test]
    fn max_tokens_truncates_with_length_finish() {
        let mut r = req();
        r["max_tokens"] = json!(3);
        let a = reply_for(&r);
        assert_eq!(a.text, "Hello from mock-small,");
        assert_eq!(a.completion_tokens, 3);
        assert_eq!(a.finish_reason, "length");
    }

    #[test]
    fn stream_concatenates_to_the_non_stream_text() {
        let reply = reply_for(&req());
        let events = stream_events("chatcmpl-1", "mock-small", 7, &reply, true);
        let mut text = String::new();
        let mut usage = None;
        for e in &events {
            let s = std::str::from_utf8(e).unwrap();
            assert!(s.starts_with("data: ") && s.ends_with("\n\n"));
            let data = &s[6..s.len() - 2];
            if data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(data).unwrap();
            if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                text.push_str(c);
            }
            if v["usage"].is_object() {
                usage = Some(v["usage"].clone());
                assert_eq!(v["choices"], json!([]));
            }
        }
        assert_eq!(text, reply.text);
        assert_eq!(usage.unwrap()["completion_tokens"], 11);
        assert_eq!(events.last().unwrap().as_ref(), b"data: [DONE]\n\n");
        let no_usage = stream_events("chatcmpl-1", "mock-small", 7, &reply, false);
        assert_eq!(no_usage.len(), events.len() - 1);
        assert!(!std::str::from_utf8(&no_usage[1]).unwrap().contains("usage"));
    }

    #[test]
    fn embeddings_are_deterministic_and_bounded() {
        let a = embedding_for("hello", 8);
        assert_eq!(a, embedding_for("hello", 8));
        assert_ne!(a, embedding_for("world", 8));
        assert!(a.iter().all(|x| (-1.0..1.0).contains(x)));
    }
}
