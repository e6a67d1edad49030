//! Status page data: upstream health in 5-minute buckets (from the
//! attempts of stored usage records) and operator-posted incidents.
//!
//! The buckets are upserted like the hourly usage rollups, in the
//! transaction that stores a new record, so they count every stored call
//! exactly once. Latency and time to first token are kept as bounded
//! histograms ([`LATENCY_BOUNDS_MS`]); percentiles are read from them.

use std::collections::BTreeMap;

use sqlx::{Any, Row, Transaction};

use super::{Store, StoreError, StoreResult, UsageRecord};

/// Width of a status bucket.
pub const BUCKET_MS: i64 = 5 * 60 * 1000;
/// Buckets older than this are deleted as new ones are written.
pub const KEEP_MS: i64 = 2 * 24 * 3_600_000;
/// Upper bounds (ms, inclusive) of the histogram buckets; one more bucket
/// holds everything slower.
pub const LATENCY_BOUNDS_MS: [i64; 11] =
    [25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000];
/// Histogram buckets per measure (the bounds and +inf).
pub const HISTOGRAM_LEN: usize = LATENCY_BOUNDS_MS.len() + 1;

pub fn bucket_floor(ms: i64) -> i64 {
    ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// The histogram bucket of a duration.
pub fn histogram_index(ms: i64) -> usize {
    LATENCY_BOUNDS_MS
        .iter()
        .position(|b| ms <= *b)
        .unwrap_or(LATENCY_BOUNDS_MS.len())
}

/// Health measures of one target over some time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusTotals {
    /// Upstream attempts (the caller leaving mid-attempt is not counted).
    pub attempts: i64,
    /// Attempts the provider failed: no answer (connect error, timeout),
    /// 5xx or 429.
    pub failures: i64,
    /// Attempts that did not succeed for any reason (failures and other
    /// 4xx answers).
    pub errors: i64,
    /// Latency of successful attempts.
    pub latency: [i64; HISTOGRAM_LEN],
    /// Time to first token of streamed calls the target served.
    pub ttft: [i64; HISTOGRAM_LEN],
}

impl StatusTotals {
    pub fn add(&mut self, o: &StatusTotals) {
        self.attempts += o.attempts;
        self.failures += o.failures;
        self.errors += o.errors;
        for i in 0..HISTOGRAM_LEN {
            self.latency[i] += o.latency[i];
            self.ttft[i] += o.ttft[i];
        }
    }
}

/// Whether an attempt's outcome is the provider's failure.
pub fn is_provider_failure(status: u32) -> bool {
    status == 0 || status == 429 || status >= 500
}

fn columns() -> Vec<String> {
    let mut c = vec![
        "attempts".to_string(),
        "failures".to_string(),
        "errors".to_string(),
    ];
    c.extend((0..HISTOGRAM_LEN).map(|i| format!("lat_{i}")));
    c.extend((0..HISTOGRAM_LEN).map(|i| format!("ttft_{i}")));
    c
}

fn values(t: &StatusTotals) -> Vec<i64> {
    let mut v = vec![t.attempts, t.failures, t.errors];
    v.extend(t.latency);
    v.extend(t.ttft);
    v
}

type StatusKey = (i64, String, String);

/// The status increments of the records a batch newly inserted.
#[derive(Debug, Default)]
pub(crate) struct StatusBatch {
    deltas: BTreeMap<StatusKey, StatusTotals>,
}

impl StatusBatch {
    pub fn add(&mut self, r: &UsageRecord) {
        let bucket = bucket_floor(r.started_at_ms);
        for a in &r.attempts {
            if a.error_code == "client_disconnected" {
                continue;
            }
            let t = self
                .deltas
                .entry((bucket, a.provider_id.clone(), a.upstream_model.clone()))
                .or_default();
            t.attempts += 1;
            if is_provider_failure(a.status_code) {
                t.failures += 1;
            }
            if !(200..400).contains(&a.status_code) {
                t.errors += 1;
            } else {
                t.latency[histogram_index(a.latency_ms)] += 1;
            }
        }
        if r.ttft_ms >= 0 && !r.attempts.is_empty() {
            let t = self
                .deltas
                .entry((bucket, r.provider_id.clone(), r.upstream_model.clone()))
                .or_default();
            t.ttft[histogram_index(r.ttft_ms)] += 1;
        }
    }

    /// Upserts every increment, in key order, inside `tx`, and drops
    /// buckets past [`KEEP_MS`].
    pub async fn upsert(self, tx: &mut Transaction<'static, Any>, now_ms: i64) -> StoreResult<()> {
        if self.deltas.is_empty() {
            return Ok(());
        }
        let cols = columns();
        let placeholders: Vec<String> = (0..cols.len()).map(|i| format!("${}", i + 4)).collect();
        let updates: Vec<String> = cols
            .iter()
            .map(|c| format!("{c} = status_rollup.{c} + excluded.{c}"))
            .collect();
        let sql = format!(
            "INSERT INTO status_rollup (bucket_ms, provider_id, upstream_model, {}) \
             VALUES ($1, $2, $3, {}) \
             ON CONFLICT (bucket_ms, provider_id, upstream_model) DO UPDATE SET {}",
            cols.join(", "),
            placeholders.join(", "),
            updates.join(", ")
        );
        for ((bucket, provider, model), totals) in self.deltas {
            let mut q = sqlx::query(&sql).bind(bucket).bind(provider).bind(model);
            for v in values(&totals) {
                q = q.bind(v);
            }
            q.execute(&mut **tx).await?;
        }
        sqlx::query("DELETE FROM status_rollup WHERE bucket_ms < $1")
            .bind(now_ms - KEEP_MS)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// One row of status data: a target's provider kind and upstream model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    pub bucket_ms: i64,
    pub provider_kind: String,
    pub upstream_model: String,
    pub totals: StatusTotals,
}

/// An incident on the status page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Incident {
    pub id: String,
    pub title: String,
    pub message: String,
    pub impact: String,
    pub state: String,
    pub components: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub resolved_at_ms: i64,
}

pub const INCIDENT_IMPACTS: [&str; 4] = ["none", "minor", "major", "critical"];
pub const INCIDENT_STATES: [&str; 4] = ["investigating", "identified", "monitoring", "resolved"];

/// Changes to an incident; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct IncidentUpdate {
    pub title: Option<String>,
    pub message: Option<String>,
    pub impact: Option<String>,
    pub state: Option<String>,
    pub components: Option<String>,
}

fn check_incident_fields(impact: Option<&str>, state: Option<&str>) -> StoreResult<()> {
    if let Some(i) = impact.filter(|i| !INCIDENT_IMPACTS.contains(i)) {
        return Err(StoreError::Invalid(format!(
            "impact {i:?}: use one of {}",
            INCIDENT_IMPACTS.join(", ")
        )));
    }
    if let Some(s) = state.filter(|s| !INCIDENT_STATES.contains(s)) {
        return Err(StoreError::Invalid(format!(
            "state {s:?}: use one of {}",
            INCIDENT_STATES.join(", ")
        )));
    }
    Ok(())
}

const INCIDENT_COLUMNS: &str = "id, title, message, impact, state, components, created_at_ms, \
     updated_at_ms, resolved_at_ms";

fn incident_from_row(row: &sqlx::any::AnyRow) -> StoreResult<Incident> {
    Ok(Incident {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        message: row.try_get("message")?,
        impact: row.try_get("impact")?,
        state: row.try_get("state")?,
        components: row.try_get("components")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        resolved_at_ms: row.try_get("resolved_at_ms")?,
    })
}

impl Store {
    /// Status buckets starting at or after `since_ms`, with the provider
    /// kind of each target (`unknown` once its provider is deleted).
    pub async fn status_rows(&self, since_ms: i64) -> StoreResult<Vec<StatusRow>> {
        let cols = columns();
        let select: Vec<String> = cols.iter().map(|c| format!("s.{c}")).collect();
        let rows = sqlx::query(&format!(
            "SELECT s.bucket_ms, COALESCE(p.kind, 'unknown') AS kind, s.upstream_model, {} \
             FROM status_rollup s LEFT JOIN providers p ON p.id = s.provider_id \
             WHERE s.bucket_ms >= $1",
            select.join(", ")
        ))
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let mut t = StatusTotals {
                    attempts: row.try_get("attempts")?,
                    failures: row.try_get("failures")?,
                    errors: row.try_get("errors")?,
                    ..StatusTotals::default()
                };
                for i in 0..HISTOGRAM_LEN {
                    t.latency[i] = row.try_get(format!("lat_{i}").as_str())?;
                    t.ttft[i] = row.try_get(format!("ttft_{i}").as_str())?;
                }
                Ok(StatusRow {
                    bucket_ms: row.try_get("bucket_ms")?,
                    provider_kind: row.try_get("kind")?,
                    upstream_model: row.try_get("upstream_model")?,
                    totals: t,
                })
            })
            .collect()
    }

    pub async fn create_incident(
        &self,
        title: &str,
        message: &str,
        impact: &str,
        components: &str,
        now_ms: i64,
    ) -> StoreResult<Incident> {
        if title.trim().is_empty() {
            return Err(StoreError::Invalid("an incident needs a title".into()));
        }
        check_incident_fields(Some(impact), None)?;
        let incident = Incident {
            id: tollgate_core::ids::new_id("inc"),
            title: title.trim().to_string(),
            message: message.to_string(),
            impact: impact.to_string(),
            state: "investigating".into(),
            components: components.to_string(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            resolved_at_ms: 0,
        };
        sqlx::query(&format!(
            "INSERT INTO status_incidents ({INCIDENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&incident.id)
        .bind(&incident.title)
        .bind(&incident.message)
        .bind(&incident.impact)
        .bind(&incident.state)
        .bind(&incident.components)
        .bind(incident.created_at_ms)
        .bind(incident.updated_at_ms)
        .bind(incident.resolved_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(incident)
    }

    pub async fn update_incident(
        &self,
        id: &str,
        update: IncidentUpdate,
        now_ms: i64,
    ) -> StoreResult<Incident> {
        check_incident_fields(update.impact.as_deref(), update.state.as_deref())?;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM status_incidents WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("incident {id}")))?;
        let mut i = incident_from_row(&row)?;
        if let Some(t) = update.title.filter(|t| !t.trim().is_empty()) {
            i.title = t.trim().to_string();
        }
        if let Some(m) = update.message {
            i.message = m;
        }
        if let Some(x) = update.impact {
            i.impact = x;
        }
        if let Some(c) = update.components {
            i.components = c;
        }
        if let Some(s) = update.state {
            i.resolved_at_ms = if s == "resolved" {
                if i.resolved_at_ms == 0 {
                    now_ms
                } else {
                    i.resolved_at_ms
                }
            } else {
                0
            };
            i.state = s;
        }
        i.updated_at_ms = now_ms;
        sqlx::query(
            "UPDATE status_incidents SET title = $1, message = $2, impact = $3, state = $4, \
             components = $5, updated_at_ms = $6, resolved_at_ms = $7 WHERE id = $8",
        )
        .bind(&i.title)
        .bind(&i.message)
        .bind(&i.impact)
        .bind(&i.state)
        .bind(&i.components)
        .bind(i.updated_at_ms)
        .bind(i.resolved_at_ms)
        .bind(&i.id)
        .execute(&mut *tx)
        .await?;
        super::audit::write_pending_in(&mut tx).await?;
        tx.commit().await?;
        Ok(i)
    }

    /// Incidents still open, and those resolved at or after
    /// `resolved_since_ms`, newest first.
    pub async fn list_incidents(&self, resolved_since_ms: i64) -> StoreResult<Vec<Incident>> {
        let rows = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM status_incidents \
             WHERE resolved_at_ms = 0 OR resolved_at_ms >= $1 \
             ORDER BY created_at_ms DESC, id DESC LIMIT 100"
        ))
        .bind(resolved_since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(incident_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_inclusive_upper_bounds() {
        assert_eq!(histogram_index(0), 0);
        assert_eq!(histogram_index(25), 0);
        assert_eq!(histogram_index(26), 1);
        assert_eq!(histogram_index(60000), 10);
        assert_eq!(histogram_index(60001), 11);
    }

    #[test]
    fn provider_failures() {
        assert!(is_provider_failure(0));
        assert!(is_provider_failure(429));
        assert!(is_provider_failure(503));
        assert!(!is_provider_failure(400));
        assert!(!is_provider_failure(200));
    }
}
