//! The built-in `mock` provider kind: answers in-process with
//! `tollgate_mock::openai` (the same replies and SSE framing as the mock
//! server), with no network. Model `mock-error-<status>` fails with that
//! status, like the mock server.

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};
use tollgate_mock::openai;

use super::{CallOptions, ProviderAdapter, UpstreamResponse};
use crate::config::ProviderTarget;
use crate::http::errors::GatewayError;

/// Adapter of the built-in mock provider.
pub struct MockAdapter;

#[async_trait]
impl ProviderAdapter for MockAdapter {
    /// Deterministic vectors like the mock server's (8 dimensions unless
    /// `dimensions` says otherwise); a token is a whitespace-separated word.
    async fn embed(
        &self,
        _target: &ProviderTarget,
        body: &Map<String, Value>,
        _timeout: std::time::Duration,
    ) -> Result<(Bytes, Option<tollgate_core::usage::Usage>), GatewayError> {
        use super::embeddings::{list_body, text_inputs, wants_base64};
        let inputs = text_inputs(body)?;
        let dims = body
            .get("dimensions")
            .and_then(Value::as_u64)
            .and_then(|d| usize::try_from(d).ok())
            .unwrap_or(8)
            .min(4096);
        let vectors: Vec<Vec<f32>> = inputs
            .iter()
            .map(|s| openai::embedding_for(s, dims))
            .collect();
        let tokens: usize = inputs.iter().map(|s| s.split_whitespace().count()).sum();
        let usage = tollgate_core::usage::Usage {
            prompt_tokens: i64::try_from(tokens).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let model = body.get("model").and_then(Value::as_str).unwrap_or("mock");
        Ok((
            list_body(model, &vectors, wants_base64(body)?, &usage),
            Some(usage),
        ))
    }

    async fn send(
        &self,
        _target: &ProviderTarget,
        body: &Map<String, Value>,
        options: CallOptions,
    ) -> Result<UpstreamResponse, GatewayError> {
        let model = body.get("model").and_then(Value::as_str).unwrap_or("mock");
        if let Some(status) = model
            .strip_prefix("mock-error-")
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (400..600).contains(s))
        {
            let err = openai::error_body(
                &format!("The mock provider was asked to fail with {status}"),
                if status == 429 {
                    "rate_limit_error"
                } else {
                    "server_error"
                },
                None,
            );
            return Err(super::openai::status_error(
                status,
                err.to_string().as_bytes(),
            ));
        }
        let request = Value::Object(body.clone());
        let reply = openai::reply_for(&request);
        let id = format!("chatcmpl-tg{}", uuid::Uuid::new_v4().simple());
        let created = tollgate_core::time::now_ms() / 1000;
        if !options.stream {
            let completion = openai::completion_body(&id, model, created, &reply);
            let bytes = Bytes::from(completion.to_string());
            let usage = super::openai::usage_from_body(&bytes);
            return Ok(UpstreamResponse::Complete { body: bytes, usage });
        }
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let events = openai::stream_events(&id, model, created, &reply, include_usage);
        Ok(UpstreamResponse::Stream(Box::pin(futures::stream::iter(
            events.into_iter().map(Ok),
        ))))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serde_json::json;
    use std::time::Duration;

    fn target() -> ProviderTarget {
        let c = crate::config::compile(&crate::config::compile::tests::snapshot(1)).unwrap();
        c.tenants["tn_acme"].models["mock-fast"]
            .provider
            .as_ref()
            .clone()
    }

    fn opts(stream: bool) -> CallOptions {
        CallOptions {
            stream,
            timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn answers_in_process_like_the_mock_server() {
        let body =
            json!({"model": "mock-small", "messages": [{"role": "user", "content": "hi there"}]});
        let r = MockAdapter
            .send(&target(), body.as_object().unwrap(), opts(false))
            .await
            .unwrap();
        let UpstreamResponse::Complete { body: bytes, usage } = r else {
            panic!("expected a complete answer")
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Hello from mock-small, the Tollgate mock provider. You said: \"hi there\""
        );
        assert_eq!(usage.unwrap().prompt_tokens, 5);

        let mut sbody = body.as_object().unwrap().clone();
        sbody.insert("stream_options".into(), json!({"include_usage": true}));
        let r = MockAdapter
            .send(&target(), &sbody, opts(true))
            .await
            .unwrap();
        let UpstreamResponse::Stream(s) = r else {
            panic!("expected a stream")
        };
        let events: Vec<Bytes> = s.map(|e| e.unwrap()).collect().await;
        assert_eq!(events.last().unwrap().as_ref(), b"data: [DONE]\n\n");
        assert!(std::str::from_utf8(&events[events.len() - 2])
            .unwrap()
            .contains("\"usage\":{"));
    }

    #[tokio::test]
    async fn error_models_fail_with_their_status() {
        let body = json!({"model": "mock-error-500", "messages": []});
        let e = MockAdapter
            .send(&target(), body.as_object().unwrap(), opts(false))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 500);
    }
}
