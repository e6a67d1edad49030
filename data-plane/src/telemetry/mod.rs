//! Telemetry of the data plane: Prometheus metrics ([`metrics`]), served on
//! `GET /metrics` (the admin listener of `--metrics-listen`, else the proxy
//! port), and the health/readiness bodies that report config sync and the
//! usage spool. The JSON access log is `crate::access_log`.
//!
//! What the request path does: [`record_call`] once per call in
//! `Gateway::finish` (atomic increments on cached handles) and
//! [`limit_rejected`] from the rate limiter. Everything else is read when
//! scraped. OpenTelemetry traces (off unless `--otlp-endpoint`) are
//! [`trace`] (request path) and [`trace_export`] (OTLP exporter task).

pub mod admin;
pub mod handles;
pub mod metrics;
pub mod trace;
pub mod trace_export;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use prometheus::Encoder;

pub use metrics::{configure, metrics, MetricsOptions};

use crate::billing::LeaseBook;
use crate::config::ConfigStore;
use crate::metering::spool::Spool;
use crate::pipeline::{CallContext, Drain};
use crate::routing::BreakerState;

/// Counts a call refused by the rate limit that fired: its `scope` (`key`,
/// `model`, `tenant`) and kind `limit` (`rpm`, `tpm`, `concurrency`, …):
/// small fixed sets.
pub fn limit_rejected(scope: &str, limit: &str) {
    let m = metrics();
    let parts = [scope, limit];
    m.limits
        .with(&parts, || m.limit_counter(&parts), |c| c.inc());
}

/// A status code as a label without allocating.
fn status_label(status: u16, buf: &mut [u8; 3]) -> &str {
    let s = status.min(999);
    buf[0] = b'0' + (s / 100) as u8;
    buf[1] = b'0' + (s / 10 % 10) as u8;
    buf[2] = b'0' + (s % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("0")
}

fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Records one finished call (from `Gateway::finish`).
pub fn record_call(ctx: &CallContext, latency_ms: i64) {
    let m = metrics();
    let (model, provider) = match &ctx.route {
        Some(r) => (r.public_name.as_str(), r.provider.name.as_str()),
        None => ("", ""),
    };
    let tenant = match (&ctx.key, m.tenant_label) {
        (Some(k), true) => k.tenant_id.as_str(),
        _ => "",
    };
    let endpoint = if ctx.endpoint.is_empty() {
        "other"
    } else {
        ctx.endpoint
    };
    let mut buf = [0u8; 3];
    let parts = [
        endpoint,
        model,
        provider,
        status_label(ctx.status, &mut buf),
        tenant,
    ];
    m.calls.with(
        &parts,
        || m.call_series(&parts),
        |s| {
            s.requests.inc();
            s.duration.observe(seconds(latency_ms));
            if let Some(ttft) = ctx.ttft_ms {
                s.ttft.observe(seconds(ttft));
            }
            if let Some(u) = ctx.usage {
                let values = [
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.cache_read_tokens,
                    u.cache_write_tokens,
                    u.reasoning_tokens,
                ];
                for (c, v) in s.tokens.iter().zip(values) {
                    if v > 0 {
                        c.inc_by(non_negative(v));
                    }
                }
            }
            if let Some(cost) = ctx.cost_micros().filter(|c| *c > 0) {
                s.cost.inc_by(non_negative(cost));
            }
        },
    );
    if let Some(cache) = ctx.cache {
        let i = match cache {
            crate::cache::CacheStatus::Hit => 0,
            crate::cache::CacheStatus::Miss => 1,
            crate::cache::CacheStatus::Bypass => 2,
        };
        m.cache_lookups[i].inc();
    }
    for v in &ctx.guard.verdicts {
        let parts = [v.direction, v.action, v.category];
        m.guardrails
            .with(&parts, || m.guardrail_counter(&parts), |c| c.inc());
    }
    if let Some(code @ ("insufficient_balance" | "budget_exceeded" | "tenant_frozen")) =
        ctx.error_code
    {
        m.budget
            .with(&[code], || m.budget_counter(code), |c| c.inc());
    }
    for a in &ctx.attempts {
        let mut buf = [0u8; 3];
        let parts = [
            a.provider_name.as_str(),
            status_label(a.status_code, &mut buf),
            a.error_code,
        ];
        m.attempts
            .with(&parts, || m.attempt_counter(&parts), |c| c.inc());
    }
}

/// Where config sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    /// A static file or memory source: nothing to sync with.
    Static = 0,
    /// Control-plane mode, not subscribed (starting, or the CP is away).
    Disconnected = 1,
    /// Subscribed to the control plane.
    Connected = 2,
}

/// Config-sync state, set by the gRPC config source.
#[derive(Debug)]
pub struct SyncState(AtomicU8);

impl SyncState {
    pub fn new(initial: SyncStatus) -> Arc<SyncState> {
        Arc::new(SyncState(AtomicU8::new(initial as u8)))
    }

    pub fn set(&self, status: SyncStatus) {
        self.0.store(status as u8, Ordering::Release);
    }

    pub fn get(&self) -> SyncStatus {
        match self.0.load(Ordering::Acquire) {
            2 => SyncStatus::Connected,
            1 => SyncStatus::Disconnected,
            _ => SyncStatus::Static,
        }
    }
}

/// What a data plane reports on `/metrics`, `/healthz` and `/readyz`.
pub struct Telemetry {
    pub store: Arc<ConfigStore>,
    pub sync: Arc<SyncState>,
    pub spool: Option<Arc<Spool>>,
    pub leases: Option<Arc<LeaseBook>>,
    pub drain: Arc<Drain>,
    /// The breakers' clock.
    pub clock: Arc<dyn crate::routing::Clock>,
    /// `/metrics` is served on the proxy port (no `--metrics-listen`).
    pub metrics_on_proxy: bool,
    /// OpenTelemetry traces (`--otlp-endpoint`); `None`: off.
    pub tracer: Option<Arc<trace::Tracer>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("sync", &self.sync.get())
            .field("metrics_on_proxy", &self.metrics_on_proxy)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Updates the scrape-time gauges and renders the text exposition.
    pub fn render_metrics(&self) -> Vec<u8> {
        let m = metrics();
        let config = self.store.load();
        m.config_version
            .set(i64::try_from(self.store.version()).unwrap_or(i64::MAX));
        m.config_sync_connected
            .set(i64::from(self.sync.get() == SyncStatus::Connected));
        if let Some(spool) = &self.spool {
            let depth = spool.depth();
            m.spool_records
                .set(i64::try_from(depth.records).unwrap_or(i64::MAX));
            m.spool_bytes
                .set(i64::try_from(depth.bytes).unwrap_or(i64::MAX));
            m.spool_refused
                .set(i64::try_from(spool.refused()).unwrap_or(i64::MAX));
        }
        m.in_flight
            .set(i64::try_from(self.drain.in_flight()).unwrap_or(i64::MAX));
        if let Some(book) = &self.leases {
            let all = book.all();
            m.leases.set(i64::try_from(all.len()).unwrap_or(i64::MAX));
            m.lease_available.reset();
            if m.tenant_label {
                for l in &all {
                    m.lease_available
                        .with_label_values(&[l.tenant_id.as_str()])
                        .set(l.available());
                }
            } else {
                let sum = all.iter().map(|l| l.available()).sum::<i64>();
                m.lease_available.with_label_values::<&str>(&[]).set(sum);
            }
        }
        m.breaker_state.reset();
        if let Some(config) = &config {
            let now = self.clock.now_ms();
            for tenant in config.tenants.values() {
                for route in tenant.routes.values() {
                    for t in &route.targets {
                        let state = match t.stats.breaker.state(&route.policy.breaker, now) {
                            BreakerState::Closed => 0,
                            BreakerState::HalfOpen => 1,
                            BreakerState::Open => 2,
                        };
                        let g = m.breaker_state.with_label_values(&[
                            t.route.provider.name.as_str(),
                            t.route.upstream_model.as_str(),
                        ]);
                        // Several routes share a target: the worst state wins.
                        g.set(g.get().max(state));
                    }
                }
            }
        }
        let families = m.registry.gather();
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "could not encode the metrics");
        }
        out
    }

    /// `GET /metrics` on the proxy port.
    pub async fn write_metrics(
        &self,
        session: &mut pingora_proxy::Session,
        ctx: &mut CallContext,
    ) -> pingora_core::Result<()> {
        let body = bytes::Bytes::from(self.render_metrics());
        let h =
            crate::http::response::head(200, ctx, admin::METRICS_CONTENT_TYPE, Some(body.len()))?;
        ctx.status = 200;
        session.write_response_header(h, false).await?;
        session.write_response_body(Some(body), true).await
    }

    /// The JSON body of `/healthz` and `/readyz` (`status`: `ok`,
    /// `ready`…): config version, config sync and usage spool state.
    pub fn health_body(&self, status: &str) -> String {
        let sync = match self.sync.get() {
            SyncStatus::Static => "static",
            SyncStatus::Disconnected => "disconnected",
            SyncStatus::Connected => "connected",
        };
        let spool = match &self.spool {
            Some(s) => {
                let d = s.depth();
                serde_json::json!({"records": d.records, "bytes": d.bytes, "refused": s.refused()})
            }
            None => serde_json::Value::Null,
        };
        serde_json::json!({
            "status": status,
            "config_version": self.store.version(),
            "config_sync": sync,
            "usage_spool": spool,
            "in_flight": self.drain.in_flight(),
        })
        .to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_labels() {
        let mut b = [0u8; 3];
        assert_eq!(status_label(200, &mut b), "200");
        assert_eq!(status_label(0, &mut b), "000");
        assert_eq!(status_label(499, &mut b), "499");
    }

    #[test]
    fn sync_state_round_trips() {
        let s = SyncState::new(SyncStatus::Disconnected);
        assert_eq!(s.get(), SyncStatus::Disconnected);
        s.set(SyncStatus::Connected);
        assert_eq!(s.get(), SyncStatus::Connected);
    }
}
