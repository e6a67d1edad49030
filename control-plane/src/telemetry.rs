//! Prometheus metrics of the control plane, served on its HTTP port at
//! `GET /metrics` (every metric is listed in `docs/observability.md`).
//! Counters are incremented where things happen (usage ingestion); gauges
//! are read from their sources when scraped. One registry per control
//! plane, so several in one process (tests) do not mix their counts.

use std::sync::Arc;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::data_planes::DataPlaneRegistry;

/// The control plane's metrics.
pub struct CpMetrics {
    registry: Registry,
    /// Usage records reported by data planes: newly stored.
    pub usage_stored: IntCounter,
    /// Usage records reported again (already stored; not counted twice).
    pub usage_duplicates: IntCounter,
    /// Usage batches the store failed to take (the data plane retries).
    pub usage_failed_batches: IntCounter,
    data_planes: IntGaugeVec,
    dp_acked_version: IntGaugeVec,
    config_version: IntGauge,
    /// Several replicas (crate::cluster): leadership and etcd reachability.
    cluster: std::sync::OnceLock<Arc<crate::cluster::ClusterState>>,
    cluster_gauges: IntGaugeVec,
}

impl std::fmt::Debug for CpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpMetrics").finish_non_exhaustive()
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "metric not registered");
    }
    c
}

impl CpMetrics {
    /// Metric names are constants: creating them cannot fail.
    pub fn new() -> prometheus::Result<Arc<CpMetrics>> {
        let r = Registry::new();
        let usage = register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "tollgate_cp_usage_records_total",
                    "Usage records reported by data planes, by result (stored, duplicate).",
                ),
                &["result"],
            )?,
        );
        Ok(Arc::new(CpMetrics {
            usage_stored: usage.with_label_values(&["stored"]),
            usage_duplicates: usage.with_label_values(&["duplicate"]),
            usage_failed_batches: register(
                &r,
                IntCounter::new(
                    "tollgate_cp_usage_batches_failed_total",
                    "Usage batches the store could not take (the data plane retries them).",
                )?,
            ),
            data_planes: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "tollgate_cp_data_planes",
                        "Data planes known to this control plane, by state (connected, disconnected).",
                    ),
                    &["state"],
                )?,
            ),
            dp_acked_version: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "tollgate_cp_data_plane_config_version",
                        "Configuration version each connected data plane acknowledged.",
                    ),
                    &["node"],
                )?,
            ),
            config_version: register(
                &r,
                IntGauge::new(
                    "tollgate_cp_config_version",
                    "Latest configuration snapshot version published.",
                )?,
            ),
            cluster: std::sync::OnceLock::new(),
            cluster_gauges: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "tollgate_cp_cluster",
                        "This replica in the cluster: leader (1 when it runs the background jobs), etcd_up (1 when etcd answers; 0 without --etcd), background_jobs (jobs running here).",
                    ),
                    &["gauge"],
                )?,
            ),
            registry: r,
        }))
    }

    /// Reports this replica's cluster role on every scrape.
    pub fn attach_cluster(&self, state: Arc<crate::cluster::ClusterState>) {
        let _ = self.cluster.set(state);
    }

    /// Reads the gauges and renders the text exposition.
    pub fn render(&self, data_planes: &DataPlaneRegistry, config_version: u64) -> Vec<u8> {
        let all = data_planes.list();
        let connected = all.iter().filter(|d| d.connected).count();
        self.data_planes
            .with_label_values(&["connected"])
            .set(i64::try_from(connected).unwrap_or(i64::MAX));
        self.data_planes
            .with_label_values(&["disconnected"])
            .set(i64::try_from(all.len() - connected).unwrap_or(i64::MAX));
        self.dp_acked_version.reset();
        for d in all.iter().filter(|d| d.connected) {
            self.dp_acked_version
                .with_label_values(&[d.node_id.as_str()])
                .set(i64::try_from(d.acked_version).unwrap_or(i64::MAX));
        }
        self.config_version
            .set(i64::try_from(config_version).unwrap_or(i64::MAX));
        if let Some(c) = self.cluster.get() {
            let g = &self.cluster_gauges;
            g.with_label_values(&["leader"])
                .set(i64::from(c.is_leader()));
            g.with_label_values(&["etcd_up"])
                .set(i64::from(c.etcd_up()));
            g.with_label_values(&["background_jobs"])
                .set(c.jobs_running());
        }
        let mut out = Vec::with_capacity(4096);
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "could not encode the metrics");
        }
        out
    }
}
