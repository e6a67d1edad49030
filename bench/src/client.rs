//! The load generator's HTTP/1.1 client: one hyper connection per worker, no
//! pool, so the number of connections is exactly what a scenario asks for.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where requests go: a mock (direct) or the gateway.
#[derive(Debug, Clone)]
pub struct Target {
    /// `direct` or `dp`.
    pub name: String,
    pub addr: SocketAddr,
    /// Path of the chat completions route, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Sent as `Authorization: Bearer …`.
    pub api_key: String,
    host: http::HeaderValue,
    auth: http::HeaderValue,
}

impl Target {
    /// From a base URL such as `http://127.0.0.1:7480/v1` (loopback IP
    /// literal only: the benchmark never leaves the machine).
    pub fn new(name: &str, base_url: &str, api_key: &str) -> anyhow::Result<Target> {
        let uri: Uri = base_url
            .parse()
            .with_context(|| format!("bad URL {base_url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("only http:// targets are supported: {base_url}");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("no host:port in {base_url}"))?;
        let addr: SocketAddr = authority
            .as_str()
            .parse()
            .with_context(|| format!("need an IP:port in {base_url}"))?;
        if !addr.ip().is_loopback() {
            bail!("refusing non-loopback target {addr}");
        }
        let base = uri.path().trim_end_matches('/');
        Ok(Target {
            name: name.to_string(),
            addr,
            path: format!("{base}/chat/completions"),
            api_key: api_key.to_string(),
            host: http::HeaderValue::from_str(authority.as_str())?,
            auth: http::HeaderValue::from_str(&format!("Bearer {api_key}"))?,
        })
    }

    /// A `POST` of `body` to the chat completions route.
    pub fn chat_request(&self, body: Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
        self.post(&self.path, body)
    }

    /// A `POST` of `body` to any path of the same host.
    pub fn post(&self, path: &str, body: Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
        Ok(Request::post(path)
            .header(header::HOST, self.host.clone())
            .header(header::AUTHORIZATION, self.auth.clone())
            .header(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )
            .body(Full::new(body))?)
    }
}

/// The request body of the small chat completion every scenario sends.
pub fn chat_body(model: &str, stream: bool) -> Bytes {
    let stream_part = if stream {
        r#","stream":true,"stream_options":{"include_usage":true}"#
    } else {
        ""
    };
    Bytes::from(format!(
        r#"{{"model":"{model}","messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"Say hello to the benchmark in a few words."}}],"max_tokens":64{stream_part}}}"#
    ))
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }

    /// Sends a non-streamed request and reads the whole answer.
    pub async fn exchange(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<Bytes> {
        let resp = self.send(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if status != StatusCode::OK {
            bail!(
                "status {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        Ok(body)
    }

    /// Sends a streamed request and reads it to the end, noting when the
    /// first SSE data event arrived. `on_first` runs at that moment.
    pub async fn stream(
        &mut self,
        req: Request<Full<Bytes>>,
        mut on_first: impl FnMut(),
    ) -> anyhow::Result<StreamTiming> {
        let sent = Instant::now();
        let resp = self.send(req).await?;
        let status = resp.status();
        let reusable = keeps_connection(&resp);
        let mut body = resp.into_body();
        let mut sse = SseScanner::default();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if let Some(data) = frame.data_ref() {
                sse.feed(data);
                if first.is_none() && sse.data_events > 0 {
                    first = Some(sent.elapsed());
                    on_first();
                }
            }
        }
        let total = sent.elapsed();
        if status != StatusCode::OK {
            bail!("status {status}");
        }
        let Some(first) = first else {
            bail!("stream ended without a data event");
        };
        if !sse.saw_done {
            bail!("stream ended without [DONE]");
        }
        Ok(StreamTiming {
            first_event: first,
            total,
            data_events: sse.data_events,
            reusable,
        })
    }
}

/// Timings of one streamed call.
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    /// From sending the request to the first complete `data:` event.
    pub first_event: std::time::Duration,
    /// From sending the request to the end of the body.
    pub total: std::time::Duration,
    pub data_events: usize,
    /// Whether the server left the connection open for another request:
    /// false when it said `Connection: close` or delimited the body by
    /// closing (HTTP/1.1 without `Content-Length` or chunked encoding).
    pub reusable: bool,
}

/// Whether an HTTP/1.1 response leaves its connection usable afterwards.
pub fn keeps_connection<B>(resp: &http::Response<B>) -> bool {
    let h = resp.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if has_token(header::CONNECTION, "close") {
        return false;
    }
    resp.version() != http::Version::HTTP_11
        || h.contains_key(header::CONTENT_LENGTH)
        || has_token(header::TRANSFER_ENCODING, "chunked")
}

/// Counts complete SSE events with a `data:` field as bytes arrive, however
/// the bytes are split into frames.
#[derive(Debug, Default)]
pub struct SseScanner {
    pending: Vec<u8>,
    pub data_events: usize,
    pub saw_done: bool,
}

impl SseScanner {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some((event_len, sep_len)) = event_end(&self.pending) {
            let event = &self.pending[..event_len];
            let mut has_data = false;
            for line in event.split(|b| *b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if let Some(value) = line.strip_prefix(b"data:") {
                    has_data = true;
                    if value.trim_ascii() == b"[DONE]" {
                        self.saw_done = true;
                    }
                }
            }
            if has_data {
                self.data_events += 1;
            }
            self.pending.drain(..event_len + sep_len);
        }
    }
}

/// Length of the first event and of its blank-line separator.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn scanner_counts_events_split_across_frames() {
        let mut s = SseScanner::default();
        s.feed(b"data: {\"a\":1}\n");
        assert_eq!(
            s.data_events, 0,
            "an event is complete only at the blank line"
        );
        s.feed(b"\ndata: {\"b\"");
        assert_eq!(s.data_events, 1);
        s.feed(b":2}\n\n: comment\n\ndata: [DONE]\n\n");
        assert_eq!(s.data_events, 3);
        assert!(s.saw_done);
    }

    #[test]
    fn scanner_accepts_crlf_framing() {
        let mut s = SseScanner::default();
        s.feed(b"event: x\r\ndata: 1\r\n\r\ndata: [DONE]\r\n\r\n");
        assert_eq!(s.data_events, 2);
        assert!(s.saw_done);
    }

    #[test]
    fn target_parses_loopback_base_url_only() {
        let t = Target::new("dp", "http://127.0.0.1:7480/v1/", "k").unwrap();
        assert_eq!(t.path, "/v1/chat/completions");
        assert_eq!(t.addr.port(), 7480);
        assert!(Target::new("x", "http://10.0.0.1:80/v1", "k").is_err());
        assert!(Target::new("x", "https://127.0.0.1:80/v1", "k").is_err());
    }

    #[test]
    fn close_delimited_bodies_do_not_keep_the_connection() {
        let resp = |headers: &[(&str, &str)]| {
            let mut b = http::Response::builder().version(http::Version::HTTP_11);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap()
        };
        assert!(keeps_connection(&resp(&[("transfer-encoding", "chunked")])));
        assert!(keeps_connection(&resp(&[("content-length", "12")])));
        assert!(!keeps_connection(&resp(&[("connection", "keep-alive")])));
        assert!(!keeps_connection(&resp(&[
            ("content-length", "12"),
            ("connection", "close")
        ])));
    }

    #[test]
    fn chat_body_is_json_with_stream_flags() {
        let v: serde_json::Value = serde_json::from_slice(&chat_body("m", true)).unwrap();
        assert_eq!(v["model"], "m");
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
        let v: serde_json::Value = serde_json::from_slice(&chat_body("m", false)).unwrap();
        assert!(v.get("stream").is_none());
    }
}
