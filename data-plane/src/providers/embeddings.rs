//! Embeddings shared by the adapters: the OpenAI request checks, the
//! OpenAI list answer built from float vectors (for providers that are not
//! OpenAI-shaped), and the `base64` encoding (little-endian `f32`s, as
//! OpenAI encodes them).

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use tollgate_core::usage::Usage;

use crate::http::errors::GatewayError;

fn invalid(message: impl Into<String>, param: &'static str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param),
    }
}

/// The text inputs of a request (token-array inputs only pass through to
/// OpenAI-compatible providers).
pub fn text_inputs(body: &Map<String, Value>) -> Result<Vec<String>, GatewayError> {
    match body.get("input") {
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    invalid(
                        "This model's provider takes 'input' as strings only, not tokens.",
                        "input",
                    )
                })
            })
            .collect(),
        _ => Err(invalid(
            "'input' must be a string or a non-empty array of strings.",
            "input",
        )),
    }
}

/// Whether the caller asked for base64 (`encoding_format`).
pub fn wants_base64(body: &Map<String, Value>) -> Result<bool, GatewayError> {
    match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => Err(invalid(
            format!("Unknown encoding_format '{other}' (float or base64)."),
            "encoding_format",
        )),
    }
}

/// A vector as OpenAI's base64: the little-endian bytes of its `f32`s.
pub fn encode_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An OpenAI embeddings list.
pub fn list_body(model: &str, vectors: &[Vec<f32>], base64: bool, usage: &Usage) -> Bytes {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                Value::String(encode_base64(v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Bytes::from(
        json!({"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens}})
        .to_string(),
    )
}

/// The usage of an OpenAI embeddings answer.
pub fn usage_of(body: &[u8]) -> Option<Usage> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let prompt = v.pointer("/usage/prompt_tokens")?.as_i64()?;
    Some(Usage {
        prompt_tokens: prompt,
        ..Usage::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        // 1.0f32 = 0x3f800000 → bytes 00 00 80 3f.
        assert_eq!(encode_base64(&[1.0]), "AACAPw==");
        let body = list_body("m", &[vec![1.0, -2.0]], false, &Usage::default());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"][0]["embedding"], json!([1.0, -2.0]));
    }

    #[test]
    fn inputs_and_encodings() {
        let b = json!({"input": ["a", "b"], "encoding_format": "base64"});
        let b = b.as_object().unwrap();
        assert_eq!(text_inputs(b).unwrap(), ["a", "b"]);
        assert!(wants_base64(b).unwrap());
        let tokens = json!({"input": [[1, 2]]});
        assert!(text_inputs(tokens.as_object().unwrap()).is_err());
    }
}
