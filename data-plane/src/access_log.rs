//! One access-log event per call (tracing target `access`; one JSON line
//! with `--log-format json`). Metadata only: never bodies, never keys.
//!
//! With `--log-format json` the line is written here, not through
//! `tracing-subscriber`'s JSON formatter: the generic path (dynamic field
//! visiting, UTF-8 re-validation of every serde write, an RFC 3339
//! timestamp formatted per line) cost ~36k instructions per call
//! (docs/observability.md, Cost). The line is byte for byte what that
//! formatter writes (a test compares the two), and it is still written only
//! when `RUST_LOG` enables the `access` target at `info`.

use std::cell::RefCell;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use pingora_proxy::Session;
use serde::Serialize;

use crate::pipeline::CallContext;

/// Where JSON lines go: the logging writer (`main` installs it with
/// `--log-format json`). Unset, the event goes through `tracing`.
static JSON_SINK: OnceLock<tracing_appender::non_blocking::NonBlocking> = OnceLock::new();

/// Writes access-log lines as JSON to `writer` (the same non-blocking writer
/// the `tracing` subscriber uses, so lines interleave whole).
pub fn install_json_writer(writer: tracing_appender::non_blocking::NonBlocking) {
    let _ = JSON_SINK.set(writer);
}

/// The event's fields, in the order they are logged.
#[derive(Debug, Serialize)]
struct AccessLine<'a> {
    request_id: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
    latency_ms: i64,
    tenant_id: &'a str,
    key_id: &'a str,
    model: &'a str,
    provider: &'a str,
    upstream_model: &'a str,
    attempts: usize,
    stream: bool,
    prompt_tokens: i64,
    completion_tokens: i64,
    cache_read_tokens: i64,
    reasoning_tokens: i64,
    error_code: &'a str,
    guardrails: &'a str,
    bytes_sent: usize,
    config_version: u64,
    trace_id: &'a str,
}

pub fn log(session: &Session, ctx: &CallContext, latency_ms: i64) {
    let json = JSON_SINK.get();
    // The level check first: nothing is built for a disabled `access` target.
    if json.is_some() && !tracing::enabled!(target: "access", tracing::Level::INFO) {
        return;
    }
    let req = session.req_header();
    let usage = ctx.usage.unwrap_or_default();
    let (model, provider, upstream_model) = match &ctx.route {
        Some(r) => (
            r.public_name.as_str(),
            r.provider.name.as_str(),
            r.upstream_model.as_str(),
        ),
        None => ("", "", ""),
    };
    let (tenant_id, key_id) = match &ctx.key {
        Some(k) => (k.tenant_id.as_str(), k.id.as_str()),
        None => ("", ""),
    };
    // The trace id when the call is traced (otel), else empty.
    let trace_hex = ctx
        .trace
        .trace_id()
        .map(crate::telemetry::trace::trace_id_hex);
    let trace_id = trace_hex
        .as_ref()
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("");
    let guardrails = ctx.guard.log_field();
    let line = AccessLine {
        request_id: ctx.request_id.as_str(),
        method: req.method.as_str(),
        path: req.uri.path(),
        status: ctx.status,
        latency_ms,
        tenant_id,
        key_id,
        model,
        provider,
        upstream_model,
        attempts: ctx.attempts.len(),
        stream: ctx.stream,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cache_read_tokens: usage.cache_read_tokens,
        reasoning_tokens: usage.reasoning_tokens,
        error_code: ctx.error_code.unwrap_or(""),
        guardrails: &guardrails,
        bytes_sent: session.body_bytes_sent(),
        config_version: ctx.config.as_ref().map_or(0, |c| c.version),
        trace_id,
    };
    match json {
        Some(writer) => write_json(writer, &line),
        None => emit(&line),
    }
}

/// The event through `tracing` (`--log-format text`, and tests).
fn emit(l: &AccessLine<'_>) {
    tracing::info!(
        target: "access",
        request_id = %l.request_id,
        method = %l.method,
        path = l.path,
        status = l.status,
        latency_ms = l.latency_ms,
        tenant_id = l.tenant_id,
        key_id = l.key_id,
        model = l.model,
        provider = l.provider,
        upstream_model = l.upstream_model,
        attempts = l.attempts,
        stream = l.stream,
        prompt_tokens = l.prompt_tokens,
        completion_tokens = l.completion_tokens,
        cache_read_tokens = l.cache_read_tokens,
        reasoning_tokens = l.reasoning_tokens,
        error_code = l.error_code,
        guardrails = %l.guardrails,
        bytes_sent = l.bytes_sent,
        config_version = l.config_version,
        trace_id = l.trace_id,
        "request"
    );
}

thread_local! {
    /// The line buffer, reused call after call (one per proxy thread).
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn write_json(writer: &tracing_appender::non_blocking::NonBlocking, l: &AccessLine<'_>) {
    LINE.with(|buf| {
        let Ok(mut buf) = buf.try_borrow_mut() else {
            return;
        };
        buf.clear();
        if format_json(&mut buf, l, SystemTime::now()).is_ok() {
            // One write: one whole line queued to the logging thread.
            let _ = writer.clone().write_all(&buf);
        }
    });
}

/// The line `tracing-subscriber`'s JSON formatter (`flatten_event`) writes:
/// timestamp, level, message, the fields, target.
fn format_json(buf: &mut Vec<u8>, l: &AccessLine<'_>, now: SystemTime) -> serde_json::Result<()> {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(buf, now);
    buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",");
    let start = buf.len();
    serde_json::to_writer(&mut *buf, l)?;
    // The struct's own braces go: its fields continue the line's object.
    buf.remove(start);
    buf.pop();
    buf.extend_from_slice(b",\"target\":\"access\"}\n");
    Ok(())
}

thread_local! {
    /// The formatted date and time of the last second seen (`2026-11-24T09:30:01`).
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// `2026-11-24T09:30:01.123456Z` (UTC, microseconds), as `tracing-subscriber`'s
/// default timer writes it; the date part is formatted once per second.
fn timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, format_second(secs));
        }
        buf.extend_from_slice(&cached.1);
    });
    let micros = d.subsec_micros();
    let mut frac = *b".000000Z";
    let mut n = micros;
    for i in (1..7).rev() {
        frac[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    buf.extend_from_slice(&frac);
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time (UTC, proleptic Gregorian).
fn format_second(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = [0u8; 19];
    let mut put = |at: usize, v: u64, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y as u64, 4);
    put(5, m, 2);
    put(8, d, 2);
    put(11, rem / 3_600, 2);
    put(14, rem / 60 % 60, 2);
    put(17, rem % 60, 2);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    out
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn line<'a>(guardrails: &'a str) -> AccessLine<'a> {
        AccessLine {
            request_id: "req_01J\"quoted\"",
            method: "POST",
            path: "/v1/chat/completions",
            status: 429,
            latency_ms: 12,
            tenant_id: "t_1",
            key_id: "k_1",
            model: "gpt-4o-mini",
            provider: "openai",
            upstream_model: "gpt-4o-mini-2024",
            attempts: 2,
            stream: true,
            prompt_tokens: 10,
            completion_tokens: -1,
            cache_read_tokens: 0,
            reasoning_tokens: 7,
            error_code: "rate_limit_exceeded:key:rpd",
            guardrails,
            bytes_sent: 1234,
            config_version: 42,
            trace_id: "",
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `tracing-subscriber`'s JSON formatter writes for the event, as
    /// `main` configures it.
    fn via_tracing(l: &AccessLine<'_>) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .json()
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(subscriber, || emit(l));
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_line_is_what_the_tracing_json_formatter_writes() {
        for g in ["", "no-zeus:block:keyword,pii:redact:pii \u{1F600} \\ \n"] {
            let l = line(g);
            let theirs = via_tracing(&l);
            let mut ours = Vec::new();
            format_json(&mut ours, &l, SystemTime::now()).unwrap();
            let ours = String::from_utf8(ours).unwrap();
            // Same bytes but the time (27 characters after `{"timestamp":"`).
            let at = "{\"timestamp\":\"".len();
            assert_eq!(ours[..at], theirs[..at]);
            assert_eq!(ours[at + 27..], theirs[at + 27..], "\n{ours}\n{theirs}");
            // And every field parses back with its value and type.
            let v: serde_json::Value = serde_json::from_str(&ours).unwrap();
            assert_eq!(v["level"], "INFO");
            assert_eq!(v["target"], "access");
            assert_eq!(v["message"], "request");
            assert_eq!(v["request_id"], "req_01J\"quoted\"");
            assert_eq!(v["method"], "POST");
            assert_eq!(v["path"], "/v1/chat/completions");
            assert_eq!(v["status"], 429);
            assert_eq!(v["latency_ms"], 12);
            assert_eq!(v["tenant_id"], "t_1");
            assert_eq!(v["key_id"], "k_1");
            assert_eq!(v["model"], "gpt-4o-mini");
            assert_eq!(v["provider"], "openai");
            assert_eq!(v["upstream_model"], "gpt-4o-mini-2024");
            assert_eq!(v["attempts"], 2);
            assert_eq!(v["stream"], true);
            assert_eq!(v["prompt_tokens"], 10);
            assert_eq!(v["completion_tokens"], -1);
            assert_eq!(v["cache_read_tokens"], 0);
            assert_eq!(v["reasoning_tokens"], 7);
            assert_eq!(v["error_code"], "rate_limit_exceeded:key:rpd");
            assert_eq!(v["guardrails"], g);
            assert_eq!(v["bytes_sent"], 1234);
            assert_eq!(v["config_version"], 42);
            assert_eq!(v["trace_id"], "");
            assert_eq!(v.as_object().unwrap().len(), 25);
            assert!(ours.ends_with("}\n") && !ours[..ours.len() - 1].contains('\n'));
        }
    }

    #[test]
    fn timestamps_read_like_the_tracing_timer() {
        use std::time::Duration;
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 5_000, "2000-02-29T00:00:00.000005Z"),
            (1_795_519_801, 123_456_789, "2026-11-24T11:30:01.123456Z"),
            (4_107_542_399, 999_999_999, "2100-02-28T23:59:59.999999Z"),
        ];
        for (secs, nanos, want) in cases {
            let t = UNIX_EPOCH + Duration::new(secs, nanos);
            let mut buf = Vec::new();
            timestamp(&mut buf, t);
            assert_eq!(String::from_utf8(buf).unwrap(), want);
            // The same as `tracing-subscriber` writes.
            let mut theirs = String::new();
            tracing_subscriber::fmt::time::FormatTime::format_time(
                &tracing_subscriber::fmt::time::SystemTime,
                &mut tracing_subscriber::fmt::format::Writer::new(&mut theirs),
            )
            .unwrap();
            assert_eq!(theirs.len(), want.len());
        }
    }
}
