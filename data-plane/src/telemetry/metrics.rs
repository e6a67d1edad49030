//! The data plane's Prometheus metrics (one registry per process; every
//! metric is listed in `docs/observability.md`).
//!
//! Per-call metrics are recorded once, in `Gateway::finish`, through handles
//! resolved once per label set ([`HandleCache`]): a call costs a few atomic
//! increments. Gauges (config version, sync state, spool depth, leases,
//! breakers) are read from their sources when `/metrics` is scraped, never
//! on the request path.

use std::sync::{LazyLock, OnceLock};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use super::handles::HandleCache;

/// Options fixed at start (the first data plane of the process sets them).
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsOptions {
    /// Add a `tenant` label (the tenant id) to the per-call request, token
    /// and cost counters. Cardinality grows with the number of tenants.
    pub tenant_label: bool,
}

static OPTIONS: OnceLock<MetricsOptions> = OnceLock::new();

/// Sets the options; only the first call has an effect (metrics are
/// process-wide). Call before the first request.
pub fn configure(options: MetricsOptions) {
    let _ = OPTIONS.set(options);
}

/// Latency buckets in seconds: 5 ms … 5 min (upstream timeout default).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The token buckets of `tollgate_tokens_total`, in the order of
/// [`CallSeries::tokens`].
pub const TOKEN_BUCKETS: [&str; 5] = ["input", "output", "cache_read", "cache_write", "reasoning"];

/// Handles of one (endpoint, model, provider, status[, tenant]) label set.
pub struct CallSeries {
    pub requests: IntCounter,
    pub duration: Histogram,
    pub ttft: Histogram,
    pub tokens: [IntCounter; 5],
    pub cost: IntCounter,
}

/// Every metric of the data plane.
pub struct Metrics {
    pub registry: Registry,
    pub tenant_label: bool,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    tokens: IntCounterVec,
    cost: IntCounterVec,
    pub calls: HandleCache<CallSeries>,
    pub cache_lookups: [IntCounter; 3],
    guardrail_verdicts: IntCounterVec,
    pub guardrails: HandleCache<IntCounter>,
    budget_rejections: IntCounterVec,
    pub budget: HandleCache<IntCounter>,
    limit_rejections: IntCounterVec,
    pub limits: HandleCache<IntCounter>,
    upstream_attempts: IntCounterVec,
    pub attempts: HandleCache<IntCounter>,
    // Read at scrape time.
    pub config_version: IntGauge,
    pub config_sync_connected: IntGauge,
    pub spool_records: IntGauge,
    pub spool_bytes: IntGauge,
    pub spool_refused: IntGauge,
    pub leases: IntGauge,
    pub lease_available: IntGaugeVec,
    pub breaker_state: IntGaugeVec,
    pub in_flight: IntGauge,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|_| unreachable_metric(name));
    register(registry, Box::new(v.clone()), name);
    v
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let v = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .unwrap_or_else(|_| unreachable_metric(name));
    register(registry, Box::new(v.clone()), name);
    v
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|_| unreachable_metric(name));
    register(registry, Box::new(g.clone()), name);
    g
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|_| unreachable_metric(name));
    register(registry, Box::new(v.clone()), name);
    v
}

fn register(registry: &Registry, c: Box<dyn prometheus::core::Collector>, name: &str) {
    if let Err(e) = registry.register(c) {
        tracing::error!(metric = name, error = %e, "metric not registered");
    }
}

/// Metric names and labels are constants checked by the tests: a bad one
/// is a programming error caught before release.
#[allow(clippy::panic)]
fn unreachable_metric<T>(name: &str) -> T {
    panic!("invalid metric definition {name}")
}

impl Metrics {
    fn new(options: MetricsOptions) -> Metrics {
        let r = Registry::new();
        let with_tenant = |base: &[&'static str]| {
            let mut l = base.to_vec();
            if options.tenant_label {
                l.push("tenant");
            }
            l
        };
        let cache_lookups = counter_vec(
            &r,
            "tollgate_cache_lookups_total",
            "Calls on cacheable routes by cache result (hit, miss, bypass).",
            &["result"],
        );
        Metrics {
            tenant_label: options.tenant_label,
            requests: counter_vec(
                &r,
                "tollgate_requests_total",
                "Calls answered, by endpoint, model, provider and HTTP status.",
                &with_tenant(&["endpoint", "model", "provider", "status"]),
            ),
            duration: histogram_vec(
                &r,
                "tollgate_request_duration_seconds",
                "Time from the request's arrival to the end of the response.",
                &["endpoint", "model", "provider"],
            ),
            ttft: histogram_vec(
                &r,
                "tollgate_time_to_first_token_seconds",
                "Streamed calls: time from the request's arrival to the first chunk sent.",
                &["endpoint", "model", "provider"],
            ),
            tokens: counter_vec(
                &r,
                "tollgate_tokens_total",
                "Tokens metered, by bucket (input includes cache_read and cache_write; output includes reasoning).",
                &with_tenant(&["model", "provider", "bucket"]),
            ),
            cost: counter_vec(
                &r,
                "tollgate_cost_micros_total",
                "Cost charged for calls, in micro-dollars (1 USD = 1,000,000).",
                &with_tenant(&["model", "provider"]),
            ),
            calls: HandleCache::default(),
            cache_lookups: [
                cache_lookups.with_label_values(&["hit"]),
                cache_lookups.with_label_values(&["miss"]),
                cache_lookups.with_label_values(&["bypass"]),
            ],
            guardrail_verdicts: counter_vec(
                &r,
                "tollgate_guardrail_verdicts_total",
                "Guardrail verdicts by direction (input, output), action and category.",
                &["direction", "action", "category"],
            ),
            guardrails: HandleCache::default(),
            budget_rejections: counter_vec(
                &r,
                "tollgate_budget_rejections_total",
                "Calls refused for money: insufficient_balance and budget_exceeded (402), tenant_frozen (403).",
                &["code"],
            ),
            budget: HandleCache::default(),
            limit_rejections: counter_vec(
                &r,
                "tollgate_rate_limit_rejections_total",
                "Calls refused by a rate limit, by the limit that fired: scope (key, model, tenant) and kind (rps, rpm, rpd, tpm, tpd, concurrency).",
                &["scope", "limit"],
            ),
            limits: HandleCache::default(),
            upstream_attempts: counter_vec(
                &r,
                "tollgate_upstream_attempts_total",
                "Upstream attempts (retries and failovers included) by provider, status (0: no HTTP answer) and error code (empty: success).",
                &["provider", "status", "code"],
            ),
            attempts: HandleCache::default(),
            config_version: gauge(
                &r,
                "tollgate_config_version",
                "Configuration snapshot version served (0: none yet).",
            ),
            config_sync_connected: gauge(
                &r,
                "tollgate_config_sync_connected",
                "1 while subscribed to the control plane, else 0 (always 0 with a config file).",
            ),
            spool_records: gauge(
                &r,
                "tollgate_usage_spool_records",
                "Usage records in the durable spool not yet acknowledged by the control plane.",
            ),
            spool_bytes: gauge(
                &r,
                "tollgate_usage_spool_bytes",
                "Bytes of usage spool segment files on disk.",
            ),
            spool_refused: gauge(
                &r,
                "tollgate_usage_spool_refused_records",
                "Usage records refused since start because the spool was full.",
            ),
            leases: gauge(
                &r,
                "tollgate_billing_leases",
                "Tenant balance leases held by this data plane.",
            ),
            lease_available: gauge_vec(
                &r,
                "tollgate_billing_lease_available_micros",
                "Spendable micro-dollars left in leases (per tenant with the tenant label, else summed).",
                &with_tenant(&[]),
            ),
            breaker_state: gauge_vec(
                &r,
                "tollgate_upstream_breaker_state",
                "Circuit breaker per provider and upstream model: 0 closed, 1 half-open, 2 open.",
                &["provider", "upstream_model"],
            ),
            in_flight: gauge(
                &r,
                "tollgate_requests_in_flight",
                "Calls being served now.",
            ),
            registry: r,
        }
    }

    /// The handles of one call's label set.
    pub fn call_series(&self, parts: &[&str; 5]) -> CallSeries {
        let [endpoint, model, provider, status, tenant] = *parts;
        let requests = if self.tenant_label {
            self.requests
                .with_label_values(&[endpoint, model, provider, status, tenant])
        } else {
            self.requests
                .with_label_values(&[endpoint, model, provider, status])
        };
        let token = |bucket: &str| {
            if self.tenant_label {
                self.tokens
                    .with_label_values(&[model, provider, bucket, tenant])
            } else {
                self.tokens.with_label_values(&[model, provider, bucket])
            }
        };
        CallSeries {
            requests,
            duration: self
                .duration
                .with_label_values(&[endpoint, model, provider]),
            ttft: self.ttft.with_label_values(&[endpoint, model, provider]),
            tokens: TOKEN_BUCKETS.map(token),
            cost: if self.tenant_label {
                self.cost.with_label_values(&[model, provider, tenant])
            } else {
                self.cost.with_label_values(&[model, provider])
            },
        }
    }

    pub fn guardrail_counter(&self, parts: &[&str; 3]) -> IntCounter {
        self.guardrail_verdicts.with_label_values(parts)
    }

    pub fn budget_counter(&self, code: &str) -> IntCounter {
        self.budget_rejections.with_label_values(&[code])
    }

    pub fn limit_counter(&self, parts: &[&str; 2]) -> IntCounter {
        self.limit_rejections.with_label_values(parts)
    }

    pub fn attempt_counter(&self, parts: &[&str; 3]) -> IntCounter {
        self.upstream_attempts.with_label_values(parts)
    }
}

static METRICS: LazyLock<Metrics> =
    LazyLock::new(|| Metrics::new(OPTIONS.get().copied().unwrap_or_default()));

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}
