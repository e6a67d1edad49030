#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use serde_json::json;

fn cfg(
    name: &str,
    kind: &str,
    action: &str,
    direction: &str,
    settings: Value,
) -> pb::GuardrailConfig {
    pb::GuardrailConfig {
        id: format!("gr_{name}"),
        name: name.into(),
        kind: kind.into(),
        action: action.into(),
        direction: direction.into(),
        settings: settings.to_string(),
        tenant_wide: true,
        key_ids: vec![],
        model_ids: vec![],
    }
}

fn chat(text: &str) -> Map<String, Value> {
    let Value::Object(m) = json!({"model":"m","messages":[
        {"role":"system","content":"be nice"},
        {"role":"user","content":[{"type":"text","text": text}]}]})
    else {
        unreachable!()
    };
    m
}

fn call<'a>() -> InputCall<'a> {
    InputCall {
        key_id: "ck_1",
        model_id: "md_1",
        model: "gpt-test",
        body_len: 100,
        shape: RequestShape::Chat,
    }
}

async fn run(
    set: &TenantGuardrails,
    body: &mut Map<String, Value>,
    c: InputCall<'_>,
) -> (Result<(), GatewayError>, Vec<Verdict>) {
    let mut v = Vec::new();
    let r = check_input(set, c, body, &reqwest::Client::new(), &mut v).await;
    (r, v)
}

fn user_text(body: &Map<String, Value>) -> String {
    body["messages"][1]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn keyword_block_is_case_insensitive_and_whole_word_when_asked() {
    let set = TenantGuardrails::compile(&[cfg(
        "no-secrets",
        "keyword",
        "block",
        "input",
        json!({"words": ["project zeus", "cat"], "whole_word": true}),
    )])
    .unwrap();
    let (r, v) = run(&set, &mut chat("Tell me about PROJECT Zeus."), call()).await;
    let e = r.unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(e.code(), "content_policy_violation");
    let body: Value = serde_json::from_slice(&e.body()).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no-secrets"));
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].action, v[0].category), ("block", "keyword"));
    // Whole word: "category" does not match "cat".
    let (r, v) = run(&set, &mut chat("a category of things"), call()).await;
    assert!(r.is_ok());
    assert!(v.is_empty());
}

#[tokio::test]
async fn regex_redacts_and_log_only_passes() {
    let set = TenantGuardrails::compile(&[
        cfg(
            "ids",
            "regex",
            "redact",
            "input",
            json!({"patterns": [r"\bEMP-\d{4}\b"]}),
        ),
        cfg(
            "watch",
            "keyword",
            "log",
            "input",
            json!({"words": ["salary"]}),
        ),
    ])
    .unwrap();
    let mut body = chat("salary of EMP-1234 and EMP-9876?");
    let (r, v) = run(&set, &mut body, call()).await;
    assert!(r.is_ok());
    assert_eq!(
        user_text(&body),
        "salary of [REDACTED:REGEX] and [REDACTED:REGEX]?"
    );
    let got: Vec<(&str, &str)> = v.iter().map(|v| (v.action, v.category)).collect();
    assert_eq!(got, vec![("redact", "regex"), ("log", "keyword")]);
}

#[tokio::test]
async fn pii_redaction_uses_typed_placeholders() {
    let set = TenantGuardrails::compile(&[cfg("pii", "pii", "redact", "both", json!({}))]).unwrap();
    let mut body = chat("mail jane@example.com, card 4111 1111 1111 1111, ssn 123-45-6789");
    let (r, v) = run(&set, &mut body, call()).await;
    assert!(r.is_ok());
    assert_eq!(
        user_text(&body),
        "mail [REDACTED:EMAIL], card [REDACTED:CREDIT_CARD], ssn [REDACTED:SSN]"
    );
    assert_eq!(v[0].category, "email");
    // The system prompt had nothing to redact.
    assert_eq!(body["messages"][0]["content"], "be nice");
}

#[tokio::test]
async fn size_and_model_limits() {
    let set = TenantGuardrails::compile(&[cfg(
        "small",
        "size",
        "block",
        "input",
        json!({"max_messages": 1}),
    )])
    .unwrap();
    let (r, v) = run(&set, &mut chat("hi"), call()).await;
    assert!(r.is_err());
    assert_eq!(v[0].category, "max_messages");
    let set = TenantGuardrails::compile(&[cfg(
        "bytes",
        "size",
        "block",
        "input",
        json!({"max_bytes": 50}),
    )])
    .unwrap();
    let (r, v) = run(&set, &mut chat("hi"), call()).await;
    assert!(r.is_err());
    assert_eq!(v[0].category, "max_bytes");
    let set = TenantGuardrails::compile(&[cfg(
        "tokens",
        "size",
        "log",
        "input",
        json!({"max_tokens": 3}),
    )])
    .unwrap();
    let (r, v) = run(&set, &mut chat("one two three four five"), call()).await;
    assert!(r.is_ok());
    assert_eq!((v[0].action, v[0].category), ("log", "max_tokens"));
    let set = TenantGuardrails::compile(&[cfg(
        "models",
        "model",
        "block",
        "input",
        json!({"allow": ["gpt-test"]}),
    )])
    .unwrap();
    assert!(run(&set, &mut chat("hi"), call()).await.0.is_ok());
    let other = InputCall {
        model: "gpt-big",
        ..call()
    };
    let (r, v) = run(&set, &mut chat("hi"), other).await;
    assert!(r.is_err());
    assert_eq!(v[0].category, "model_not_allowed");
}

#[tokio::test]
async fn attachments_select_calls() {
    let mut g = cfg("k", "keyword", "block", "input", json!({"words": ["zeus"]}));
    g.tenant_wide = false;
    g.key_ids = vec!["ck_2".into()];
    g.model_ids = vec!["md_9".into()];
    let set = TenantGuardrails::compile(&[g]).unwrap();
    assert!(run(&set, &mut chat("zeus"), call()).await.0.is_ok());
    let by_key = InputCall {
        key_id: "ck_2",
        ..call()
    };
    assert!(run(&set, &mut chat("zeus"), by_key).await.0.is_err());
    let by_model = InputCall {
        model_id: "md_9",
        ..call()
    };
    assert!(run(&set, &mut chat("zeus"), by_model).await.0.is_err());
    // Unattached guardrails are not compiled in at all.
    let mut g = cfg("k", "keyword", "block", "input", json!({"words": ["zeus"]}));
    g.tenant_wide = false;
    assert!(TenantGuardrails::compile(&[g]).unwrap().is_empty());
}

#[test]
fn a_bad_regex_rejects_the_snapshot_instead_of_crashing() {
    let e = TenantGuardrails::compile(&[cfg(
        "bad",
        "regex",
        "block",
        "input",
        json!({"patterns": ["(unclosed"]}),
    )])
    .unwrap_err();
    assert!(e.contains("\"bad\""), "{e}");
}

fn output_guard(set: TenantGuardrails) -> OutputGuard {
    OutputGuard::for_call(&Arc::new(set), "ck_1", "md_1", &reqwest::Client::new()).unwrap()
}

#[tokio::test]
async fn output_answers_are_blocked_or_redacted() {
    let set = TenantGuardrails::compile(&[
        cfg(
            "out-pii",
            "pii",
            "redact",
            "output",
            json!({"types": ["email"]}),
        ),
        cfg(
            "out-kw",
            "keyword",
            "block",
            "output",
            json!({"words": ["forbidden"]}),
        ),
    ])
    .unwrap();
    let g = output_guard(set);
    let mut v = Vec::new();
    let answer = json!({"choices":[{"message":{"role":"assistant","content":"write to a@b.io"}}]});
    let out = g
        .check_answer(Bytes::from(answer.to_string()), &mut v)
        .await
        .unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        out["choices"][0]["message"]["content"],
        "write to [REDACTED:EMAIL]"
    );
    assert_eq!(v[0].direction, "output");
    let anthropic = json!({"type":"message","content":[{"type":"text","text":"a FORBIDDEN word"}]});
    let e = g
        .check_answer(Bytes::from(anthropic.to_string()), &mut v)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "content_policy_violation");
}

#[test]
fn stream_window_finds_a_match_split_across_events() {
    let set = TenantGuardrails::compile(&[cfg(
        "kw",
        "keyword",
        "block",
        "output",
        json!({"words": ["Tollgate"]}),
    )])
    .unwrap();
    let mut g = output_guard(set);
    let mut v = Vec::new();
    let ev = |t: &str| {
        format!(
            "data: {}\n\n",
            json!({"choices":[{"delta":{"content": t}}]})
        )
    };
    assert!(g
        .on_stream_event(ev("Hello, the Toll").as_bytes(), &mut v)
        .is_ok());
    assert!(g.on_stream_event(b"data: [DONE]\n\n", &mut v).is_ok());
    let e = g
        .on_stream_event(ev("gate mock").as_bytes(), &mut v)
        .unwrap_err();
    assert_eq!(e.code(), "content_policy_violation");
    let event = stream_error_event(&e, ApiFormat::Anthropic);
    assert!(event.starts_with(b"event: error\ndata: {"));
    let event = stream_error_event(&e, ApiFormat::OpenAi);
    let data: Value = serde_json::from_slice(&event[6..event.len() - 2]).unwrap();
    assert_eq!(data["error"]["code"], "content_policy_violation");
}

#[tokio::test]
async fn arbitrary_text_never_panics() {
    use rand::{Rng, SeedableRng};
    let set = TenantGuardrails::compile(&[
        cfg("pii", "pii", "redact", "both", json!({})),
        cfg(
            "kw",
            "keyword",
            "redact",
            "both",
            json!({"words": ["é", "ab", "日本"], "whole_word": true}),
        ),
        cfg(
            "re",
            "regex",
            "redact",
            "both",
            json!({"patterns": [r"\d+", "(?i)x.y"]}),
        ),
        cfg("size", "size", "log", "input", json!({"max_tokens": 5})),
    ])
    .unwrap();
    let set = Arc::new(set);
    let alphabet: Vec<char> = "ab é日本0123456789@.-:+ xyXY\n\u{1F600}sk-AKIA"
        .chars()
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..2_000 {
        let len = rng.gen_range(0..80);
        let s: String = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        let mut body = chat(&s);
        let (r, _) = run(&set, &mut body, call()).await;
        assert!(r.is_ok());
        let mut g = OutputGuard::for_call(&set, "ck_1", "md_1", &reqwest::Client::new()).unwrap();
        let event = format!(
            "data: {}\n\n",
            json!({"choices":[{"delta":{"content": s}}]})
        );
        let mut v = Vec::new();
        for _ in 0..3 {
            let _ = g.on_stream_event(event.as_bytes(), &mut v);
        }
    }
}

fn pii_and_keyword_output_guard() -> OutputGuard {
    output_guard(
        TenantGuardrails::compile(&[
            cfg(
                "out-pii",
                "pii",
                "redact",
                "output",
                json!({"types": ["email", "credit_card"]}),
            ),
            cfg(
                "out-kw",
                "keyword",
                "block",
                "output",
                json!({"words": ["forbidden"], "whole_word": true}),
            ),
        ])
        .unwrap(),
    )
}

#[tokio::test]
async fn a_clean_answer_passes_byte_identical_on_the_raw_scan() {
    let g = pii_and_keyword_output_guard();
    // Odd spacing: a re-serialised answer would differ.
    let raw = r#"{ "id":"chatcmpl-1", "choices": [ {"message": {"role":"assistant","content":"all fine here"}} ] }"#;
    let body = Bytes::from_static(raw.as_bytes());
    assert!(
        g.raw_clean(&body),
        "no backslash, no match: no parse needed"
    );
    let mut v = Vec::new();
    let out = g.check_answer(body.clone(), &mut v).await.unwrap();
    assert_eq!(out, body);
    assert_eq!(out.as_ptr(), body.as_ptr(), "the very same bytes");
    assert!(v.is_empty());
}

#[tokio::test]
async fn escaped_pii_in_an_answer_is_still_redacted() {
    let g = pii_and_keyword_output_guard();
    let cases = [
        // `\u0040` is '@': the raw bytes hold no email, the text does.
        (r#"write to a\u0040b.com"#, "write to [REDACTED:EMAIL]"),
        // Quote-escaped value.
        (r#"say \"a@b.io\" now"#, "say \"[REDACTED:EMAIL]\" now"),
        // `\n` then digits: raw "n4111" has no word boundary, the text has.
        (
            r#"card:\n4111 1111 1111 1111"#,
            "card:\n[REDACTED:CREDIT_CARD]",
        ),
    ];
    for (content, want) in cases {
        let raw = format!(
            r#"{{"choices":[{{"message":{{"role":"assistant","content":"{content}"}}}}]}}"#
        );
        let body = Bytes::from(raw);
        assert!(!g.raw_clean(&body), "{content}");
        let mut v = Vec::new();
        let out = g.check_answer(body, &mut v).await.unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["choices"][0]["message"]["content"], want, "{content}");
        assert_eq!(v.len(), 1, "{content}");
        assert_eq!(v[0].action, "redact");
    }
    // An escaped newline before a blocked keyword still blocks.
    let body = Bytes::from_static(br#"{"choices":[{"message":{"content":"ok\nforbidden"}}]}"#);
    let e = g.check_answer(body, &mut Vec::new()).await.unwrap_err();
    assert_eq!(e.code(), "content_policy_violation");
}

#[tokio::test]
async fn a_match_outside_the_answer_text_leaves_the_answer_alone() {
    let g = pii_and_keyword_output_guard();
    let raw = r#"{"model":"ops@example.com","system_fingerprint":"forbidden","choices":[{"message":{"role":"assistant","content":"hello"}}]}"#;
    let body = Bytes::from_static(raw.as_bytes());
    assert!(!g.raw_clean(&body), "the raw scan sees the model name");
    let mut v = Vec::new();
    let out = g.check_answer(body.clone(), &mut v).await.unwrap();
    assert_eq!(out, body, "byte-identical: the exact path found nothing");
    assert!(v.is_empty());
}

#[test]
fn only_pii_and_quote_free_keywords_take_the_raw_scan() {
    let quoted = output_guard(
        TenantGuardrails::compile(&[cfg(
            "kw",
            "keyword",
            "block",
            "output",
            json!({"words": ["say \"x"]}),
        )])
        .unwrap(),
    );
    assert!(!quoted.raw_scan);
    let regex = output_guard(
        TenantGuardrails::compile(&[cfg(
            "re",
            "regex",
            "block",
            "output",
            json!({"patterns": ["^secret"]}),
        )])
        .unwrap(),
    );
    assert!(!regex.raw_scan);
    assert!(!regex.raw_clean(br#"{"choices":[{"message":{"content":"secret"}}]}"#));
    assert!(pii_and_keyword_output_guard().raw_scan);
}

/// A call no rule names (and no rule tenant-wide) skips the guardrail
/// stages; a call one rule names, by key or by model, does not.
#[test]
fn only_calls_a_rule_names_may_be_guarded() {
    let mut by_model = cfg("pii", "pii", "redact", "both", json!({}));
    by_model.tenant_wide = false;
    by_model.model_ids = vec!["md_guarded".into()];
    let mut by_key = cfg(
        "words",
        "keyword",
        "block",
        "input",
        json!({"words": ["x"]}),
    );
    by_key.tenant_wide = false;
    by_key.key_ids = vec!["ck_guarded".into()];
    let set = TenantGuardrails::compile(&[by_model.clone(), by_key]).unwrap();
    assert!(set.may_apply("ck_other", "md_guarded"));
    assert!(set.may_apply("ck_guarded", "md_other"));
    assert!(!set.may_apply("ck_other", "md_other"));
    let mut wide = by_model;
    wide.tenant_wide = true;
    let set = TenantGuardrails::compile(&[wide]).unwrap();
    assert!(set.may_apply("ck_other", "md_other"));
    assert!(!TenantGuardrails::default().may_apply("ck_other", "md_guarded"));
}
