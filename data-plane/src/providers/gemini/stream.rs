//! Gemini `alt=sse` events → OpenAI chunks. Every Gemini event is a partial
//! response: its text parts become `content` deltas, thought parts
//! `reasoning_content`, each `functionCall` part one whole tool call (with
//! its own index); its `usageMetadata` is the usage so far (the latest
//! wins). Gemini has no end marker: when the upstream ends after a
//! `finishReason`, the finish chunk, the usage chunk and `[DONE]` follow;
//! without one the stream was cut, and the relay reports it.

use bytes::Bytes;
use serde_json::{json, Value};

use super::response::{call_id, classify, finish_reason, GeminiUsage, Part};
use super::status_error;
use crate::http::errors::GatewayError;
use crate::providers::event_stream::{data_event, EventTranslator, DONE_EVENT};
use crate::providers::openai::usage_json;

#[derive(Debug)]
pub struct GeminiToOpenAi {
    model: String,
    created: i64,
    id: Option<String>,
    calls: usize,
    finish: Option<String>,
    usage: GeminiUsage,
}

impl GeminiToOpenAi {
    pub fn new(model: &str, created: i64) -> Self {
        GeminiToOpenAi {
            model: model.to_string(),
            created,
            id: None,
            calls: 0,
            finish: None,
            usage: GeminiUsage::default(),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        data_event(&json!({
            "id": self.id.as_deref().unwrap_or(""), "object": "chat.completion.chunk",
            "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        }))
    }
}

impl EventTranslator for GeminiToOpenAi {
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
        if let Some(code) = v.pointer("/error/code").and_then(Value::as_u64) {
            return Err(status_error(u16::try_from(code).unwrap_or(500), data));
        }
        if self.id.is_none() {
            self.id = Some(
                v.get("responseId")
                    .and_then(Value::as_str)
                    .unwrap_or("gemini")
                    .to_string(),
            );
            out.push(self.chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ));
        }
        if let Some(u) = v
            .get("usageMetadata")
            .and_then(|u| serde_json::from_value(u.clone()).ok())
        {
            self.usage = u;
        }
        let candidate = v.pointer("/candidates/0");
        for part in candidate
            .and_then(|c| c.pointer("/content/parts"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let delta = match classify(part) {
                Part::Text(t) if !t.is_empty() => json!({"content": t}),
                Part::Thought(t) if !t.is_empty() => json!({"reasoning_content": t}),
                Part::Call { name, args } => {
                    let n = self.calls;
                    self.calls += 1;
                    let id = call_id(self.id.as_deref().unwrap_or(""), n);
                    json!({"tool_calls": [{"index": n, "id": id, "type": "function",
                        "function": {"name": name, "arguments": args}}]})
                }
                _ => continue,
            };
            out.push(self.chunk(delta, None));
        }
        if let Some(r) = candidate
            .and_then(|c| c.get("finishReason"))
            .and_then(Value::as_str)
        {
            self.finish = Some(r.to_string());
        } else if v.pointer("/promptFeedback/blockReason").is_some() {
            self.finish = Some("SAFETY".into());
        }
        Ok(())
    }

    fn on_end(&mut self, out: &mut Vec<Bytes>) -> Result<(), GatewayError> {
        let Some(reason) = self.finish.take() else {
            return Ok(());
        };
        let finish = finish_reason(&reason, self.calls > 0);
        out.push(self.chunk(json!({}), Some(finish)));
        out.push(data_event(&json!({
            "id": self.id.as_deref().unwrap_or(""), "object": "chat.completion.chunk",
            "created": self.created, "model": self.model, "choices": [],
            "usage": usage_json(&self.usage.normalize())
        })));
        out.push(DONE_EVENT);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::providers::event_stream::translate;
    use futures::StreamExt;
    use tollgate_mock::gemini as mock;

    async fn run(events: &[Bytes], size: usize) -> Vec<String> {
        let all: Vec<u8> = events.iter().flat_map(|e| e.to_vec()).collect();
        let chunks: Vec<Result<Bytes, GatewayError>> = all
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let s = translate(
            Box::pin(futures::stream::iter(chunks)),
            Box::new(GeminiToOpenAi::new("gemini-x", 7)),
        );
        s.map(|b| String::from_utf8(crate::stream::event_data(&b.unwrap()).unwrap()).unwrap())
            .collect()
            .await
    }

    #[tokio::test]
    async fn crlf_stream_at_every_chunk_boundary_with_thoughts_and_cache() {
        let req = serde_json::json!({"cachedContent": "cachedContents/abc",
            "generationConfig": {"thinkingConfig": {"includeThoughts": true}},
            "contents": [{"role": "user", "parts": [{"text": "hello gateway"}]}]});
        let reply = mock::reply_for("mock-small", &req);
        let events = mock::stream_events("mock-small", "r1", &reply);
        let whole = run(&events, usize::MAX).await;
        for size in [1, 2, 3, 7, 50] {
            assert_eq!(run(&events, size).await, whole, "chunk size {size}");
        }
        assert_eq!(whole.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = whole[..whole.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let joined = |k: &str| -> String {
            chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"][k].as_str())
                .collect()
        };
        assert_eq!(joined("reasoning_content"), mock::THOUGHT);
        assert_eq!(joined("content"), reply.reply.text);
        let n = chunks.len();
        assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "stop");
        let u = &chunks[n - 1]["usage"];
        let thoughts = mock::THOUGHT.split_whitespace().count() as u64;
        // promptTokenCount already includes the cached part.
        assert_eq!(u["prompt_tokens"], reply.reply.prompt_tokens);
        assert_eq!(u["prompt_tokens_details"]["cached_tokens"], reply.cached);
        assert!(reply.cached > 0);
        assert_eq!(
            u["completion_tokens"],
            u64::from(reply.reply.completion_tokens) + thoughts
        );
        assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], thoughts);
    }

    #[tokio::test]
    async fn safety_block_is_content_filter_and_a_cut_stream_has_no_done() {
        let req = serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}]});
        let reply = mock::reply_for("mock-safety", &req);
        let events = mock::stream_events("mock-safety", "r1", &reply);
        let out = run(&events, 5).await;
        let finish: Value = serde_json::from_str(&out[out.len() - 3]).unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
        // Without the last event (no finishReason), no [DONE]: the relay
        // reports the cut.
        let out = run(&events[..events.len() - 1], 5).await;
        assert!(out.iter().all(|d| d != "[DONE]"));
    }
}
