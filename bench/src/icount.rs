//! Instructions per proxied request, counted by callgrind: deterministic
//! enough to check 2–5 % feature budgets on a machine other people are
//! compiling on, where wall-clock throughput moves by ±20 %.
//!
//! Each gateway process runs under `valgrind --tool=callgrind` (the mock
//! and the load generator run natively and are not counted). For each
//! setting, after a warm-up, the counters are zeroed, N calls are sent and
//! the counters dumped (`callgrind_control -z` / `-d`), then the same with
//! 2N calls. Instructions per request = (Ir(2N) − Ir(N) − idle) / N: the
//! difference cancels whatever a window costs regardless of its calls, and
//! `idle` is what the process executes with no calls over the extra wall
//! time (timers, background tasks; measured first, in an idle window).
//! Counts are user-space instructions of every gateway thread; the kernel's
//! share (TCP on loopback, syscalls) is not in them.
//!
//! A metered (CP-configured) gateway reports usage in the background: the
//! idle window starts only once the warm-up's usage is reported, and each
//! window lasts until its own calls' usage is (`crate::drain`), so every
//! window holds exactly the metering work of its calls.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::client::{chat_body, Conn, Target};
use crate::drain::{Drained, UsageDrain};
use crate::fleet::{procs_of, wait_serving, Fleet, ProcKind, Setting, Under};

/// How many calls each window sends, and how often.
#[derive(Debug, Clone, Serialize)]
pub struct IcountOptions {
    /// N: the first window sends N calls, the second 2N.
    pub requests: u64,
    /// Pairs of windows per setting (the spread shows what is left of the
    /// noise).
    pub repeats: usize,
    /// Calls in flight at once.
    pub conns: usize,
    /// Unmeasured calls before the first window of each setting.
    pub warmup: u64,
    /// Length of the idle window.
    pub idle_secs: f64,
}

/// Warm-up calls before a setting is measured. A route of many targets
/// gets at least 10 per target: each target's first calls build lazy state
/// (e.g. its metric series), which must not land in a measured window.
fn warmup_calls(s: &Setting, opts: &IcountOptions) -> u64 {
    if s.model == crate::suite::ROUTED_MODEL {
        opts.warmup.max(10 * crate::suite::ROUTED_TARGETS as u64)
    } else {
        opts.warmup
    }
}

/// One pair of windows.
#[derive(Debug, Clone, Serialize)]
pub struct IcountWindowPair {
    pub ir_n: u64,
    pub ir_2n: u64,
    pub secs_n: f64,
    pub secs_2n: f64,
    pub ir_per_request: f64,
}

/// Instructions per request of one setting.
#[derive(Debug, Clone, Serialize)]
pub struct IcountRow {
    pub id: String,
    pub name: String,
    pub proc: ProcKind,
    pub model: String,
    pub baseline: Option<String>,
    pub budget_pct: Option<f64>,
    pub pairs: Vec<IcountWindowPair>,
    /// Median over the pairs, and the spread.
    pub ir_per_request: f64,
    pub ir_min: f64,
    pub ir_max: f64,
    /// (this / baseline − 1) × 100, medians.
    pub vs_baseline_pct: Option<f64>,
    pub error: Option<String>,
}

/// Everything the instruction counts measured.
#[derive(Debug, Clone, Serialize)]
pub struct IcountReport {
    pub options: IcountOptions,
    /// Instructions per wall second each process ran with no calls.
    pub idle_ir_per_sec: Vec<(ProcKind, f64)>,
    pub rows: Vec<IcountRow>,
}

/// Median, min and max of a non-empty list (0s for an empty one).
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    (median, v[0], v[v.len() - 1])
}

/// `(Ir(2N) − Ir(N) − idle rate × (t(2N) − t(N))) / N`.
pub fn per_request(pair: (u64, u64), secs: (f64, f64), idle_per_sec: f64, n: u64) -> f64 {
    let extra = pair.1 as f64 - pair.0 as f64 - idle_per_sec * (secs.1 - secs.0).max(0.0);
    extra / n.max(1) as f64
}

/// The total instruction count of a callgrind output file (`totals:` or
/// `summary:` line).
pub fn parse_totals(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix("totals:")
            .or_else(|| l.strip_prefix("summary:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    })
}

/// A gateway under callgrind, and the dump files already read.
struct Counted {
    pid: u32,
    dir: PathBuf,
    prefix: String,
    seen: HashSet<PathBuf>,
}

async fn callgrind_control(flag: &str, pid: u32) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("run callgrind_control (valgrind installed?)")?;
    if !out.status.success() {
        bail!(
            "callgrind_control {flag} {pid}: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Counted {
    async fn zero(&self) -> anyhow::Result<()> {
        callgrind_control("-z", self.pid).await
    }

    /// Dumps the counters and returns the instructions since the last zero.
    async fn dump(&mut self) -> anyhow::Result<u64> {
        callgrind_control("-d", self.pid).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut fresh = Vec::new();
            for entry in std::fs::read_dir(&self.dir)? {
                let path = entry?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with(&self.prefix) && !self.seen.contains(&path) {
                    fresh.push(path);
                }
            }
            for path in fresh {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if let Some(total) = parse_totals(&text) {
                    self.seen.insert(path);
                    return Ok(total);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "no callgrind dump of pid {} in {}",
                    self.pid,
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends exactly `n` calls over `conns` connections; returns the wall time.
pub async fn send_calls(
    target: &Target,
    body: bytes::Bytes,
    conns: usize,
    n: u64,
) -> anyhow::Result<f64> {
    let left = Arc::new(AtomicU64::new(n));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        let (target, body, left) = (target.clone(), body.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(target.addr).await?;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                .is_ok()
            {
                conn.exchange(target.chat_request(body.clone())?).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Longest wait for a metered gateway's usage to be reported.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Notes `calls` successful calls on a metered gateway.
fn note_calls(usage: &mut Option<UsageDrain>, calls: u64) {
    if let Some(u) = usage {
        u.sent(calls);
    }
}

/// Waits until a metered gateway has reported the usage of every call
/// sent so far (nothing to wait for on the others).
async fn drained(usage: &Option<UsageDrain>) -> anyhow::Result<()> {
    let Some(u) = usage else { return Ok(()) };
    match u.wait(DRAIN_TIMEOUT).await {
        Drained::Yes { .. } => Ok(()),
        Drained::TimedOut { acked, expected } => bail!(
            "usage spool not drained within {DRAIN_TIMEOUT:?}: the control plane stored \
             {acked} of {expected} records"
        ),
    }
}

/// One measured window: `n` calls, then (metered gateway) until their usage
/// is reported, so the window holds the whole cost of its calls. Returns
/// the wall time of both.
async fn window(
    target: &Target,
    body: bytes::Bytes,
    conns: usize,
    n: u64,
    usage: &mut Option<UsageDrain>,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    send_calls(target, body, conns, n).await?;
    note_calls(usage, n);
    drained(usage).await?;
    Ok(start.elapsed().as_secs_f64())
}

fn valgrind_args(dir: &Path, prefix: &str) -> Vec<String> {
    vec![
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}/{prefix}", dir.display()),
        "--dump-instr=no".into(),
        "--dump-line=no".into(),
    ]
}

/// Counts every setting of the fleet, one gateway process under callgrind
/// at a time.
pub async fn run(
    fleet: &Fleet,
    settings: &[Setting],
    opts: &IcountOptions,
) -> anyhow::Result<IcountReport> {
    let dir = fleet.work.join("callgrind");
    std::fs::create_dir_all(&dir)?;
    let mut rows: Vec<IcountRow> = Vec::new();
    let mut idle_rates = Vec::new();
    for kind in procs_of(settings) {
        let tag = format!("icount-{kind:?}").to_lowercase();
        let prefix = format!("cg-{tag}.out");
        eprintln!("  callgrind: starting a gateway ({})", kind.describe());
        let dp = fleet
            .start_dp(kind, &Under::Valgrind(valgrind_args(&dir, &prefix)), &tag)
            .await?;
        let mut counted = Counted {
            pid: dp.pid,
            dir: dir.clone(),
            prefix: prefix.clone(),
            seen: HashSet::new(),
        };
        // A metered gateway reports usage in the background, batched for up
        // to a second: each window waits until its calls' usage is reported.
        let mut usage = (kind == ProcKind::Cp).then(|| UsageDrain::new(&fleet.dp_data_dir(&tag)));
        let outcome = async {
            let url = format!("{}/v1", dp.url.trim_end_matches('/'));
            let mine: Vec<&Setting> = settings.iter().filter(|s| s.proc == kind).collect();
            // Serving, and warm: first calls load lazily-built state.
            for s in &mine {
                let target = Target::new("dp", &url, fleet.key(kind, s.key)?)?;
                wait_serving(&target, s.model, Duration::from_secs(120)).await?;
                let warm = warmup_calls(s, opts);
                send_calls(&target, chat_body(s.model, false), opts.conns, warm).await?;
                note_calls(&mut usage, 1 + warm);
            }
            // Idle means idle: the warm-up calls' usage is reported first.
            drained(&usage).await?;
            counted.zero().await?;
            let idle_start = Instant::now();
            tokio::time::sleep(Duration::from_secs_f64(opts.idle_secs)).await;
            let idle_ir = counted.dump().await?;
            let idle_rate = idle_ir as f64 / idle_start.elapsed().as_secs_f64().max(1e-9);
            idle_rates.push((kind, idle_rate));
            for s in mine {
                eprintln!(
                    "  callgrind: {} ({} + {} calls × {})",
                    s.name,
                    opts.requests,
                    2 * opts.requests,
                    opts.repeats
                );
                let target = Target::new("dp", &url, fleet.key(kind, s.key)?)?;
                let body = chat_body(s.model, false);
                let measured = async {
                    // Warm again: the settings before this one ran since.
                    let warm = warmup_calls(s, opts);
                    send_calls(&target, body.clone(), opts.conns, warm).await?;
                    note_calls(&mut usage, warm);
                    drained(&usage).await?;
                    let mut pairs = Vec::new();
                    for _ in 0..opts.repeats {
                        counted.zero().await?;
                        let secs_n =
                            window(&target, body.clone(), opts.conns, opts.requests, &mut usage)
                                .await?;
                        let ir_n = counted.dump().await?;
                        counted.zero().await?;
                        let secs_2n = window(
                            &target,
                            body.clone(),
                            opts.conns,
                            2 * opts.requests,
                            &mut usage,
                        )
                        .await?;
                        let ir_2n = counted.dump().await?;
                        pairs.push(IcountWindowPair {
                            ir_n,
                            ir_2n,
                            secs_n,
                            secs_2n,
                            ir_per_request: per_request(
                                (ir_n, ir_2n),
                                (secs_n, secs_2n),
                                idle_rate,
                                opts.requests,
                            ),
                        });
                    }
                    Ok::<_, anyhow::Error>(pairs)
                }
                .await;
                let (pairs, error) = match measured {
                    Ok(p) => (p, None),
                    Err(e) => (Vec::new(), Some(format!("{e:#}"))),
                };
                let per: Vec<f64> = pairs.iter().map(|p| p.ir_per_request).collect();
                let (median, min, max) = spread(&per);
                rows.push(IcountRow {
                    id: s.id.into(),
                    name: s.name.into(),
                    proc: s.proc,
                    model: s.model.into(),
                    baseline: s.baseline.map(Into::into),
                    budget_pct: s.budget_pct,
                    pairs,
                    ir_per_request: median,
                    ir_min: min,
                    ir_max: max,
                    vs_baseline_pct: None,
                    error,
                });
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        dp.stop().await;
        outcome.with_context(|| format!("callgrind run of the {kind:?} gateway"))?;
    }
    let medians: Vec<(String, f64)> = rows
        .iter()
        .map(|r| (r.id.clone(), r.ir_per_request))
        .collect();
    for r in &mut rows {
        if let Some(b) = &r.baseline {
            if let Some((_, base)) = medians.iter().find(|(id, _)| id == b) {
                if *base > 0.0 && r.error.is_none() {
                    r.vs_baseline_pct = Some((r.ir_per_request / base - 1.0) * 100.0);
                }
            }
        }
    }
    Ok(IcountReport {
        options: opts.clone(),
        idle_ir_per_sec: idle_rates,
        rows,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn per_request_cancels_fixed_costs_and_idle_time() {
        // 1,000 fixed + 100 per call + 10 per second idle.
        let ir = |calls: u64, secs: f64| 1_000 + 100 * calls + (10.0 * secs) as u64;
        let got = per_request((ir(50, 1.0), ir(100, 2.0)), (1.0, 2.0), 10.0, 50);
        assert!((got - 100.0).abs() < 1e-9, "{got}");
    }

    #[test]
    fn totals_come_from_the_totals_or_summary_line() {
        assert_eq!(
            parse_totals("events: Ir\nfn=x\n1 5\ntotals: 12345\n"),
            Some(12345)
        );
        assert_eq!(parse_totals("summary: 77\n"), Some(77));
        assert_eq!(parse_totals("events: Ir\n"), None);
    }

    #[test]
    fn spread_is_median_min_max() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert_eq!(spread(&[]), (0.0, 0.0, 0.0));
    }
}
