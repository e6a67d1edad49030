//! `GET /healthz` (the process is up; its role in the cluster) and
//! `GET /readyz` (it can serve: the database answers and it is not shutting
//! down) on the control plane's port, for load balancers and probes.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::watch;

use super::ClusterState;
use crate::store::Store;

#[derive(Clone)]
struct Probe {
    state: Arc<ClusterState>,
    store: Store,
    shutdown: watch::Receiver<bool>,
}

impl Probe {
    fn body(&self, extra: serde_json::Value) -> serde_json::Value {
        let mut v = serde_json::json!({
            "replica_id": self.state.replica_id,
            "clustered": self.state.clustered,
            "leader": self.state.is_leader(),
            "etcd": if !self.state.clustered { "off" } else if self.state.etcd_up() { "up" } else { "down" },
            "background_jobs": self.state.jobs_running(),
        });
        if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        v
    }
}

async fn healthz(p: Probe) -> Response {
    Json(p.body(serde_json::json!({ "status": "ok" }))).into_response()
}

async fn readyz(p: Probe) -> Response {
    if *p.shutdown.borrow() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(p.body(serde_json::json!({ "ready": false, "reason": "shutting down" }))),
        )
            .into_response();
    }
    match tokio::time::timeout(Duration::from_secs(2), p.store.config_version()).await {
        Ok(Ok(v)) => Json(p.body(serde_json::json!({ "ready": true, "config_version": v })))
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(p.body(
                    serde_json::json!({ "ready": false, "reason": "the database does not answer" }),
                )),
            )
                .into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(p.body(
                serde_json::json!({ "ready": false, "reason": "database did not answer within 2 s" }),
            )),
        )
            .into_response(),
    }
}

/// The probe routes.
pub fn router(state: Arc<ClusterState>, store: Store, shutdown: watch::Receiver<bool>) -> Router {
    let p = Probe {
        state,
        store,
        shutdown,
    };
    let q = p.clone();
    Router::new()
        .route("/healthz", get(move || healthz(p.clone())))
        .route("/readyz", get(move || readyz(q.clone())))
}
