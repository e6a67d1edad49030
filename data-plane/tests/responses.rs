//! `POST /v1/responses`: passed through to OpenAI and Azure, translated
//! through chat for Anthropic and Gemini; unsupported features are a 400.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

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
    models:
      - {{name: r-openai, provider: oai, upstream_model: mock-small}}
      - {{name: r-azure, provider: az, upstream_model: mock-small}}
      - {{name: r-gemini, provider: gem, upstream_model: mock-small}}
      - {{name: r-anthropic, provider: claude, upstream_model: mock-small}}
    keys:
      - {{name: backend, key: {KEY}}}
"#
    );
    (mock, TestDp::start_yaml(&yaml, |_| {}))
}

async fn post(dp: &TestDp, body: &Value) -> (u16, String) {
    let r = http()
        .post(format!("{}/v1/responses", dp.url))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn output_text(v: &Value) -> String {
    v["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|c| c["text"].as_str())
        .collect()
}

fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_string();
            let data: String = e.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (name, serde_json::from_str(&data).unwrap())
        })
        .collect()
}

const HELLO: &str =
    "Hello from mock-small, the Tollgate mock provider. You said: \"hello gateway\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_answers_from_every_provider() {
    let (mock, dp) = setup().await;
    for model in ["r-openai", "r-azure", "r-anthropic", "r-gemini"] {
        let (status, body) = post(
            &dp,
            &json!({"model": model, "instructions": "be brief", "input": "hello gateway"}),
        )
        .await;
        assert_eq!(status, 200, "{model}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        assert_eq!(output_text(&v), HELLO, "{model}");
        assert_eq!(v["usage"]["input_tokens"], 10, "{model}");
        assert_eq!(v["usage"]["output_tokens"], 11, "{model}");

        let (status, body) = post(
            &dp,
            &json!({"model": model, "instructions": "be brief", "input": "hello gateway",
                    "stream": true}),
        )
        .await;
        assert_eq!(status, 200);
        let ev = events(&body);
        assert_eq!(ev[0].0, "response.created", "{model}");
        assert!(ev.iter().all(|(n, d)| d["type"] == n.as_str()));
        let text: String = ev
            .iter()
            .filter(|(n, _)| n == "response.output_text.delta")
            .filter_map(|(_, d)| d["delta"].as_str())
            .collect();
        assert_eq!(text, HELLO, "{model}");
        let (last, done) = ev.last().unwrap();
        assert_eq!(last, "response.completed");
        assert_eq!(done["response"]["usage"]["output_tokens"], 11);
    }
    let paths: Vec<String> = mock.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.contains(&"/v1/responses".to_string()));
    assert!(paths.contains(&"/openai/v1/responses".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_calls_translated_both_ways() {
    let (mock, dp) = setup().await;
    let tools = json!([{"type": "function", "name": "lookup",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}]);
    for model in ["r-anthropic", "r-gemini"] {
        let (_, body) = post(
            &dp,
            &json!({"model": model, "tools": tools, "input": "find the docs"}),
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap();
        let call = v["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap()
            .clone();
        assert_eq!(call["name"], "lookup");
        assert_eq!(
            serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
            json!({"query": "find the docs"})
        );

        let (_, body) = post(
            &dp,
            &json!({"model": model, "tools": tools, "input": "find the docs", "stream": true}),
        )
        .await;
        let ev = events(&body);
        let args: String = ev
            .iter()
            .filter(|(n, _)| n == "response.function_call_arguments.delta")
            .filter_map(|(_, d)| d["delta"].as_str())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"query": "find the docs"}),
            "{model}"
        );
        let done = &ev.last().unwrap().1["response"];
        assert!(done["output"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["type"] == "function_call"));

        let (status, body) = post(
            &dp,
            &json!({"model": model, "tools": tools, "input": [
                {"role": "user", "content": "find the docs"},
                call,
                {"type": "function_call_output", "call_id": call["call_id"], "output": "42 results"}
            ]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            output_text(&v).ends_with("The tool said: \"42 results\""),
            "{model}: {body}"
        );
    }
    assert!(!mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_features_are_a_clear_400() {
    let (_mock, dp) = setup().await;
    for (body, param) in [
        (
            json!({"model": "r-anthropic", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "r-gemini", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools",
        ),
        (
            json!({"model": "r-anthropic", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "r-gemini", "input": [{"type": "file_search_call"}]}),
            "input",
        ),
    ] {
        let (status, text) = post(&dp, &body).await;
        assert_eq!(status, 400, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["param"], param, "{text}");
    }
    // OpenAI itself gets such requests untouched.
    let (status, _) = post(
        &dp,
        &json!({"model": "r-openai", "input": "x", "previous_response_id": "resp_1"}),
    )
    .await;
    assert_eq!(status, 200);
}
