//! `POST /v1/embeddings` through every provider kind that has embeddings:
//! the mocks compute the same deterministic vectors, so every provider must
//! give the caller the same answer, as floats or as base64.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine;
use common::{http, TestDp, KEY, UPSTREAM_KEY};
use serde_json::{json, Value};
use tollgate_mock::{MockOptions, MockServer};

async fn setup() -> (MockServer, TestDp) {
    let mock = MockServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        MockOptions {
            required_api_key: Some(UPSTREAM_KEY.into()),
            ..MockOptions::recording()
        },
    )
    .await
    .unwrap();
    let base = &mock.base_url;
    let root = base.trim_end_matches("/v1");
    let yaml = format!(
        r#"
tenants:
  - name: acme
    id: tn_acme
    providers:
      - {{name: oai, kind: openai, base_url: "{base}", api_key: {UPSTREAM_KEY}}}
      - {{name: az, kind: azure, base_url: "{root}", api_key: {UPSTREAM_KEY}}}
      - {{name: gem, kind: gemini, base_url: "{base}", api_key: {UPSTREAM_KEY}}}
      - {{name: claude, kind: anthropic, base_url: "{base}", api_key: {UPSTREAM_KEY}}}
      - {{name: builtin, kind: mock}}
    models:
      - {{name: e-openai, provider: oai, upstream_model: mock-embed}}
      - {{name: e-azure, provider: az, upstream_model: mock-embed}}
      - {{name: e-gemini, provider: gem, upstream_model: mock-embed}}
      - {{name: e-mock, provider: builtin, upstream_model: mock-embed}}
      - {{name: claude, provider: claude, upstream_model: mock-small}}
    keys:
      - {{name: backend, key: {KEY}}}
"#
    );
    (mock, TestDp::start_yaml(&yaml, |_| {}))
}

async fn embed(dp: &TestDp, body: Value) -> (u16, Value) {
    let r = http()
        .post(format!("{}/v1/embeddings", dp.url))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn decode(b64: &str) -> Vec<f32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_gives_the_same_vectors_as_floats_and_base64() {
    let (mock, dp) = setup().await;
    let expected: Vec<Vec<f32>> = ["hello world", "second input"]
        .iter()
        .map(|s| tollgate_mock::openai::embedding_for(s, 8))
        .collect();
    for model in ["e-openai", "e-azure", "e-gemini", "e-mock"] {
        let (status, v) = embed(
            &dp,
            json!({"model": model, "input": ["hello world", "second input"]}),
        )
        .await;
        assert_eq!(status, 200, "{model}: {v}");
        assert_eq!(v["object"], "list");
        for (i, e) in expected.iter().enumerate() {
            let got: Vec<f32> = v["data"][i]["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(&got, e, "{model} #{i}");
            assert_eq!(v["data"][i]["index"], i);
        }
        let (_, v) = embed(
            &dp,
            json!({"model": model, "input": "hello world", "encoding_format": "base64",
                   "dimensions": 4}),
        )
        .await;
        assert_eq!(
            decode(v["data"][0]["embedding"].as_str().unwrap()),
            tollgate_mock::openai::embedding_for("hello world", 4),
            "{model}"
        );
        // Gemini reports no embedding usage; the others count words.
        let (_, v) = embed(&dp, json!({"model": model, "input": "three word input"})).await;
        let want = if model == "e-gemini" { 0 } else { 3 };
        assert_eq!(v["usage"]["prompt_tokens"], want, "{model}");
    }
    let paths: Vec<String> = mock.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.contains(&"/v1/embeddings".to_string()));
    assert!(paths.contains(&"/openai/deployments/mock-embed/embeddings".to_string()));
    assert!(paths.contains(&"/v1/models/mock-embed:batchEmbedContents".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_without_embeddings_and_bad_requests_get_400() {
    let (_mock, dp) = setup().await;
    let (status, v) = embed(&dp, json!({"model": "claude", "input": "x"})).await;
    assert_eq!(status, 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("anthropic"));
    let (status, v) = embed(&dp, json!({"model": "e-openai"})).await;
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("input")));
    let (status, v) = embed(&dp, json!({"model": "e-gemini", "input": [[1, 2, 3]]})).await;
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("input")));
    let (status, _) = embed(
        &dp,
        json!({"model": "e-openai", "input": "x", "encoding_format": "int8"}),
    )
    .await;
    assert_eq!(status, 400);
}
