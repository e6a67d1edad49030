//! A real OpenAI- and Anthropic-compatible HTTP server for tests, the quickstart and
//! benchmarks.
//!
//! Routes: `POST /v1/chat/completions` (stream and non-stream, honouring
//! `stream_options.include_usage`), `POST /v1/embeddings`, `GET /v1/models`;
//! Azure's `POST /openai/deployments/{deployment}/chat/completions?api-version=…`;
//! Anthropic's `POST /v1/messages` and `/v1/messages/count_tokens` (see
//! [`crate::anthropic`]); Gemini's `POST /v1beta/models/{model}:generateContent`
//! and `:streamGenerateContent?alt=sse`, also under `/v1/models/` (see
//! [`crate::gemini`]).
//! The model name selects failure behaviours:
//!
//! | model                    | behaviour                                            |
//! |--------------------------|------------------------------------------------------|
//! | `mock-error-<status>`    | answers `<status>` with an OpenAI error body (`Retry-After: 1` on 429) |
//! | `mock-slow-<ms>`         | waits `<ms>` milliseconds before answering           |
//! | `mock-drop-after-<n>`    | streams `<n>` events, then aborts the connection     |
//!
//! On top of that, each server runs a script of [`Fault`]s (status
//! sequences with `Retry-After`, latency, hanging before the head or
//! mid-stream, cutting the connection mid-stream, slow drip): see
//! [`MockServer::script`].
//!
//! Every request is recorded (method, path, headers, JSON body) for tests to
//! assert on what the gateway sent upstream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::fault::{Fault, Script, Watch};
use crate::openai;

/// How a [`MockServer`] behaves.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    /// When set, requests must carry `Authorization: Bearer <key>` (or
    /// `api-key: <key>`); others get 401.
    pub required_api_key: Option<String>,
    /// Pause between streamed events.
    pub chunk_delay: Duration,
    /// Pause before every response.
    pub latency: Duration,
    /// Models listed by `GET /v1/models`.
    pub models: Vec<String>,
    /// Record requests for [`MockServer::requests`] (off for benchmarks).
    pub record: bool,
    /// When non-zero, streamed bodies are re-cut into pieces of this many
    /// bytes, so SSE events arrive split at arbitrary places (tests).
    pub split_stream_every: usize,
    /// Pause between the last streamed event and the end of the body, as
    /// when `[DONE]` and the HTTP terminator arrive in separate reads.
    pub end_delay: Duration,
}

impl MockOptions {
    /// Defaults for tests: recording on, no delays, no key required.
    pub fn recording() -> Self {
        MockOptions {
            record: true,
            ..MockOptions::default()
        }
    }
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl RecordedRequest {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) struct Shared {
    pub(crate) options: MockOptions,
    recorded: Mutex<Vec<RecordedRequest>>,
    script: Arc<Script>,
}

/// A running mock provider. Dropping it stops the server.
pub struct MockServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT/v1`: the base URL to configure as a provider.
    pub base_url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl MockServer {
    /// Starts a recording mock on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr) -> anyhow::Result<MockServer> {
        Self::start_with(addr, MockOptions::recording()).await
    }

    /// Starts a mock with the given options.
    pub async fn start_with(addr: SocketAddr, options: MockOptions) -> anyhow::Result<MockServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            recorded: Mutex::new(Vec::new()),
            script: Arc::new(Script::default()),
        });
        let app = router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "mock server ended with an error");
            }
        });
        Ok(MockServer {
            addr,
            base_url: format!("http://{addr}/v1"),
            shared,
            stop: Some(stop),
        })
    }

    /// Requests received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .recorded
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Queues faults: the next chat completion requests take them in order.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.script.push(faults);
    }

    /// What chat completion requests get once the script is used up
    /// (normally [`Fault::Ok`]).
    pub fn set_default(&self, fault: Fault) {
        self.shared.script.set_default(fault);
    }

    /// Chat completion requests received so far.
    pub fn chat_calls(&self) -> usize {
        self.shared.script.chat_calls()
    }

    /// Chat completion requests the client abandoned while the mock was
    /// still answering (before the head, or mid-stream).
    pub fn abandoned(&self) -> usize {
        self.shared.script.abandoned()
    }

    /// Waits until at least `n` requests were abandoned; false on timeout.
    pub async fn wait_abandoned(&self, n: usize, timeout: Duration) -> bool {
        self.shared.script.wait_abandoned(n, timeout).await
    }

    /// Stops accepting connections.
    pub fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/openai/v1/responses", post(responses))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure_chat_completions),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(azure_embeddings),
        )
        .route("/v1/messages", post(crate::anthropic_routes::messages))
        .route(
            "/v1beta/models/{model_action}",
            post(crate::gemini_routes::model_action),
        )
        .route(
            "/v1/models/{model_action}",
            post(crate::gemini_routes::model_action),
        )
        .route(
            "/v1/messages/count_tokens",
            post(crate::anthropic_routes::count_tokens),
        )
        .route("/v1/models", get(models))
        .fallback(not_found)
        .with_state(shared)
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    (status, axum::Json(openai::error_body(message, kind, code))).into_response()
}

/// Which provider's conventions a route follows (auth header, error shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
    Gemini,
}

/// An error response in the route's own shape.
pub(crate) fn dialect_error(dialect: Dialect, status: StatusCode, message: &str) -> Response {
    match dialect {
        Dialect::OpenAi => {
            let kind = if status.as_u16() == 429 {
                "rate_limit_error"
            } else if status.is_client_error() {
                "invalid_request_error"
            } else {
                "server_error"
            };
            error(status, message, kind, None)
        }
        Dialect::Anthropic => {
            let kind = crate::anthropic::error_type(status.as_u16());
            (
                status,
                axum::Json(crate::anthropic::error_body(kind, message)),
            )
                .into_response()
        }
        Dialect::Gemini => (
            status,
            axum::Json(crate::gemini::error_body(status.as_u16(), message)),
        )
            .into_response(),
    }
}

/// Records the request and checks the API key; `Err` is the response to send.
pub(crate) fn admit(
    shared: &Shared,
    dialect: Dialect,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Value,
) -> Result<(), Box<Response>> {
    if shared.options.record {
        let rec = RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.clone(),
        };
        if let Ok(mut r) = shared.recorded.lock() {
            r.push(rec);
        }
    }
    if let Some(want) = &shared.options.required_api_key {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let ok = match dialect {
            Dialect::OpenAi => {
                bearer == Some(want.as_str()) || header("api-key") == Some(want.as_str())
            }
            Dialect::Anthropic => header("x-api-key") == Some(want.as_str()),
            Dialect::Gemini => {
                header("x-goog-api-key") == Some(want.as_str())
                    || uri.query().is_some_and(|q| {
                        q.split('&')
                            .any(|kv| kv.strip_prefix("key=") == Some(want.as_str()))
                    })
            }
        };
        if !ok {
            return Err(Box::new(match dialect {
                Dialect::OpenAi => error(
                    StatusCode::UNAUTHORIZED,
                    "Incorrect API key provided.",
                    "invalid_request_error",
                    Some("invalid_api_key"),
                ),
                _ => dialect_error(dialect, StatusCode::UNAUTHORIZED, "invalid x-api-key"),
            }));
        }
    }
    Ok(())
}

pub(crate) fn parse_body(bytes: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("We could not parse the JSON body of your request: {e}"),
            "invalid_request_error",
            None,
        ))
    })
}

/// Behaviour selected by the model name.
pub(crate) enum Behaviour {
    Normal,
    Error(StatusCode),
    Slow(Duration),
    DropAfter(usize),
}

pub(crate) fn behaviour(model: &str) -> Behaviour {
    let num = |prefix: &str| {
        model
            .strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
    };
    if let Some(code) = num("mock-error-") {
        if let Some(status) = u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            return Behaviour::Error(status);
        }
    }
    if let Some(ms) = num("mock-slow-") {
        return Behaviour::Slow(Duration::from_millis(ms));
    }
    if let Some(n) = num("mock-drop-after-") {
        return Behaviour::DropAfter(usize::try_from(n).unwrap_or(usize::MAX));
    }
    Behaviour::Normal
}

fn error_for_status(status: StatusCode) -> Response {
    error_with_retry_after(status, None)
}

fn error_with_retry_after(status: StatusCode, retry_after: Option<&str>) -> Response {
    let (kind, code) = match status.as_u16() {
        400 => ("invalid_request_error", None),
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("invalid_request_error", Some("permission_denied")),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("rate_limit_error", Some("rate_limit_exceeded")),
        _ => ("server_error", None),
    };
    let mut resp = error(
        status,
        &format!(
            "The mock provider was asked to fail with {}",
            status.as_u16()
        ),
        kind,
        code,
    );
    match retry_after {
        Some(v) => {
            if let Ok(v) = http::HeaderValue::from_str(v) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        None if status == StatusCode::TOO_MANY_REQUESTS => {
            resp.headers_mut()
                .insert("retry-after", http::HeaderValue::from_static("1"));
        }
        None => {}
    }
    resp
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body = match parse_body(&raw) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Err(r) = admit(&shared, Dialect::OpenAi, &method, &uri, &headers, &body) {
        return *r;
    }
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
        );
    };
    if !body.get("messages").is_some_and(Value::is_array) {
        return error(
            StatusCode::BAD_REQUEST,
            "Missing required parameter: 'messages'.",
            "invalid_request_error",
            Some("missing_required_parameter"),
        );
    }
    if !shared.options.latency.is_zero() {
        tokio::time::sleep(shared.options.latency).await;
    }
    let fault = shared.script.next();
    // Counts the request as abandoned if the client leaves before the head.
    let before_head = Watch::new(shared.script.clone());
    let mut drop_after = None;
    let mut hang_after = None;
    let mut drip = None;
    match fault {
        Fault::Ok => {}
        Fault::Status {
            status,
            retry_after,
        } => {
            before_head.finish();
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error_with_retry_after(status, retry_after.as_deref());
        }
        Fault::ErrorCode { status, code } => {
            before_head.finish();
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return error(
                status,
                &format!("The mock provider was asked to fail with {code}"),
                "invalid_request_error",
                Some(&code),
            );
        }
        Fault::Latency(d) => tokio::time::sleep(d).await,
        Fault::HangBeforeHeaders => {
            std::future::pending::<()>().await;
        }
        Fault::HangMidStream { after } => hang_after = Some(after),
        Fault::CutMidStream { after } => drop_after = Some(after),
        Fault::SlowDrip { delay } => drip = Some(delay),
    }
    before_head.finish();
    match behaviour(&model) {
        Behaviour::Error(status) => return error_for_status(status),
        Behaviour::Slow(d) => tokio::time::sleep(d).await,
        Behaviour::DropAfter(n) => drop_after = Some(n),
        Behaviour::Normal => {}
    }
    let reply = openai::reply_for(&body);
    let id = format!("chatcmpl-mock{:016x}", fnv(&raw));
    let created = now_secs();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        return axum::Json(openai::completion_body(&id, &model, created, &reply)).into_response();
    }
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let events = openai::stream_events(&id, &model, created, &reply, include_usage);
    let faults = StreamFaults {
        drop_after,
        hang_after,
        drip,
        // Counts the stream as abandoned if the client leaves before its end.
        watch: Some(Watch::new(shared.script.clone())),
    };
    sse_response_with(events, &shared.options, faults)
}

/// Scripted faults of one streamed response.
pub(crate) struct StreamFaults {
    /// Abort the connection after this many events.
    pub drop_after: Option<usize>,
    /// Stop sending (but keep the connection) after this many events.
    pub hang_after: Option<usize>,
    /// Pause between events instead of the configured chunk delay.
    pub drip: Option<Duration>,
    pub watch: Option<Watch>,
}

/// A streamed response of complete SSE events; with `drop_after`, the
/// connection is aborted after that many events.
pub(crate) fn sse_response(
    events: Vec<Bytes>,
    options: &MockOptions,
    drop_after: Option<usize>,
) -> Response {
    let faults = StreamFaults {
        drop_after,
        hang_after: None,
        drip: None,
        watch: None,
    };
    sse_response_with(events, options, faults)
}

/// A streamed response of SSE events with scripted faults, split into
/// pieces of `options.split_stream_every` bytes when set.
pub(crate) fn sse_response_with(
    events: Vec<Bytes>,
    options: &MockOptions,
    faults: StreamFaults,
) -> Response {
    let delay = faults.drip.unwrap_or(options.chunk_delay);
    let end_delay = options.end_delay;
    let hang_after = faults.hang_after;
    let mid_stream = faults.watch;
    let (events, drop_after) = match options.split_stream_every {
        0 => (events, faults.drop_after),
        n => {
            let kept = faults
                .drop_after
                .map_or(events.len(), |d| d.min(events.len()));
            let joined: Vec<u8> = events[..kept].iter().flat_map(|e| e.to_vec()).collect();
            let pieces: Vec<Bytes> = joined.chunks(n).map(Bytes::copy_from_slice).collect();
            let cut = faults.drop_after.map(|_| pieces.len());
            (pieces, cut)
        }
    };
    let stream = futures::stream::unfold(
        (events.into_iter().enumerate(), false, mid_stream),
        move |(mut it, done, mut watch)| async move {
            if done {
                return None;
            }
            let Some((i, ev)) = it.next() else {
                if let Some(w) = watch.take() {
                    w.finish();
                }
                if !end_delay.is_zero() {
                    tokio::time::sleep(end_delay).await;
                }
                return None;
            };
            if hang_after.is_some_and(|n| i >= n) {
                std::future::pending::<()>().await;
            }
            if drop_after.is_some_and(|n| i >= n) {
                // Let the events already sent reach the client first, then
                // an Err makes hyper abort the response mid-body.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Some(w) = watch.take() {
                    w.finish();
                }
                return Some((
                    Err(std::io::Error::other("mock dropped the stream")),
                    (it, true, watch),
                ));
            }
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((Ok::<_, std::io::Error>(ev), (it, false, watch)))
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Azure OpenAI's deployment route: the OpenAI format, with a required
/// `api-version` query parameter (Azure answers 404 without one).
async fn azure_chat_completions(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let has_version = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("api-version=")));
    if !has_version {
        return error(
            StatusCode::NOT_FOUND,
            "Resource not found",
            "invalid_request_error",
            Some("404"),
        );
    }
    chat_completions(State(shared), method, uri, headers, raw).await
}

async fn azure_embeddings(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if !uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("api-version=")))
    {
        return error(
            StatusCode::NOT_FOUND,
            "Resource not found",
            "invalid_request_error",
            Some("404"),
        );
    }
    embeddings(State(shared), method, uri, headers, raw).await
}

async fn responses(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body = match parse_body(&raw) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Err(r) = admit(&shared, Dialect::OpenAi, &method, &uri, &headers, &body) {
        return *r;
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock")
        .to_string();
    if let Behaviour::Error(status) = behaviour(&model) {
        return error_for_status(status);
    }
    let reply = crate::responses::reply_for(&body);
    let id = format!("resp_mock{:016x}", fnv(&raw));
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let events = crate::responses::stream_events(&id, &model, now_secs(), &reply);
        return sse_response(events, &shared.options, None);
    }
    axum::Json(crate::responses::response_body(
        &id,
        &model,
        now_secs(),
        &reply,
    ))
    .into_response()
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body = match parse_body(&raw) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Err(r) = admit(&shared, Dialect::OpenAi, &method, &uri, &headers, &body) {
        return *r;
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-embed");
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "Missing required parameter: 'input'.",
                "invalid_request_error",
                None,
            )
        }
    };
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .unwrap_or(8)
        .min(4096);
    let tokens: usize = inputs.iter().map(|s| s.split_whitespace().count()).sum();
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let v = openai::embedding_for(s, dims);
            let embedding = if base64 {
                json!(openai::embedding_base64(&v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
    .into_response()
}

async fn models(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(
        &shared,
        Dialect::OpenAi,
        &method,
        &uri,
        &headers,
        &Value::Null,
    ) {
        return *r;
    }
    let names: Vec<String> = if shared.options.models.is_empty() {
        vec!["mock-small".into(), "mock-large".into()]
    } else {
        shared.options.models.clone()
    };
    let data: Vec<Value> = names
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "tollgate-mock"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("Unknown path {}", uri.path()),
        "invalid_request_error",
        None,
    )
}

pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
