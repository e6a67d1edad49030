//! Property tests of every provider's response parser and SSE stream
//! translator: arbitrary bytes, arbitrary chunk boundaries, huge lines and
//! invalid UTF-8 never panic, memory stays bounded, and the same stream
//! split anywhere yields the same events and the same translated output.
#![allow(clippy::unwrap_used)]

mod prop_support;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value};
use tollgate_core::usage::Usage;
use tollgate_dp::providers::anthropic::inbound_stream::OpenAiToAnthropic;
use tollgate_dp::providers::anthropic::request::RequestFacts;
use tollgate_dp::providers::anthropic::stream::AnthropicToOpenAi;
use tollgate_dp::providers::event_stream::{event_name, EventTranslator};
use tollgate_dp::providers::gemini::stream::GeminiToOpenAi;
use tollgate_dp::providers::{anthropic, embeddings, gemini, openai};
use tollgate_dp::responses;
use tollgate_dp::responses::stream::ChatToResponses;
use tollgate_dp::stream::{
    event_data, AnthropicMeter, EventMeter, ResponsesMeter, SseSplitter, StreamMeter,
    MAX_EVENT_BYTES,
};

const EVENT_NAMES: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "response.created",
    "response.output_text.delta",
    "response.completed",
];

/// An SSE stream of plausible events with random JSON payloads, sometimes
/// ending with `[DONE]`, with CRLF or LF line ends.
fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(
            (
                proptest::option::of(proptest::sample::select(EVENT_NAMES)),
                prop_support::json(),
            ),
            0..8,
        ),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(events, done, crlf)| {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut out = String::new();
            for (name, data) in events {
                if let Some(n) = name {
                    out.push_str(&format!("event: {n}{nl}"));
                }
                out.push_str(&format!("data: {data}{nl}{nl}"));
            }
            if done {
                out.push_str(&format!("data: [DONE]{nl}{nl}"));
            }
            out.into_bytes()
        })
}

/// Arbitrary bytes, or a plausible stream with some bytes flipped.
fn any_stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1024),
        sse_stream(),
        (
            sse_stream(),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8)
        )
            .prop_map(|(mut s, flips)| {
                if !s.is_empty() {
                    let len = s.len();
                    for (i, b) in flips {
                        s[i % len] = b;
                    }
                }
                s
            }),
    ]
}

/// `bytes` cut at the given points (taken modulo the length).
fn chunks(bytes: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
    if bytes.is_empty() {
        return vec![bytes];
    }
    for c in &mut cuts {
        *c %= bytes.len();
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts {
        out.push(&bytes[start..c]);
        start = c;
    }
    out.push(&bytes[start..]);
    out
}

fn split_all(pieces: &[&[u8]]) -> (Vec<Bytes>, usize) {
    let mut s = SseSplitter::new();
    let mut events = Vec::new();
    for p in pieces {
        events.extend(s.push(p));
    }
    (events, s.pending())
}

fn translators() -> Vec<Box<dyn EventTranslator>> {
    let mut request = Map::new();
    request.insert("model".into(), Value::from("m"));
    vec![
        Box::new(AnthropicToOpenAi::new(RequestFacts::default(), 0)),
        Box::new(AnthropicToOpenAi::new(
            RequestFacts {
                json_tool: Some("answer".into()),
            },
            0,
        )),
        Box::new(GeminiToOpenAi::new("m", 0)),
        Box::new(OpenAiToAnthropic::new("m")),
        Box::new(ChatToResponses::new(&request, "m", 0)),
    ]
}

/// Output of every translator and meter over `pieces`, as `translate` and
/// the relay drive them.
fn translate_all(pieces: &[&[u8]]) -> Vec<Vec<Bytes>> {
    let mut outputs = Vec::new();
    for mut t in translators() {
        let mut splitter = SseSplitter::new();
        let mut out = Vec::new();
        let mut failed = false;
        for p in pieces {
            for ev in splitter.push(p) {
                if failed {
                    break;
                }
                let Some(data) = event_data(&ev) else {
                    continue;
                };
                if t.on_event(event_name(&ev), &data, &mut out).is_err() {
                    failed = true;
                }
            }
        }
        if !failed {
            let _ = t.on_end(&mut out);
        }
        outputs.push(out);
    }
    let mut meters: Vec<Box<dyn EventMeter>> = vec![
        Box::new(StreamMeter::new(true)),
        Box::new(StreamMeter::new(false)),
        Box::new(AnthropicMeter::new()),
        Box::new(ResponsesMeter::new()),
    ];
    for m in &mut meters {
        let mut splitter = SseSplitter::new();
        let mut verdicts = Vec::new();
        for p in pieces {
            for ev in splitter.push(p) {
                verdicts.push(Bytes::from(format!("{:?}", m.on_event(&ev))));
            }
        }
        verdicts.push(Bytes::from(format!(
            "{:?} {} {:?}",
            m.usage(),
            m.finished(),
            m.failure_event("x", "y")
        )));
        outputs.push(verdicts);
    }
    outputs
}

proptest! {
    #![proptest_config(prop_support::config())]

    #[test]
    fn prop_sse_split_anywhere_yields_the_same_events(
        stream in any_stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let whole = split_all(&[&stream]);
        let pieces = chunks(&stream, cuts);
        prop_assert_eq!(&split_all(&pieces), &whole);
        // Byte by byte, too.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        prop_assert_eq!(&split_all(&bytes), &whole);
        // Nothing is invented: events plus what is pending fit in the input.
        let total: usize = whole.0.iter().map(Bytes::len).sum::<usize>() + whole.1;
        prop_assert!(total <= stream.len());
    }

    #[test]
    fn prop_translators_and_meters_are_split_invariant(
        stream in any_stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let whole = translate_all(&[&stream]);
        let pieces = chunks(&stream, cuts);
        prop_assert_eq!(translate_all(&pieces), whole);
    }

    #[test]
    fn prop_response_parsers_never_panic(v in prop_support::json(), bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let text = serde_json::to_vec(&v).unwrap();
        for body in [&text[..], &bytes[..]] {
            let _ = openai::usage_from_body(body);
            let _ = openai::usage_from_chunk(body);
            let _ = anthropic::usage_from_message(body);
            let _ = embeddings::usage_of(body);
            let _ = tollgate_dp::http::errors::normalize_upstream_error(500, body);
        }
        let _ = anthropic::response::to_openai(&v, &RequestFacts::default(), 0);
        let _ = anthropic::response::to_openai(&v, &RequestFacts { json_tool: Some("t".into()) }, 0);
        let _ = gemini::response::to_openai(&v, "m", 0);
        let _ = anthropic::inbound::to_message(&v, &Usage::default(), "m");
        let _ = responses::usage_from(&v);
        if let Value::Object(m) = &v {
            let _ = responses::to_response(&v, &Usage::default(), m, "m", 0);
        }
    }
}

#[test]
fn a_huge_line_is_bounded_and_reported() {
    let mut s = SseSplitter::new();
    let line = vec![b'a'; 1024 * 1024];
    s.push(b"data: ");
    let mut pushed = 0;
    while !s.overflowed() {
        assert!(s.push(&line).is_empty());
        pushed += line.len();
        assert!(pushed <= MAX_EVENT_BYTES + line.len(), "never reported");
    }
    assert!(s.pending() <= MAX_EVENT_BYTES + line.len() + 6);
    // Invalid UTF-8 in a huge event is just bytes.
    let mut s = SseSplitter::new();
    let mut ev = b"data: ".to_vec();
    ev.extend(std::iter::repeat_n(0xFFu8, 100_000));
    ev.extend_from_slice(b"\n\n");
    let events = s.push(&ev);
    assert_eq!(events.len(), 1);
    assert_eq!(event_data(&events[0]).unwrap().len(), 100_000);
}
