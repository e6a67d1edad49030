//! Stream translation: a provider's SSE byte stream, split into complete
//! events by the [`SseSplitter`] (any chunk boundary), fed event by event to
//! an [`EventTranslator`] state machine that emits the caller protocol's
//! events. The result is again a [`ByteStream`], so the relay treats a
//! translated stream like a native one.

use std::collections::VecDeque;

use bytes::Bytes;
use futures::StreamExt;

use super::ByteStream;
use crate::http::errors::GatewayError;
use crate::stream::{event_data, SseSplitter};

/// One direction of stream translation (e.g. Anthropic events → OpenAI
/// chunks).
pub trait EventTranslator: Send {
    /// Handles the `data` of one complete upstream event (`event` is its
    /// `event:` name, when present) and appends the complete SSE events to
    /// send downstream. An `Err` ends the stream with that failure after the
    /// events already appended.
    fn on_event(
        &mut self,
        event: Option<&str>,
        data: &[u8],
        out: &mut Vec<Bytes>,
    ) -> Result<(), GatewayError>;

    /// The upstream ended cleanly: protocols without an end marker
    /// (Gemini) finish the downstream stream here.
    fn on_end(&mut self, _out: &mut Vec<Bytes>) -> Result<(), GatewayError> {
        Ok(())
    }
}

/// The `event:` field of an SSE event, if any.
pub fn event_name(event: &[u8]) -> Option<&str> {
    event
        .split(|&b| b == b'\n' || b == b'\r')
        .find_map(|l| l.strip_prefix(b"event:"))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
}

struct State {
    upstream: ByteStream,
    splitter: SseSplitter,
    translator: Box<dyn EventTranslator>,
    queue: VecDeque<Bytes>,
    failure: Option<GatewayError>,
    ended: bool,
}

/// Translates `upstream` with `translator`. Events leave as soon as the
/// upstream event that produced them is complete. When the upstream ends,
/// the translated stream ends too; whether the answer was complete is the
/// relay's business (it looks for the caller protocol's end marker).
pub fn translate(upstream: ByteStream, translator: Box<dyn EventTranslator>) -> ByteStream {
    let state = State {
        upstream,
        splitter: SseSplitter::new(),
        translator,
        queue: VecDeque::new(),
        failure: None,
        ended: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(b) = s.queue.pop_front() {
                return Some((Ok(b), s));
            }
            if let Some(e) = s.failure.take() {
                s.ended = true;
                return Some((Err(e), s));
            }
            if s.ended {
                return None;
            }
            match s.upstream.next().await {
                Some(Ok(chunk)) => {
                    let mut out = Vec::new();
                    for event in s.splitter.push(&chunk) {
                        let Some(data) = event_data(&event) else {
                            continue;
                        };
                        if let Err(e) = s.translator.on_event(event_name(&event), &data, &mut out) {
                            s.failure = Some(e);
                            break;
                        }
                    }
                    if s.failure.is_none() && s.splitter.overflowed() {
                        s.failure = Some(GatewayError::Upstream(format!(
                            "the provider sent a stream event larger than {} bytes",
                            crate::stream::MAX_EVENT_BYTES
                        )));
                    }
                    s.queue.extend(out);
                }
                Some(Err(e)) => {
                    s.ended = true;
                    return Some((Err(e), s));
                }
                None => {
                    s.ended = true;
                    let mut out = Vec::new();
                    if let Err(e) = s.translator.on_end(&mut out) {
                        s.failure = Some(e);
                    }
                    s.queue.extend(out);
                }
            }
        }
    }))
}

/// An SSE event carrying one JSON value (`data: …\n\n`).
pub fn data_event(v: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// An SSE event with an `event:` line (Anthropic's framing).
pub fn named_event(name: &str, v: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

pub const DONE_EVENT: Bytes = Bytes::from_static(b"data: [DONE]\n\n");

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Upper-cases every data payload; fails on "boom".
    struct Upper;

    impl EventTranslator for Upper {
        fn on_event(
            &mut self,
            event: Option<&str>,
            data: &[u8],
            out: &mut Vec<Bytes>,
        ) -> Result<(), GatewayError> {
            if data == b"boom" {
                return Err(GatewayError::Upstream("boom".into()));
            }
            let text = String::from_utf8_lossy(data).to_uppercase();
            out.push(Bytes::from(format!("{}:{text}\n", event.unwrap_or("-"))));
            Ok(())
        }
    }

    async fn run(input: &'static [u8], chunk: usize) -> (Vec<Bytes>, Option<GatewayError>) {
        let chunks: Vec<Result<Bytes, GatewayError>> = input
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut s = translate(Box::pin(futures::stream::iter(chunks)), Box::new(Upper));
        let (mut out, mut err) = (Vec::new(), None);
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.push(b),
                Err(e) => err = Some(e),
            }
        }
        (out, err)
    }

    #[tokio::test]
    async fn translates_events_split_anywhere_and_stops_at_a_failure() {
        const INPUT: &[u8] =
            b"event: a\ndata: x\n\n: ping\n\ndata: y\r\n\r\ndata: boom\n\ndata: z\n\n";
        for size in 1..INPUT.len() {
            let (out, err) = run(INPUT, size).await;
            assert_eq!(
                out,
                vec![Bytes::from_static(b"a:X\n"), Bytes::from_static(b"-:Y\n")],
                "chunk size {size}"
            );
            assert_eq!(err, Some(GatewayError::Upstream("boom".into())));
        }
    }
}
