//! Response relay stage: a complete body as is, or an SSE stream event by
//! event as each event completes (never buffered whole).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use pingora_proxy::Session;

use super::failover::{downstream_gone, Answer};
use super::{CallContext, Failure};
use crate::http::response;
use crate::providers::{ByteStream, UpstreamResponse};
use crate::routing::Clock;
use crate::stream::{EventMeter, SseSplitter, Verdict};
use tollgate_core::usage::Usage;

/// Relays the answer of the attempt that succeeded, already in the
/// caller's protocol: a complete body as is, or a stream counted by `meter`.
pub(super) async fn relay(
    session: &mut Session,
    ctx: &mut CallContext,
    answer: Answer,
    clock: &dyn Clock,
    meter: &mut dyn EventMeter,
) -> Result<(), Failure> {
    let Answer {
        upstream,
        first_chunk,
        idle_timeout,
    } = answer;
    match upstream {
        UpstreamResponse::Complete { body, usage } => {
            ctx.usage = usage;
            let body = super::guard::guard_answer(ctx, body).await?;
            response::write_json(session, ctx, 200, body).await?;
        }
        UpstreamResponse::Stream(stream) => {
            let timing = StreamTiming {
                first_chunk,
                idle_timeout,
                clock,
            };
            relay_stream(session, ctx, stream, timing, meter).await?
        }
    }
    Ok(())
}

/// Why a stream ended before `[DONE]`.
struct StreamFailure {
    message: &'static str,
    code: &'static str,
}

const IDLE_TIMEOUT: StreamFailure = StreamFailure {
    message: "The provider stopped sending before the answer was complete.",
    code: "upstream_timeout",
};
const CONNECTION_FAILED: StreamFailure = StreamFailure {
    message: "The connection to the provider failed before the answer was complete.",
    code: "upstream_stream_error",
};
const EVENT_TOO_LARGE: StreamFailure = StreamFailure {
    message: "The provider sent a stream event larger than the gateway accepts.",
    code: "upstream_stream_error",
};
const ENDED_EARLY: StreamFailure = StreamFailure {
    message: "The provider ended the stream before the answer was complete.",
    code: "upstream_stream_error",
};
/// Most bytes gathered into one downstream write.
const COALESCE_LIMIT: usize = 64 * 1024;

/// True when an event carries a non-empty `"content":"…"` delta.
fn carries_content(event: &[u8]) -> bool {
    const KEY: &[u8] = b"\"content\":\"";
    event
        .windows(KEY.len() + 1)
        .any(|w| w.starts_with(KEY) && w[KEY.len()] != b'"')
}

/// Usage of a stream that ended before the provider reported it (caller
/// left, upstream failed): output estimated at one token per content chunk
/// relayed (what providers stream); input unknown, so 0.
fn partial_usage(reported: Option<Usage>, content_chunks: i64) -> Option<Usage> {
    reported.or_else(|| {
        (content_chunks > 0).then(|| Usage {
            completion_tokens: content_chunks,
            ..Usage::default()
        })
    })
}

/// When stream chunks arrive: the first one (already read while choosing
/// the target), the longest pause allowed between chunks, and the clock of
/// the circuit breakers.
pub(super) struct StreamTiming<'a> {
    pub first_chunk: Option<Bytes>,
    pub idle_timeout: Duration,
    pub clock: &'a dyn Clock,
}

/// Relays a stream in the caller's protocol; `meter` knows its events.
pub(super) async fn relay_stream(
    session: &mut Session,
    ctx: &mut CallContext,
    mut stream: ByteStream,
    timing: StreamTiming<'_>,
    meter: &mut dyn EventMeter,
) -> Result<(), Failure> {
    let StreamTiming {
        first_chunk,
        idle_timeout,
        clock,
    } = timing;
    let head = response::head(200, ctx, response::CONTENT_TYPE_SSE, None)?;
    ctx.status = 200;
    session.write_response_header(head, false).await?;
    let mut splitter = SseSplitter::new();
    let mut provider_said: Option<String> = None;
    let mut out = BytesMut::new();
    let mut content_chunks: i64 = 0;
    let mut first = first_chunk;
    // Set when an output guardrail stops the answer (guardrails).
    let mut policy_stop: Option<crate::http::errors::GatewayError> = None;
    let failure = loop {
        // Wait (bounded) for the next chunk, unless the caller leaves: then
        // dropping the stream cancels the upstream request at once.
        let mut item = match first.take() {
            Some(chunk) => Some(Ok(chunk)),
            None => {
                let next = tokio::select! {
                    r = tokio::time::timeout(idle_timeout, stream.next()) => r,
                    e = downstream_gone(session) => {
                        ctx.usage = partial_usage(meter.usage(), content_chunks);
                        return Err(Failure::Downstream(e));
                    }
                };
                match next {
                    Ok(item) => item,
                    Err(_) => break Some(IDLE_TIMEOUT),
                }
            }
        };
        let mut end: Option<Option<StreamFailure>> = None;
        loop {
            match item {
                Some(Ok(chunk)) => {
                    for event in splitter.push(&chunk) {
                        if meter.on_event(&event) == Verdict::Forward {
                            let guard = &mut ctx.guard;
                            if let Some(g) = guard.output.as_mut() {
                                if let Err(e) = g.on_stream_event(&event, &mut guard.verdicts) {
                                    policy_stop = Some(e);
                                    break;
                                }
                            }
                            if carries_content(&event) {
                                content_chunks += 1;
                            }
                            out.extend_from_slice(&event);
                        }
                    }
                    if splitter.overflowed() {
                        end = Some(Some(EVENT_TOO_LARGE));
                        break;
                    }
                }
                Some(Err(e)) => {
                    // A provider error event (translated streams) says more
                    // than "the connection failed".
                    provider_said = e.provider_message();
                    end = Some(Some(CONNECTION_FAILED));
                    break;
                }
                None => {
                    end = Some((!meter.finished()).then_some(ENDED_EARLY));
                    break;
                }
            }
            if meter.finished() || policy_stop.is_some() {
                end = Some(None);
                break;
            }
            if out.len() >= COALESCE_LIMIT {
                break;
            }
            // …then take what is already there without waiting, so events
            // that arrive together leave in one write.
            match stream.next().now_or_never() {
                Some(next) => item = next,
                None => break,
            }
        }
        if !out.is_empty() {
            session
                .write_response_body(Some(out.split().freeze()), false)
                .await?;
            if ctx.ttft_ms.is_none() {
                ctx.ttft_ms = Some(millis_since(ctx.started));
            }
        }
        if let Some(result) = end {
            break result;
        }
    };
    ctx.usage = if failure.is_some() || policy_stop.is_some() {
        partial_usage(meter.usage(), content_chunks)
    } else {
        meter.usage()
    };
    if let Some(code) = meter.upstream_failure() {
        ctx.status = 502;
        ctx.error_code = Some(code);
    }
    if let Some((stats, breaker)) = ctx.serving.take() {
        // Too late to fail over after a failure, but the target did fail.
        if failure.is_some() {
            stats.breaker.on_failure(&breaker, clock.now_ms());
        } else {
            stats.breaker.on_success(&breaker, clock.now_ms());
        }
    }
    let completed = failure.is_none();
    if let Some(f) = failure {
        tracing::warn!(request_id = %ctx.request_id, code = f.code, "upstream stream failed mid-way");
        ctx.status = if f.code == "upstream_timeout" {
            504
        } else {
            502
        };
        ctx.error_code = Some(f.code);
        session
            .write_response_body(
                Some(meter.failure_event(provider_said.as_deref().unwrap_or(f.message), f.code)),
                false,
            )
            .await
            .map_err(Failure::Downstream)?;
    }
    if let Some(e) = &policy_stop {
        // Stopped by an output guardrail: an error event in the caller's
        // protocol ends the stream; the upstream is dropped, not drained.
        tracing::info!(request_id = %ctx.request_id, "output guardrail stopped the stream");
        ctx.status = e.status();
        ctx.error_code = Some(e.code());
        session
            .write_response_body(
                Some(crate::guardrails::stream_error_event(e, ctx.api)),
                false,
            )
            .await
            .map_err(Failure::Downstream)?;
    }
    session.write_response_body(None, true).await?;
    if completed && policy_stop.is_none() {
        drain_upstream(stream).await;
    }
    Ok(())
}

/// Longest wait for the end of an upstream body after its last event.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(250);

/// Reads the upstream body to its end after the last event (`[DONE]` and the
/// HTTP terminator often arrive in separate reads): a body dropped before its
/// end closes the pooled connection, and the next call pays a new TCP+TLS
/// handshake. Bounded, and only after the caller has its whole answer.
async fn drain_upstream(mut stream: ByteStream) {
    let drained = async { while let Some(Ok(_)) = stream.next().await {} };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
}

/// Milliseconds since `start`, for the usage record's time to first token.
fn millis_since(start: std::time::Instant) -> i64 {
    i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_chunks_are_recognised_and_estimate_partial_usage() {
        assert!(carries_content(
            br#"data: {"choices":[{"delta":{"content":"Hello"}}]}"#
        ));
        assert!(!carries_content(
            br#"data: {"choices":[{"delta":{"role":"assistant","content":""}}]}"#
        ));
        assert!(!carries_content(b"data: [DONE]\n\n"));
        assert_eq!(partial_usage(None, 0), None);
        assert_eq!(partial_usage(None, 3).map(|u| u.completion_tokens), Some(3));
        let reported = Usage {
            prompt_tokens: 5,
            completion_tokens: 11,
            ..Usage::default()
        };
        assert_eq!(partial_usage(Some(reported), 3), Some(reported));
    }
}
