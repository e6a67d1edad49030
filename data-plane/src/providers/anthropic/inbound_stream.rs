//! OpenAI `chat.completion.chunk` events → Anthropic stream events, for
//! `/v1/messages` callers whose model is served by a non-Anthropic
//! provider. The output follows Anthropic's sequence exactly:
//! `message_start`, then per content block `content_block_start` (the first
//! followed by a `ping`), its deltas and `content_block_stop`, then
//! `message_delta` (stop reason and usage) and `message_stop`.
//!
//! Reasoning deltas open a `thinking` block, content deltas a `text` block,
//! each new tool call (a delta with an `id`) a `tool_use` block whose
//! argument pieces become `input_json_delta`s. Usage arrives in OpenAI's
//! last chunk, so `message_start` reports 0 input tokens and
//! `message_delta` the real counts (Anthropic's usage there is cumulative).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Value};
use tollgate_core::usage::Usage;

use super::inbound::{anthropic_usage, stop_reason};
use crate::http::errors::{ApiFormat, GatewayError};
use crate::providers::event_stream::{named_event, EventTranslator};
use crate::providers::openai::usage_from_chunk;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    Tool(u64),
}

/// The translation state of one stream.
#[derive(Debug)]
pub struct OpenAiToAnthropic {
    /// The public model name the caller asked for.
    model: String,
    started: bool,
    /// The open block and its Anthropic index.
    open: Option<(Open, usize)>,
    next_index: usize,
    /// OpenAI tool-call index → whether its block was opened.
    tools: HashMap<u64, usize>,
    finish: Option<String>,
    usage: Usage,
}

impl OpenAiToAnthropic {
    pub fn new(model: &str) -> Self {
        OpenAiToAnthropic {
            model: model.to_string(),
            started: false,
            open: None,
            next_index: 0,
            tools: HashMap::new(),
            finish: None,
            usage: Usage::default(),
        }
    }

    fn start(&mut self, id: &str, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(named_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0, "output_tokens": 0}}}),
        ));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((_, index)) = self.open.take() {
            out.push(named_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    /// Makes `kind` the open block, opening it with `block` if needed.
    fn ensure(&mut self, kind: Open, block: Value, out: &mut Vec<Bytes>) -> usize {
        if let Some((open, index)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((kind, index));
        out.push(named_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        if index == 0 {
            out.push(named_event("ping", &json!({"type": "ping"})));
        }
        index
    }

    fn delta(index: usize, delta: Value) -> Bytes {
        named_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        self.close(out);
        let mut usage = anthropic_usage(&self.usage);
        if let Value::Object(u) = &mut usage {
            u.retain(|_, v| v.as_i64().is_some());
        }
        out.push(named_event(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
                "usage": usage}),
        ));
        out.push(named_event(
            "message_stop",
            &json!({"type": "message_stop"}),
        ));
    }
}

impl EventTranslator for OpenAiToAnthropic {
    fn on_event(
        &mut self,
        _event: Option<&str>,
        data: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<(), GatewayError> {
        if data.trim_ascii() == b"[DONE]" {
            self.start("msg_tollgate", out);
            self.finish(out);
            return Ok(());
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return Err(GatewayError::Upstream(
                "the provider sent an event that is not JSON".into(),
            ));
        };
        if v.get("error").is_some_and(Value::is_object) {
            return Err(GatewayError::UpstreamNative {
                status: 500,
                body: Bytes::copy_from_slice(data),
                format: ApiFormat::OpenAi,
            });
        }
        self.start(v.get("id").and_then(Value::as_str).unwrap_or(""), out);
        if let Some(u) = usage_from_chunk(data) {
            self.usage = u.usage;
        }
        let Some(choice) = v.pointer("/choices/0") else {
            return Ok(());
        };
        let delta = choice.get("delta").cloned().unwrap_or_default();
        if let Some(r) = delta
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            let i = self.ensure(
                Open::Thinking,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                out,
            );
            out.push(Self::delta(
                i,
                json!({"type": "thinking_delta", "thinking": r}),
            ));
        }
        if let Some(t) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            let i = self.ensure(Open::Text, json!({"type": "text", "text": ""}), out);
            out.push(Self::delta(i, json!({"type": "text_delta", "text": t})));
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let n = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let index = match (self.tools.get(&n), call.get("id").and_then(Value::as_str)) {
                (Some(&i), _) if self.open == Some((Open::Tool(n), i)) => i,
                (_, id) => {
                    let i = self.ensure(
                        Open::Tool(n),
                        json!({"type": "tool_use", "id": id.unwrap_or_default(),
                            "name": call.pointer("/function/name").cloned().unwrap_or_default(),
                            "input": {}}),
                        out,
                    );
                    self.tools.insert(n, i);
                    i
                }
            };
            if let Some(args) = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                out.push(Self::delta(
                    index,
                    json!({"type": "input_json_delta", "partial_json": args}),
                ));
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tollgate_mock::openai as mock;

    fn names_and_data(out: &[Bytes]) -> Vec<(String, Value)> {
        out.iter()
            .map(|e| {
                let s = std::str::from_utf8(e).unwrap();
                let name = s.lines().next().unwrap().trim_start_matches("event: ");
                let data = crate::stream::event_data(e).unwrap();
                (name.to_string(), serde_json::from_slice(&data).unwrap())
            })
            .collect()
    }

    #[test]
    fn tool_call_stream_in_anthropics_sequence() {
        let req = json!({"model": "m", "tools": [{"type": "function", "function": {"name": "lookup"}}],
            "messages": [{"role": "user", "content": "find it"}]});
        let reply = mock::reply_for(&req);
        let mut t = OpenAiToAnthropic::new("public");
        let mut out = Vec::new();
        for e in mock::stream_events("chatcmpl-1", "m", 0, &reply, true) {
            let data = crate::stream::event_data(&e).unwrap();
            t.on_event(None, &data, &mut out).unwrap();
        }
        let events = names_and_data(&out);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
        assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
        let starts: Vec<&Value> = events
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| &d["content_block"])
            .collect();
        assert_eq!(starts[0]["type"], "text");
        assert_eq!(starts[1]["type"], "tool_use");
        assert_eq!(starts[1]["name"], "lookup");
        let json: String = events
            .iter()
            .filter_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Value::as_str))
            .collect();
        assert_eq!(json, r#"{"query":"find it"}"#);
        // Every started block is stopped, with matching indices.
        let stops = events
            .iter()
            .filter(|(n, _)| n == "content_block_stop")
            .count();
        assert_eq!(stops, 2);
        let (_, delta) = &events[events.len() - 2];
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(delta["usage"]["input_tokens"], reply.prompt_tokens);
        assert_eq!(delta["usage"]["output_tokens"], reply.completion_tokens);
        assert_eq!(events[0].1["message"]["model"], "public");
    }
}
