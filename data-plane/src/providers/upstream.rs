//! One upstream HTTP exchange with the gateway's timeout rules, shared by
//! the translating adapters: non-stream calls are bounded as a whole,
//! streams until the response head (the relay bounds every gap after).

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use super::openai::transport_error;
use super::{ByteStream, CallOptions};
use crate::http::errors::GatewayError;

/// Most bytes of a complete (non-stream) answer read from a provider: a
/// bound on memory against a misbehaving upstream, far above real answers
/// (a full batch of 2,048 large embeddings is about 130 MB of JSON).
pub const MAX_ANSWER_BYTES: usize = 192 * 1024 * 1024;
/// Most bytes of an error answer kept (the rest is dropped unread).
pub const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Reads a response body of at most `limit` bytes. Past it: an error, or
/// with `truncate` the first `limit` bytes (for error answers, of which
/// only an excerpt is used).
pub async fn read_capped(
    resp: reqwest::Response,
    limit: usize,
    truncate: bool,
    provider: &str,
) -> Result<Bytes, GatewayError> {
    let too_large = || {
        tracing::warn!(provider, limit, "upstream answer too large");
        GatewayError::Upstream(format!(
            "the provider's answer is larger than {limit} bytes"
        ))
    };
    if !truncate && resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut chunks = resp.bytes_stream();
    // One chunk (the common case for small answers) is returned uncopied.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| transport_error(&e, provider))?;
        let have = first.as_ref().map_or(buf.len(), Bytes::len);
        if have + chunk.len() > limit {
            if !truncate {
                return Err(too_large());
            }
            if let Some(f) = first.take() {
                buf.extend_from_slice(&f);
            }
            buf.extend_from_slice(&chunk[..limit - have]);
            return Ok(buf.freeze());
        }
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            None => buf.extend_from_slice(&chunk),
            Some(f) => {
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// A successful raw answer, still in the provider's wire format.
pub enum RawAnswer {
    Complete(Bytes),
    Stream(ByteStream),
}

/// Sends `req`; an error status becomes `on_error(status, body)`.
pub async fn exchange(
    req: reqwest::RequestBuilder,
    options: CallOptions,
    provider: &str,
    on_error: fn(u16, &[u8]) -> GatewayError,
) -> Result<RawAnswer, GatewayError> {
    // Tracing (otel): the attempt's traceparent, when traced.
    let req = crate::telemetry::trace::propagate(req);
    if !options.stream {
        let resp = req
            .timeout(options.timeout)
            .send()
            .await
            .map_err(|e| transport_error(&e, provider))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let bytes = read_capped(resp, MAX_ERROR_BYTES, true, provider).await?;
            return Err(on_error(status, &bytes));
        }
        let bytes = read_capped(resp, MAX_ANSWER_BYTES, false, provider).await?;
        return Ok(RawAnswer::Complete(bytes));
    }
    let resp = tokio::time::timeout(options.timeout, req.send())
        .await
        .map_err(|_| GatewayError::UpstreamTimeout)?
        .map_err(|e| transport_error(&e, provider))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let bytes = tokio::time::timeout(
            options.timeout,
            read_capped(resp, MAX_ERROR_BYTES, true, provider),
        )
        .await
        .map_err(|_| GatewayError::UpstreamTimeout)?
        .unwrap_or_else(|_| Bytes::new());
        return Err(on_error(status, &bytes));
    }
    let provider = provider.to_string();
    let stream = resp
        .bytes_stream()
        .map_err(move |e| transport_error(&e, &provider));
    Ok(RawAnswer::Stream(Box::pin(stream)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn response(body: Vec<u8>, content_length: bool) -> reqwest::Response {
        let mut b = http::Response::builder();
        if content_length {
            b = b.header(http::header::CONTENT_LENGTH, body.len());
        }
        reqwest::Response::from(b.body(body).unwrap())
    }

    #[tokio::test]
    async fn answers_within_the_cap_are_read_whole() {
        let body = b"{\"ok\":true}".to_vec();
        let got = read_capped(response(body.clone(), true), 64, false, "p")
            .await
            .unwrap();
        assert_eq!(&got[..], &body[..]);
    }

    #[tokio::test]
    async fn answers_over_the_cap_fail_with_or_without_a_length() {
        for with_length in [true, false] {
            let e = read_capped(response(vec![b'x'; 100], with_length), 64, false, "p")
                .await
                .unwrap_err();
            assert_eq!(e.code(), "upstream_error", "{e:?}");
        }
    }

    #[tokio::test]
    async fn error_answers_are_truncated_to_the_cap() {
        let got = read_capped(response(vec![b'e'; 100], true), 64, true, "p")
            .await
            .unwrap();
        assert_eq!(got.len(), 64);
    }
}
