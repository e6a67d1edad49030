//! Connection-level limits enforced below Pingora's HTTP/1 parser.
//!
//! Pingora 0.9 bounds a request header at 256 lines and 1 MiB (answering a
//! bare `400` without a body) and bounds each socket read of the first
//! request by 60 s, but a kept-alive connection reads its next request with
//! no timeout at all, a slow client may dribble one byte per read forever,
//! and there is no cap on open connections. [`GuardedApp`] wraps the proxy
//! application and every accepted stream in a [`GuardedStream`] that
//!
//! - counts open connections and answers one over `max_connections` with a
//!   503 before closing it;
//! - watches the bytes of each request header as Pingora reads them: more
//!   than `max_headers` lines or `max_header_bytes` bytes is answered 431;
//!   a header not complete within `header_read_timeout` is answered 408
//!   (nothing is sent when not a byte arrived);
//! - closes a kept-alive connection idle longer than
//!   `keepalive_idle_timeout` between requests.
//!
//! Answers are rendered by the one error map ([`GatewayError::render`]):
//! OpenAI-shaped, or Anthropic-shaped when the request line names
//! `/v1/messages`. Once the header is complete the stream is a plain pass-
//! through; body limits are the pipeline's (see `pipeline/intake.rs`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::errors::{ApiFormat, GatewayError};
use super::limits::RequestLimits;

/// How long a refusal may take to write before the connection is dropped.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a refusal, how long (and how much) the rest of the client's request
/// is read and discarded, so closing does not reset the connection (a reset
/// can destroy the refusal before the client reads it).
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// The proxy application behind connection limits.
pub struct GuardedApp<A> {
    inner: Arc<A>,
    limits: RequestLimits,
    open: Arc<AtomicUsize>,
}

impl<A> GuardedApp<A> {
    pub fn new(inner: A, limits: RequestLimits) -> Self {
        GuardedApp {
            inner: Arc::new(inner),
            limits,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for GuardedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream: Stream = if stream.as_any().is::<GuardedStream>() {
            // A kept-alive connection coming back for its next request.
            let mut guarded = stream.into_any().downcast::<GuardedStream>().ok()?;
            guarded.next_request();
            guarded
        } else {
            let Some(slot) = ConnSlot::take(&self.open, self.limits.max_connections) else {
                refuse_connection(stream).await;
                return None;
            };
            Box::new(GuardedStream::new(stream, self.limits, slot))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse_connection(mut stream: Stream) {
    tracing::info!("connection refused: too many open connections");
    let response = refusal(&GatewayError::TooManyConnections, ApiFormat::OpenAi);
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        let _ = stream.write_all(&response).await;
        let _ = stream.flush().await;
    })
    .await;
    Shutdown::shutdown(stream.as_mut()).await;
}

/// A whole HTTP/1.1 response for `e`, closing the connection.
pub(crate) fn refusal(e: &GatewayError, format: ApiFormat) -> Bytes {
    let (status, body) = e.render(format);
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nx-request-id: {}\r\n\r\n",
        body.len(),
        tollgate_core::ids::new_request_id()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// One open connection counted against the cap; released on drop.
struct ConnSlot(Arc<AtomicUsize>);

impl ConnSlot {
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<ConnSlot> {
        let before = open.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnSlot(open.clone()))
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a scan of request-header bytes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderScan {
    /// The header section is not complete yet.
    Partial,
    /// The blank line ending the header section was seen.
    Complete,
    /// Too many lines or bytes.
    TooLarge,
}

/// Incremental scanner of a request header section: counts bytes and lines
/// and keeps the start of the request line (to answer in the caller's
/// protocol).
#[derive(Debug, Default, Clone)]
pub struct HeaderScanner {
    bytes: usize,
    lines: usize,
    line_len: usize,
    request_line: Vec<u8>,
}

/// Bytes of the request line kept to tell the route.
const REQUEST_LINE_KEPT: usize = 48;

impl HeaderScanner {
    /// Feeds the next bytes read; stops at the end of the header section.
    pub fn feed(&mut self, data: &[u8], limits: &RequestLimits) -> HeaderScan {
        for &b in data {
            self.bytes += 1;
            if self.bytes > limits.max_header_bytes {
                return HeaderScan::TooLarge;
            }
            match b {
                b'\n' if self.line_len == 0 => {
                    // Blank lines before the request line are tolerated
                    // (RFC 9112 §2.2); after it, one ends the header.
                    if self.lines > 0 {
                        return HeaderScan::Complete;
                    }
                }
                b'\n' => {
                    self.lines += 1;
                    self.line_len = 0;
                    // The request line plus `max_headers` header lines.
                    if self.lines > limits.max_headers + 1 {
                        return HeaderScan::TooLarge;
                    }
                }
                b'\r' => {}
                _ => {
                    if self.lines == 0 && self.request_line.len() < REQUEST_LINE_KEPT {
                        self.request_line.push(b);
                    }
                    self.line_len += 1;
                }
            }
        }
        HeaderScan::Partial
    }

    /// Bytes of this request seen so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The protocol the request's errors are answered in.
    pub fn format(&self) -> ApiFormat {
        let line = &self.request_line;
        let path_start = line.iter().position(|&b| b == b' ').map_or(0, |i| i + 1);
        if line[path_start..].starts_with(b"/v1/messages") {
            ApiFormat::Anthropic
        } else {
            ApiFormat::OpenAi
        }
    }
}

enum Phase {
    /// Reading a request header.
    Header,
    /// Header complete: bytes pass through untouched.
    Passthrough,
    /// Writing a refusal; then the connection reads as closed.
    Refusing { response: Bytes, written: usize },
    /// Refusal sent and the write side shut: discarding what the client
    /// still sends, for a moment.
    Lingering { discarded: usize },
    /// Nothing more is read or written.
    Closed,
}

/// A client connection under the limits of [`RequestLimits`].
pub struct GuardedStream {
    inner: Stream,
    limits: RequestLimits,
    phase: Phase,
    scan: HeaderScanner,
    /// Header deadline, idle deadline or refusal write deadline.
    deadline: Pin<Box<Sleep>>,
    /// A kept-alive connection waiting for the first byte of its next
    /// request (the idle timeout applies, and expiry closes silently).
    idle: bool,
    _slot: ConnSlot,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl GuardedStream {
    fn new(inner: Stream, limits: RequestLimits, slot: ConnSlot) -> Self {
        GuardedStream {
            inner,
            limits,
            phase: Phase::Header,
            scan: HeaderScanner::default(),
            deadline: Box::pin(tokio::time::sleep(limits.header_read_timeout)),
            idle: false,
            _slot: slot,
        }
    }

    /// The previous request is answered; the next one starts.
    fn next_request(&mut self) {
        if matches!(self.phase, Phase::Passthrough) {
            self.phase = Phase::Header;
        }
        self.scan = HeaderScanner::default();
        self.idle = true;
        self.deadline
            .as_mut()
            .reset(Instant::now() + self.limits.keepalive_idle_timeout);
    }

    fn refuse(&mut self, e: &GatewayError) {
        tracing::info!(
            status = e.status(),
            code = e.code(),
            header_bytes = self.scan.bytes(),
            "request refused while reading its header"
        );
        self.phase = Phase::Refusing {
            response: refusal(e, self.scan.format()),
            written: 0,
        };
        self.deadline
            .as_mut()
            .reset(Instant::now() + REFUSAL_WRITE_TIMEOUT);
    }

    /// Writes the refusal, shuts the write side and lingers; `Ready` once
    /// the connection may be closed.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.phase {
                Phase::Refusing { response, written } if *written < response.len() => {
                    match Pin::new(&mut self.inner).poll_write(cx, &response[*written..]) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => self.phase = Phase::Closed,
                        Poll::Ready(Ok(n)) => *written += n,
                        Poll::Pending => return self.pending_until_deadline(cx),
                    }
                }
                Phase::Refusing { .. } => {
                    match Pin::new(&mut self.inner).poll_flush(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(_)) => {
                            self.phase = Phase::Closed;
                            continue;
                        }
                        Poll::Pending => return self.pending_until_deadline(cx),
                    }
                    match Pin::new(&mut self.inner).poll_shutdown(cx) {
                        Poll::Ready(_) => {
                            self.phase = Phase::Lingering { discarded: 0 };
                            self.deadline.as_mut().reset(Instant::now() + LINGER_TIME);
                        }
                        Poll::Pending => return self.pending_until_deadline(cx),
                    }
                }
                Phase::Lingering { discarded } => {
                    if *discarded >= LINGER_BYTES {
                        self.phase = Phase::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 4096];
                    let mut rb = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                            *discarded += rb.filled().len();
                        }
                        Poll::Ready(_) => self.phase = Phase::Closed,
                        Poll::Pending => return self.pending_until_deadline(cx),
                    }
                }
                Phase::Header | Phase::Passthrough | Phase::Closed => return Poll::Ready(()),
            }
        }
    }

    /// `Pending` until the phase deadline, then closed.
    fn pending_until_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.phase = Phase::Closed;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.phase {
                Phase::Passthrough => return Pin::new(&mut this.inner).poll_read(cx, buf),
                // End of stream: Pingora sees a closed connection.
                Phase::Closed => return Poll::Ready(Ok(())),
                Phase::Refusing { .. } | Phase::Lingering { .. } => match this.poll_refusal(cx) {
                    Poll::Ready(()) => continue,
                    Poll::Pending => return Poll::Pending,
                },
                Phase::Header => {}
            }
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {
                    if buf.filled().len() == before {
                        return Poll::Ready(Ok(()));
                    }
                    if this.idle {
                        // The next request's first byte: its header clock starts.
                        this.idle = false;
                        this.deadline
                            .as_mut()
                            .reset(Instant::now() + this.limits.header_read_timeout);
                    }
                    match this.scan.feed(&buf.filled()[before..], &this.limits) {
                        HeaderScan::Partial => {}
                        HeaderScan::Complete => this.phase = Phase::Passthrough,
                        HeaderScan::TooLarge => {
                            buf.set_filled(before);
                            this.refuse(&GatewayError::HeaderTooLarge);
                            continue;
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if this.deadline.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if this.idle || this.scan.bytes() == 0 {
                        // No request started: close without an answer.
                        tracing::debug!("idle client connection closed");
                        this.phase = Phase::Closed;
                    } else {
                        this.refuse(&GatewayError::RequestTimeout("header"));
                    }
                }
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.phase {
            Phase::Refusing { .. } | Phase::Lingering { .. } | Phase::Closed => {
                Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)))
            }
            _ => Pin::new(&mut this.inner).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.phase {
            Phase::Refusing { .. } | Phase::Lingering { .. } | Phase::Closed => {
                Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)))
            }
            _ => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(self.inner.as_mut()).await;
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora_core::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits(headers: usize, bytes: usize) -> RequestLimits {
        RequestLimits {
            max_headers: headers,
            max_header_bytes: bytes,
            ..RequestLimits::default()
        }
    }

    #[test]
    fn scanner_finds_the_end_of_the_header_in_any_split() {
        let req = b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";
        for split in 0..req.len() {
            let mut s = HeaderScanner::default();
            let l = limits(10, 1024);
            let first = s.feed(&req[..split], &l);
            let result = if first == HeaderScan::Complete {
                first
            } else {
                s.feed(&req[split..], &l)
            };
            assert_eq!(result, HeaderScan::Complete, "split at {split}");
            assert_eq!(s.format(), ApiFormat::Anthropic);
        }
    }

    #[test]
    fn scanner_counts_header_lines_and_bytes() {
        let l = limits(2, 1024);
        let mut s = HeaderScanner::default();
        assert_eq!(
            s.feed(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\n\r\n", &l),
            HeaderScan::Complete
        );
        assert_eq!(s.format(), ApiFormat::OpenAi);
        let mut s = HeaderScanner::default();
        assert_eq!(
            s.feed(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n", &l),
            HeaderScan::TooLarge
        );
        let l = limits(100, 300);
        let mut s = HeaderScanner::default();
        let long = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(300));
        assert_eq!(s.feed(long.as_bytes(), &l), HeaderScan::TooLarge);
    }

    #[test]
    fn refusals_are_whole_http_responses_in_the_callers_shape() {
        let r = refusal(&GatewayError::HeaderTooLarge, ApiFormat::OpenAi);
        let text = String::from_utf8(r.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "request_header_too_large");
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
        let r = refusal(
            &GatewayError::RequestTimeout("header"),
            ApiFormat::Anthropic,
        );
        let text = String::from_utf8(r.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 408 Request Timeout\r\n"));
        let v: serde_json::Value =
            serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "timeout_error");
    }

    #[test]
    fn connection_slots_are_released_on_drop() {
        let open = Arc::new(AtomicUsize::new(0));
        let a = ConnSlot::take(&open, 2).unwrap();
        let _b = ConnSlot::take(&open, 2).unwrap();
        assert!(ConnSlot::take(&open, 2).is_none());
        drop(a);
        assert!(ConnSlot::take(&open, 2).is_some());
        assert_eq!(open.load(Ordering::Relaxed), 1);
    }
}
