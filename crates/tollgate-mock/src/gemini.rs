//! Gemini `generateContent` wire format of the mock provider: the same
//! deterministic reply as [`crate::openai`] (the request is read as the
//! equivalent chat), as a `GenerateContentResponse` or as the
//! `streamGenerateContent?alt=sse` stream (CRLF-framed `data:` events, each
//! a partial response carrying the usage so far; the last one has the
//! `finishReason`).
//!
//! Deterministic extras: `thinkingConfig.includeThoughts` adds a thought
//! part (counted in `thoughtsTokenCount`); a `cachedContent` reference
//! reports half the prompt as `cachedContentTokenCount` (included in
//! `promptTokenCount`, as Gemini does); model `mock-safety` is blocked with
//! `finishReason: SAFETY`.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::openai;

/// Thought text of the mock.
pub const THOUGHT: &str = "The caller wants a greeting; keep it short.";

/// The Google RPC status name for an HTTP status.
pub fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 | 529 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// A Gemini-shaped error body.
pub fn error_body(status: u16, message: &str) -> Value {
    json!({"error": {"code": status, "message": message, "status": status_name(status)}})
}

fn parts_text(parts: Option<&Value>) -> String {
    parts
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter_map(|x| x.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The chat request equivalent to a Gemini request (for the reply logic).
fn as_chat(model: &str, body: &Value) -> Value {
    let mut messages = Vec::new();
    let system = body
        .get("systemInstruction")
        .or_else(|| body.get("system_instruction"));
    if let Some(s) = system {
        messages.push(json!({"role": "system", "content": parts_text(s.get("parts"))}));
    }
    for c in body
        .get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let parts = c.get("parts").and_then(Value::as_array);
        let response = parts.and_then(|p| {
            p.iter()
                .find_map(|x| x.get("functionResponse").and_then(|r| r.get("response")))
        });
        if let Some(r) = response {
            let text = r
                .get("content")
                .and_then(Value::as_str)
                .map_or_else(|| r.to_string(), str::to_owned);
            messages.push(json!({"role": "tool", "content": text}));
            continue;
        }
        let role = if c.get("role").and_then(Value::as_str) == Some("model") {
            "assistant"
        } else {
            "user"
        };
        messages.push(json!({"role": role, "content": parts_text(c.get("parts"))}));
    }
    let mut chat = json!({"model": model, "messages": messages});
    let first_tool = body
        .pointer("/tools/0/functionDeclarations/0/name")
        .and_then(Value::as_str);
    let mode = body
        .pointer("/toolConfig/functionCallingConfig/mode")
        .and_then(Value::as_str);
    if let (Some(name), false) = (first_tool, mode == Some("NONE")) {
        chat["tools"] = json!([{"type": "function", "function": {"name": name}}]);
    }
    if let Some(n) = body.pointer("/generationConfig/maxOutputTokens") {
        chat["max_tokens"] = n.clone();
    }
    chat
}

/// What the mock answers to one Gemini request.
#[derive(Debug, Clone, PartialEq)]
pub struct GeminiReply {
    pub reply: openai::MockReply,
    pub thought: bool,
    pub cached: u32,
    pub safety_block: bool,
}

/// The deterministic reply to a Gemini request for `model`.
pub fn reply_for(model: &str, body: &Value) -> GeminiReply {
    let reply = openai::reply_for(&as_chat(model, body));
    let cached = if body.get("cachedContent").is_some() {
        reply.prompt_tokens / 2
    } else {
        0
    };
    GeminiReply {
        thought: body
            .pointer("/generationConfig/thinkingConfig/includeThoughts")
            .and_then(Value::as_bool)
            == Some(true),
        cached,
        safety_block: model == "mock-safety",
        reply,
    }
}

fn words(s: &str) -> u32 {
    u32::try_from(s.split_whitespace().count()).unwrap_or(u32::MAX)
}

fn finish_reason(r: &GeminiReply) -> &'static str {
    if r.safety_block {
        return "SAFETY";
    }
    match r.reply.finish_reason {
        "length" => "MAX_TOKENS",
        _ => "STOP",
    }
}

fn usage(r: &GeminiReply, candidates: u32) -> Value {
    let thoughts = if r.thought { words(THOUGHT) } else { 0 };
    let mut u = json!({
        "promptTokenCount": r.reply.prompt_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": r.reply.prompt_tokens + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": r.reply.prompt_tokens}]
    });
    if thoughts > 0 {
        u["thoughtsTokenCount"] = json!(thoughts);
    }
    if r.cached > 0 {
        u["cachedContentTokenCount"] = json!(r.cached);
    }
    u
}

fn response(model: &str, id: &str, parts: Vec<Value>, finish: Option<&str>, usage: Value) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
        if f == "SAFETY" {
            candidate["content"] = json!({"role": "model"});
            candidate["safetyRatings"] = json!([{"category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                "probability": "HIGH", "blocked": true}]);
        }
    }
    json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
           "responseId": id})
}

fn answer_parts(r: &GeminiReply) -> Vec<Value> {
    let mut parts = Vec::new();
    if r.thought {
        parts.push(json!({"text": THOUGHT, "thought": true}));
    }
    if !r.reply.text.is_empty() {
        parts.push(json!({"text": r.reply.text}));
    }
    if let Some(c) = &r.reply.tool_call {
        let args: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
        parts.push(json!({"functionCall": {"name": c.name, "args": args}}));
    }
    parts
}

/// The `GenerateContentResponse` of a non-streamed reply.
pub fn response_body(model: &str, id: &str, r: &GeminiReply) -> Value {
    response(
        model,
        id,
        answer_parts(r),
        Some(finish_reason(r)),
        usage(r, r.reply.completion_tokens),
    )
}

/// The `alt=sse` events of a streamed reply: CRLF-framed, a few words per
/// event, the function call whole in one event, usage on every event.
pub fn stream_events(model: &str, id: &str, r: &GeminiReply) -> Vec<Bytes> {
    let sse = |v: Value| Bytes::from(format!("data: {v}\r\n\r\n"));
    let mut out = Vec::new();
    let mut sent: u32 = 0;
    if r.thought {
        out.push(sse(response(
            model,
            id,
            vec![json!({"text": THOUGHT, "thought": true})],
            None,
            usage(r, 0),
        )));
    }
    let words: Vec<&str> = r.reply.text.split(' ').filter(|w| !w.is_empty()).collect();
    for (i, group) in words.chunks(3).enumerate() {
        let mut text = group.join(" ");
        if i > 0 {
            text.insert(0, ' ');
        }
        sent += u32::try_from(group.len()).unwrap_or(0);
        out.push(sse(response(
            model,
            id,
            vec![json!({"text": text})],
            None,
            usage(r, sent),
        )));
    }
    let mut last_parts = Vec::new();
    if let Some(c) = &r.reply.tool_call {
        let args: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
        last_parts.push(json!({"functionCall": {"name": c.name, "args": args}}));
    }
    out.push(sse(response(
        model,
        id,
        last_parts,
        Some(finish_reason(r)),
        usage(r, r.reply.completion_tokens),
    )));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_request_as_the_equivalent_chat() {
        let body = json!({"systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [{"role": "user", "parts": [{"text": "hello gateway"}]}]});
        let r = reply_for("mock-small", &body);
        assert_eq!(
            r.reply.text,
            "Hello from mock-small, the Tollgate mock provider. You said: \"hello gateway\""
        );
        assert_eq!(r.reply.prompt_tokens, 10);
        let v = response_body("mock-small", "r1", &r);
        assert_eq!(v["candidates"][0]["finishReason"], "STOP");
        assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 11);
    }
}
