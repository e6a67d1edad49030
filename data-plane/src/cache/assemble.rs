//! Live streams assembled into the final answer while they are relayed, so
//! a streamed answer can be cached like a complete one. Only a stream that
//! reached its end marker without an error, and whose answer was not cut by
//! a content filter, yields an answer; anything else yields nothing and is
//! never stored.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use serde_json::{json, Map, Value};
use tollgate_core::usage::Usage;

use super::{CacheKey, CachePolicy, ResponseCache};
use crate::http::errors::GatewayError;
use crate::providers::ByteStream;
use crate::stream::{event_data, SseSplitter};

/// Builds the final answer from a stream's events.
pub trait StreamAssembler: Send {
    /// One complete SSE event.
    fn on_event(&mut self, event: &[u8]);
    /// The end marker was seen (`[DONE]`, `message_stop`) or the stream
    /// reported an error: nothing more will change the outcome.
    fn ended(&self) -> bool;
    /// The complete answer (body in the stream's protocol, and its usage),
    /// or `None` when the stream failed, was cut short or filtered.
    fn finish(&mut self) -> Option<(Bytes, Option<Usage>)>;
}

#[derive(Debug, Default)]
struct ToolCallAcc {
    id: Option<Value>,
    kind: Option<Value>,
    name: String,
    arguments: String,
}

#[derive(Debug, Default)]
struct ChoiceAcc {
    role: Option<Value>,
    content: String,
    reasoning: String,
    refusal: Option<String>,
    tool_calls: BTreeMap<u64, ToolCallAcc>,
    finish_reason: Option<String>,
}

/// Assembles an OpenAI `chat.completion.chunk` stream into a
/// `chat.completion` body.
#[derive(Debug, Default)]
pub struct OpenAiAssembler {
    head: Map<String, Value>,
    choices: BTreeMap<u64, ChoiceAcc>,
    usage: Option<Value>,
    done: bool,
    failed: bool,
}

impl StreamAssembler for OpenAiAssembler {
    fn on_event(&mut self, event: &[u8]) {
        if self.done || self.failed {
            return;
        }
        let Some(data) = event_data(event) else {
            return;
        };
        if data.trim_ascii() == b"[DONE]" {
            self.done = true;
            return;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(&data) else {
            self.failed = true;
            return;
        };
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            self.failed = true;
            return;
        }
        if self.head.is_empty() {
            for field in ["id", "created", "model", "system_fingerprint"] {
                if let Some(v) = chunk.get(field) {
                    self.head.insert(field.into(), v.clone());
                }
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        for choice in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let acc = self.choices.entry(index).or_default();
            if let Some(delta) = choice.get("delta") {
                if let Some(r) = delta.get("role").filter(|r| r.is_string()) {
                    acc.role = Some(r.clone());
                }
                if let Some(t) = delta.get("content").and_then(Value::as_str) {
                    acc.content.push_str(t);
                }
                if let Some(t) = delta.get("reasoning_content").and_then(Value::as_str) {
                    acc.reasoning.push_str(t);
                }
                if let Some(t) = delta.get("refusal").and_then(Value::as_str) {
                    acc.refusal.get_or_insert_with(String::new).push_str(t);
                }
                for call in delta
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let i = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let t = acc.tool_calls.entry(i).or_default();
                    if let Some(id) = call.get("id").filter(|v| v.is_string()) {
                        t.id = Some(id.clone());
                    }
                    if let Some(k) = call.get("type").filter(|v| v.is_string()) {
                        t.kind = Some(k.clone());
                    }
                    if let Some(n) = call.pointer("/function/name").and_then(Value::as_str) {
                        t.name.push_str(n);
                    }
                    if let Some(a) = call.pointer("/function/arguments").and_then(Value::as_str) {
                        t.arguments.push_str(a);
                    }
                }
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                acc.finish_reason = Some(f.to_string());
            }
        }
    }

    fn ended(&self) -> bool {
        self.done || self.failed
    }

    fn finish(&mut self) -> Option<(Bytes, Option<Usage>)> {
        if !self.done || self.failed || self.choices.is_empty() {
            return None;
        }
        let mut choices = Vec::with_capacity(self.choices.len());
        for (index, c) in &self.choices {
            // A choice without a finish reason was cut short; a filtered
            // answer must not be served again.
            let finish = c.finish_reason.as_deref()?;
            if finish == "content_filter" {
                return None;
            }
            let mut message = Map::new();
            message.insert(
                "role".into(),
                c.role.clone().unwrap_or_else(|| json!("assistant")),
            );
            let content = if c.content.is_empty() && !c.tool_calls.is_empty() {
                Value::Null
            } else {
                Value::String(c.content.clone())
            };
            message.insert("content".into(), content);
            if !c.reasoning.is_empty() {
                message.insert("reasoning_content".into(), json!(c.reasoning));
            }
            if let Some(r) = &c.refusal {
                message.insert("refusal".into(), json!(r));
            }
            if !c.tool_calls.is_empty() {
                let calls: Vec<Value> = c
                    .tool_calls
                    .values()
                    .map(|t| {
                        json!({"id": t.id.clone().unwrap_or(json!("")),
                               "type": t.kind.clone().unwrap_or(json!("function")),
                               "function": {"name": t.name, "arguments": t.arguments}})
                    })
                    .collect();
                message.insert("tool_calls".into(), Value::Array(calls));
            }
            choices.push(json!({"index": index, "message": message, "logprobs": null,
                "finish_reason": finish}));
        }
        let mut body = self.head.clone();
        body.insert("object".into(), json!("chat.completion"));
        body.insert("choices".into(), Value::Array(choices));
        if let Some(u) = &self.usage {
            body.insert("usage".into(), u.clone());
        }
        let bytes = Bytes::from(Value::Object(body).to_string());
        let usage = crate::providers::openai::usage_from_body(&bytes);
        Some((bytes, usage))
    }
}

/// Assembles an Anthropic Messages event stream into a `message` body.
#[derive(Debug, Default)]
pub struct AnthropicAssembler {
    message: Option<Map<String, Value>>,
    blocks: BTreeMap<u64, Value>,
    partial_json: BTreeMap<u64, String>,
    done: bool,
    failed: bool,
}

impl StreamAssembler for AnthropicAssembler {
    fn on_event(&mut self, event: &[u8]) {
        if self.done || self.failed {
            return;
        }
        let Some(data) = event_data(event) else {
            return;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&data) else {
            self.failed = true;
            return;
        };
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(Value::Object(m)) = v.get("message") {
                    self.message = Some(m.clone());
                }
            }
            Some("content_block_start") => {
                if let Some(b) = v.get("content_block") {
                    self.blocks.insert(index, b.clone());
                }
            }
            Some("content_block_delta") => {
                let Some(delta) = v.get("delta") else {
                    return;
                };
                let Some(Value::Object(block)) = self.blocks.get_mut(&index) else {
                    self.failed = true;
                    return;
                };
                let append = |block: &mut Map<String, Value>, field: &str, piece: &str| {
                    let mut s = block
                        .get(field)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    s.push_str(piece);
                    block.insert(field.into(), Value::String(s));
                };
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        append(block, "text", delta["text"].as_str().unwrap_or_default())
                    }
                    Some("thinking_delta") => append(
                        block,
                        "thinking",
                        delta["thinking"].as_str().unwrap_or_default(),
                    ),
                    Some("signature_delta") => append(
                        block,
                        "signature",
                        delta["signature"].as_str().unwrap_or_default(),
                    ),
                    Some("input_json_delta") => self
                        .partial_json
                        .entry(index)
                        .or_default()
                        .push_str(delta["partial_json"].as_str().unwrap_or_default()),
                    _ => {}
                }
            }
            Some("content_block_stop") => {
                if let Some(json) = self.partial_json.remove(&index) {
                    let input = if json.trim().is_empty() {
                        json!({})
                    } else {
                        match serde_json::from_str::<Value>(&json) {
                            Ok(v) => v,
                            Err(_) => {
                                self.failed = true;
                                return;
                            }
                        }
                    };
                    if let Some(Value::Object(b)) = self.blocks.get_mut(&index) {
                        b.insert("input".into(), input);
                    }
                }
            }
            Some("message_delta") => {
                let Some(m) = self.message.as_mut() else {
                    self.failed = true;
                    return;
                };
                if let Some(Value::Object(d)) = v.get("delta") {
                    for (k, val) in d {
                        m.insert(k.clone(), val.clone());
                    }
                }
                if let Some(Value::Object(u)) = v.get("usage") {
                    let usage = m.entry("usage").or_insert_with(|| json!({}));
                    if let Value::Object(existing) = usage {
                        for (k, val) in u {
                            existing.insert(k.clone(), val.clone());
                        }
                    }
                }
            }
            Some("message_stop") => self.done = true,
            Some("error") => self.failed = true,
            _ => {}
        }
    }

    fn ended(&self) -> bool {
        self.done || self.failed
    }

    fn finish(&mut self) -> Option<(Bytes, Option<Usage>)> {
        if !self.done || self.failed || !self.partial_json.is_empty() {
            return None;
        }
        let mut m = self.message.clone()?;
        match m.get("stop_reason").and_then(Value::as_str) {
            // Refused or cut short: never served again.
            None | Some("refusal") => return None,
            Some(_) => {}
        }
        m.insert(
            "content".into(),
            Value::Array(self.blocks.values().cloned().collect()),
        );
        let bytes = Bytes::from(Value::Object(m).to_string());
        let usage = crate::providers::anthropic::usage_from_message(&bytes);
        Some((bytes, usage))
    }
}

/// Where an assembled answer goes.
pub struct CacheFill {
    pub cache: Arc<ResponseCache>,
    pub key: CacheKey,
    pub policy: CachePolicy,
}

/// A relayed stream that also assembles the answer and stores it the moment
/// the stream ends cleanly. Chunks pass through unchanged.
pub struct FillingStream {
    inner: ByteStream,
    splitter: SseSplitter,
    assembler: Box<dyn StreamAssembler>,
    fill: Option<CacheFill>,
}

impl FillingStream {
    /// Wraps `inner`; `first_chunk` (already read from it while choosing the
    /// target) is seen first.
    pub fn wrap(
        inner: ByteStream,
        first_chunk: Option<&Bytes>,
        assembler: Box<dyn StreamAssembler>,
        fill: CacheFill,
    ) -> ByteStream {
        let mut s = FillingStream {
            inner,
            splitter: SseSplitter::new(),
            assembler,
            fill: Some(fill),
        };
        if let Some(chunk) = first_chunk {
            s.observe(chunk);
        }
        Box::pin(s)
    }

    fn observe(&mut self, chunk: &[u8]) {
        if self.fill.is_none() {
            return;
        }
        for event in self.splitter.push(chunk) {
            self.assembler.on_event(&event);
        }
        if self.assembler.ended() {
            if let Some(fill) = self.fill.take() {
                if let Some((body, usage)) = self.assembler.finish() {
                    fill.cache.insert(fill.key, body, usage, &fill.policy);
                }
            }
        }
    }
}

impl Stream for FillingStream {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.as_mut().poll_next(cx);
        match &item {
            Poll::Ready(Some(Ok(chunk))) => {
                let chunk = chunk.clone();
                self.observe(&chunk);
            }
            // A failed or truncated stream is never stored.
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => self.fill = None,
            Poll::Pending => {}
        }
        item
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::routing::ManualClock;
    use futures::StreamExt;

    fn fill(cache: &Arc<ResponseCache>) -> CacheFill {
        CacheFill {
            cache: cache.clone(),
            key: CacheKey {
                tenant_id: "t".into(),
                digest: [1; 32],
            },
            policy: CachePolicy {
                enabled: true,
                ttl_ms: 60_000,
                max_entry_bytes: 1 << 20,
                only_deterministic: false,
                hit_cost_bps: 0,
            },
        }
    }

    fn mock_events(finish: &'static str) -> Vec<Bytes> {
        let reply = tollgate_mock::openai::MockReply {
            text: "one two three".into(),
            prompt_tokens: 4,
            completion_tokens: 3,
            finish_reason: finish,
            tool_call: None,
            cached_tokens: 0,
            reasoning_tokens: 0,
        };
        tollgate_mock::openai::stream_events("chatcmpl-9", "mock-small", 1, &reply, true)
    }

    async fn run(chunks: Vec<Result<Bytes, GatewayError>>) -> Arc<ResponseCache> {
        let cache = Arc::new(ResponseCache::new(1 << 20, Arc::new(ManualClock::new(1))));
        let inner: ByteStream = Box::pin(futures::stream::iter(chunks));
        let mut s =
            FillingStream::wrap(inner, None, Box::<OpenAiAssembler>::default(), fill(&cache));
        while s.next().await.is_some() {}
        cache
    }

    #[tokio::test]
    async fn a_clean_stream_is_stored_as_a_completion() {
        // Split at odd boundaries: events span chunks.
        let all: Vec<u8> = mock_events("stop").concat();
        let chunks = all
            .chunks(13)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let cache = run(chunks).await;
        let hit = cache
            .get(&CacheKey {
                tenant_id: "t".into(),
                digest: [1; 32],
            })
            .unwrap();
        let v: Value = serde_json::from_slice(&hit.body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "one two three");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(hit.usage.unwrap().completion_tokens, 3);
    }

    #[tokio::test]
    async fn failed_truncated_and_filtered_streams_are_never_stored() {
        let mut truncated = mock_events("stop");
        truncated.truncate(truncated.len() - 3);
        let mut errored: Vec<Result<Bytes, GatewayError>> =
            truncated.iter().cloned().map(Ok).collect();
        errored.push(Err(GatewayError::Upstream("connection reset".into())));
        let error_event = vec![
            Ok(mock_events("stop")[0].clone()),
            Ok(Bytes::from_static(
                b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n",
            )),
            Ok(Bytes::from_static(b"data: [DONE]\n\n")),
        ];
        for (name, chunks) in [
            ("truncated", truncated.into_iter().map(Ok).collect()),
            ("errored", errored),
            (
                "content_filter",
                mock_events("content_filter").into_iter().map(Ok).collect(),
            ),
            ("error event", error_event),
        ] {
            let cache = run(chunks).await;
            assert_eq!(cache.metrics().inserts, 0, "{name}");
        }
    }

    #[test]
    fn anthropic_refusals_and_errors_are_not_stored() {
        let events = [
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":1,\"output_tokens\":0}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"no\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        ];
        let end = |reason: &str| {
            format!("event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{reason}\"}},\"usage\":{{\"output_tokens\":1}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n")
        };
        let assemble = |tail: &str| {
            let mut a = AnthropicAssembler::default();
            for e in SseSplitter::new().push(format!("{}{tail}", events.concat()).as_bytes()) {
                a.on_event(&e);
            }
            a.finish()
        };
        let (body, usage) = assemble(&end("end_turn")).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["content"][0]["text"], "no");
        assert_eq!(usage.unwrap().completion_tokens, 1);
        assert!(assemble(&end("refusal")).is_none());
        assert!(assemble("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n").is_none());
        // No message_stop: truncated.
        assert!(assemble("").is_none());
    }
}
