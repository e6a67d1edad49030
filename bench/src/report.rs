//! The Markdown report and the target checks of issue 15.

use std::fmt::Write as _;

use serde::Serialize;

use crate::ab::{AbReport, Spread};
use crate::icount::IcountReport;
use crate::suite::{SuiteOptions, SuiteReport};

/// One target of issue 15 against what this run measured.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    /// `None` when the scenario did not run.
    pub met: Option<bool>,
}

fn check(target: &str, measured: Option<(f64, String)>, ok: impl Fn(f64) -> bool) -> TargetCheck {
    match measured {
        Some((v, text)) => TargetCheck {
            target: target.into(),
            measured: text,
            met: Some(ok(v)),
        },
        None => TargetCheck {
            target: target.into(),
            measured: "not measured".into(),
            met: None,
        },
    }
}

/// A latency the gateway adds, at most `limit` ms. A negative difference
/// means the direct run was the slower one: noise, not a measurement.
fn added_check(target: &str, added_ms: Option<f64>, limit: f64) -> TargetCheck {
    match added_ms {
        Some(v) if v < 0.0 => TargetCheck {
            target: target.into(),
            measured: format!("{v:+.3} ms: direct slower than through the gateway, noise; re-run"),
            met: None,
        },
        other => check(target, other.map(|v| (v, format!("{v:+.3} ms"))), |v| {
            v <= limit
        }),
    }
}

/// Cost of each optional feature against its baseline, each within its own
/// budget (issue targets: 50 route targets and cache hashing on a miss
/// ≤ 2 %, rate limits ≤ 3 %, other features ≤ 5 %). Instructions per
/// request when counted (deterministic), else the wall-clock A/B medians.
pub fn feature_check(ab: Option<&AbReport>, icount: Option<&IcountReport>) -> TargetCheck {
    let target = "each feature within its budget (50 route targets and cache miss ≤ 2%, rate \
                  limits ≤ 3%, others ≤ 5%)";
    let costs: Vec<(String, f64, f64)> = if let Some(ic) = icount {
        ic.rows
            .iter()
            .filter_map(|r| Some((r.id.clone(), r.vs_baseline_pct?, r.budget_pct?)))
            .collect()
    } else if let Some(ab) = ab {
        ab.rows
            .iter()
            .filter_map(|r| Some((r.id.clone(), r.rps_cost_pct?.median, r.budget_pct?)))
            .collect()
    } else {
        Vec::new()
    };
    let unit = if icount.is_some() {
        "instructions per request"
    } else {
        "median throughput (wall clock)"
    };
    // How far the worst feature is over its budget (≤ 0: all within).
    let worst_excess = costs
        .iter()
        .map(|(_, c, max)| c - max)
        .fold(f64::MIN, f64::max);
    let over: Vec<String> = costs
        .iter()
        .filter(|(_, c, max)| c > max)
        .map(|(n, c, max)| format!("{n} {c:+.1}% (budget {max:.0}%)"))
        .collect();
    let text = if over.is_empty() {
        format!("{} features within budget, by {unit}", costs.len())
    } else {
        format!("over budget by {unit}: {}", over.join("; "))
    };
    check(
        target,
        (!costs.is_empty()).then_some((worst_excess, text)),
        |v| v <= 0.0,
    )
}

fn spread_ms(s: &Spread) -> String {
    format!("{:.4} ms ({:.4}–{:.4})", s.median, s.min, s.max)
}

fn spread_pct(s: &Option<Spread>) -> String {
    match s {
        Some(s) => format!("{:+.1}% ({:+.1} to {:+.1})", s.median, s.min, s.max),
        None => "–".into(),
    }
}

fn budget(b: Option<f64>) -> String {
    b.map_or_else(|| "–".into(), |b| format!("≤ {b:.0}%"))
}

/// The wall-clock A/B table.
pub fn ab_markdown(out: &mut String, ab: &AbReport) {
    let o = &ab.options;
    let _ = writeln!(
        out,
        "\n## Features on vs off, wall clock ({} interleaved rounds × {} s, {} connections)\n\n\
         Every gateway runs at once; each round runs every setting once (forward, then backward \
         order). Median over rounds (min–max). Costs are per-round paired ratios against the \
         row's baseline: throughput cost = 1 − rps / baseline rps; CPU = gateway CPU time per \
         request (`/proc/<pid>/stat` over the window) / baseline's − 1.\n\n\
         | Setting | vs | Throughput | Gateway CPU / request | Throughput cost | CPU / request cost | Budget |\n\
         |---|---|---:|---:|---:|---:|---:|",
        o.rounds, o.secs, o.conns
    );
    for r in &ab.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} rps ({:.0}–{:.0}) | {} | {} | {} | {} |{}",
            r.name,
            r.baseline.as_deref().unwrap_or("–"),
            r.rps.median,
            r.rps.min,
            r.rps.max,
            spread_ms(&r.dp_cpu_ms),
            spread_pct(&r.rps_cost_pct),
            spread_pct(&r.cpu_cost_pct),
            budget(r.budget_pct),
            error_note(&r.first_error),
        );
    }
}

/// The instruction-count table.
pub fn icount_markdown(out: &mut String, ic: &IcountReport) {
    let o = &ic.options;
    let _ = writeln!(
        out,
        "\n## Features on vs off, instructions per request (callgrind)\n\n\
         Each gateway process under `valgrind --tool=callgrind`; per setting, after {} warm-up \
         calls, windows of N = {} and 2N calls over {} connections, {} pair(s): \
         (Ir(2N) − Ir(N) − idle Ir over the extra wall time) / N. User-space instructions of all \
         gateway threads (the kernel's TCP and syscall work is not counted). Deterministic to \
         within the spread shown, whatever else runs on the machine.\n\n\
         | Setting | id | vs | Instructions / request | vs baseline | Budget | Met |\n\
         |---|---|---|---:|---:|---:|---|",
        o.warmup, o.requests, o.conns, o.repeats
    );
    for r in &ic.rows {
        let vs = r
            .vs_baseline_pct
            .map_or_else(|| "–".into(), |v| format!("{v:+.2}%"));
        let met = match (r.vs_baseline_pct, r.budget_pct) {
            (Some(v), Some(b)) if v <= b => "yes",
            (Some(_), Some(_)) => "**no**",
            _ => "–",
        };
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {:.0} ({:.0}–{:.0}) | {vs} | {} | {met} |{}",
            r.name,
            r.id,
            r.baseline.as_deref().unwrap_or("–"),
            r.ir_per_request,
            r.ir_min,
            r.ir_max,
            budget(r.budget_pct),
            error_note(&r.error),
        );
    }
    for (kind, rate) in &ic.idle_ir_per_sec {
        let _ = writeln!(
            out,
            "\nIdle {}: {:.0} instructions per wall second under callgrind.",
            kind.describe(),
            rate
        );
    }
}

/// The report of `tollgate-bench features` (feature comparisons only).
pub fn features_markdown(
    o: &SuiteOptions,
    ab: Option<&AbReport>,
    icount: Option<&IcountReport>,
    load: (&str, &str),
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Tollgate features on vs off, {}\n\nLoad average at start `{}`, at end `{}`. Commit `{}`. \
         `tollgate-dp` {} profile, `--threads {}`.",
        o.date.as_deref().unwrap_or("undated"),
        load.0,
        load.1,
        o.commit.as_deref().unwrap_or("unknown"),
        dp_profile(o),
        o.fleet.dp_threads,
    );
    if let Some(ic) = icount {
        icount_markdown(&mut out, ic);
    }
    if let Some(ab) = ab {
        ab_markdown(&mut out, ab);
    }
    let c = feature_check(ab, icount);
    let _ = writeln!(
        out,
        "\n{}: {} — {}",
        c.target,
        c.measured,
        match c.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "not measured",
        }
    );
    out
}

/// Gateway CPU per request of the `cp-all` setting (metering, budget leases
/// and rate limits through a real control plane) in the wall-clock A/B: the
/// median over rounds, each a saturated window with the other gateways idle.
fn cp_all_cpu(ab: Option<&AbReport>) -> Option<f64> {
    ab?.rows
        .iter()
        .find(|r| r.id == "cp-all" && !r.samples.is_empty())
        .map(|r| r.dp_cpu_ms.median)
}

/// The targets of issue 15 (2-core machine, one run).
pub fn target_checks(r: &SuiteReport) -> Vec<TargetCheck> {
    let sat = &r.saturated;
    let at_1000 = r.open_loop.iter().find(|o| o.rate == 1000);
    let added = |f: fn(&crate::load::Latency) -> f64| {
        at_1000.map(|o| f(&o.pair.dp.load.latency) - f(&o.pair.direct.load.latency))
    };
    let ttft_added = r.streams.dp.result.ttft.p50_ms - r.streams.direct.result.ttft.p50_ms;
    let biggest_idle = r
        .idle
        .iter()
        .filter_map(|i| i.result.as_ref().map(|p| (i.streams, &p.dp)))
        .max_by_key(|(n, _)| *n);
    let ten_k = r.idle.iter().find(|i| i.requested >= 10_000);
    let rss_mib = r.memory_after_load.dp.rss_kib as f64 / 1024.0;
    vec![
        check(
            "gateway CPU per non-stream request ≤ 0.08 ms (saturated, plain)",
            Some((sat.dp.cpu.dp_ms, format!("{:.3} ms", sat.dp.cpu.dp_ms))),
            |v| v <= 0.08,
        ),
        check(
            "… with metering, limits and budget leases on (`cp-all`, wall-clock A/B median)",
            cp_all_cpu(r.ab.as_ref()).map(|v| (v, format!("{v:.3} ms"))),
            |v| v <= 0.08,
        ),
        check(
            "saturated throughput through the gateway ≥ 15,000 rps",
            Some((sat.dp.load.rps, format!("{:.0} rps", sat.dp.load.rps))),
            |v| v >= 15_000.0,
        ),
        added_check("added p50 at 1000 rps ≤ 0.25 ms", added(|l| l.p50_ms), 0.25),
        added_check("added p99 at 1000 rps ≤ 0.6 ms", added(|l| l.p99_ms), 0.6),
        added_check(
            "added time to first token p50 ≤ 0.2 ms",
            Some(ttft_added),
            0.2,
        ),
        check(
            "gateway RSS after the load ≤ 64 MiB",
            Some((rss_mib, format!("{rss_mib:.1} MiB"))),
            |v| v <= 64.0,
        ),
        check(
            "≤ 20 KiB gateway RSS per idle open stream",
            biggest_idle.map(|(n, m)| {
                (
                    m.server_kib_per_stream,
                    format!("{:.1} KiB at {n} streams", m.server_kib_per_stream),
                )
            }),
            |v| v <= 20.0,
        ),
        match ten_k.map(|i| (i.streams, i.result.as_ref().map(|p| p.dp.outcome.opened))) {
            Some((n, Some(opened))) if n >= 10_000 => check(
                "10,000 concurrent streams on one gateway",
                Some((opened as f64, format!("{opened} open at once"))),
                |v| v >= 10_000.0,
            ),
            Some((n, opened)) => TargetCheck {
                target: "10,000 concurrent streams on one gateway".into(),
                measured: format!(
                    "not measured: open-file limit; {} of {n} open at once",
                    opened.unwrap_or(0)
                ),
                met: None,
            },
            None => check("10,000 concurrent streams on one gateway", None, |_| true),
        },
        feature_check(r.ab.as_ref(), r.icount.as_ref()),
    ]
}

fn ratio(direct: f64, dp: f64) -> String {
    if direct > 0.0 {
        format!("{:.2}×", dp / direct)
    } else {
        "–".into()
    }
}

fn row(out: &mut String, scenario: &str, metric: &str, direct: f64, dp: f64, unit: &str) {
    let digits = if unit == "rps" || unit == "KiB" || unit == "MiB" {
        0
    } else {
        3
    };
    let _ = writeln!(
        out,
        "| {scenario} | {metric} | {direct:.digits$} {unit} | {dp:.digits$} {unit} | {added:+.digits$} {unit} | {} |",
        ratio(direct, dp),
        added = dp - direct,
    );
}

/// The cargo profile the gateway was built with: the name of the directory
/// under `target/` that holds the binary (`release`, `perf`, `dist`).
fn dp_profile(o: &SuiteOptions) -> String {
    o.dp_bin
        .parent()
        .and_then(|d| d.file_name())
        .map_or_else(|| "unknown".into(), |n| n.to_string_lossy().into_owned())
}

/// The report as Markdown.
pub fn markdown(r: &SuiteReport) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let o = &r.options;
    let _ = writeln!(
        out,
        "# Tollgate benchmark, {}\n",
        o.date.as_deref().unwrap_or("undated")
    );
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), kernel {}, {} MiB RAM; load average at start `{}`, at end `{}`. \
         Commit `{}`. Load generator, mock and gateway share the machine; every scenario runs \
         direct to the mock, then through `tollgate-dp` ({} profile, `--threads {}`, `RUST_LOG=warn`), \
         in the same run. See `bench/README.md` for what each number means.\n",
        m.nproc,
        m.cpu_model,
        m.kernel,
        m.mem_total_mib,
        m.loadavg_start,
        m.loadavg_end,
        o.commit.as_deref().unwrap_or("unknown"),
        dp_profile(o),
        o.dp_threads,
    );
    out.push_str("| Scenario | Metric | Direct (mock) | Through DP | Added | DP / direct |\n");
    out.push_str("|---|---|---:|---:|---:|---:|\n");
    for ol in &r.open_loop {
        let (d, g) = (&ol.pair.direct, &ol.pair.dp);
        let s = format!("open loop {} rps", ol.rate);
        row(
            &mut out,
            &s,
            "p50 (corrected)",
            d.load.latency.p50_ms,
            g.load.latency.p50_ms,
            "ms",
        );
        row(
            &mut out,
            &s,
            "p99 (corrected)",
            d.load.latency.p99_ms,
            g.load.latency.p99_ms,
            "ms",
        );
        row(
            &mut out,
            &s,
            "p99.9 (corrected)",
            d.load.latency.p999_ms,
            g.load.latency.p999_ms,
            "ms",
        );
        row(
            &mut out,
            &s,
            "gateway CPU / request",
            0.0,
            g.cpu.dp_ms,
            "ms",
        );
        row(
            &mut out,
            &s,
            "… net of idle CPU",
            0.0,
            g.cpu.dp_net_ms,
            "ms",
        );
    }
    let (d, g) = (&r.saturated.direct, &r.saturated.dp);
    let s = format!("saturated, {} conns", o.conns);
    row(&mut out, &s, "throughput", d.load.rps, g.load.rps, "rps");
    row(
        &mut out,
        &s,
        "p50",
        d.load.latency.p50_ms,
        g.load.latency.p50_ms,
        "ms",
    );
    row(
        &mut out,
        &s,
        "p99",
        d.load.latency.p99_ms,
        g.load.latency.p99_ms,
        "ms",
    );
    row(
        &mut out,
        &s,
        "gateway CPU / request",
        0.0,
        g.cpu.dp_ms,
        "ms",
    );
    row(
        &mut out,
        &s,
        "mock CPU / request",
        d.cpu.mock_ms,
        g.cpu.mock_ms,
        "ms",
    );
    row(
        &mut out,
        &s,
        "load-generator CPU / request",
        d.cpu.loadgen_ms,
        g.cpu.loadgen_ms,
        "ms",
    );
    let (d, g) = (&r.streams.direct.result, &r.streams.dp.result);
    let s = format!("stream ×{}, {} at a time", o.streams, o.stream_concurrency);
    row(
        &mut out,
        &s,
        "time to first token p50",
        d.ttft.p50_ms,
        g.ttft.p50_ms,
        "ms",
    );
    row(
        &mut out,
        &s,
        "time to first token p99",
        d.ttft.p99_ms,
        g.ttft.p99_ms,
        "ms",
    );
    row(
        &mut out,
        &s,
        "total p50",
        d.total.p50_ms,
        g.total.p50_ms,
        "ms",
    );
    row(
        &mut out,
        &s,
        "total p99",
        d.total.p99_ms,
        g.total.p99_ms,
        "ms",
    );
    row(
        &mut out,
        &s,
        "gateway CPU / stream",
        0.0,
        r.streams.dp.cpu.dp_ms,
        "ms",
    );
    let mem = &r.memory_after_load;
    row(
        &mut out,
        "after the load",
        "RSS (mock | gateway)",
        mem.mock.rss_kib as f64 / 1024.0,
        mem.dp.rss_kib as f64 / 1024.0,
        "MiB",
    );
    for idle in &r.idle {
        let s = if idle.streams == idle.requested {
            format!("{} idle open streams", idle.streams)
        } else {
            format!(
                "{} idle open streams ({} asked)",
                idle.streams, idle.requested
            )
        };
        match (&idle.result, &idle.skipped) {
            (Some(p), _) => {
                row(
                    &mut out,
                    &s,
                    "server RSS / stream",
                    p.direct.server_kib_per_stream,
                    p.dp.server_kib_per_stream,
                    "KiB",
                );
                let _ = writeln!(
                    out,
                    "| {s} | opened at once | {} / {} | {} / {} | | |",
                    p.direct.outcome.opened, idle.streams, p.dp.outcome.opened, idle.streams
                );
            }
            (None, reason) => {
                let _ = writeln!(
                    out,
                    "| {s} | skipped | {} | | | |",
                    reason.as_deref().unwrap_or("")
                );
            }
        }
    }
    for p in &r.pending {
        let _ = writeln!(out, "| {p} | | | | | |");
    }

    if let Some(ic) = &r.icount {
        icount_markdown(&mut out, ic);
    }
    if let Some(ab) = &r.ab {
        ab_markdown(&mut out, ab);
    }

    out.push_str("\n## Targets (issue 15)\n\n| Target | Measured | Met |\n|---|---|---|\n");
    for t in target_checks(r) {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(out, "| {} | {} | {met} |", t.target, t.measured);
    }

    out.push_str("\n## Details\n\n");
    let _ = writeln!(
        out,
        "- Windows: {} s measured per run after {} s warm-up; open loop over up to {} connections, \
         saturated over {}; upstream reply {} words, {} µs between streamed events.",
        o.secs, o.warmup_secs, o.open_conns, o.conns, o.reply_words, o.chunk_delay_us
    );
    for ol in &r.open_loop {
        for (name, mm) in [("direct", &ol.pair.direct), ("dp", &ol.pair.dp)] {
            let _ = writeln!(
                out,
                "- open loop {} rps {name}: {} ok, {} errors, achieved {:.0} rps; service time \
                 (from actual send) p50 {:.3} ms p99 {:.3} ms; gateway {:.2} cores, mock {:.2} cores{}",
                ol.rate,
                mm.load.ok,
                mm.load.errors,
                mm.load.rps,
                mm.load.service.p50_ms,
                mm.load.service.p99_ms,
                mm.cpu.dp_cores,
                mm.cpu.mock_cores,
                error_note(&mm.load.first_error),
            );
        }
    }
    for (name, mm) in [("direct", &r.saturated.direct), ("dp", &r.saturated.dp)] {
        let _ = writeln!(
            out,
            "- saturated {name}: {} ok, {} errors; gateway {:.2} cores, mock {:.2} cores{}",
            mm.load.ok,
            mm.load.errors,
            mm.cpu.dp_cores,
            mm.cpu.mock_cores,
            error_note(&mm.load.first_error),
        );
    }
    for (name, s) in [("direct", &r.streams.direct), ("dp", &r.streams.dp)] {
        let _ = writeln!(
            out,
            "- streams {name}: {} ok, {} errors, {} SSE data events each; server closed the \
             connection after {} streams{}",
            s.result.ok,
            s.result.errors,
            s.result.data_events,
            s.result.connections_closed_by_server,
            error_note(&s.result.first_error),
        );
    }
    let _ = writeln!(
        out,
        "- gateway CPU with no load (3 s after the warm-up): {:.3} cores",
        r.idle_cpu.dp_cores
    );
    let _ = writeln!(
        out,
        "- gateway RSS at start {:.1} MiB, after the load {:.1} MiB (peak {:.1} MiB); mock {:.1} MiB",
        mem.dp_at_start.rss_kib as f64 / 1024.0,
        mem.dp.rss_kib as f64 / 1024.0,
        mem.dp.peak_rss_kib as f64 / 1024.0,
        mem.mock.rss_kib as f64 / 1024.0,
    );
    for idle in &r.idle {
        if let (Some(_), Some(why)) = (&idle.result, &idle.skipped) {
            let _ = writeln!(out, "- idle streams: {why}");
        }
        if let Some(p) = &idle.result {
            for (name, i) in [("direct", &p.direct), ("dp", &p.dp)] {
                let _ = writeln!(
                    out,
                    "- {} idle streams {name}: opened {} (failed {}) in {:.1} s, completed {} after \
                     release; server RSS {:.1} → {:.1} MiB{}",
                    idle.streams,
                    i.outcome.opened,
                    i.outcome.failed,
                    i.outcome.open_secs,
                    i.outcome.completed,
                    i.server_rss_before_kib as f64 / 1024.0,
                    i.server_rss_open_kib as f64 / 1024.0,
                    error_note(&i.outcome.first_error),
                );
            }
        }
    }
    out
}

fn error_note(e: &Option<String>) -> String {
    e.as_ref()
        .map(|e| format!("; first error: `{}`", e.replace('`', "'")))
        .unwrap_or_default()
}

/// The JSON record: the report plus the target checks.
pub fn json(r: &SuiteReport) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct Record<'a> {
        #[serde(flatten)]
        report: &'a SuiteReport,
        targets: Vec<TargetCheck>,
    }
    Ok(serde_json::to_string_pretty(&Record {
        report: r,
        targets: target_checks(r),
    })?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ratio_and_row_format_added_and_relative_numbers() {
        assert_eq!(ratio(2.0, 3.0), "1.50×");
        assert_eq!(ratio(0.0, 3.0), "–");
        let mut out = String::new();
        row(&mut out, "s", "p50", 0.5, 0.75, "ms");
        assert_eq!(
            out,
            "| s | p50 | 0.500 ms | 0.750 ms | +0.250 ms | 1.50× |\n"
        );
    }

    #[test]
    fn negative_added_latency_is_inconclusive() {
        assert_eq!(added_check("x", Some(-1.0), 0.6).met, None);
        assert_eq!(added_check("x", Some(0.5), 0.6).met, Some(true));
        assert_eq!(added_check("x", Some(0.7), 0.6).met, Some(false));
    }

    #[test]
    fn check_reports_unmeasured_targets_as_unknown() {
        let c = check("x", None, |_| true);
        assert_eq!(c.met, None);
        let c = check("x", Some((0.1, "0.1".into())), |v| v <= 0.08);
        assert_eq!(c.met, Some(false));
    }
}
