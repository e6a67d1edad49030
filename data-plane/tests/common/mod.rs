//! Test harness: a data plane started in-process (prepare + run on its own
//! thread) on port 0, stopped when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use tollgate_dp::{ConfigSourceSpec, DataPlaneConfig};

pub const KEY: &str = "tg-acme-test-key";
pub const OTHER_KEY: &str = "tg-other-test-key";
pub const UPSTREAM_KEY: &str = "sk-upstream-test-5e1f9a7c";

pub struct TestDp {
    pub url: String,
    /// Removed when the data plane is dropped (None: the test owns it).
    pub dir: Option<tempfile::TempDir>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestDp {
    /// Starts a data plane configured by `yaml`; `tweak` adjusts the config.
    pub fn start_yaml(yaml: &str, tweak: impl FnOnce(&mut DataPlaneConfig)) -> TestDp {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut config =
            DataPlaneConfig::new("127.0.0.1:0".parse().unwrap(), ConfigSourceSpec::File(path));
        config.threads = 2;
        tweak(&mut config);
        Self::start_in(config, Some(dir))
    }

    pub fn start_in(config: DataPlaneConfig, dir: Option<tempfile::TempDir>) -> TestDp {
        let dp = tollgate_dp::prepare(config).expect("data plane prepares");
        let url = dp.url.clone();
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::spawn(move || dp.run(stop_rx));
        TestDp {
            url,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops and waits; returns what `run` returned.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_inner().unwrap()
    }

    fn stop_inner(&mut self) -> Option<anyhow::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        self.thread
            .take()
            .map(|t| t.join().expect("data plane thread"))
    }
}

impl Drop for TestDp {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Tenant `acme` (provider `up` → `base_url` with UPSTREAM_KEY, model
/// `gpt-test` → `mock-small`, extra models for failures, built-in mock model
/// `local`) and tenant `other` with model `secret-model`.
pub fn gateway_yaml(base_url: &str) -> String {
    format!(
        r#"
tenants:
  - name: acme
    id: tn_acme
    providers:
      - name: up
        kind: openai
        base_url: {base_url}
        api_key: {UPSTREAM_KEY}
      - name: builtin
        kind: mock
      - name: dead
        kind: openai
        base_url: http://127.0.0.1:9/v1
        api_key: sk-dead-000000000000
    models:
      - name: gpt-test
        provider: up
        upstream_model: mock-small
      - name: failing
        provider: up
        upstream_model: mock-error-500
      - name: bad-request
        provider: up
        upstream_model: mock-error-400
      - name: limited
        provider: up
        upstream_model: mock-error-429
      - name: slow
        provider: up
        upstream_model: mock-slow-3000
      - name: dropping
        provider: up
        upstream_model: mock-drop-after-3
      - name: local
        provider: builtin
        upstream_model: mock-small
      - name: dead-model
        provider: dead
    keys:
      - name: backend
        key: {KEY}
      - name: old
        key: tg-expired-key
        expires_at_ms: 1000
  - name: other
    id: tn_other
    providers:
      - name: m
        kind: mock
    models:
      - name: secret-model
        provider: m
    keys:
      - name: k
        key: {OTHER_KEY}
  - name: frozen
    active: false
    providers: []
    keys:
      - name: k
        key: tg-frozen-key
"#
    )
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The `data` payloads of an SSE body.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// The complete events (`data: ...\n\n`) of an SSE body.
pub fn sse_events(body: &str) -> Vec<String> {
    body.split_inclusive("\n\n").map(str::to_owned).collect()
}
