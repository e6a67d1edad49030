//! Micro-benchmark of the guardrail engine (issue 9): a policy of 1,000
//! keywords and 20 regexes checked on a 4 KB prompt. Ignored in normal runs;
//! run with
//! `cargo nextest run -p tollgate-dp --run-ignored only -E 'test(guardrail_cost)' --no-capture`
//! (add `--release` for release numbers). Prints µs per check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use serde_json::{json, Map, Value};
use tollgate_dp::guardrails::{check_input, InputCall, RequestShape, TenantGuardrails};
use tollgate_proto::sync::v1 as pb;

fn policy() -> Vec<pb::GuardrailConfig> {
    // 1,000 distinct made-up words (none occurs in the prompt).
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let words: Vec<String> = (0..1000)
        .map(|i| {
            let mut w = String::new();
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                w.push(char::from(b'a' + (seed % 26) as u8));
            }
            format!("{w}{i}")
        })
        .collect();
    let patterns: Vec<String> = (0..20)
        .map(|i| format!(r"\bACCT{i:02}-\d{{6}}\b|(?i)\bcodename-{i}\b"))
        .collect();
    let mk = |name: &str, kind: &str, settings: Value| pb::GuardrailConfig {
        id: format!("gr_{name}"),
        name: name.into(),
        kind: kind.into(),
        action: "block".into(),
        direction: "input".into(),
        settings: settings.to_string(),
        tenant_wide: true,
        ..Default::default()
    };
    vec![
        mk(
            "words",
            "keyword",
            json!({"words": words, "whole_word": true}),
        ),
        mk("patterns", "regex", json!({"patterns": patterns})),
    ]
}

fn prompt_4kb() -> Map<String, Value> {
    let sentence = "The quarterly report shows steady growth in all regions, and the team \
                    plans to review the budget before the next planning meeting. ";
    let mut text = String::new();
    while text.len() < 4096 {
        text.push_str(sentence);
    }
    text.truncate(4096);
    let Value::Object(m) = json!({"model": "gpt-test", "messages": [
        {"role": "user", "content": text}]})
    else {
        unreachable!()
    };
    m
}

#[tokio::test]
#[ignore = "micro-benchmark; run explicitly"]
async fn guardrail_cost_1000_keywords_20_regexes_4kb() {
    let started = Instant::now();
    let set = TenantGuardrails::compile(&policy()).unwrap();
    let compile = started.elapsed();
    let http = reqwest::Client::new();
    let body = prompt_4kb();
    let call = InputCall {
        key_id: "ck_1",
        model_id: "md_1",
        model: "gpt-test",
        body_len: 4200,
        shape: RequestShape::Chat,
    };
    let mut verdicts = Vec::new();
    // Warm up, then measure.
    for _ in 0..200 {
        let mut b = body.clone();
        check_input(&set, call, &mut b, &http, &mut verdicts)
            .await
            .unwrap();
    }
    let n = 5_000u32;
    let mut bodies: Vec<Map<String, Value>> = (0..n).map(|_| body.clone()).collect();
    let t = Instant::now();
    for b in &mut bodies {
        check_input(&set, call, b, &http, &mut verdicts)
            .await
            .unwrap();
    }
    let per_check = t.elapsed() / n;
    assert!(verdicts.is_empty());
    println!(
        "guardrails: compile {:?}; 1,000 keywords + 20 regexes on a 4 KB prompt: {:.1} µs per check",
        compile,
        per_check.as_secs_f64() * 1e6
    );
}
