//! Chat chunks → the Responses event stream: `response.created`,
//! `response.in_progress`, then per output item `response.output_item.added`
//! and its deltas (`response.output_text.delta` inside a
//! `response.content_part.added`/`.done` pair for text,
//! `response.function_call_arguments.delta` for a function call) closed by
//! the matching `.done` events, and `response.completed` (or
//! `response.incomplete`) with the usage. Every event carries its
//! `sequence_number`.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tollgate_core::usage::Usage;

use super::{echo, usage_json};
use crate::http::errors::{ApiFormat, GatewayError};
use crate::providers::event_stream::{named_event, EventTranslator};
use crate::providers::openai::usage_from_chunk;

#[derive(Debug)]
enum Item {
    Text {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        args: String,
        index: u64,
    },
}

/// The translation state of one stream.
pub struct ChatToResponses {
    base: Value,
    id: String,
    created: i64,
    seq: u64,
    started: bool,
    open: Option<Item>,
    done_items: Vec<Value>,
    finish: Option<String>,
    usage: Usage,
}

impl ChatToResponses {
    pub fn new(request: &Map<String, Value>, model: &str, created: i64) -> Self {
        ChatToResponses {
            base: echo(request, model),
            id: String::new(),
            created,
            seq: 0,
            started: false,
            open: None,
            done_items: Vec::new(),
            finish: None,
            usage: Usage::default(),
        }
    }

    fn emit(&mut self, out: &mut Vec<Bytes>, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.push(named_event(kind, &data));
    }

    fn response(&self, status: &str) -> Value {
        let mut r = self.base.clone();
        r["id"] = json!(self.id);
        r["created_at"] = json!(self.created);
        r["status"] = json!(status);
        r["output"] = Value::Array(self.done_items.clone());
        r
    }

    fn output_index(&self) -> usize {
        self.done_items.len()
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        let Some(item) = self.open.take() else {
            return;
        };
        let index = self.output_index();
        let done = match item {
            Item::Text { id, text } => {
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                self.emit(
                    out,
                    "response.output_text.done",
                    json!({"item_id": id,
                    "output_index": index, "content_index": 0, "text": text}),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    json!({"item_id": id,
                    "output_index": index, "content_index": 0, "part": part}),
                );
                json!({"type": "message", "id": id, "status": "completed", "role": "assistant",
                    "content": [part]})
            }
            Item::Call {
                id,
                call_id,
                name,
                args,
                ..
            } => {
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id,
                    "output_index": index, "arguments": args}),
                );
                json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
                    "arguments": args, "status": "completed"})
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
        );
        self.done_items.push(done);
    }

    fn text(&mut self, delta: &str, out: &mut Vec<Bytes>) {
        if !matches!(self.open, Some(Item::Text { .. })) {
            self.close(out);
            let id = format!("msg_{}_{}", self.id, self.output_index());
            let index = self.output_index();
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": index,
                "item": {"type": "message", "id": id, "status": "in_progress",
                    "role": "assistant", "content": []}}),
            );
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": id,
                "output_index": index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            self.open = Some(Item::Text {
                id,
                text: String::new(),
            });
        }
        let index = self.output_index();
        if let Some(Item::Text { id, text }) = &mut self.open {
            text.push_str(delta);
            let id = id.clone();
            self.emit(
                out,
                "response.output_text.delta",
                json!({"item_id": id,
                "output_index": index, "content_index": 0, "delta": delta}),
            );
        }
    }

    fn call(&mut self, c: &Value, out: &mut Vec<Bytes>) {
        let n = c.get("index").and_then(Value::as_u64).unwrap_or(0);
        let is_open = matches!(&self.open, Some(Item::Call { index, .. }) if *index == n);
        if !is_open {
            self.close(out);
            let id = format!("fc_{}_{}", self.id, self.output_index());
            let call_id = c
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let name = c
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let index = self.output_index();
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": index,
                "item": {"type": "function_call", "id": id, "call_id": call_id, "name": name,
                    "arguments": "", "status": "in_progress"}}),
            );
            self.open = Some(Item::Call {
                id,
                call_id,
                name,
                args: String::new(),
                index: n,
            });
        }
        let delta = c
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        if delta.is_empty() {
            return;
        }
        let index = self.output_index();
        if let Some(Item::Call { id, args, .. }) = &mut self.open {
            args.push_str(delta);
            let id = id.clone();
            self.emit(
                out,
                "response.function_call_arguments.delta",
                json!({"item_id": id,
                "output_index": index, "delta": delta}),
            );
        }
    }
}

impl EventTranslator for ChatToResponses {
    fn on_event(
        &mut self,
        _event: Option<&str>,
        data: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<(), GatewayError> {
        if data.trim_ascii() == b"[DONE]" {
            self.close(out);
            let (status, reason) = match self.finish.as_deref() {
                Some("length") => ("incomplete", Some("max_output_tokens")),
                Some("content_filter") => ("incomplete", Some("content_filter")),
                _ => ("completed", None),
            };
            let mut r = self.response(status);
            r["usage"] = usage_json(&self.usage);
            if let Some(reason) = reason {
                r["incomplete_details"] = json!({"reason": reason});
            }
            let kind = if status == "completed" {
                "response.completed"
            } else {
                "response.incomplete"
            };
            self.emit(out, kind, json!({"response": r}));
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
        if !self.started {
            self.started = true;
            self.id = format!(
                "resp_{}",
                v.get("id").and_then(Value::as_str).unwrap_or("chat")
            );
            let r = self.response("in_progress");
            self.emit(out, "response.created", json!({"response": r.clone()}));
            self.emit(out, "response.in_progress", json!({"response": r}));
        }
        if let Some(u) = usage_from_chunk(data) {
            self.usage = u.usage;
        }
        let Some(choice) = v.pointer("/choices/0") else {
            return Ok(());
        };
        if let Some(t) = choice
            .pointer("/delta/content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.text(t, out);
        }
        for c in choice
            .pointer("/delta/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.call(c, out);
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        Ok(())
    }
}
