//! A lean OpenAI-compatible upstream for benchmarks.
//!
//! Every answer is serialised once at start, so the mock costs a fraction of
//! what the gateway costs per request and the gateway's share of the CPU is
//! what the benchmark sees. It reads the request body but does not parse it
//! as JSON: it only looks for `"stream": true`, `"include_usage": true` and
//! the model [`HOLD_MODEL`].
//!
//! Routes: `POST /v1/chat/completions`, `GET /v1/models`, and
//! `POST /bench/release`, which lets every held stream go on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A stream for this model sends its first event, then waits for
/// `POST /bench/release` before sending the rest (idle open streams).
pub const HOLD_MODEL: &str = "bench-hold";
/// Releases every held stream.
pub const RELEASE_PATH: &str = "/bench/release";

/// How the mock answers.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Pause before every answer.
    pub latency: Duration,
    /// Words in the reply; a stream sends one word per chunk.
    pub reply_words: usize,
    /// Pause between streamed events.
    pub chunk_delay: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            latency: Duration::ZERO,
            reply_words: 16,
            chunk_delay: Duration::ZERO,
        }
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The answers, serialised once.
struct Canned {
    completion: Bytes,
    models: Bytes,
    /// Role chunk, one chunk per word, finish chunk, `[DONE]`.
    events: Arc<Vec<Bytes>>,
    /// The same with the usage-only chunk before `[DONE]`.
    events_with_usage: Arc<Vec<Bytes>>,
}

const ID: &str = "chatcmpl-bench0000000000000000";
const MODEL: &str = "bench-small";
const CREATED: i64 = 1_767_225_600;

fn sse(value: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn chunk(choices: serde_json::Value) -> serde_json::Value {
    json!({"id": ID, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
           "system_fingerprint": "fp_bench", "choices": choices})
}

impl Canned {
    fn new(reply_words: usize) -> Canned {
        let words: Vec<String> = (0..reply_words).map(|i| format!("word{i}")).collect();
        let text = words.join(" ");
        let prompt_tokens = 12_usize;
        let usage = json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": reply_words,
            "total_tokens": prompt_tokens + reply_words,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}
        });
        let completion = json!({
            "id": ID, "object": "chat.completion", "created": CREATED, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": usage,
            "system_fingerprint": "fp_bench"
        });
        let mut events = vec![sse(&chunk(json!([{"index": 0,
            "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])))];
        for (i, w) in words.iter().enumerate() {
            let piece = if i == 0 { w.clone() } else { format!(" {w}") };
            events.push(sse(&chunk(
                json!([{"index": 0, "delta": {"content": piece},
                "logprobs": null, "finish_reason": null}]),
            )));
        }
        events.push(sse(&chunk(
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]),
        )));
        let done = Bytes::from_static(b"data: [DONE]\n\n");
        let mut with_usage = events.clone();
        let mut usage_chunk = chunk(json!([]));
        if let Some(o) = usage_chunk.as_object_mut() {
            o.insert("usage".into(), usage);
        }
        with_usage.push(sse(&usage_chunk));
        events.push(done.clone());
        with_usage.push(done);
        let models = json!({"object": "list", "data": [
            {"id": MODEL, "object": "model", "created": 0, "owned_by": "bench"},
            {"id": HOLD_MODEL, "object": "model", "created": 0, "owned_by": "bench"}]});
        Canned {
            completion: Bytes::from(completion.to_string()),
            models: Bytes::from(models.to_string()),
            events: Arc::new(events),
            events_with_usage: Arc::new(with_usage),
        }
    }
}

struct Shared {
    config: MockConfig,
    canned: Canned,
    release: watch::Sender<u64>,
}

/// A running mock; dropping it stops accepting connections.
pub struct RunningMock {
    pub addr: SocketAddr,
    /// `http://ADDR/v1`.
    pub base_url: String,
    accept: JoinHandle<()>,
}

impl Drop for RunningMock {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Binds `addr` (port 0 picks a free port) and serves until dropped.
pub async fn start(addr: SocketAddr, config: MockConfig) -> anyhow::Result<RunningMock> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (release, _) = watch::channel(0_u64);
    let shared = Arc::new(Shared {
        canned: Canned::new(config.reply_words),
        config,
        release,
    });
    let accept = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    eprintln!("bench-mock: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(shared.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(RunningMock {
        addr,
        base_url: format!("http://{addr}/v1"),
        accept,
    })
}

fn full(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body).boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if parts.method == Method::GET && path == "/v1/models" {
        return Ok(full(
            StatusCode::OK,
            "application/json",
            shared.canned.models.clone(),
        ));
    }
    if parts.method == Method::POST && path == RELEASE_PATH {
        shared.release.send_modify(|g| *g += 1);
        return Ok(full(
            StatusCode::OK,
            "text/plain",
            Bytes::from_static(b"released\n"),
        ));
    }
    if parts.method != Method::POST || path != "/v1/chat/completions" {
        return Ok(full(
            StatusCode::NOT_FOUND,
            "application/json",
            Bytes::from_static(
                br#"{"error":{"message":"unknown path","type":"invalid_request_error"}}"#,
            ),
        ));
    }
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(full(StatusCode::BAD_REQUEST, "text/plain", Bytes::new()));
        }
    };
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    if !json_flag(&body, b"\"stream\"") {
        return Ok(full(
            StatusCode::OK,
            "application/json",
            shared.canned.completion.clone(),
        ));
    }
    let events = if json_flag(&body, b"\"include_usage\"") {
        shared.canned.events_with_usage.clone()
    } else {
        shared.canned.events.clone()
    };
    let hold = contains(&body, HOLD_MODEL.as_bytes()).then(|| shared.release.subscribe());
    let stream = EventStream {
        events,
        next: 0,
        hold,
        delay: shared.config.chunk_delay,
    };
    let frames = futures::stream::unfold(stream, |mut s| async move {
        let event = s.events.get(s.next)?.clone();
        if s.next == 1 {
            if let Some(rx) = s.hold.as_mut() {
                let _ = rx.changed().await;
            }
        }
        if s.next > 0 && !s.delay.is_zero() {
            tokio::time::sleep(s.delay).await;
        }
        s.next += 1;
        Some((Ok::<_, Infallible>(Frame::data(event)), s))
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    Ok(resp)
}

struct EventStream {
    events: Arc<Vec<Bytes>>,
    next: usize,
    hold: Option<watch::Receiver<u64>>,
    delay: Duration,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn skip_ws(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &b[n..]
}

/// Whether the JSON text has `key: true` for the quoted `key` anywhere. No
/// JSON parse: the benchmark's requests are well-formed and small.
pub fn json_flag(body: &[u8], quoted_key: &[u8]) -> bool {
    let mut from = 0;
    while let Some(pos) = find(&body[from..], quoted_key) {
        let after = from + pos + quoted_key.len();
        let rest = skip_ws(&body[after..]);
        if let Some(value) = rest.strip_prefix(b":") {
            if skip_ws(value).starts_with(b"true") {
                return true;
            }
        }
        from = after;
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn json_flag_finds_true_with_or_without_spaces() {
        assert!(json_flag(br#"{"stream":true}"#, b"\"stream\""));
        assert!(json_flag(br#"{"a":1, "stream" :  true }"#, b"\"stream\""));
        assert!(!json_flag(br#"{"stream":false}"#, b"\"stream\""));
        assert!(!json_flag(br#"{"streamx":true}"#, b"\"stream\""));
        assert!(json_flag(
            br#"{"stream_options":{"include_usage":true},"stream":true}"#,
            b"\"include_usage\""
        ));
        assert!(!json_flag(br#"{"model":"stream"}"#, b"\"stream\""));
    }

    #[test]
    fn canned_stream_has_role_words_finish_usage_done() {
        let c = Canned::new(3);
        assert_eq!(c.events.len(), 1 + 3 + 1 + 1);
        assert_eq!(c.events_with_usage.len(), 1 + 3 + 1 + 1 + 1);
        let usage = String::from_utf8_lossy(&c.events_with_usage[5]).into_owned();
        assert!(usage.contains("\"completion_tokens\":3"), "{usage}");
        assert_eq!(&c.events_with_usage[6][..], b"data: [DONE]\n\n");
        let body: serde_json::Value = serde_json::from_slice(&c.completion).unwrap();
        assert_eq!(
            body.pointer("/choices/0/message/content")
                .and_then(|v| v.as_str()),
            Some("word0 word1 word2")
        );
    }
}
