//! OpenTelemetry traces of the data plane (GenAI semantic conventions),
//! exported over OTLP/gRPC. Off unless `--otlp-endpoint` is given.
//!
//! What the request path does, and nothing more:
//! - [`Tracer::start_call`]: parse the caller's W3C `traceparent` (or draw a
//!   new trace id), decide sampling (parent-based, else by ratio on the
//!   trace id), draw the call's span id. No allocation.
//! - [`CallTrace::begin_attempt`] / [`CallTrace::end_attempt`] around each
//!   upstream attempt: a span id, the instants, and the `traceparent` value
//!   sent upstream (through [`with_upstream_traceparent`] and
//!   [`propagate`] on the outgoing request).
//! - [`Tracer::finish_call`] in `Gateway::finish`: a sampled call's data
//!   (ids, instants, `Arc`s of the route and key, counters) goes into a
//!   bounded channel with `try_send`; a full queue drops the call's spans
//!   and counts them (`tollgate_trace_spans_total{result="dropped"}`).
//!
//! Building the OTLP messages (attribute strings, ids as bytes), batching
//! and the gRPC export happen on the exporter task (`trace_export.rs`),
//! never on a proxy thread. Spans carry metadata only: never a prompt, a
//! completion, a key or a header value of the caller.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::config::{CallerKey, Route};
use crate::pipeline::CallContext;

/// The W3C trace-context header.
pub const TRACEPARENT: &str = "traceparent";

/// Default bound of the queue between the request path and the exporter
/// (calls, each one span plus one per upstream attempt).
pub const DEFAULT_QUEUE: usize = 4096;
/// Default most spans per export request.
pub const DEFAULT_BATCH: usize = 512;
/// Default longest wait before a partial batch is exported.
pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_millis(1000);

/// A parsed W3C `traceparent` (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Lowercase hex only (W3C forbids uppercase).
fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
    }
    Some(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

/// A trace id as 32 lowercase hex characters, on the stack.
pub fn trace_id_hex(id: &[u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex_into(id, &mut out);
    out
}

impl TraceParent {
    /// Parses a header value. Versions other than `00` are read by their
    /// `00` prefix (as the W3C spec asks); `ff`, all-zero ids, uppercase hex
    /// or a malformed value give `None` (the call then starts a new trace).
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        let value = value.trim_ascii();
        if value.len() < 55 {
            return None;
        }
        let version = unhex::<1>(&value[0..2])?[0];
        if version == 0xff || (version == 0 && value.len() != 55) {
            return None;
        }
        if version != 0 && value.len() > 55 && value[55] != b'-' {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = unhex::<16>(&value[3..35])?;
        let span_id = unhex::<8>(&value[36..52])?;
        let flags = unhex::<1>(&value[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// `00-{trace id}-{span id}-{flags}`.
    pub fn encode(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        hex_into(&self.trace_id, &mut out[3..35]);
        hex_into(&self.span_id, &mut out[36..52]);
        out[53] = b'0';
        out[54] = if self.sampled { b'1' } else { b'0' };
        out
    }

    fn header_value(&self) -> Option<http::HeaderValue> {
        http::HeaderValue::from_bytes(&self.encode()).ok()
    }
}

/// Trace export settings (`--otlp-endpoint`, `--trace-sample-ratio`, …).
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Share of new traces recorded, 0.0–1.0. A caller's `traceparent`
    /// decides for its own calls (parent-based).
    pub sample_ratio: f64,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource_attributes: Vec<(String, String)>,
    pub queue: usize,
    pub batch: usize,
    pub batch_delay: Duration,
}

impl TraceSettings {
    pub fn new(endpoint: impl Into<String>) -> TraceSettings {
        TraceSettings {
            endpoint: endpoint.into(),
            sample_ratio: 1.0,
            service_name: "tollgate-dp".into(),
            resource_attributes: Vec::new(),
            queue: DEFAULT_QUEUE,
            batch: DEFAULT_BATCH,
            batch_delay: DEFAULT_BATCH_DELAY,
        }
    }

    /// Checks what can be checked before start.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(format!(
                "the trace sample ratio must be between 0 and 1 (got {})",
                self.sample_ratio
            ));
        }
        if self.endpoint.starts_with("https://") {
            return Err(
                "OTLP over TLS is not supported yet: point --otlp-endpoint at an \
                        http:// collector (e.g. a local OpenTelemetry Collector sidecar)"
                    .into(),
            );
        }
        if !self.endpoint.starts_with("http://") {
            return Err(format!(
                "the OTLP endpoint must be an http:// URL of an OTLP/gRPC collector (got {:?})",
                self.endpoint
            ));
        }
        if self.queue == 0 || self.batch == 0 {
            return Err("the trace queue and batch sizes must be at least 1".into());
        }
        Ok(())
    }
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES` (`key1=value1,key2=value2`, values
/// percent-encoded). Malformed pairs are skipped.
pub fn parse_resource_attributes(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hi = (b[i + 1] as char).to_digit(16);
            let lo = (b[i + 2] as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the request said that the GenAI conventions record (sampled calls
/// only): the model asked for and the sampling parameters. Never content.
#[derive(Debug, Default, Clone)]
pub struct RequestInfo {
    pub model: Option<String>,
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
}

/// One upstream attempt of a sampled call.
#[derive(Debug)]
pub struct AttemptSpan {
    pub span_id: [u8; 8],
    pub route: Arc<Route>,
    pub started: Instant,
    pub ended: Option<Instant>,
}

/// The trace state of one call (in `CallContext`); empty when tracing is
/// off.
#[derive(Debug, Default)]
pub struct CallTrace {
    inner: Option<CallSpan>,
}

#[derive(Debug)]
struct CallSpan {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    sampled: bool,
    start_unix_ns: u64,
    started: Instant,
    request: RequestInfo,
    attempts: Vec<AttemptSpan>,
}

fn random_span_id() -> [u8; 8] {
    loop {
        let id = rand::thread_rng().next_u64().to_ne_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

fn random_trace_id() -> [u8; 16] {
    loop {
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        if id != [0; 16] {
            return id;
        }
    }
}

fn unix_ns_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn ns_between(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX)
}

impl CallTrace {
    /// The trace id (for the access log), when the call is traced.
    pub fn trace_id(&self) -> Option<&[u8; 16]> {
        self.inner.as_ref().map(|s| &s.trace_id)
    }

    /// Whether this call's spans will be recorded.
    pub fn sampled(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.sampled)
    }

    /// Notes the request's model and sampling parameters (sampled calls).
    pub fn note_request(&mut self, body: &Map<String, Value>) {
        let Some(s) = self.inner.as_mut().filter(|s| s.sampled) else {
            return;
        };
        let int = |k: &str| body.get(k).and_then(Value::as_i64);
        s.request = RequestInfo {
            model: body.get("model").and_then(Value::as_str).map(str::to_owned),
            max_tokens: int("max_completion_tokens")
                .or_else(|| int("max_tokens"))
                .or_else(|| int("max_output_tokens")),
            temperature: body.get("temperature").and_then(Value::as_f64),
            top_p: body.get("top_p").and_then(Value::as_f64),
        };
    }

    /// Starts an upstream attempt to `route`: the `traceparent` value to
    /// send upstream (the attempt's span as parent), `None` when untraced.
    pub fn begin_attempt(&mut self, route: &Arc<Route>) -> Option<http::HeaderValue> {
        let s = self.inner.as_mut()?;
        let span_id = random_span_id();
        if s.sampled {
            s.attempts.push(AttemptSpan {
                span_id,
                route: route.clone(),
                started: Instant::now(),
                ended: None,
            });
        }
        TraceParent {
            trace_id: s.trace_id,
            span_id,
            sampled: s.sampled,
        }
        .header_value()
    }

    /// Ends the attempt begun last.
    pub fn end_attempt(&mut self) {
        if let Some(a) = self
            .inner
            .as_mut()
            .and_then(|s| s.attempts.last_mut())
            .filter(|a| a.ended.is_none())
        {
            a.ended = Some(Instant::now());
        }
    }
}

tokio::task_local! {
    static UPSTREAM_TRACEPARENT: http::HeaderValue;
}

/// Runs an upstream attempt with its `traceparent` (from
/// [`CallTrace::begin_attempt`]) visible to [`propagate`].
pub fn with_upstream_traceparent<F: std::future::Future>(
    traceparent: Option<http::HeaderValue>,
    attempt: F,
) -> futures::future::Either<tokio::task::futures::TaskLocalFuture<http::HeaderValue, F>, F> {
    match traceparent {
        Some(v) => futures::future::Either::Left(UPSTREAM_TRACEPARENT.scope(v, attempt)),
        None => futures::future::Either::Right(attempt),
    }
}

/// Adds the current attempt's `traceparent` to an upstream request (no-op
/// outside a traced attempt).
pub fn propagate(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match UPSTREAM_TRACEPARENT.try_with(Clone::clone) {
        Ok(v) => req.header(TRACEPARENT, v),
        Err(_) => req,
    }
}

/// A finished, sampled call: what the exporter turns into spans.
#[derive(Debug)]
pub struct FinishedCall {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub endpoint: &'static str,
    pub request: RequestInfo,
    pub request_id: String,
    pub route: Option<Arc<Route>>,
    pub key: Option<Arc<CallerKey>>,
    pub status: u16,
    pub error_code: Option<&'static str>,
    pub usage: Option<tollgate_core::usage::Usage>,
    pub cost_micros: Option<i64>,
    pub cache: Option<crate::cache::CacheStatus>,
    pub stream: bool,
    pub ttft_ms: Option<i64>,
    pub attempts: Vec<FinishedAttempt>,
}

/// One upstream attempt of a [`FinishedCall`].
#[derive(Debug)]
pub struct FinishedAttempt {
    pub span_id: [u8; 8],
    pub route: Arc<Route>,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub status: u16,
    pub error_code: &'static str,
}

impl FinishedCall {
    /// Spans this call exports: its own and one per attempt.
    pub fn span_count(&self) -> usize {
        1 + self.attempts.len()
    }
}

/// The endpoints traced: model calls (not health, metrics or listings).
fn traced_endpoint(endpoint: &str) -> bool {
    matches!(
        endpoint,
        "chat.completions" | "messages" | "responses" | "embeddings"
    )
}

/// The request path's side of tracing: sampling and the queue to the
/// exporter.
#[derive(Debug)]
pub struct Tracer {
    tx: mpsc::Sender<FinishedCall>,
    /// Trace ids whose last 8 bytes (big-endian) are below this are
    /// sampled; `None`: all are.
    threshold: Option<u64>,
}

impl Tracer {
    /// A tracer and the receiving end of its queue (for
    /// [`super::trace_export::run`]).
    pub fn new(settings: &TraceSettings) -> (Arc<Tracer>, mpsc::Receiver<FinishedCall>) {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let threshold = if settings.sample_ratio >= 1.0 {
            None
        } else {
            // 2^64 × ratio, in integers: the ratio in millionths.
            let millionths = (settings.sample_ratio.max(0.0) * 1_000_000.0).round() as u128;
            Some(u64::try_from((u128::from(u64::MAX) * millionths) / 1_000_000).unwrap_or(0))
        };
        super::trace_export::register_metrics();
        (Arc::new(Tracer { tx, threshold }), rx)
    }

    fn sample_new(&self, trace_id: &[u8; 16]) -> bool {
        match self.threshold {
            None => true,
            Some(t) => {
                let mut low = [0u8; 8];
                low.copy_from_slice(&trace_id[8..]);
                u64::from_be_bytes(low) < t
            }
        }
    }

    /// The call's trace: a child of the caller's `traceparent` (whose
    /// sampled flag decides), else a new trace sampled by ratio.
    pub fn start_call(&self, req: &pingora_http::RequestHeader, started: Instant) -> CallTrace {
        let parent = req
            .headers
            .get(TRACEPARENT)
            .and_then(|v| TraceParent::parse(v.as_bytes()));
        let (trace_id, parent, sampled) = match parent {
            Some(p) => (p.trace_id, Some(p.span_id), p.sampled),
            None => {
                let id = random_trace_id();
                (id, None, self.sample_new(&id))
            }
        };
        CallTrace {
            inner: Some(CallSpan {
                trace_id,
                span_id: random_span_id(),
                parent,
                sampled,
                start_unix_ns: unix_ns_now(),
                started,
                request: RequestInfo::default(),
                attempts: Vec::new(),
            }),
        }
    }

    /// Hands a sampled call's spans to the exporter (never waits).
    pub fn finish_call(&self, ctx: &mut CallContext) {
        let Some(span) = ctx.trace.inner.take() else {
            return;
        };
        if !span.sampled || !traced_endpoint(ctx.endpoint) {
            return;
        }
        let end = Instant::now();
        let at = |i: Instant| span.start_unix_ns + ns_between(span.started, i);
        let attempts = span
            .attempts
            .into_iter()
            .zip(ctx.attempts.iter())
            .map(|(a, rec)| FinishedAttempt {
                span_id: a.span_id,
                start_unix_ns: at(a.started),
                end_unix_ns: at(a.ended.unwrap_or(end)),
                route: a.route,
                status: rec.status_code,
                error_code: rec.error_code,
            })
            .collect();
        let call = FinishedCall {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent: span.parent,
            start_unix_ns: span.start_unix_ns,
            end_unix_ns: at(end),
            endpoint: ctx.endpoint,
            request: span.request,
            request_id: ctx.request_id.clone(),
            route: ctx.route.clone(),
            key: ctx.key.clone(),
            status: ctx.status,
            error_code: ctx.error_code,
            usage: ctx.usage,
            cost_micros: ctx.cost_micros(),
            cache: ctx.cache,
            stream: ctx.stream,
            ttft_ms: ctx.ttft_ms,
            attempts,
        };
        let spans = call.span_count();
        if self.tx.try_send(call).is_err() {
            super::trace_export::count_dropped(spans);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_encodes_the_w3c_example() {
        let p = TraceParent::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(
            &trace_id_hex(&p.trace_id),
            b"4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(p.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(p.sampled);
        assert_eq!(&p.encode()[..], EXAMPLE.as_bytes());
        let unsampled =
            TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad}");
        }
        // A later version is read by its 00 prefix.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(TraceParent::parse(future.as_bytes()).is_some());
    }

    #[test]
    fn ratio_sampling_follows_the_trace_id() {
        let settings = |r: f64| TraceSettings {
            sample_ratio: r,
            ..TraceSettings::new("http://127.0.0.1:4317")
        };
        let (none, _rx0) = Tracer::new(&settings(0.0));
        let (all, _rx1) = Tracer::new(&settings(1.0));
        let (half, _rx2) = Tracer::new(&settings(0.5));
        let mut sampled = 0;
        for _ in 0..10_000 {
            let id = random_trace_id();
            assert!(!none.sample_new(&id));
            assert!(all.sample_new(&id));
            sampled += usize::from(half.sample_new(&id));
        }
        assert!((4_500..5_500).contains(&sampled), "{sampled}");
    }

    #[test]
    fn caller_decides_sampling_and_parent() {
        let (tracer, _rx) = Tracer::new(&TraceSettings {
            sample_ratio: 0.0,
            ..TraceSettings::new("http://127.0.0.1:4317")
        });
        let mut req =
            pingora_http::RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        req.insert_header(TRACEPARENT, EXAMPLE).unwrap();
        let t = tracer.start_call(&req, Instant::now());
        let s = t.inner.as_ref().unwrap();
        assert!(s.sampled, "the caller's sampled flag wins over ratio 0");
        assert_eq!(
            s.parent,
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert_eq!(
            &trace_id_hex(&s.trace_id),
            b"4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let bare =
            pingora_http::RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        let t = tracer.start_call(&bare, Instant::now());
        assert!(!t.sampled());
        assert!(t.trace_id().is_some(), "unsampled calls still propagate");
    }

    #[test]
    fn resource_attributes_from_the_environment_format() {
        assert_eq!(
            parse_resource_attributes("deployment.environment=prod, team=ml%20infra,broken,=x"),
            vec![
                ("deployment.environment".to_string(), "prod".to_string()),
                ("team".to_string(), "ml infra".to_string()),
            ]
        );
    }

    #[test]
    fn settings_are_validated() {
        assert!(TraceSettings::new("http://c:4317").validate().is_ok());
        assert!(TraceSettings::new("https://c:4317").validate().is_err());
        assert!(TraceSettings::new("c:4317").validate().is_err());
        let bad_ratio = TraceSettings {
            sample_ratio: 1.5,
            ..TraceSettings::new("http://c:4317")
        };
        assert!(bad_ratio.validate().is_err());
    }
}
