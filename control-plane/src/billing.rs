//! Billing glue of the control plane: prices and account settings into the
//! snapshot, and the background job that reclaims leases of data planes
//! that vanished (docs/billing.md).

use std::time::Duration;

use tokio::sync::watch;
use tollgate_proto::sync::v1 as pb;

use crate::store::{BudgetAlert, Model, Store, StoredPrice, TenantData};

/// Lease timing, set at start.
#[derive(Debug, Clone, Copy)]
pub struct BillingConfig {
    /// How long a grant lives without renewal.
    pub lease_ttl: Duration,
    /// Extra time after expiry before a lease is reclaimed (clock skew,
    /// a renewal in flight).
    pub reclaim_grace: Duration,
    /// How often the reclaim job runs.
    pub reclaim_every: Duration,
    /// Freeze tenants with no charge or credit for this long; `None`: never.
    pub freeze_inactive_after: Option<Duration>,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            lease_ttl: Duration::from_secs(30),
            reclaim_grace: Duration::from_secs(5),
            reclaim_every: Duration::from_secs(5),
            freeze_inactive_after: None,
        }
    }
}

fn price_to_proto(p: &StoredPrice) -> pb::Price {
    pb::Price {
        input_per_mtok: p.input_per_mtok,
        cache_read_per_mtok: p.cache_read_per_mtok,
        cache_write_per_mtok: p.cache_write_per_mtok,
        output_per_mtok: p.output_per_mtok,
        reasoning_per_mtok: p.reasoning_per_mtok,
        per_request_micros: p.per_request_micros,
        max_output_tokens: p.max_output_tokens,
    }
}

/// The model-wide price and the per-target prices of one model.
pub fn model_prices(m: &Model, t: &TenantData) -> (Option<pb::Price>, Vec<pb::TargetPrice>) {
    let mut model_wide = None;
    let mut targets = Vec::new();
    for p in t.prices.iter().filter(|p| p.model_id == m.id) {
        if p.provider_id.is_empty() {
            model_wide = Some(price_to_proto(p));
        } else {
            targets.push(pb::TargetPrice {
                provider_id: p.provider_id.clone(),
                price: Some(price_to_proto(p)),
            });
        }
    }
    (model_wide, targets)
}

/// Billing settings of a tenant: present once it has an account (a top-up,
/// a multiplier, a freeze) or any price, so unbilled tenants stay unbilled.
pub fn tenant_billing(t: &TenantData) -> Option<pb::TenantBilling> {
    match t.account {
        Some((bps, frozen)) => Some(pb::TenantBilling {
            price_multiplier_bps: bps,
            frozen,
        }),
        None if !t.prices.is_empty() => Some(pb::TenantBilling {
            price_multiplier_bps: tollgate_core::pricing::FULL_MULTIPLIER_BPS,
            frozen: false,
        }),
        None => None,
    }
}

/// Where budget alerts go besides the admin API (pluggable).
#[async_trait::async_trait]
pub trait AlertSink: Send + Sync {
    async fn deliver(&self, alert: &BudgetAlert) -> Result<(), String>;
}

/// Posts each alert as JSON to its budget's webhook URL; 2xx = delivered.
pub struct WebhookAlertSink {
    client: reqwest::Client,
}

impl WebhookAlertSink {
    pub fn new() -> Result<Self, String> {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(|client| WebhookAlertSink { client })
            .map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl AlertSink for WebhookAlertSink {
    async fn deliver(&self, a: &BudgetAlert) -> Result<(), String> {
        let body = serde_json::json!({
            "type": "budget.soft_threshold_reached",
            "alert_id": a.id, "tenant_id": a.tenant_id, "period": a.period,
            "period_start_ms": a.period_start_ms, "threshold_micros": a.threshold_micros,
            "spent_micros": a.spent_micros, "created_at_ms": a.created_at_ms,
        });
        let resp = self
            .client
            .post(&a.webhook_url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("webhook answered {}", resp.status()))
        }
    }
}

/// Delivers undelivered alerts once each (retried on the next round).
async fn deliver_alerts(store: &Store, sink: &dyn AlertSink) {
    let alerts = match store.undelivered_alerts().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "reading budget alerts failed");
            return;
        }
    };
    for a in alerts {
        match sink.deliver(&a).await {
            Ok(()) => {
                if let Err(e) = store.mark_alert_delivered(&a.id).await {
                    tracing::warn!(error = %e, "marking a budget alert delivered failed");
                }
            }
            Err(e) => {
                tracing::warn!(alert_id = %a.id, tenant_id = %a.tenant_id, error = %e, "budget alert webhook failed; retrying later")
            }
        }
    }
}

/// Releases expired leases, and freezes inactive tenants when configured,
/// until shutdown.
pub async fn reclaim_leases(
    store: Store,
    config: BillingConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let grace = i64::try_from(config.reclaim_grace.as_millis()).unwrap_or(i64::MAX);
    let sink = match WebhookAlertSink::new() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "budget alert webhooks disabled");
            None
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            () = tokio::time::sleep(config.reclaim_every) => {}
        }
        match store.reclaim_expired_leases(grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(leases = n, "reclaimed expired billing leases"),
            Err(e) => tracing::warn!(error = %e, "reclaiming billing leases failed"),
        }
        if let Some(after) = config.freeze_inactive_after {
            let after = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
            let cutoff = tollgate_core::time::now_ms().saturating_sub(after);
            match store.freeze_inactive(cutoff).await {
                Ok(ids) if ids.is_empty() => {}
                Ok(ids) => tracing::info!(tenants = ?ids, "froze inactive tenants"),
                Err(e) => tracing::warn!(error = %e, "freezing inactive tenants failed"),
            }
        }
        if let Some(sink) = &sink {
            deliver_alerts(&store, sink).await;
        }
    }
}
