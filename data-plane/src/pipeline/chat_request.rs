//! Parse & validate stage of `POST /v1/chat/completions`: only what the
//! gateway itself needs is checked (the provider validates the rest), and
//! every failure names the offending parameter.

use serde_json::{Map, Value};

use crate::http::errors::GatewayError;

/// A chat completion request the gateway can route.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The caller's body; adapters rewrite it in place for the provider.
    pub body: Map<String, Value>,
    /// The public model name asked for.
    pub model: String,
    pub stream: bool,
    /// The caller asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

fn invalid(message: impl Into<String>, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param),
    }
}

impl ChatRequest {
    pub fn parse(bytes: &[u8]) -> Result<ChatRequest, GatewayError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| GatewayError::InvalidRequest {
                message: format!("The request body is not valid JSON: {e}"),
                param: None,
            })?;
        let Value::Object(body) = value else {
            return Err(GatewayError::InvalidRequest {
                message: "The request body must be a JSON object.".into(),
                param: None,
            });
        };
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            Some(Value::String(_)) => return Err(invalid("'model' must not be empty.", "model")),
            Some(_) => return Err(invalid("'model' must be a string.", "model")),
            None => return Err(invalid("Missing required parameter: 'model'.", "model")),
        };
        match body.get("messages") {
            Some(Value::Array(messages)) => {
                if messages.is_empty() {
                    return Err(invalid(
                        "'messages' must contain at least one message.",
                        "messages",
                    ));
                }
                if let Some(i) = messages
                    .iter()
                    .position(|m| !m.is_object() || !m.get("role").is_some_and(Value::is_string))
                {
                    return Err(invalid(
                        format!("'messages[{i}]' must be an object with a string 'role'."),
                        "messages",
                    ));
                }
            }
            Some(_) => return Err(invalid("'messages' must be an array.", "messages")),
            None => {
                return Err(invalid(
                    "Missing required parameter: 'messages'.",
                    "messages",
                ))
            }
        }
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("'stream' must be a boolean.", "stream")),
        };
        let include_usage = match body.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(o)) => match o.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(invalid(
                        "'stream_options.include_usage' must be a boolean.",
                        "stream_options",
                    ))
                }
            },
            Some(_) => {
                return Err(invalid(
                    "'stream_options' must be an object.",
                    "stream_options",
                ))
            }
        };
        Ok(ChatRequest {
            body,
            model,
            stream,
            include_usage: stream && include_usage,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn param(body: &str) -> Option<&'static str> {
        match ChatRequest::parse(body.as_bytes()).unwrap_err() {
            GatewayError::InvalidRequest { param, .. } => param,
            e => Some(Box::leak(format!("unexpected {e:?}").into_boxed_str())),
        }
    }

    #[test]
    fn accepts_a_valid_request() {
        let r = ChatRequest::parse(
            br#"{"model":"gpt-test","stream":true,"stream_options":{"include_usage":true},
                "messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#,
        )
        .unwrap();
        assert_eq!(r.model, "gpt-test");
        assert!(r.stream && r.include_usage);
        assert_eq!(r.body["temperature"], 0.5);
        let r = ChatRequest::parse(br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#)
            .unwrap();
        assert!(!r.stream && !r.include_usage);
    }

    #[test]
    fn rejects_with_the_offending_param() {
        assert_eq!(param("{not json"), None);
        assert_eq!(param("[1,2]"), None);
        assert_eq!(param(r#"{"messages":[{"role":"user"}]}"#), Some("model"));
        assert_eq!(
            param(r#"{"model":7,"messages":[{"role":"user"}]}"#),
            Some("model")
        );
        assert_eq!(
            param(r#"{"model":"","messages":[{"role":"user"}]}"#),
            Some("model")
        );
        assert_eq!(param(r#"{"model":"m"}"#), Some("messages"));
        assert_eq!(param(r#"{"model":"m","messages":"hi"}"#), Some("messages"));
        assert_eq!(param(r#"{"model":"m","messages":[]}"#), Some("messages"));
        assert_eq!(
            param(r#"{"model":"m","messages":["hi"]}"#),
            Some("messages")
        );
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#),
            Some("stream")
        );
        assert_eq!(
            param(
                r#"{"model":"m","messages":[{"role":"user"}],"stream_options":{"include_usage":1}}"#
            ),
            Some("stream_options")
        );
    }
}
