//! The public status page: availability, error rate and p50/p95 latency and
//! time to first token per provider and per model over the last hour and
//! day, plus the incidents operators post. Served without login on the
//! control plane's HTTP port: `GET /status` (HTML, no external assets),
//! `GET /status.json`; `GET /metrics` (Prometheus) sits next to them.
//!
//! Providers are shown by kind (`openai`, `anthropic`, …) and models by
//! their upstream name, aggregated over every tenant: a public page never
//! names a tenant, its provider entries or their URLs.

mod html;
pub mod report;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::data_planes::DataPlaneRegistry;
use crate::push::SnapshotBroadcaster;
use crate::store::Store;
use crate::telemetry::CpMetrics;
pub use report::{StatusReport, WindowStats};

/// How long a computed report is served before it is computed again (the
/// page is public: a burst of readers costs one query).
const REPORT_TTL: Duration = Duration::from_secs(2);

/// The last computed report and when it was computed.
type CachedReport = Arc<Mutex<Option<(Instant, Arc<StatusReport>)>>>;

/// What the public routes read.
#[derive(Clone)]
pub struct PublicState {
    pub store: Store,
    pub metrics: Arc<CpMetrics>,
    pub data_planes: Arc<DataPlaneRegistry>,
    pub snapshots: SnapshotBroadcaster,
    cache: CachedReport,
}

impl PublicState {
    pub fn new(
        store: Store,
        metrics: Arc<CpMetrics>,
        data_planes: Arc<DataPlaneRegistry>,
        snapshots: SnapshotBroadcaster,
    ) -> Self {
        PublicState {
            store,
            metrics,
            data_planes,
            snapshots,
            cache: Arc::new(Mutex::new(None)),
        }
    }

    async fn report(&self) -> Result<Arc<StatusReport>, crate::store::StoreError> {
        if let Some((at, r)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            if at.elapsed() < REPORT_TTL {
                return Ok(r.clone());
            }
        }
        let r = Arc::new(report::compute(&self.store, tollgate_core::time::now_ms()).await?);
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), r.clone()));
        Ok(r)
    }
}

fn unavailable(e: &crate::store::StoreError) -> Response {
    tracing::warn!(error = %e, "status page unavailable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "status temporarily unavailable\n",
    )
        .into_response()
}

async fn status_json(state: PublicState) -> Response {
    match state.report().await {
        Ok(r) => {
            let mut resp = axum::Json(r.as_ref()).into_response();
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=10"),
            );
            resp
        }
        Err(e) => unavailable(&e),
    }
}

async fn status_html(state: PublicState) -> Response {
    match state.report().await {
        Ok(r) => {
            let mut resp = (StatusCode::OK, html::render(&r)).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                ),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=10"),
            );
            resp
        }
        Err(e) => unavailable(&e),
    }
}

async fn metrics(state: PublicState) -> Response {
    let body = state
        .metrics
        .render(&state.data_planes, state.snapshots.version());
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// `/status`, `/status.json` and `/metrics`, public.
pub fn router(state: PublicState) -> Router {
    let (a, b, c) = (state.clone(), state.clone(), state);
    Router::new()
        .route("/status", get(move || status_html(a.clone())))
        .route("/status.json", get(move || status_json(b.clone())))
        .route("/metrics", get(move || metrics(c.clone())))
}
