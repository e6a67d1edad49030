//! Built-in model capability catalog: context window, output limit and
//! whether a model takes tools, images and streaming, keyed by upstream
//! model name prefix. Requests a model cannot serve are refused early with
//! a 400 naming the parameter, instead of a provider round trip. Unknown
//! models are not checked (the provider decides).
//!
//! The lookup is a scan of a short static table: no allocation, nothing
//! parsed per request.

use serde_json::{Map, Value};

use crate::http::errors::GatewayError;

/// What a model can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Prompt + output tokens.
    pub context_window: u64,
    pub max_output: u64,
    pub tools: bool,
    pub vision: bool,
    pub streaming: bool,
}

const fn caps(context_window: u64, max_output: u64, tools: bool, vision: bool) -> Capabilities {
    Capabilities {
        context_window,
        max_output,
        tools,
        vision,
        streaming: true,
    }
}

/// Most specific prefix first.
const CATALOG: &[(&str, Capabilities)] = &[
    // OpenAI
    ("gpt-4o-mini", caps(128_000, 16_384, true, true)),
    ("gpt-4o", caps(128_000, 16_384, true, true)),
    ("gpt-4.1", caps(1_047_576, 32_768, true, true)),
    ("gpt-5", caps(400_000, 128_000, true, true)),
    ("gpt-3.5-turbo", caps(16_385, 4_096, true, false)),
    (
        "o1-pro",
        Capabilities {
            streaming: false,
            ..caps(200_000, 100_000, true, true)
        },
    ),
    ("o1", caps(200_000, 100_000, true, true)),
    ("o3", caps(200_000, 100_000, true, true)),
    ("o4-mini", caps(200_000, 100_000, true, true)),
    // Anthropic
    ("claude-3-5", caps(200_000, 8_192, true, true)),
    ("claude-3-7", caps(200_000, 64_000, true, true)),
    ("claude-3", caps(200_000, 4_096, true, true)),
    ("claude-opus-4", caps(200_000, 32_000, true, true)),
    ("claude-sonnet-4", caps(200_000, 64_000, true, true)),
    ("claude-haiku-4", caps(200_000, 64_000, true, true)),
    // Gemini
    ("gemini-1.5-pro", caps(2_097_152, 8_192, true, true)),
    ("gemini-1.5", caps(1_048_576, 8_192, true, true)),
    ("gemini-2.0", caps(1_048_576, 8_192, true, true)),
    ("gemini-2.5", caps(1_048_576, 65_536, true, true)),
    // The mock provider: a restrictive model for tests, a generous default.
    (
        "mock-tiny",
        Capabilities {
            streaming: false,
            ..caps(64, 16, false, false)
        },
    ),
    ("mock-small", caps(32_768, 4_096, true, true)),
];

/// The capabilities of an upstream model, when the catalog knows it.
pub fn lookup(upstream_model: &str) -> Option<&'static Capabilities> {
    CATALOG
        .iter()
        .find(|(prefix, _)| upstream_model.starts_with(prefix))
        .map(|(_, c)| c)
}

fn invalid(message: String, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message,
        param: Some(param),
    }
}

fn has_images(body: &Map<String, Value>) -> bool {
    body.get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .any(|p| p.get("type").and_then(Value::as_str) == Some("image_url"))
}

/// What a request asks of a model, in any protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct Demand {
    pub stream: bool,
    pub tools: bool,
    pub images: bool,
    pub max_output: Option<u64>,
    /// Size of the request body in bytes.
    pub body_len: usize,
}

/// Checks a demand against what the model can do. The prompt size is a
/// lower-bound estimate (8 bytes of JSON per token), so only certainly
/// impossible prompts are refused.
pub fn check(model: &str, upstream_model: &str, d: Demand) -> Result<(), GatewayError> {
    let Some(c) = lookup(upstream_model) else {
        return Ok(());
    };
    if d.stream && !c.streaming {
        return Err(invalid(
            format!("The model '{model}' does not support streaming."),
            "stream",
        ));
    }
    if d.tools && !c.tools {
        return Err(invalid(
            format!("The model '{model}' does not support tools."),
            "tools",
        ));
    }
    if d.images && !c.vision {
        return Err(invalid(
            format!("The model '{model}' does not accept images."),
            "messages",
        ));
    }
    if let Some(n) = d.max_output.filter(|n| *n > c.max_output) {
        return Err(invalid(
            format!(
                "max_tokens is {n}, but the model '{model}' produces at most {} tokens.",
                c.max_output
            ),
            "max_tokens",
        ));
    }
    let prompt_floor = u64::try_from(d.body_len / 8).unwrap_or(u64::MAX);
    if prompt_floor.saturating_add(d.max_output.unwrap_or(0)) > c.context_window {
        return Err(invalid(
            format!(
                "The request (at least {prompt_floor} prompt tokens{}) does not fit the model '{model}''s context window of {} tokens.",
                d.max_output.map(|m| format!(" + {m} output tokens")).unwrap_or_default(),
                c.context_window
            ),
            "messages",
        ));
    }
    Ok(())
}

/// [`check`] for an OpenAI chat body of `body_len` bytes.
pub fn check_chat(
    model: &str,
    upstream_model: &str,
    body: &Map<String, Value>,
    body_len: usize,
) -> Result<(), GatewayError> {
    check(
        model,
        upstream_model,
        Demand {
            stream: body.get("stream") == Some(&Value::Bool(true)),
            tools: body
                .get("tools")
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty()),
            images: has_images(body),
            max_output: body
                .get("max_completion_tokens")
                .or_else(|| body.get("max_tokens"))
                .and_then(Value::as_u64),
            body_len,
        },
    )
}

/// [`check`] for a body passed through in another protocol (Messages,
/// Responses): stream, tools and the output limit under `max_field`.
pub fn check_passthrough(
    model: &str,
    upstream_model: &str,
    body: &Map<String, Value>,
    max_field: &str,
    body_len: usize,
) -> Result<(), GatewayError> {
    check(
        model,
        upstream_model,
        Demand {
            stream: body.get("stream") == Some(&Value::Bool(true)),
            tools: body
                .get("tools")
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty()),
            images: false,
            max_output: body.get(max_field).and_then(Value::as_u64),
            body_len,
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(model: &str, body: Value) -> Result<(), GatewayError> {
        let len = body.to_string().len();
        check_chat("public", model, body.as_object().unwrap(), len)
    }

    fn param(r: Result<(), GatewayError>) -> Option<&'static str> {
        match r {
            Err(GatewayError::InvalidRequest { param, .. }) => param,
            _ => None,
        }
    }

    #[test]
    fn most_specific_prefix_wins() {
        assert_eq!(lookup("gpt-4o-mini-2024-07-18").unwrap().max_output, 16_384);
        assert_eq!(lookup("claude-3-5-haiku-latest").unwrap().max_output, 8_192);
        assert_eq!(lookup("claude-3-haiku-20240307").unwrap().max_output, 4_096);
        assert!(!lookup("o1-pro").unwrap().streaming);
        assert!(lookup("my-finetune").is_none());
    }

    #[test]
    fn impossible_requests_name_the_parameter() {
        let msg = json!([{"role": "user", "content": "hi"}]);
        assert!(check("mock-tiny", json!({"messages": msg})).is_ok());
        assert_eq!(
            param(check(
                "mock-tiny",
                json!({"messages": msg, "max_tokens": 17})
            )),
            Some("max_tokens")
        );
        assert_eq!(
            param(check("mock-tiny", json!({"messages": msg, "stream": true}))),
            Some("stream")
        );
        assert_eq!(
            param(check(
                "mock-tiny",
                json!({"messages": msg,
                "tools": [{"type": "function", "function": {"name": "f"}}]})
            )),
            Some("tools")
        );
        assert_eq!(
            param(check(
                "mock-tiny",
                json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]})
            )),
            Some("messages")
        );
        let long = "word ".repeat(200);
        assert_eq!(
            param(check(
                "mock-tiny",
                json!({"messages": [{"role": "user", "content": long}]})
            )),
            Some("messages")
        );
        // Unknown models are the provider's business.
        assert!(check("unknown", json!({"messages": msg, "max_tokens": 1_000_000})).is_ok());
    }
}
