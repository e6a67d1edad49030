//! Where the text of a request or an answer lives in each protocol's JSON:
//! walked in place so redaction rewrites the body sent upstream (or the
//! answer sent to the caller) without re-parsing.

use serde_json::{Map, Value};

/// The protocol shape of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestShape {
    /// `/v1/chat/completions`: `messages[].content` (string or parts).
    Chat,
    /// `/v1/messages`: `system` and `messages[].content` (string or blocks).
    Anthropic,
    /// `/v1/responses`: `instructions` and `input` (string or items).
    Responses,
    /// `/v1/embeddings`: `input` (string or array of strings).
    Embeddings,
}

/// Calls `f` on every text string of content (string or an array of
/// parts/blocks with a `text` field, nested `content` of tool results too).
fn content_texts(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(parts) => {
            for p in parts {
                match p {
                    Value::String(s) => f(s),
                    Value::Object(o) => {
                        if let Some(Value::String(s)) = o.get_mut("text") {
                            f(s);
                        }
                        if let Some(c) = o.get_mut("content") {
                            content_texts(c, f);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Calls `f` on every caller-written text of a request body.
pub fn request_texts(
    body: &mut Map<String, Value>,
    shape: RequestShape,
    f: &mut dyn FnMut(&mut String),
) {
    match shape {
        RequestShape::Chat | RequestShape::Anthropic => {
            if shape == RequestShape::Anthropic {
                if let Some(system) = body.get_mut("system") {
                    content_texts(system, f);
                }
            }
            if let Some(Value::Array(messages)) = body.get_mut("messages") {
                for m in messages {
                    if let Some(c) = m.get_mut("content") {
                        content_texts(c, f);
                    }
                }
            }
        }
        RequestShape::Responses => {
            if let Some(Value::String(s)) = body.get_mut("instructions") {
                f(s);
            }
            match body.get_mut("input") {
                Some(Value::String(s)) => f(s),
                Some(Value::Array(items)) => {
                    for item in items {
                        match item {
                            Value::String(s) => f(s),
                            Value::Object(o) => {
                                if let Some(c) = o.get_mut("content") {
                                    content_texts(c, f);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        RequestShape::Embeddings => match body.get_mut("input") {
            Some(Value::String(s)) => f(s),
            Some(Value::Array(items)) => {
                for i in items {
                    if let Value::String(s) = i {
                        f(s);
                    }
                }
            }
            _ => {}
        },
    }
}

/// Number of messages of a request (the system prompt of Anthropic's and
/// the items of a responses input count as one each).
pub fn message_count(body: &Map<String, Value>, shape: RequestShape) -> u64 {
    let len = |k: &str| {
        body.get(k)
            .and_then(Value::as_array)
            .map_or(0, |a| a.len() as u64)
    };
    match shape {
        RequestShape::Chat => len("messages"),
        RequestShape::Anthropic => len("messages") + u64::from(body.contains_key("system")),
        RequestShape::Responses => match body.get("input") {
            Some(Value::Array(a)) => a.len() as u64,
            Some(_) => 1,
            None => 0,
        },
        RequestShape::Embeddings => match body.get("input") {
            Some(Value::Array(a)) => a.len() as u64,
            Some(_) => 1,
            None => 0,
        },
    }
}

/// Calls `f` on every text of a complete answer, whatever its protocol:
/// OpenAI `choices[].message.content`, Anthropic `content[].text`,
/// responses `output[].content[].text`.
pub fn answer_texts(answer: &mut Value, f: &mut dyn FnMut(&mut String)) {
    if let Some(Value::Array(choices)) = answer.get_mut("choices") {
        for c in choices {
            if let Some(Value::String(s)) = c.pointer_mut("/message/content") {
                f(s);
            }
        }
    }
    if answer.get("type").and_then(Value::as_str) == Some("message") {
        if let Some(c) = answer.get_mut("content") {
            content_texts(c, f);
        }
    }
    if let Some(Value::Array(output)) = answer.get_mut("output") {
        for item in output {
            if let Some(c) = item.get_mut("content") {
                content_texts(c, f);
            }
        }
    }
}

/// The text a stream event adds to the answer: an OpenAI chunk's
/// `choices[].delta.content`, an Anthropic `content_block_delta`'s
/// `delta.text`, a responses `response.output_text.delta`'s `delta`.
pub fn event_text(data: &[u8], out: &mut String) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Some(Value::Array(choices)) = v.get("choices") {
        for c in choices {
            if let Some(s) = c.pointer("/delta/content").and_then(Value::as_str) {
                out.push_str(s);
            }
        }
        return;
    }
    match v.get("type").and_then(Value::as_str) {
        Some("content_block_delta") => {
            if let Some(s) = v.pointer("/delta/text").and_then(Value::as_str) {
                out.push_str(s);
            }
        }
        Some("response.output_text.delta") => {
            if let Some(s) = v.get("delta").and_then(Value::as_str) {
                out.push_str(s);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn collect(body: Value, shape: RequestShape) -> Vec<String> {
        let Value::Object(mut m) = body else {
            unreachable!()
        };
        let mut out = Vec::new();
        request_texts(&mut m, shape, &mut |s| out.push(s.clone()));
        out
    }

    #[test]
    fn finds_text_in_every_shape() {
        assert_eq!(
            collect(
                json!({"messages":[{"role":"system","content":"a"},
                    {"role":"user","content":[{"type":"text","text":"b"},{"type":"image_url","image_url":{"url":"x"}}]}]}),
                RequestShape::Chat
            ),
            vec!["a", "b"]
        );
        assert_eq!(
            collect(
                json!({"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":"u"},
                    {"role":"user","content":[{"type":"tool_result","content":"r"}]}]}),
                RequestShape::Anthropic
            ),
            vec!["s", "u", "r"]
        );
        assert_eq!(
            collect(
                json!({"instructions":"i","input":[{"role":"user","content":[{"type":"input_text","text":"t"}]}]}),
                RequestShape::Responses
            ),
            vec!["i", "t"]
        );
        assert_eq!(
            collect(json!({"input":["x","y"]}), RequestShape::Embeddings),
            vec!["x", "y"]
        );
    }

    #[test]
    fn stream_event_text() {
        let mut s = String::new();
        event_text(br#"{"choices":[{"delta":{"content":"he"}}]}"#, &mut s);
        event_text(
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"llo"}}"#,
            &mut s,
        );
        event_text(
            br#"{"type":"response.output_text.delta","delta":"!"}"#,
            &mut s,
        );
        assert_eq!(s, "hello!");
    }
}
