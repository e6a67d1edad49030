//! Server-sent events: an incremental splitter that finds complete events
//! across arbitrary chunk boundaries (LF, CRLF and CR line ends), and the
//! filter that meters a relayed OpenAI chunk stream.
//!
//! Events are forwarded byte for byte as soon as they are complete; only
//! events that may carry usage are parsed.

use bytes::{Bytes, BytesMut};
use tollgate_core::usage::Usage;

use crate::providers::openai::usage_from_chunk;

/// Splits a byte stream into complete SSE events (each including its
/// terminating blank line).
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: BytesMut,
    /// Where scanning resumes: everything before it has been looked at.
    scan: usize,
    /// Start of the line being scanned.
    line_start: usize,
}

/// Most bytes of one SSE event (a provider streaming without ever ending
/// an event must not grow memory without bound).
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

impl SseSplitter {
    pub fn new() -> Self {
        SseSplitter::default()
    }

    /// True when an unfinished event holds more than [`MAX_EVENT_BYTES`]:
    /// the stream should be abandoned.
    pub fn overflowed(&self) -> bool {
        self.buf.len() > MAX_EVENT_BYTES
    }

    /// Adds a chunk and returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut i = self.scan;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b != b'\n' && b != b'\r' {
                i += 1;
                continue;
            }
            // A CR may be followed by an LF in the next chunk: wait for it.
            let term_len = if b == b'\r' {
                match self.buf.get(i + 1) {
                    None => break,
                    Some(b'\n') => 2,
                    Some(_) => 1,
                }
            } else {
                1
            };
            let line_empty = i == self.line_start;
            i += term_len;
            self.line_start = i;
            if line_empty {
                // Blank line: the event ends here. Blank lines before any
                // field (stray separators) are dropped rather than relayed.
                let event = self.buf.split_to(i).freeze();
                i = 0;
                self.line_start = 0;
                if event.iter().any(|&c| c != b'\n' && c != b'\r') {
                    events.push(event);
                }
            }
        }
        self.scan = i;
        events
    }

    /// Bytes of an incomplete event still buffered (the stream ended early
    /// if this is not empty at the end).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// The `data` of an event: its `data:` fields joined by LF (one leading
/// space removed from each, as the SSE spec says). `None` when the event
/// has no data field (a comment or keep-alive).
pub fn event_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for line in lines(event) {
        let Some(rest) = line.strip_prefix(b"data") else {
            continue;
        };
        let value = match rest.first() {
            None => rest,
            Some(b':') => rest[1..].strip_prefix(b" ").unwrap_or(&rest[1..]),
            // A field named e.g. "database", not "data".
            Some(_) => continue,
        };
        match &mut out {
            None => out = Some(value.to_vec()),
            Some(d) => {
                d.push(b'\n');
                d.extend_from_slice(value);
            }
        }
    }
    out
}

fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    event
        .split(|&b| b == b'\n' || b == b'\r')
        .filter(|l| !l.is_empty())
}

/// True when a JSON text may hold a `"usage": {…}` object: the key followed
/// by an object, not `null`. Cheap enough to run on every chunk.
fn may_carry_usage(data: &[u8]) -> bool {
    const KEY: &[u8] = b"\"usage\"";
    let mut from = 0;
    while let Some(pos) = find(&data[from..], KEY) {
        let mut j = from + pos + KEY.len();
        while data.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
            j += 1;
        }
        if data.get(j) == Some(&b':') {
            j += 1;
            while data.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
                j += 1;
            }
            if data.get(j) == Some(&b'{') {
                return true;
            }
        }
        from += pos + KEY.len();
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What to do with one event of an OpenAI chunk stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    /// The usage-only chunk the gateway asked for on the caller's behalf.
    Drop,
}

/// Watches a relayed stream in the caller's protocol: what to forward, the
/// usage it reports, whether it reached its end marker, and how a failure
/// is told to the caller mid-stream.
pub trait EventMeter: Send {
    fn on_event(&mut self, event: &[u8]) -> Verdict;
    fn usage(&self) -> Option<Usage>;
    /// The protocol's end marker was seen (`[DONE]`, `message_stop`).
    fn finished(&self) -> bool;
    /// The event sent when the upstream fails mid-stream.
    fn failure_event(&self, message: &str, code: &str) -> Bytes;
    /// The upstream itself reported a failure in-band (already forwarded):
    /// the error code to record.
    fn upstream_failure(&self) -> Option<&'static str> {
        None
    }
}

impl EventMeter for StreamMeter {
    fn on_event(&mut self, event: &[u8]) -> Verdict {
        StreamMeter::on_event(self, event)
    }
    fn usage(&self) -> Option<Usage> {
        self.usage
    }
    fn finished(&self) -> bool {
        self.saw_done
    }
    fn failure_event(&self, message: &str, code: &str) -> Bytes {
        error_event(message, code)
    }
}

/// Meters an Anthropic Messages event stream: usage from `message_start`
/// and `message_delta` (cumulative counts, so the latest wins), the end at
/// `message_stop`. Everything is forwarded.
#[derive(Debug, Default)]
pub struct AnthropicMeter {
    usage: crate::providers::anthropic::response::AnthropicUsage,
    saw_usage: bool,
    saw_stop: bool,
    saw_error: bool,
}

impl AnthropicMeter {
    pub fn new() -> Self {
        AnthropicMeter::default()
    }
}

impl EventMeter for AnthropicMeter {
    fn on_event(&mut self, event: &[u8]) -> Verdict {
        let name = crate::providers::event_stream::event_name(event);
        if matches!(name, Some("ping") | Some("content_block_delta")) {
            return Verdict::Forward;
        }
        let Some(data) = event_data(event) else {
            return Verdict::Forward;
        };
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            usage: Option<crate::providers::anthropic::response::AnthropicUsage>,
            #[serde(default)]
            message: Option<Message>,
        }
        #[derive(serde::Deserialize)]
        struct Message {
            #[serde(default)]
            usage: Option<crate::providers::anthropic::response::AnthropicUsage>,
        }
        let Ok(p) = serde_json::from_slice::<Probe>(&data) else {
            return Verdict::Forward;
        };
        match p.kind.as_str() {
            "message_start" => {
                if let Some(u) = p.message.and_then(|m| m.usage) {
                    self.usage.update(&u);
                    self.saw_usage = true;
                }
            }
            "message_delta" => {
                if let Some(u) = p.usage {
                    self.usage.update(&u);
                    self.saw_usage = true;
                }
            }
            "message_stop" => self.saw_stop = true,
            // The provider's own error event ends the stream; it reaches the
            // caller as is.
            "error" => self.saw_error = true,
            _ => {}
        }
        Verdict::Forward
    }
    fn usage(&self) -> Option<Usage> {
        self.saw_usage.then(|| self.usage.normalize())
    }
    fn finished(&self) -> bool {
        self.saw_stop || self.saw_error
    }
    fn upstream_failure(&self) -> Option<&'static str> {
        self.saw_error.then_some("upstream_stream_error")
    }
    fn failure_event(&self, message: &str, code: &str) -> Bytes {
        let status = if code == "upstream_timeout" { 504 } else { 502 };
        let body = crate::http::errors::shaped_error(
            crate::http::errors::ApiFormat::Anthropic,
            status,
            code,
            message,
        );
        let mut out = Vec::with_capacity(body.len() + 24);
        out.extend_from_slice(b"event: error\ndata: ");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

/// Meters a Responses API event stream: the end and the usage are in
/// `response.completed` / `response.incomplete` / `response.failed`; an
/// `error` event is the provider's own failure. Everything is forwarded.
#[derive(Debug, Default)]
pub struct ResponsesMeter {
    usage: Option<Usage>,
    done: bool,
    failed: bool,
}

impl ResponsesMeter {
    pub fn new() -> Self {
        ResponsesMeter::default()
    }
}

impl EventMeter for ResponsesMeter {
    fn on_event(&mut self, event: &[u8]) -> Verdict {
        let name = crate::providers::event_stream::event_name(event);
        if name.is_some_and(|n| n.ends_with(".delta")) {
            return Verdict::Forward;
        }
        let Some(data) = event_data(event) else {
            return Verdict::Forward;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
            return Verdict::Forward;
        };
        match v.get("type").and_then(serde_json::Value::as_str) {
            Some("response.completed") | Some("response.incomplete") => {
                self.done = true;
                self.usage = v.get("response").and_then(crate::responses::usage_from);
            }
            Some("response.failed") | Some("error") => {
                self.done = true;
                self.failed = true;
                self.usage = v.get("response").and_then(crate::responses::usage_from);
            }
            _ => {}
        }
        Verdict::Forward
    }
    fn usage(&self) -> Option<Usage> {
        self.usage
    }
    fn finished(&self) -> bool {
        self.done
    }
    fn failure_event(&self, message: &str, code: &str) -> Bytes {
        let body = serde_json::json!({"type": "error", "code": code, "message": message,
            "param": null});
        Bytes::from(format!("event: error\ndata: {body}\n\n"))
    }
    fn upstream_failure(&self) -> Option<&'static str> {
        self.failed.then_some("upstream_stream_error")
    }
}

/// Meters an OpenAI chat-completion chunk stream as it is relayed.
#[derive(Debug)]
pub struct StreamMeter {
    caller_wants_usage: bool,
    pub usage: Option<Usage>,
    pub saw_done: bool,
}

impl StreamMeter {
    pub fn new(caller_wants_usage: bool) -> Self {
        StreamMeter {
            caller_wants_usage,
            usage: None,
            saw_done: false,
        }
    }

    /// Looks at one complete event.
    pub fn on_event(&mut self, event: &[u8]) -> Verdict {
        let Some(data) = event_data(event) else {
            return Verdict::Forward;
        };
        if data.trim_ascii() == b"[DONE]" {
            self.saw_done = true;
            return Verdict::Forward;
        }
        if !may_carry_usage(&data) {
            return Verdict::Forward;
        }
        match usage_from_chunk(&data) {
            Some(chunk) => {
                self.usage = Some(chunk.usage);
                if chunk.usage_only && !self.caller_wants_usage {
                    Verdict::Drop
                } else {
                    Verdict::Forward
                }
            }
            None => Verdict::Forward,
        }
    }
}

/// The event sent when the upstream fails mid-stream, so the caller never
/// mistakes a truncated answer for a complete one.
pub fn error_event(message: &str, code: &str) -> Bytes {
    let body = crate::http::errors::error_json(message, "upstream_error", Some(code), None);
    Bytes::from(format!("data: {body}\n\n"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_event_that_never_ends_overflows() {
        let mut s = SseSplitter::new();
        let line = vec![b'x'; 1024 * 1024];
        s.push(b"data: ");
        for _ in 0..7 {
            assert!(s.push(&line).is_empty());
            assert!(!s.overflowed());
        }
        // 8 MiB of one unfinished line, plus its `data: ` prefix.
        s.push(&line);
        assert!(s.overflowed());
    }

    fn split_all(input: &[u8], chunk: usize) -> (Vec<Bytes>, usize) {
        let mut s = SseSplitter::new();
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            out.extend(s.push(c));
        }
        (out, s.pending())
    }

    const STREAM: &[u8] = b"data: {\"a\":1}\n\n: ping\n\ndata: {\"b\":2}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";

    #[test]
    fn splits_on_any_chunk_boundary() {
        for size in 1..STREAM.len() {
            let (events, pending) = split_all(STREAM, size);
            let texts: Vec<&[u8]> = events.iter().map(|e| e.as_ref()).collect();
            assert_eq!(
                texts,
                vec![
                    &b"data: {\"a\":1}\n\n"[..],
                    b": ping\n\n",
                    b"data: {\"b\":2}\r\n\r\n",
                    b"event: x\ndata: line1\ndata: line2\n\n",
                    b"data: [DONE]\n\n",
                ],
                "chunk size {size}"
            );
            assert_eq!(pending, 0);
        }
    }

    #[test]
    fn cr_only_line_ends_and_partial_tail() {
        let (events, pending) = split_all(b"data: a\r\rdata: b\r", 1);
        assert_eq!(events, vec![Bytes::from_static(b"data: a\r\r")]);
        assert_eq!(pending, 8);
        // A CR at a chunk end, LF in the next chunk: one CRLF, not two lines.
        let mut s = SseSplitter::new();
        assert!(s.push(b"data: x\r").is_empty());
        assert!(s.push(b"\n").is_empty());
        assert_eq!(
            s.push(b"\r\n"),
            vec![Bytes::from_static(b"data: x\r\n\r\n")]
        );
    }

    #[test]
    fn event_data_joins_lines_and_skips_comments() {
        assert_eq!(event_data(b"data: {\"a\":1}\n\n").unwrap(), b"{\"a\":1}");
        assert_eq!(
            event_data(b"event: x\ndata: l1\ndata:l2\n\n").unwrap(),
            b"l1\nl2"
        );
        assert_eq!(event_data(b": ping\n\n"), None);
        assert_eq!(event_data(b"database: 1\n\n"), None);
        assert_eq!(event_data(b"data\n\n").unwrap(), b"");
    }

    #[test]
    fn meter_records_usage_and_drops_the_extra_chunk() {
        let usage =
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":11}}\n\n";
        let content = b"data: {\"choices\":[{\"delta\":{\"content\":\"the \\\"usage\\\": {\"}}],\"usage\":null}\n\n";
        let mut m = StreamMeter::new(false);
        assert_eq!(m.on_event(content), Verdict::Forward);
        assert_eq!(m.usage, None);
        assert_eq!(m.on_event(b": ping\n\n"), Verdict::Forward);
        assert_eq!(m.on_event(usage), Verdict::Drop);
        assert_eq!(m.usage.unwrap().completion_tokens, 11);
        assert!(!m.saw_done);
        assert_eq!(m.on_event(b"data: [DONE]\n\n"), Verdict::Forward);
        assert!(m.saw_done);

        let mut m = StreamMeter::new(true);
        assert_eq!(m.on_event(usage), Verdict::Forward);
        assert_eq!(m.usage.unwrap().prompt_tokens, 5);
    }

    #[test]
    fn usage_sniffing() {
        assert!(may_carry_usage(br#"{"usage": {"prompt_tokens":1}}"#));
        assert!(!may_carry_usage(br#"{"usage":null}"#));
        assert!(!may_carry_usage(br#"{"content":"say \"usage\": {"}"#));
        assert!(!may_carry_usage(br#"{"x":1}"#));
    }

    #[test]
    fn error_event_is_one_sse_event() {
        let e = error_event("upstream died", "upstream_stream_error");
        let (events, pending) = split_all(&e, 3);
        assert_eq!(events.len(), 1);
        assert_eq!(pending, 0);
        let v: serde_json::Value = serde_json::from_slice(&event_data(&e).unwrap()).unwrap();
        assert_eq!(v["error"]["code"], "upstream_stream_error");
    }
}
