//! The gateways the feature comparisons run against, and the feature
//! settings themselves: a setting is a (gateway process, model, caller key)
//! triple, so most features are compared inside one warm process by calling
//! a different model, and only what needs a different process (the access
//! log, OTLP export, a control plane) gets its own.
//!
//! Used by the interleaved wall-clock A/B rounds (`ab.rs`) and by the
//! instruction counts under callgrind (`icount.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::process::Command;

use crate::suite::{
    Running, CACHED_MODEL, CACHE_MISS_MODEL, GATEWAY_KEY, LIMITED_MODEL, MODEL, ROUTED_MODEL,
    UPSTREAM_KEY,
};

/// A gateway process of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcKind {
    /// `--config` YAML, `RUST_LOG=warn`: no control plane, so no usage
    /// records, leases or quota slices.
    Yaml,
    /// The same with the JSON access log on (to a file).
    AccessLog,
    /// The same with `--otlp-endpoint` (only when the suite is given one).
    Otlp,
    /// `--cp`: configured by a real `tollgate-cp`; every call is metered
    /// (usage record into the durable spool, batched to the CP).
    Cp,
}

impl ProcKind {
    pub fn describe(self) -> &'static str {
        match self {
            ProcKind::Yaml => "static YAML config, RUST_LOG=warn",
            ProcKind::AccessLog => {
                "static YAML config, RUST_LOG=warn,access=info --log-format json"
            }
            ProcKind::Otlp => "static YAML config, --otlp-endpoint",
            ProcKind::Cp => "control plane (--cp, --data-dir: metering + spool), RUST_LOG=warn",
        }
    }
}

/// Which caller key a setting sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyRole {
    /// The YAML key, or the CP key without a budget.
    Plain,
    /// The CP key with a budget of its own (a key lease besides the tenant's).
    Budgeted,
}

/// One row of the feature comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub id: &'static str,
    pub name: &'static str,
    pub proc: ProcKind,
    pub model: &'static str,
    pub key: KeyRole,
    /// The setting this one is compared against (`None`: the baseline).
    pub baseline: Option<&'static str>,
    /// Issue budget: most it may cost, in percent (`None`: informational).
    pub budget_pct: Option<f64>,
}

/// Models the control-plane tenant has (besides [`MODEL`]).
pub const CP_BILLED_MODEL: &str = "bench-billed";
pub const CP_LIMITED_MODEL: &str = "bench-limited";
pub const CP_GUARDED_MODEL: &str = "bench-guarded";
pub const CP_ALL_MODEL: &str = "bench-all";

/// The feature rows, baseline first. `otlp` adds the OTLP row.
pub fn settings(otlp: bool, cp: bool) -> Vec<Setting> {
    let mut v = vec![
        Setting {
            id: "plain",
            name: "DP plain (static config, no control plane)",
            proc: ProcKind::Yaml,
            model: MODEL,
            key: KeyRole::Plain,
            baseline: None,
            budget_pct: None,
        },
        Setting {
            id: "route50",
            name: "route of 50 weighted targets (vs 1)",
            proc: ProcKind::Yaml,
            model: ROUTED_MODEL,
            key: KeyRole::Plain,
            baseline: Some("plain"),
            budget_pct: Some(2.0),
        },
        Setting {
            id: "cache-miss",
            name: "response cache on, every call a miss (hash + lookup)",
            proc: ProcKind::Yaml,
            model: CACHE_MISS_MODEL,
            key: KeyRole::Plain,
            baseline: Some("plain"),
            budget_pct: Some(2.0),
        },
        Setting {
            id: "cache-hit",
            name: "response cache on, every call a hit (no upstream)",
            proc: ProcKind::Yaml,
            model: CACHED_MODEL,
            key: KeyRole::Plain,
            baseline: Some("plain"),
            budget_pct: None,
        },
        Setting {
            id: "limits",
            name: "rate limits RPM + TPM + concurrency on the model (static config, local)",
            proc: ProcKind::Yaml,
            model: LIMITED_MODEL,
            key: KeyRole::Plain,
            baseline: Some("plain"),
            budget_pct: Some(3.0),
        },
        Setting {
            id: "access-log",
            name: "telemetry: JSON access log to a file (metrics are always on)",
            proc: ProcKind::AccessLog,
            model: MODEL,
            key: KeyRole::Plain,
            baseline: Some("plain"),
            budget_pct: Some(5.0),
        },
    ];
    if otlp {
        v.push(Setting {
            id: "otlp",
            name: "telemetry: OTLP traces (--otlp-endpoint)",
            proc: ProcKind::Otlp,
            model: MODEL,
            key: KeyRole::Plain,
            baseline: Some("plain"),
            budget_pct: Some(5.0),
        });
    }
    if cp {
        v.extend([
            Setting {
                id: "cp-metering",
                name: "metering: usage record + durable spool (via the control plane, model unpriced)",
                proc: ProcKind::Cp,
                model: MODEL,
                key: KeyRole::Plain,
                baseline: Some("plain"),
                budget_pct: Some(5.0),
            },
            Setting {
                id: "cp-billed",
                name: "metering + budget leases (priced model, tenant balance lease + key budget lease)",
                proc: ProcKind::Cp,
                model: CP_BILLED_MODEL,
                key: KeyRole::Budgeted,
                baseline: Some("plain"),
                budget_pct: Some(5.0),
            },
            Setting {
                id: "cp-limits",
                name: "rate limits RPM + TPM + concurrency on the model (CP quota slices)",
                proc: ProcKind::Cp,
                model: CP_LIMITED_MODEL,
                key: KeyRole::Plain,
                baseline: Some("cp-metering"),
                budget_pct: Some(3.0),
            },
            Setting {
                id: "cp-guardrails",
                name: "guardrails: keywords + regex (input) + PII redact (both ways)",
                proc: ProcKind::Cp,
                model: CP_GUARDED_MODEL,
                key: KeyRole::Plain,
                baseline: Some("cp-metering"),
                budget_pct: Some(5.0),
            },
            Setting {
                id: "cp-all",
                name: "metering + budget leases + rate limits (the CPU target's setting)",
                proc: ProcKind::Cp,
                model: CP_ALL_MODEL,
                key: KeyRole::Budgeted,
                baseline: Some("plain"),
                budget_pct: None,
            },
        ]);
    }
    v
}

/// The processes the settings need, in order of first use.
pub fn procs_of(settings: &[Setting]) -> Vec<ProcKind> {
    let mut v: Vec<ProcKind> = Vec::new();
    for s in settings {
        if !v.contains(&s.proc) {
            v.push(s.proc);
        }
    }
    v
}

/// Where the binaries are and how the gateways are started.
#[derive(Debug, Clone, Serialize)]
pub struct FleetOptions {
    pub dp_bin: PathBuf,
    /// `tollgate-cp` and the `tollgate` CLI; without both the CP rows are
    /// skipped.
    pub cp_bin: Option<PathBuf>,
    pub cli_bin: Option<PathBuf>,
    pub dp_threads: usize,
    pub otlp_endpoint: Option<String>,
    /// Only these settings (by id), with the baselines they compare
    /// against; empty = all.
    pub only: Vec<String>,
}

impl FleetOptions {
    pub fn has_cp(&self) -> bool {
        self.cp_bin.is_some() && self.cli_bin.is_some()
    }

    pub fn settings(&self) -> Vec<Setting> {
        only(
            settings(self.otlp_endpoint.is_some(), self.has_cp()),
            &self.only,
        )
    }
}

/// The settings named in `ids` and the baselines they compare against
/// (transitively), in their usual order; all of them when `ids` is empty.
pub fn only(all: Vec<Setting>, ids: &[String]) -> Vec<Setting> {
    if ids.is_empty() {
        return all;
    }
    let mut keep: Vec<&str> = ids.iter().map(String::as_str).collect();
    loop {
        let more: Vec<&str> = all
            .iter()
            .filter(|s| keep.contains(&s.id))
            .filter_map(|s| s.baseline)
            .filter(|b| !keep.contains(b))
            .collect();
        if more.is_empty() {
            break;
        }
        keep.extend(more);
    }
    all.into_iter().filter(|s| keep.contains(&s.id)).collect()
}

/// A running control plane with the bench tenant set up.
pub struct Cp {
    proc: Running,
    pub url: String,
    pub dp_token_file: PathBuf,
    pub plain_key: String,
    pub budgeted_key: String,
}

impl Cp {
    pub async fn stop(self) {
        self.proc.stop().await;
    }
}

/// The mock, the YAML config, and the CP when there is one.
pub struct Fleet {
    pub opts: FleetOptions,
    pub mock_url: String,
    pub config: PathBuf,
    pub work: PathBuf,
    pub cp: Option<Cp>,
}

/// How a gateway is run: natively, or under a valgrind tool.
#[derive(Debug, Clone)]
pub enum Under {
    Native,
    /// `valgrind <args…> tollgate-dp …`.
    Valgrind(Vec<String>),
}

impl Fleet {
    /// Starts the control plane (when the options have one) and sets up its
    /// tenant: the mock as provider, the models of [`settings`], a price, a
    /// balance, limits, a guardrail policy and two keys.
    pub async fn start(
        opts: &FleetOptions,
        mock_url: &str,
        config: &Path,
        work: &Path,
    ) -> anyhow::Result<Fleet> {
        let cp = match (&opts.cp_bin, &opts.cli_bin) {
            (Some(cp), Some(cli)) => Some(start_cp(cp, cli, mock_url, work).await?),
            _ => None,
        };
        Ok(Fleet {
            opts: opts.clone(),
            mock_url: mock_url.to_string(),
            config: config.to_path_buf(),
            work: work.to_path_buf(),
            cp,
        })
    }

    /// The caller key of a setting on a process.
    pub fn key(&self, proc: ProcKind, role: KeyRole) -> anyhow::Result<&str> {
        match (proc, &self.cp) {
            (ProcKind::Cp, Some(cp)) => Ok(match role {
                KeyRole::Plain => &cp.plain_key,
                KeyRole::Budgeted => &cp.budgeted_key,
            }),
            (ProcKind::Cp, None) => bail!("no control plane"),
            _ => Ok(GATEWAY_KEY),
        }
    }

    /// Starts one gateway process of `kind`; `tag` names its files.
    pub async fn start_dp(
        &self,
        kind: ProcKind,
        under: &Under,
        tag: &str,
    ) -> anyhow::Result<Running> {
        let mut cmd = match under {
            Under::Native => Command::new(&self.opts.dp_bin),
            Under::Valgrind(args) => {
                let mut c = Command::new("valgrind");
                c.args(args).arg(&self.opts.dp_bin);
                c
            }
        };
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--threads")
            .arg(self.opts.dp_threads.to_string());
        let mut rust_log = "warn";
        match kind {
            ProcKind::Yaml => {
                cmd.arg("--config").arg(&self.config);
            }
            ProcKind::AccessLog => {
                cmd.arg("--config")
                    .arg(&self.config)
                    .arg("--log-format")
                    .arg("json");
                rust_log = "warn,access=info";
            }
            ProcKind::Otlp => {
                let endpoint = self
                    .opts
                    .otlp_endpoint
                    .as_deref()
                    .context("no --otlp-endpoint")?;
                cmd.arg("--config")
                    .arg(&self.config)
                    .arg("--otlp-endpoint")
                    .arg(endpoint);
            }
            ProcKind::Cp => {
                let cp = self.cp.as_ref().context("no control plane")?;
                let data = self.dp_data_dir(tag);
                std::fs::create_dir_all(&data)?;
                cmd.arg("--cp")
                    .arg(&cp.url)
                    .arg("--token-file")
                    .arg(&cp.dp_token_file)
                    .arg("--data-dir")
                    .arg(&data)
                    .arg("--node-id")
                    .arg(format!("bench-{tag}"));
            }
        }
        cmd.env("RUST_LOG", rust_log);
        let within = match under {
            Under::Native => Duration::from_secs(60),
            Under::Valgrind(_) => Duration::from_secs(300),
        };
        Running::spawn_within(
            cmd,
            "tollgate-dp ready:",
            &self.work.join(format!("dp-{tag}.log")),
            within,
        )
        .await
        .with_context(|| format!("start tollgate-dp ({})", kind.describe()))
    }

    /// The `--data-dir` of a CP-configured gateway started with `tag`.
    pub fn dp_data_dir(&self, tag: &str) -> PathBuf {
        self.work.join(format!("dp-data-{tag}"))
    }

    pub async fn stop(self) {
        if let Some(cp) = self.cp {
            cp.stop().await;
        }
    }
}

/// The `tollgate` CLI with the CP's URL and operator token.
struct Admin<'a> {
    bin: &'a Path,
    url: &'a str,
    token: &'a str,
}

impl Admin<'_> {
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        cli(self.bin, self.url, self.token, args).await
    }
}

/// Runs the `tollgate` CLI against the CP; returns its stdout.
async fn cli(bin: &Path, cp_url: &str, admin_token: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .arg("--cp")
        .arg(cp_url)
        .arg("--json")
        .args(args)
        .env("TOLLGATE_ADMIN_TOKEN", admin_token)
        .env("BENCH_UPSTREAM_KEY", UPSTREAM_KEY)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("run {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "tollgate {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn key_secret(json: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_str(json).context("key create --json")?;
    v.get("secret")
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .context("no secret in key create --json")
}

/// The realistic guardrail policy of the guardrails row.
const GUARDRAILS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "deny-words",
        "keyword",
        "block",
        "input",
        r#"{"words":["project zeus","internal only","confidential roadmap","do not distribute","jailbreak"]}"#,
    ),
    (
        "deny-patterns",
        "regex",
        "block",
        "input",
        r#"{"patterns":["(?i)ignore (all )?previous instructions","(?i)\\bpassword\\s*[:=]","\\b[A-Z]{2}\\d{2}-SECRET\\b"]}"#,
    ),
    ("pii", "pii", "redact", "both", r#"{"types":[]}"#),
];

async fn start_cp(
    cp_bin: &Path,
    cli_bin: &Path,
    mock_url: &str,
    work: &Path,
) -> anyhow::Result<Cp> {
    let data = work.join("cp-data");
    std::fs::create_dir_all(&data)?;
    let mut cmd = Command::new(cp_bin);
    cmd.arg("--data-dir")
        .arg(&data)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .env_remove("TOLLGATE_DP_TOKEN")
        .env_remove("TOLLGATE_MASTER_KEY");
    let proc = Running::spawn(cmd, "tollgate-cp ready:", &work.join("cp.log"))
        .await
        .context("start tollgate-cp")?;
    let url = proc.url.clone();
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .context("read the CP's admin.token")?
        .trim()
        .to_string();
    let a = Admin {
        bin: cli_bin,
        url: &url,
        token: &admin,
    };
    eprintln!("  control plane {url}: setting up the bench tenant");
    a.run(&["tenant", "create", "bench"]).await?;
    a.run(&[
        "provider",
        "add",
        "--tenant",
        "bench",
        "--name",
        "mock",
        "--kind",
        "openai",
        "--base-url",
        mock_url,
        "--api-key-env",
        "BENCH_UPSTREAM_KEY",
    ])
    .await?;
    for m in [
        MODEL,
        CP_BILLED_MODEL,
        CP_LIMITED_MODEL,
        CP_GUARDED_MODEL,
        CP_ALL_MODEL,
    ] {
        a.run(&[
            "model",
            "add",
            "--tenant",
            "bench",
            "--name",
            m,
            "--provider",
            "mock",
            "--upstream-model",
            MODEL,
        ])
        .await?;
    }
    for m in [CP_BILLED_MODEL, CP_ALL_MODEL] {
        a.run(&[
            "price", "set", "--tenant", "bench", "--model", m, "--input", "2.50", "--output", "10",
        ])
        .await?;
    }
    a.run(&["topup", "--tenant", "bench", "--amount", "1000000"])
        .await?;
    for m in [CP_LIMITED_MODEL, CP_ALL_MODEL] {
        a.run(&[
            "limit",
            "set",
            "--tenant",
            "bench",
            "--model",
            m,
            "--rpm",
            "1000000000",
            "--tpm",
            "1000000000000",
            "--concurrency",
            "100000",
        ])
        .await?;
    }
    for (name, kind, action, direction, settings) in GUARDRAILS {
        a.run(&[
            "guardrail",
            "add",
            "--tenant",
            "bench",
            "--name",
            name,
            "--kind",
            kind,
            "--action",
            action,
            "--direction",
            direction,
            "--settings",
            settings,
        ])
        .await?;
        a.run(&[
            "guardrail",
            "attach",
            "--tenant",
            "bench",
            "--name",
            name,
            "--model",
            CP_GUARDED_MODEL,
        ])
        .await?;
    }
    let plain_key = key_secret(
        &a.run(&["key", "create", "--tenant", "bench", "--name", "plain"])
            .await?,
    )?;
    let budgeted_key = key_secret(
        &a.run(&["key", "create", "--tenant", "bench", "--name", "budgeted"])
            .await?,
    )?;
    a.run(&[
        "budget", "set", "--tenant", "bench", "--key", "budgeted", "--period", "month", "--amount",
        "100000",
    ])
    .await?;
    Ok(Cp {
        proc,
        url,
        dp_token_file: data.join("dp.token"),
        plain_key,
        budgeted_key,
    })
}

/// Sends one call of `model` until it succeeds (a CP-configured gateway
/// answers 404 until its first snapshot arrives), up to `within`.
pub async fn wait_serving(
    target: &crate::client::Target,
    model: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        match crate::client::Conn::open(target.addr).await {
            Ok(mut conn) => {
                match conn
                    .exchange(target.chat_request(crate::client::chat_body(model, false))?)
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("{e:#}"),
                }
            }
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{model} not served within {within:?}: {last}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_names_an_earlier_baseline_and_ids_are_unique() {
        let all = settings(true, true);
        assert_eq!(all[0].baseline, None);
        for (i, s) in all.iter().enumerate() {
            assert!(all.iter().filter(|o| o.id == s.id).count() == 1, "{}", s.id);
            if let Some(b) = s.baseline {
                let pos = all.iter().position(|o| o.id == b).unwrap();
                assert!(pos < i, "{} compares against a later row", s.id);
            }
        }
        assert!(!settings(false, false)
            .iter()
            .any(|s| s.proc == ProcKind::Cp));
        assert!(!settings(false, true)
            .iter()
            .any(|s| s.proc == ProcKind::Otlp));
        assert_eq!(
            procs_of(&settings(false, true)),
            vec![ProcKind::Yaml, ProcKind::AccessLog, ProcKind::Cp]
        );
    }

    #[test]
    fn only_keeps_the_named_settings_and_their_baselines() {
        let ids = |v: Vec<Setting>| v.iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(
            ids(only(settings(false, true), &[])),
            ids(settings(false, true))
        );
        assert_eq!(
            ids(only(settings(false, true), &["limits".into()])),
            vec!["plain", "limits"]
        );
        // cp-guardrails compares against cp-metering, which compares
        // against plain.
        assert_eq!(
            ids(only(settings(false, true), &["cp-guardrails".into()])),
            vec!["plain", "cp-metering", "cp-guardrails"]
        );
    }

    #[test]
    fn key_secret_reads_the_cli_json() {
        assert_eq!(
            key_secret(r#"{"id":"k1","name":"plain","secret":"tg-abc"}"#).unwrap(),
            "tg-abc"
        );
        assert!(key_secret("{}").is_err());
    }
}
