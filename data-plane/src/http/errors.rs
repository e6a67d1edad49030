//! The one place where a failure becomes an HTTP response: a status and a
//! body in the caller's protocol — OpenAI-shaped
//! `{"error":{"message","type","code","param"}}` on OpenAI routes,
//! Anthropic-shaped `{"type":"error","error":{"type","message"}}` on
//! `/v1/messages` (see [`GatewayError::render`]).
//!
//! Every variant says who failed: the caller (4xx), the gateway (503) or the
//! upstream provider (502/504, or the provider's own 4xx passed through).

use bytes::Bytes;
use serde_json::{json, Value};

/// A failure that reaches the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No key, an unknown key, a revoked key (absent from the snapshot) or an
    /// expired key. The presented key is never echoed.
    #[error("invalid API key")]
    InvalidApiKey,
    /// The key's tenant is switched off.
    #[error("tenant is inactive")]
    TenantInactive,
    /// The caller asked for a model its tenant does not have.
    #[error("model {0:?} not found")]
    ModelNotFound(String),
    /// No such route.
    #[error("unknown path {0}")]
    UnknownRoute(String),
    /// The route exists with another method.
    #[error("method {method} not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// Malformed or invalid request body; `param` names the offending field.
    #[error("invalid request: {message}")]
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
    },
    /// The body is larger than the configured limit.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The gateway has no configuration yet, or is shutting down.
    #[error("not ready: {0}")]
    NotReady(&'static str),
    /// The provider could not be reached.
    #[error("upstream connect error")]
    UpstreamConnect,
    /// The provider did not answer in time.
    #[error("upstream timeout")]
    UpstreamTimeout,
    /// The provider rejected the gateway's own credentials.
    /// `status` is the provider's (401, 403; 400 for Gemini's invalid key).
    #[error("upstream rejected the gateway's credentials")]
    UpstreamAuth { status: u16 },
    /// The provider failed in a way that has no better mapping.
    #[error("upstream error: {0}")]
    Upstream(String),
    /// The provider answered with an error status; its status and an
    /// OpenAI-shaped body (normalised if needed) are passed through.
    #[error("upstream answered {status}")]
    UpstreamStatus { status: u16, body: Bytes },
    /// Like `UpstreamStatus`, with the provider's `Retry-After` (429/503).
    #[error("upstream answered {status} (retry after {retry_after_ms} ms)")]
    UpstreamThrottled {
        status: u16,
        body: Bytes,
        retry_after_ms: u64,
    },
    /// Every target of the route is out of rotation or behind an open
    /// circuit breaker: no upstream was called.
    #[error("no target available for model {0:?}")]
    NoTargetAvailable(String),
    /// The provider answered with an error status in its own wire shape
    /// (`format`): passed through as is to callers speaking that protocol,
    /// converted for the others.
    #[error("upstream answered {status}")]
    UpstreamNative {
        status: u16,
        body: Bytes,
        format: ApiFormat,
    },
    /// A guardrail refused the request or the answer (guardrails).
    #[error("blocked by guardrail {guardrail:?}")]
    ContentPolicy { guardrail: String },
    /// Billing: neither the tenant's lease nor its balance covers the
    /// call's worst-case cost.
    #[error("insufficient balance ({needed_micros} micro-dollars needed)")]
    InsufficientBalance { needed_micros: i64 },
    /// Billing: the caller key's own budget cannot cover the call.
    #[error("key budget exceeded ({needed_micros} micro-dollars needed)")]
    KeyBudgetExceeded { needed_micros: i64 },
    /// Billing: the tenant is frozen by an operator or for inactivity.
    #[error("tenant is frozen")]
    TenantFrozen,
    /// The caller's key may not use any provider that could serve the
    /// model (or that the caller named).
    #[error("the key may not use a provider for {0}")]
    ProviderNotAllowed(String),
    /// A rate limit of the key, its tenant or the model refused the call
    /// (docs/rate-limits.md). `log_code` names the limit that fired.
    #[error("rate limit exceeded ({log_code})")]
    RateLimited {
        message: String,
        /// OpenAI's `error.type`: "requests" or "tokens".
        kind: &'static str,
        log_code: &'static str,
        retry_after_secs: u64,
    },
    /// A bug or an impossible state inside the gateway.
    #[error("internal error")]
    Internal,
    // --- request limits (security; see http/limits.rs) ---
    /// The JSON body nests arrays/objects deeper than the limit.
    #[error("JSON nested deeper than {limit} levels")]
    JsonTooDeep { limit: usize },
    /// More entries in `field` (messages, input) than the limit.
    #[error("more than {limit} entries in {field}")]
    TooManyMessages { limit: usize, field: &'static str },
    /// Too many request headers, or a header section too large.
    #[error("request header fields too large")]
    HeaderTooLarge,
    /// The client did not send its request header or body in time.
    #[error("request {0} not received in time")]
    RequestTimeout(&'static str),
    /// The data plane already holds its maximum of client connections.
    #[error("too many connections")]
    TooManyConnections,
}

/// The wire protocol a caller speaks on a route (and the shape its errors
/// take).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiFormat {
    #[default]
    OpenAi,
    Anthropic,
    Gemini,
}

impl GatewayError {
    /// HTTP status of the response.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::InvalidApiKey => 401,
            GatewayError::TenantInactive
            | GatewayError::TenantFrozen
            | GatewayError::ProviderNotAllowed(_) => 403,
            GatewayError::InsufficientBalance { .. } | GatewayError::KeyBudgetExceeded { .. } => {
                402
            }
            GatewayError::RateLimited { .. } => 429,
            GatewayError::ModelNotFound(_) | GatewayError::UnknownRoute(_) => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::InvalidRequest { .. } | GatewayError::ContentPolicy { .. } => 400,
            GatewayError::BodyTooLarge { .. } => 413,
            GatewayError::NotReady(_) | GatewayError::NoTargetAvailable(_) => 503,
            GatewayError::UpstreamConnect
            | GatewayError::UpstreamAuth { .. }
            | GatewayError::Upstream(_) => 502,
            GatewayError::UpstreamTimeout => 504,
            GatewayError::UpstreamStatus { status, .. }
            | GatewayError::UpstreamThrottled { status, .. }
            | GatewayError::UpstreamNative { status, .. } => *status,
            GatewayError::Internal => 500,
            GatewayError::JsonTooDeep { .. } | GatewayError::TooManyMessages { .. } => 400,
            GatewayError::HeaderTooLarge => 431,
            GatewayError::RequestTimeout(_) => 408,
            GatewayError::TooManyConnections => 503,
        }
    }

    /// The OpenAI `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::InvalidApiKey
            | GatewayError::ModelNotFound(_)
            | GatewayError::UnknownRoute(_)
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::InvalidRequest { .. }
            | GatewayError::ContentPolicy { .. }
            | GatewayError::BodyTooLarge { .. } => "invalid_request_error",
            GatewayError::TenantInactive
            | GatewayError::TenantFrozen
            | GatewayError::ProviderNotAllowed(_) => "permission_error",
            GatewayError::InsufficientBalance { .. } | GatewayError::KeyBudgetExceeded { .. } => {
                "insufficient_quota"
            }
            GatewayError::RateLimited { kind, .. } => kind,
            GatewayError::NotReady(_) | GatewayError::NoTargetAvailable(_) => "service_unavailable",
            GatewayError::UpstreamConnect
            | GatewayError::UpstreamTimeout
            | GatewayError::UpstreamAuth { .. }
            | GatewayError::Upstream(_)
            | GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamThrottled { .. }
            | GatewayError::UpstreamNative { .. } => "upstream_error",
            GatewayError::Internal => "server_error",
            GatewayError::JsonTooDeep { .. }
            | GatewayError::TooManyMessages { .. }
            | GatewayError::HeaderTooLarge
            | GatewayError::RequestTimeout(_) => "invalid_request_error",
            GatewayError::TooManyConnections => "service_unavailable",
        }
    }

    /// The OpenAI `error.code`, also recorded in usage records and the access
    /// log.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::InvalidApiKey => "invalid_api_key",
            GatewayError::TenantInactive => "tenant_inactive",
            GatewayError::TenantFrozen => "tenant_frozen",
            GatewayError::ProviderNotAllowed(_) => "provider_not_allowed",
            GatewayError::InsufficientBalance { .. } => "insufficient_balance",
            GatewayError::KeyBudgetExceeded { .. } => "budget_exceeded",
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::UnknownRoute(_) => "unknown_route",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::ContentPolicy { .. } => "content_policy_violation",
            GatewayError::BodyTooLarge { .. } => "request_too_large",
            GatewayError::NotReady(_) => "not_ready",
            GatewayError::UpstreamConnect => "upstream_connect_error",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::UpstreamAuth { .. } => "upstream_auth_error",
            GatewayError::Upstream(_) => "upstream_error",
            GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamThrottled { .. }
            | GatewayError::UpstreamNative { .. } => "upstream_status",
            GatewayError::NoTargetAvailable(_) => "no_target_available",
            GatewayError::Internal => "internal_error",
            GatewayError::JsonTooDeep { .. } => "json_too_deep",
            GatewayError::TooManyMessages { .. } => "too_many_messages",
            GatewayError::HeaderTooLarge => "request_header_too_large",
            GatewayError::RequestTimeout(_) => "request_timeout",
            GatewayError::TooManyConnections => "too_many_connections",
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            GatewayError::InvalidRequest { param, .. } => *param,
            GatewayError::ModelNotFound(_) => Some("model"),
            GatewayError::TooManyMessages { field, .. } => Some(*field),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            GatewayError::InvalidApiKey => {
                "Invalid or missing API key. Send it as 'Authorization: Bearer <key>' or 'api-key: <key>'.".into()
            }
            GatewayError::TenantInactive => "The key's tenant is inactive.".into(),
            GatewayError::ProviderNotAllowed(model) => format!(
                "This API key may not use any provider that serves model '{model}' (or that the request named)."
            ),
            GatewayError::TenantFrozen => {
                "This account is frozen: calls are refused until an operator unfreezes it.".into()
            }
            GatewayError::InsufficientBalance { needed_micros } => format!(
                "Insufficient balance: this call may cost up to {} and the account cannot cover it. Top up or redeem a code to continue.",
                tollgate_core::money::format_usd(*needed_micros)
            ),
            GatewayError::KeyBudgetExceeded { needed_micros } => format!(
                "This API key's budget is used up: this call may cost up to {} and the key's budget for the current period cannot cover it. Raise the key's budget or wait for the next period.",
                tollgate_core::money::format_usd(*needed_micros)
            ),
            GatewayError::ModelNotFound(m) => {
                format!("The model '{m}' does not exist or you do not have access to it.")
            }
            GatewayError::UnknownRoute(p) => format!("Unknown path {p}."),
            GatewayError::MethodNotAllowed { method, path } => {
                format!("Method {method} is not allowed on {path}.")
            }
            GatewayError::InvalidRequest { message, .. }
            | GatewayError::RateLimited { message, .. } => message.clone(),
            GatewayError::ContentPolicy { guardrail } => format!(
                "The content was blocked by the guardrail '{guardrail}' (content policy violation)."
            ),
            GatewayError::BodyTooLarge { limit } => {
                format!("The request body is larger than the limit of {limit} bytes.")
            }
            GatewayError::NotReady(why) => format!("The gateway is not ready: {why}."),
            GatewayError::UpstreamConnect => "The gateway could not connect to the provider.".into(),
            GatewayError::UpstreamTimeout => "The provider did not answer in time.".into(),
            GatewayError::UpstreamAuth { .. } => {
                "The provider rejected the gateway's credentials for it.".into()
            }
            GatewayError::Upstream(why) => format!("The provider failed: {why}."),
            GatewayError::UpstreamStatus { status, .. }
            | GatewayError::UpstreamThrottled { status, .. }
            | GatewayError::UpstreamNative { status, .. } => {
                format!("The provider answered with status {status}.")
            }
            GatewayError::NoTargetAvailable(m) => format!(
                "No provider for model '{m}' is available right now (all are failing or out of rotation). Retry later."
            ),
            GatewayError::Internal => "Internal gateway error.".into(),
            GatewayError::JsonTooDeep { limit } => format!(
                "The request body nests JSON arrays and objects deeper than the limit of {limit} levels."
            ),
            GatewayError::TooManyMessages { limit, field } => {
                format!("'{field}' has more than the limit of {limit} entries.")
            }
            GatewayError::HeaderTooLarge => {
                "The request headers are too many or too large.".into()
            }
            GatewayError::RequestTimeout(part) => {
                format!("The request {part} was not received in time.")
            }
            GatewayError::TooManyConnections => {
                "The gateway has too many open connections. Retry later.".into()
            }
        }
    }

    /// The JSON body of the response (OpenAI shape).
    pub fn body(&self) -> Bytes {
        self.render(ApiFormat::OpenAi).1
    }

    /// Status and body for a caller speaking `format`.
    pub fn render(&self, format: ApiFormat) -> (u16, Bytes) {
        match (self, format) {
            (
                GatewayError::UpstreamNative {
                    status,
                    body,
                    format: native,
                },
                _,
            ) if *native == format => (*status, body.clone()),
            (
                GatewayError::UpstreamNative {
                    status,
                    body,
                    format: native,
                },
                _,
            ) => {
                let (kind, message) = native_error_parts(*native, *status, body);
                let status = status_for(format, *status);
                (status, shaped_error(format, status, &kind, &message))
            }
            (
                GatewayError::UpstreamStatus { body, .. }
                | GatewayError::UpstreamThrottled { body, .. },
                ApiFormat::OpenAi,
            ) => (self.status(), body.clone()),
            (
                GatewayError::UpstreamStatus { status, body }
                | GatewayError::UpstreamThrottled { status, body, .. },
                _,
            ) => {
                let (kind, message) = native_error_parts(ApiFormat::OpenAi, *status, body);
                (*status, shaped_error(format, *status, &kind, &message))
            }
            (_, ApiFormat::OpenAi) => (self.status(), self.openai_body()),
            (_, _) => {
                let status = self.status();
                (
                    status,
                    shaped_error(format, status, self.kind(), &self.message()),
                )
            }
        }
    }

    fn openai_body(&self) -> Bytes {
        Bytes::from(
            error_json(
                &self.message(),
                self.kind(),
                Some(self.code()),
                self.param(),
            )
            .to_string(),
        )
    }

    /// The code recorded in the usage record and access log: `code()`, or
    /// for a rate-limit refusal the limit that fired.
    pub fn log_code(&self) -> &'static str {
        match self {
            GatewayError::RateLimited { log_code, .. } => log_code,
            _ => self.code(),
        }
    }

    /// The provider's `Retry-After`, in whole seconds rounded up, passed on
    /// to the caller when its answer is the final one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            GatewayError::UpstreamThrottled { retry_after_ms, .. } => {
                Some(retry_after_ms.div_ceil(1000))
            }
            GatewayError::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// What the provider said, for an error status it answered (used when
    /// a stream fails after its head was sent).
    pub fn provider_message(&self) -> Option<String> {
        let (format, status, body) = match self {
            GatewayError::UpstreamNative {
                status,
                body,
                format,
            } => (*format, *status, body),
            GatewayError::UpstreamStatus { status, body }
            | GatewayError::UpstreamThrottled { status, body, .. } => {
                (ApiFormat::OpenAi, *status, body)
            }
            _ => return None,
        };
        let (_, message) = native_error_parts(format, status, body);
        Some(format!(
            "The provider failed mid-stream ({status}): {message}"
        ))
    }

    /// True when the caller may retry the same request and hope for success.
    pub fn retryable(&self) -> bool {
        matches!(self.status(), 429 | 500..=599)
    }
}

/// Statuses a protocol does not have, mapped to the nearest it does:
/// Anthropic's 529 (overloaded) is a 503 to OpenAI and Gemini callers.
fn status_for(format: ApiFormat, status: u16) -> u16 {
    match (format, status) {
        (ApiFormat::Anthropic, s) => s,
        (_, 529) => 503,
        (_, s) => s,
    }
}

/// `(type, message)` of an error body in a provider's shape; falls back to
/// a generic message with an excerpt of the body.
fn native_error_parts(format: ApiFormat, status: u16, body: &[u8]) -> (String, String) {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let text = |p: &str| {
        v.as_ref()
            .and_then(|v| v.pointer(p))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let kind = match format {
        ApiFormat::OpenAi | ApiFormat::Anthropic => text("/error/type"),
        ApiFormat::Gemini => text("/error/status"),
    };
    let message = text("/error/message").unwrap_or_else(|| {
        let excerpt: String = String::from_utf8_lossy(body).chars().take(200).collect();
        if excerpt.trim().is_empty() {
            format!("The provider answered with status {status}.")
        } else {
            format!(
                "The provider answered with status {status}: {}",
                excerpt.trim()
            )
        }
    });
    (kind.unwrap_or_else(|| "upstream_error".into()), message)
}

/// The Anthropic `error.type` for a status.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 431 => "invalid_request_error",
        408 => "timeout_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

/// An error body in a caller protocol's shape. `kind` is kept for OpenAI
/// callers; Anthropic callers get the type their SDK knows for the status.
pub fn shaped_error(format: ApiFormat, status: u16, kind: &str, message: &str) -> Bytes {
    let v = match format {
        ApiFormat::OpenAi => {
            let kind = match (status, kind) {
                (429, _) => "rate_limit_error",
                (_, "overloaded_error") | (_, "UNAVAILABLE") => "server_error",
                (s, k) if k.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                    if (400..500).contains(&s) {
                        "invalid_request_error"
                    } else {
                        "upstream_error"
                    }
                }
                (_, k) => k,
            };
            error_json(message, kind, None, None)
        }
        ApiFormat::Anthropic => json!({"type": "error", "error": {
            "type": anthropic_error_type(status), "message": message}}),
        ApiFormat::Gemini => json!({"error": {"code": status, "message": message,
            "status": kind}}),
    };
    Bytes::from(v.to_string())
}

/// An OpenAI-shaped error object.
pub fn error_json(message: &str, kind: &str, code: Option<&str>, param: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "code": code, "param": param}})
}

/// An upstream error answer in the OpenAI shape: the provider's body when it
/// already is one, else a wrapper that keeps a short excerpt of what it said.
pub fn normalize_upstream_error(status: u16, body: &[u8]) -> Bytes {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if v.pointer("/error/message").is_some_and(Value::is_string) {
            return Bytes::copy_from_slice(body);
        }
    }
    let excerpt: String = String::from_utf8_lossy(body).chars().take(200).collect();
    let kind = match status {
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "upstream_error",
    };
    let message = if excerpt.trim().is_empty() {
        format!("The provider answered with status {status}.")
    } else {
        format!(
            "The provider answered with status {status}: {}",
            excerpt.trim()
        )
    };
    Bytes::from(error_json(&message, kind, None, None).to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(e: &GatewayError) -> Value {
        serde_json::from_slice(&e.body()).unwrap()
    }

    #[test]
    fn statuses_and_codes() {
        let cases: Vec<(GatewayError, u16, &str, &str)> = vec![
            (
                GatewayError::InvalidApiKey,
                401,
                "invalid_request_error",
                "invalid_api_key",
            ),
            (
                GatewayError::TenantInactive,
                403,
                "permission_error",
                "tenant_inactive",
            ),
            (
                GatewayError::ModelNotFound("gpt-x".into()),
                404,
                "invalid_request_error",
                "model_not_found",
            ),
            (
                GatewayError::UnknownRoute("/v1/nope".into()),
                404,
                "invalid_request_error",
                "unknown_route",
            ),
            (
                GatewayError::MethodNotAllowed {
                    method: "GET".into(),
                    path: "/v1/chat/completions".into(),
                },
                405,
                "invalid_request_error",
                "method_not_allowed",
            ),
            (
                GatewayError::BodyTooLarge { limit: 10 },
                413,
                "invalid_request_error",
                "request_too_large",
            ),
            (
                GatewayError::NotReady("no configuration yet"),
                503,
                "service_unavailable",
                "not_ready",
            ),
            (
                GatewayError::UpstreamConnect,
                502,
                "upstream_error",
                "upstream_connect_error",
            ),
            (
                GatewayError::UpstreamTimeout,
                504,
                "upstream_error",
                "upstream_timeout",
            ),
            (
                GatewayError::UpstreamAuth { status: 403 },
                502,
                "upstream_error",
                "upstream_auth_error",
            ),
            (
                GatewayError::NoTargetAvailable("gpt-x".into()),
                503,
                "service_unavailable",
                "no_target_available",
            ),
        ];
        for (e, status, kind, code) in cases {
            assert_eq!(e.status(), status, "{e:?}");
            let v = parse(&e);
            assert_eq!(v["error"]["type"], kind, "{e:?}");
            assert_eq!(v["error"]["code"], code, "{e:?}");
            assert!(v["error"]["message"].as_str().unwrap().len() > 5);
            assert!(v["error"].get("param").is_some());
        }
    }

    #[test]
    fn invalid_request_names_the_param_and_model_not_found_names_the_model() {
        let e = GatewayError::InvalidRequest {
            message: "'messages' must be an array".into(),
            param: Some("messages"),
        };
        let v = parse(&e);
        assert_eq!(e.status(), 400);
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["message"], "'messages' must be an array");
        let v = parse(&GatewayError::ModelNotFound("no-such-model".into()));
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-model"));
        assert_eq!(v["error"]["param"], "model");
    }

    #[test]
    fn upstream_errors_are_normalized_only_when_needed() {
        let openai = br#"{"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limit_exceeded","param":null}}"#;
        assert_eq!(normalize_upstream_error(429, openai).as_ref(), openai);
        let v: Value =
            serde_json::from_slice(&normalize_upstream_error(500, b"<html>boom</html>")).unwrap();
        assert_eq!(v["error"]["type"], "upstream_error");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("500: <html>boom</html>"));
        let v: Value = serde_json::from_slice(&normalize_upstream_error(404, b"")).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let pass = GatewayError::UpstreamStatus {
            status: 429,
            body: Bytes::from_static(openai),
        };
        assert_eq!(pass.status(), 429);
        assert_eq!(pass.body().as_ref(), openai);
        assert!(pass.retryable());
        assert_eq!(pass.retry_after_secs(), None);
        let throttled = GatewayError::UpstreamThrottled {
            status: 429,
            body: Bytes::from_static(openai),
            retry_after_ms: 1_200,
        };
        assert_eq!(throttled.retry_after_secs(), Some(2));
        assert_eq!(throttled.body().as_ref(), openai);
        assert!(!GatewayError::InvalidApiKey.retryable());
    }
}
