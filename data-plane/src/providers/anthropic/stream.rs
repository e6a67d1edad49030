//! Anthropic stream events → OpenAI `chat.completion.chunk` events, one
//! state machine per call.
//!
//! `message_start` gives the id, model and input usage and becomes the role
//! chunk; text and thinking deltas become `content` and `reasoning_content`
//! deltas; a `tool_use` block becomes a tool call (its own OpenAI `index`,
//! counted from 0 over tool blocks only) whose `input_json_delta` pieces are
//! the `arguments` deltas; `message_delta` carries the stop reason and the
//! cumulative usage; `message_stop` becomes the finish chunk, the usage
//! chunk and `[DONE]`. An `error` event fails the stream with the provider's
//! error.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Value};

use super::request::RequestFacts;
use super::response::{finish_reason, AnthropicUsage};
use super::status_error;
use crate::http::errors::GatewayError;
use crate::providers::event_stream::{data_event, EventTranslator, DONE_EVENT};
use crate::providers::openai::usage_json;

/// What an Anthropic content block index is, downstream.
#[derive(Debug, Clone, Copy)]
enum BlockKind {
    Text,
    Thinking,
    /// A tool call with its OpenAI index.
    Tool(usize),
    /// The forced `json_schema` tool: its arguments are the content.
    JsonAnswer,
    Other,
}

/// The translation state of one stream.
#[derive(Debug)]
pub struct AnthropicToOpenAi {
    facts: RequestFacts,
    created: i64,
    id: String,
    model: String,
    blocks: HashMap<u64, BlockKind>,
    tools: usize,
    usage: AnthropicUsage,
    stop_reason: Option<String>,
    json_answer: bool,
}

impl AnthropicToOpenAi {
    pub fn new(facts: RequestFacts, created: i64) -> Self {
        AnthropicToOpenAi {
            facts,
            created,
            id: String::new(),
            model: String::new(),
            blocks: HashMap::new(),
            tools: 0,
            usage: AnthropicUsage::default(),
            stop_reason: None,
            json_answer: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        data_event(&json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        }))
    }
}

impl EventTranslator for AnthropicToOpenAi {
    fn on_event(
        &mut self,
        _event: Option<&str>,
        data: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<(), GatewayError> {
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return Err(GatewayError::Upstream(
                "the provider sent an event that is not JSON".into(),
            ));
        };
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match v.get("type").and_then(Value::as_str).unwrap_or_default() {
            "message_start" => {
                let m = v.get("message").cloned().unwrap_or_default();
                self.id = m
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                self.model = m
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if let Some(u) = m
                    .get("usage")
                    .and_then(|u| serde_json::from_value(u.clone()).ok())
                {
                    self.usage.update(&u);
                }
                out.push(self.chunk(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                ));
            }
            "content_block_start" => {
                let block = v.get("content_block").cloned().unwrap_or_default();
                let kind = match block.get("type").and_then(Value::as_str) {
                    Some("text") => BlockKind::Text,
                    Some("thinking") => BlockKind::Thinking,
                    Some("tool_use") => {
                        let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                        if self.facts.json_tool.as_deref() == Some(name) {
                            self.json_answer = true;
                            BlockKind::JsonAnswer
                        } else {
                            let i = self.tools;
                            self.tools += 1;
                            out.push(self.chunk(
                                json!({"tool_calls": [{"index": i, "id": block.get("id"),
                                    "type": "function",
                                    "function": {"name": name, "arguments": ""}}]}),
                                None,
                            ));
                            BlockKind::Tool(i)
                        }
                    }
                    _ => BlockKind::Other,
                };
                self.blocks.insert(index, kind);
            }
            "content_block_delta" => {
                let d = v.get("delta").cloned().unwrap_or_default();
                let kind = self.blocks.get(&index).copied().unwrap_or(BlockKind::Other);
                let text = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let delta = match (d.get("type").and_then(Value::as_str), kind) {
                    (Some("text_delta"), _) => Some(json!({"content": text("text")})),
                    (Some("thinking_delta"), _) => {
                        Some(json!({"reasoning_content": text("thinking")}))
                    }
                    (Some("input_json_delta"), BlockKind::Tool(i)) => {
                        let part = text("partial_json");
                        (!part.is_empty()).then(|| {
                            json!({"tool_calls": [{"index": i, "function": {"arguments": part}}]})
                        })
                    }
                    (Some("input_json_delta"), BlockKind::JsonAnswer) => {
                        let part = text("partial_json");
                        (!part.is_empty()).then(|| json!({"content": part}))
                    }
                    _ => None,
                };
                if let Some(delta) = delta {
                    out.push(self.chunk(delta, None));
                }
            }
            "message_delta" => {
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(r.to_string());
                }
                if let Some(u) = v
                    .get("usage")
                    .and_then(|u| serde_json::from_value(u.clone()).ok())
                {
                    self.usage.update(&u);
                }
            }
            "message_stop" => {
                let finish = if self.json_answer {
                    Some("stop")
                } else {
                    finish_reason(self.stop_reason.as_deref()).or(Some("stop"))
                };
                out.push(self.chunk(json!({}), finish));
                let usage = self.usage.normalize();
                out.push(data_event(&json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "choices": [], "usage": usage_json(&usage)
                })));
                out.push(DONE_EVENT);
            }
            "error" => {
                let status = match v.pointer("/error/type").and_then(Value::as_str) {
                    Some("overloaded_error") => 529,
                    Some("rate_limit_error") => 429,
                    Some("invalid_request_error") => 400,
                    _ => 500,
                };
                return Err(status_error(status, data));
            }
            _ => {} // ping, content_block_stop, future event types
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::providers::event_stream::translate;
    use futures::StreamExt;
    use tollgate_mock::anthropic as mock;

    /// Translates the mock's events for `request`, fed in `size`-byte
    /// chunks; returns the OpenAI data payloads and the error, if any.
    async fn run(
        events: &[Bytes],
        size: usize,
        facts: RequestFacts,
    ) -> (Vec<Value>, Option<GatewayError>) {
        let all: Vec<u8> = events.iter().flat_map(|e| e.to_vec()).collect();
        let chunks: Vec<Result<Bytes, GatewayError>> = all
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut s = translate(
            Box::pin(futures::stream::iter(chunks)),
            Box::new(AnthropicToOpenAi::new(facts, 7)),
        );
        let (mut out, mut err) = (Vec::new(), None);
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => {
                    let data = crate::stream::event_data(&b).unwrap();
                    out.push(if data == b"[DONE]" {
                        Value::String("[DONE]".into())
                    } else {
                        serde_json::from_slice(&data).unwrap()
                    });
                }
                Err(e) => err = Some(e),
            }
        }
        (out, err)
    }

    fn request() -> Value {
        json!({"model": "claude-mock", "max_tokens": 100,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "system": [{"type": "text", "text": "cached context words", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "find the docs"}]})
    }

    #[tokio::test]
    async fn same_translation_at_every_chunk_boundary() {
        let reply = mock::reply_for(&request());
        let events = mock::stream_events("msg_1", "claude-mock", &reply);
        let whole: usize = events.iter().map(|e| e.len()).sum();
        let (expected, err) = run(&events, whole, RequestFacts::default()).await;
        assert!(err.is_none());
        for size in [1, 2, 3, 5, 7, 11, 64, 333] {
            let (got, err) = run(&events, size, RequestFacts::default()).await;
            assert!(err.is_none());
            assert_eq!(got, expected, "chunk size {size}");
        }

        // Role chunk first, with the message id and model.
        assert_eq!(expected[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(expected[0]["id"], "msg_1");
        let delta = |k: &str| -> String {
            expected
                .iter()
                .filter_map(|c| c["choices"][0]["delta"][k].as_str())
                .collect()
        };
        assert_eq!(delta("reasoning_content"), mock::THINKING);
        assert_eq!(delta("content"), "Calling lookup.");
        // The tool block is Anthropic index 2 but the first tool call: index 0.
        let calls: Vec<&Value> = expected
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .collect();
        assert!(calls.iter().all(|c| c["index"] == 0));
        assert_eq!(calls[0]["function"]["name"], "lookup");
        let args: String = calls
            .iter()
            .filter_map(|c| c["function"]["arguments"].as_str())
            .collect();
        assert_eq!(args, r#"{"query":"find the docs"}"#);

        let n = expected.len();
        assert_eq!(expected[n - 1], "[DONE]");
        assert_eq!(expected[n - 3]["choices"][0]["finish_reason"], "tool_calls");
        // Usage: input_tokens excludes the cache, prompt_tokens includes it;
        // output is message_delta's cumulative count, not a sum.
        let usage = &expected[n - 2]["usage"];
        assert_eq!(expected[n - 2]["choices"], json!([]));
        let total_prompt = reply.input_tokens + reply.cache_read + reply.cache_write;
        assert_eq!(usage["prompt_tokens"], total_prompt);
        assert_eq!(
            usage["prompt_tokens_details"]["cached_tokens"],
            reply.cache_read
        );
        assert_eq!(
            usage["prompt_tokens_details"]["cache_write_tokens"],
            reply.cache_write
        );
        assert_eq!(usage["completion_tokens"], reply.output_tokens);
        assert!(reply.cache_read > 0 && reply.cache_write > 0);
    }

    #[tokio::test]
    async fn json_schema_tool_becomes_content() {
        let mut req = request();
        req["tools"] = json!([{"name": "json_response", "input_schema": {"type": "object"}}]);
        req["tool_choice"] = json!({"type": "tool", "name": "json_response"});
        req.as_object_mut().unwrap().remove("thinking");
        let reply = mock::reply_for(&req);
        let events = mock::stream_events("msg_1", "claude-mock", &reply);
        let facts = RequestFacts {
            json_tool: Some("json_response".into()),
        };
        let (out, _) = run(&events, 13, facts).await;
        let content: String = out
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, r#"{"query":"find the docs"}"#);
        assert!(out
            .iter()
            .all(|c| c["choices"][0]["delta"]["tool_calls"].is_null()));
        assert_eq!(out[out.len() - 3]["choices"][0]["finish_reason"], "stop");
    }

    #[tokio::test]
    async fn error_event_fails_the_stream_with_the_providers_status() {
        let events = vec![
            mock::event(
                "message_start",
                &json!({"type": "message_start", "message":
                {"id": "msg_1", "model": "m", "usage": {"input_tokens": 3, "output_tokens": 1}}}),
            ),
            mock::event(
                "error",
                &json!({"type": "error", "error":
                {"type": "overloaded_error", "message": "Overloaded"}}),
            ),
        ];
        let (out, err) = run(&events, 4, RequestFacts::default()).await;
        assert_eq!(out.len(), 1);
        let err = err.unwrap();
        assert_eq!(err.status(), 529);
        let (status, body) = err.render(crate::http::errors::ApiFormat::OpenAi);
        assert_eq!(status, 503);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["message"], "Overloaded");
    }

    #[test]
    fn message_delta_usage_is_cumulative() {
        let mut t = AnthropicToOpenAi::new(RequestFacts::default(), 0);
        let mut out = Vec::new();
        for e in [
            json!({"type": "message_start", "message": {"id": "m", "model": "x",
                "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "output_tokens": 1}}}),
            json!({"type": "message_delta", "delta": {"stop_reason": null}, "usage": {"output_tokens": 5}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ] {
            t.on_event(None, e.to_string().as_bytes(), &mut out)
                .unwrap();
        }
        let usage: Value =
            serde_json::from_slice(&crate::stream::event_data(&out[out.len() - 2]).unwrap())
                .unwrap();
        assert_eq!(usage["usage"]["prompt_tokens"], 110);
        assert_eq!(usage["usage"]["completion_tokens"], 9);
        let finish: Value =
            serde_json::from_slice(&crate::stream::event_data(&out[out.len() - 3]).unwrap())
                .unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "length");
    }
}
