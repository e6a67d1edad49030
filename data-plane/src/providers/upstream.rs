//! One upstream HTTP exchange with the gateway's timeout rules, shared by
//! the translating adapters: non-stream calls are bounded as a whole,
//! streams until the response head (the relay bounds every gap after).

use bytes::Bytes;
use futures::TryStreamExt;

use super::openai::transport_error;
use super::{ByteStream, CallOptions};
use crate::http::errors::GatewayError;

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
    if !options.stream {
        let resp = req
            .timeout(options.timeout)
            .send()
            .await
            .map_err(|e| transport_error(&e, provider))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&e, provider))?;
        if !(200..300).contains(&status) {
            return Err(on_error(status, &bytes));
        }
        return Ok(RawAnswer::Complete(bytes));
    }
    let resp = tokio::time::timeout(options.timeout, req.send())
        .await
        .map_err(|_| GatewayError::UpstreamTimeout)?
        .map_err(|e| transport_error(&e, provider))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let bytes = tokio::time::timeout(options.timeout, resp.bytes())
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
