//! A cached answer replayed as the SSE stream a live call would have sent,
//! in the caller's protocol: OpenAI `chat.completion.chunk` events (role
//! chunk, content chunk, tool-call chunks, finish chunk, the usage chunk when
//! `stream_options.include_usage`, `data: [DONE]`), or Anthropic's sequence
//! (`message_start`, per block `content_block_start` / delta /
//! `content_block_stop`, `message_delta`, `message_stop`).

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

use crate::providers::event_stream::{named_event, DONE_EVENT};

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// A stored `chat.completion` body as a chunk stream; `None` when the body
/// is not one (then the entry is not replayable and the call goes upstream).
pub fn openai_chat_stream(body: &[u8], include_usage: bool) -> Option<Bytes> {
    let Value::Object(c) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    let choices = c.get("choices")?.as_array()?;
    let chunk = |choices: Value| {
        let mut m = Map::new();
        m.insert("id".into(), c.get("id").cloned().unwrap_or(json!("")));
        m.insert("object".into(), json!("chat.completion.chunk"));
        m.insert(
            "created".into(),
            c.get("created").cloned().unwrap_or(json!(0)),
        );
        m.insert("model".into(), c.get("model").cloned().unwrap_or(json!("")));
        if let Some(fp) = c.get("system_fingerprint") {
            m.insert("system_fingerprint".into(), fp.clone());
        }
        m.insert("choices".into(), choices);
        if include_usage {
            m.insert("usage".into(), Value::Null);
        }
        Value::Object(m)
    };
    let mut out = BytesMut::new();
    for (pos, choice) in choices.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or(json!(pos));
        let message = choice.get("message").cloned().unwrap_or_default();
        let piece = |delta: Value, finish: Value| json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        out.extend_from_slice(&sse(&chunk(piece(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ))));
        for field in ["reasoning_content", "content", "refusal"] {
            if let Some(text) = message.get(field).and_then(Value::as_str) {
                if !text.is_empty() {
                    out.extend_from_slice(&sse(&chunk(piece(json!({ field: text }), Value::Null))));
                }
            }
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            for (i, call) in calls.iter().enumerate() {
                let mut call = call.clone();
                if let Value::Object(m) = &mut call {
                    m.insert("index".into(), json!(i));
                }
                out.extend_from_slice(&sse(&chunk(piece(
                    json!({ "tool_calls": [call] }),
                    Value::Null,
                ))));
            }
        }
        let finish = choice
            .get("finish_reason")
            .cloned()
            .unwrap_or(json!("stop"));
        out.extend_from_slice(&sse(&chunk(piece(json!({}), finish))));
    }
    if include_usage {
        let mut last = chunk(json!([]));
        last["usage"] = c.get("usage").cloned().unwrap_or(Value::Null);
        out.extend_from_slice(&sse(&last));
    }
    out.extend_from_slice(&DONE_EVENT);
    Some(out.freeze())
}

/// A stored Anthropic `message` body as Anthropic's event sequence; `None`
/// when the body is not a message.
pub fn anthropic_message_stream(body: &[u8]) -> Option<Bytes> {
    let Value::Object(msg) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    let content = msg.get("content")?.as_array()?;
    let usage = msg.get("usage").cloned().unwrap_or_else(|| json!({}));
    let mut start_usage = usage.clone();
    if let Value::Object(u) = &mut start_usage {
        u.insert("output_tokens".into(), json!(0));
    }
    let mut start = msg.clone();
    start.insert("content".into(), json!([]));
    start.insert("stop_reason".into(), Value::Null);
    start.insert("stop_sequence".into(), Value::Null);
    start.insert("usage".into(), start_usage);
    let mut out = BytesMut::new();
    out.extend_from_slice(&named_event(
        "message_start",
        &json!({"type": "message_start", "message": start}),
    ));
    for (index, block) in content.iter().enumerate() {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("text");
        let mut opened = block.clone();
        let mut deltas = Vec::new();
        if let Value::Object(b) = &mut opened {
            match kind {
                "text" => {
                    let text = b.insert("text".into(), json!("")).unwrap_or(json!(""));
                    deltas.push(json!({"type": "text_delta", "text": text}));
                }
                "thinking" => {
                    let thinking = b.insert("thinking".into(), json!("")).unwrap_or(json!(""));
                    let signature = b.insert("signature".into(), json!("")).unwrap_or(json!(""));
                    deltas.push(json!({"type": "thinking_delta", "thinking": thinking}));
                    deltas.push(json!({"type": "signature_delta", "signature": signature}));
                }
                "tool_use" | "server_tool_use" => {
                    let input = b.insert("input".into(), json!({})).unwrap_or(json!({}));
                    deltas.push(
                        json!({"type": "input_json_delta", "partial_json": input.to_string()}),
                    );
                }
                // Other blocks arrive whole in their start event.
                _ => {}
            }
        }
        out.extend_from_slice(&named_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": opened}),
        ));
        if index == 0 {
            out.extend_from_slice(&named_event("ping", &json!({"type": "ping"})));
        }
        for delta in deltas {
            out.extend_from_slice(&named_event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        out.extend_from_slice(&named_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    out.extend_from_slice(&named_event(
        "message_delta",
        &json!({"type": "message_delta",
            "delta": {"stop_reason": msg.get("stop_reason").cloned().unwrap_or(Value::Null),
                      "stop_sequence": msg.get("stop_sequence").cloned().unwrap_or(Value::Null)},
            "usage": usage}),
    ));
    out.extend_from_slice(&named_event(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    Some(out.freeze())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cache::assemble::{AnthropicAssembler, OpenAiAssembler, StreamAssembler};
    use crate::stream::{event_data, AnthropicMeter, EventMeter, SseSplitter, StreamMeter};

    const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":7,
        "model":"mock-small","system_fingerprint":"fp_x","choices":[{"index":0,
        "message":{"role":"assistant","content":"Hello there","tool_calls":[{"id":"call_1",
        "type":"function","function":{"name":"lookup","arguments":"{\"q\":1}"}}]},
        "logprobs":null,"finish_reason":"tool_calls"}],
        "usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#;

    fn events(stream: &[u8]) -> Vec<Bytes> {
        SseSplitter::new().push(stream)
    }

    #[test]
    fn openai_replay_is_well_formed_and_reassembles_to_the_same_answer() {
        let s = openai_chat_stream(COMPLETION.as_bytes(), true).unwrap();
        let evs = events(&s);
        let data: Vec<Value> = evs
            .iter()
            .filter_map(|e| event_data(e))
            .filter(|d| d != b"[DONE]")
            .map(|d| serde_json::from_slice(&d).unwrap())
            .collect();
        assert_eq!(data[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(data.iter().all(|c| c["object"] == "chat.completion.chunk"));
        assert!(data.iter().all(|c| c["id"] == "chatcmpl-1"));
        let last = data.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["completion_tokens"], 3);
        assert_eq!(&evs.last().unwrap()[..], b"data: [DONE]\n\n");
        // The gateway's own meter accepts it as a finished stream with usage.
        let mut meter = StreamMeter::new(true);
        for e in &evs {
            meter.on_event(e);
        }
        assert!(EventMeter::finished(&meter));
        assert_eq!(meter.usage.unwrap().prompt_tokens, 5);
        // And assembling the replay gives back the stored answer.
        let mut asm = OpenAiAssembler::default();
        for e in &evs {
            asm.on_event(e);
        }
        let (body, _) = asm.finish().unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        let want: Value = serde_json::from_str(COMPLETION).unwrap();
        assert_eq!(got["choices"], want["choices"]);
        assert_eq!(got["usage"], want["usage"]);

        // Without include_usage: no usage chunk, no usage field.
        let s = openai_chat_stream(COMPLETION.as_bytes(), false).unwrap();
        assert!(!String::from_utf8_lossy(&s).contains("\"usage\""));
        assert!(openai_chat_stream(b"{\"no\":1}", false).is_none());
    }

    const MESSAGE: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
        "content":[{"type":"text","text":"Hi!"},{"type":"tool_use","id":"toolu_1","name":"f",
        "input":{"a":[1,2]}}],"stop_reason":"tool_use","stop_sequence":null,
        "usage":{"input_tokens":9,"output_tokens":4}}"#;

    #[test]
    fn anthropic_replay_follows_the_event_sequence_and_reassembles() {
        let s = anthropic_message_stream(MESSAGE.as_bytes()).unwrap();
        let evs = events(&s);
        let names: Vec<&str> = evs
            .iter()
            .map(|e| crate::providers::event_stream::event_name(e).unwrap())
            .collect();
        assert_eq!(
            names,
            vec![
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let mut meter = AnthropicMeter::new();
        for e in &evs {
            meter.on_event(e);
        }
        assert!(meter.finished());
        let u = meter.usage().unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (9, 4));
        let mut asm = AnthropicAssembler::default();
        for e in &evs {
            asm.on_event(e);
        }
        let (body, _) = asm.finish().unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        let want: Value = serde_json::from_str(MESSAGE).unwrap();
        assert_eq!(got["content"], want["content"]);
        assert_eq!(got["stop_reason"], "tool_use");
        assert_eq!(got["usage"]["output_tokens"], 4);
    }
}
