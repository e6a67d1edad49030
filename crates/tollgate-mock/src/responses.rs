//! OpenAI Responses API wire format of the mock provider (`POST
//! /v1/responses`, and Azure's `/openai/v1/responses`): the same
//! deterministic reply as [`crate::openai`] (the input read as the
//! equivalent chat), as a `response` object or as the Responses event
//! stream ending in `response.completed`.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::openai::{self, MockReply};

fn item_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The reply to a Responses request.
pub fn reply_for(body: &Value) -> MockReply {
    let mut messages = Vec::new();
    if let Some(i) = body.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": i}));
    }
    match body.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for it in items {
                match it.get("type").and_then(Value::as_str).unwrap_or("message") {
                    "function_call_output" => messages.push(json!({"role": "tool",
                        "content": it.get("output").and_then(Value::as_str).unwrap_or("")})),
                    "function_call" => messages.push(json!({"role": "assistant", "content": ""})),
                    _ => messages.push(
                        json!({"role": it.get("role").cloned().unwrap_or(json!("user")),
                        "content": item_text(it.get("content"))}),
                    ),
                }
            }
        }
        _ => {}
    }
    let mut chat = json!({"model": body.get("model").cloned().unwrap_or(json!("mock")),
        "messages": messages});
    if let Some(name) = body.pointer("/tools/0/name") {
        chat["tools"] = json!([{"type": "function", "function": {"name": name}}]);
    }
    if let Some(n) = body.get("max_output_tokens") {
        chat["max_tokens"] = n.clone();
    }
    openai::reply_for(&chat)
}

fn output(id: &str, r: &MockReply) -> Vec<Value> {
    let mut out = vec![
        json!({"type": "message", "id": format!("msg_{id}"), "status": "completed",
        "role": "assistant", "content": [{"type": "output_text", "text": r.text, "annotations": []}]}),
    ];
    if let Some(c) = &r.tool_call {
        out.push(
            json!({"type": "function_call", "id": format!("fc_{id}"), "call_id": c.id,
            "name": c.name, "arguments": c.arguments, "status": "completed"}),
        );
    }
    out
}

/// The `response` object.
pub fn response_body(id: &str, model: &str, created: i64, r: &MockReply) -> Value {
    json!({"id": id, "object": "response", "created_at": created, "model": model,
        "status": if r.finish_reason == "length" { "incomplete" } else { "completed" },
        "output": output(id, r), "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
        "usage": {"input_tokens": r.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": r.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": r.prompt_tokens + r.completion_tokens}})
}

/// The event stream (text deltas word by word; the function call whole).
pub fn stream_events(id: &str, model: &str, created: i64, r: &MockReply) -> Vec<Bytes> {
    let mut seq = 0u64;
    let mut out = Vec::new();
    let mut ev = |kind: &str, mut v: Value| {
        v["type"] = json!(kind);
        v["sequence_number"] = json!(seq);
        seq += 1;
        out.push(Bytes::from(format!("event: {kind}\ndata: {v}\n\n")));
    };
    let full = response_body(id, model, created, r);
    let mut start = full.clone();
    start["status"] = json!("in_progress");
    start["output"] = json!([]);
    start["usage"] = Value::Null;
    ev("response.created", json!({"response": start}));
    let msg_id = format!("msg_{id}");
    ev(
        "response.output_item.added",
        json!({"output_index": 0, "item": {"type": "message",
        "id": msg_id, "status": "in_progress", "role": "assistant", "content": []}}),
    );
    ev(
        "response.content_part.added",
        json!({"item_id": msg_id, "output_index": 0,
        "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    for (i, w) in r.text.split(' ').enumerate() {
        let d = if i == 0 {
            w.to_string()
        } else {
            format!(" {w}")
        };
        ev(
            "response.output_text.delta",
            json!({"item_id": msg_id, "output_index": 0,
            "content_index": 0, "delta": d}),
        );
    }
    ev(
        "response.output_text.done",
        json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "text": r.text}),
    );
    ev(
        "response.content_part.done",
        json!({"item_id": msg_id, "output_index": 0, "content_index": 0,
               "part": full["output"][0]["content"][0]}),
    );
    ev(
        "response.output_item.done",
        json!({"output_index": 0, "item": full["output"][0]}),
    );
    if r.tool_call.is_some() {
        let call = &full["output"][1];
        let mut added = call.clone();
        added["status"] = json!("in_progress");
        added["arguments"] = json!("");
        ev(
            "response.output_item.added",
            json!({"output_index": 1, "item": added}),
        );
        ev(
            "response.function_call_arguments.delta",
            json!({"item_id": call["id"], "output_index": 1, "delta": call["arguments"]}),
        );
        ev(
            "response.function_call_arguments.done",
            json!({"item_id": call["id"], "output_index": 1, "arguments": call["arguments"]}),
        );
        ev(
            "response.output_item.done",
            json!({"output_index": 1, "item": call}),
        );
    }
    ev("response.completed", json!({"response": full}));
    out
}
