//! Response relay stage: a complete body as is, or an SSE stream event by
//! event as each event completes (never buffered whole).

use std::time::Duration;

use bytes::BytesMut;
use futures::{FutureExt, StreamExt};
use pingora_proxy::Session;

use super::{CallContext, Failure};
use crate::http::response;
use crate::providers::{ByteStream, UpstreamResponse};
use crate::stream::{EventMeter, SseSplitter, StreamMeter, Verdict};

pub(super) async fn relay(
    session: &mut Session,
    ctx: &mut CallContext,
    upstream: UpstreamResponse,
    idle_timeout: Duration,
) -> Result<(), Failure> {
    match upstream {
        UpstreamResponse::Complete { body, usage } => {
            ctx.usage = usage;
            response::write_json(session, ctx, 200, body).await?;
        }
        UpstreamResponse::Stream(stream) => {
            let mut meter = StreamMeter::new(ctx.include_usage);
            relay_stream(session, ctx, stream, idle_timeout, &mut meter).await?
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
const ENDED_EARLY: StreamFailure = StreamFailure {
    message: "The provider ended the stream before the answer was complete.",
    code: "upstream_stream_error",
};
/// Most bytes gathered into one downstream write.
const COALESCE_LIMIT: usize = 64 * 1024;

/// Relays a stream in the caller's protocol; `meter` knows its events.
pub(super) async fn relay_stream(
    session: &mut Session,
    ctx: &mut CallContext,
    mut stream: ByteStream,
    idle_timeout: Duration,
    meter: &mut dyn EventMeter,
) -> Result<(), Failure> {
    let head = response::head(200, ctx, response::CONTENT_TYPE_SSE, None)?;
    ctx.status = 200;
    session.write_response_header(head, false).await?;
    let mut splitter = SseSplitter::new();
    let mut provider_said: Option<String> = None;
    let mut out = BytesMut::new();
    let failure = loop {
        // Wait (bounded) for the next chunk…
        let mut item = match tokio::time::timeout(idle_timeout, stream.next()).await {
            Ok(item) => item,
            Err(_) => break Some(IDLE_TIMEOUT),
        };
        let mut end: Option<Option<StreamFailure>> = None;
        loop {
            match item {
                Some(Ok(chunk)) => {
                    for event in splitter.push(&chunk) {
                        if meter.on_event(&event) == Verdict::Forward {
                            out.extend_from_slice(&event);
                        }
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
            if meter.finished() {
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
        }
        if let Some(result) = end {
            break result;
        }
    };
    ctx.usage = meter.usage();
    if let Some(code) = meter.upstream_failure() {
        ctx.status = 502;
        ctx.error_code = Some(code);
    }
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
    session.write_response_body(None, true).await?;
    Ok(())
}
