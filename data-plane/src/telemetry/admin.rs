//! The admin listener (`--metrics-listen`): `GET /metrics`, `/healthz` and
//! `/readyz` on their own address, so a platform's scraper and probes reach
//! them without the proxy port being exposed to them (and metrics are not
//! exposed to callers of the proxy).

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use super::Telemetry;

/// `Content-Type` of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves the admin routes from a data plane's [`Telemetry`].
pub struct AdminApp {
    pub telemetry: Arc<Telemetry>,
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = r.body().len();
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r
}

impl AdminApp {
    /// The answer to `method path`.
    pub fn answer(&self, method: &http::Method, path: &str) -> Response<Vec<u8>> {
        if method != http::Method::GET && method != http::Method::HEAD {
            return respond(405, "text/plain", b"method not allowed\n".to_vec());
        }
        let t = &self.telemetry;
        match path {
            "/metrics" => respond(200, METRICS_CONTENT_TYPE, t.render_metrics()),
            "/healthz" => respond(200, "application/json", t.health_body("ok").into_bytes()),
            "/readyz" => {
                if t.drain.is_draining() {
                    respond(
                        503,
                        "application/json",
                        t.health_body("shutting_down").into_bytes(),
                    )
                } else if t.store.is_ready() {
                    respond(200, "application/json", t.health_body("ready").into_bytes())
                } else {
                    respond(
                        503,
                        "application/json",
                        t.health_body("no_configuration").into_bytes(),
                    )
                }
            }
            _ => respond(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let (method, path) = (req.method.clone(), req.uri.path().to_owned());
        self.answer(&method, &path)
    }
}
