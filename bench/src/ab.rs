//! Wall-clock A/B of the feature settings in interleaved rounds: every
//! gateway process the settings need runs at once, and each round runs
//! every setting for a short saturated window (A B C … then … C B A, so no
//! setting always runs first or last). Per setting: the median over rounds
//! of the throughput and of the gateway's CPU time per request (from
//! `/proc/<pid>/stat` over each window, the least noisy wall-clock figure),
//! with min and max; per feature: the median of the per-round ratios
//! against its baseline, paired within the round, so slow drift of the
//! machine's load cancels.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::client::{chat_body, Target};
use crate::fleet::{procs_of, wait_serving, Fleet, ProcKind, Setting, Under};
use crate::icount::spread;
use crate::load;
use crate::procfs::CpuMark;

#[derive(Debug, Clone, Serialize)]
pub struct AbOptions {
    pub rounds: usize,
    /// Length of each window.
    pub secs: f64,
    /// Closed-loop warm-up per setting before the first round.
    pub warmup_secs: f64,
    pub conns: usize,
}

/// Median with the spread.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let (median, min, max) = spread(values);
        Spread { median, min, max }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AbSample {
    pub rps: f64,
    pub dp_cpu_ms: f64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AbRow {
    pub id: String,
    pub name: String,
    pub proc: ProcKind,
    pub baseline: Option<String>,
    pub budget_pct: Option<f64>,
    pub samples: Vec<AbSample>,
    pub rps: Spread,
    pub dp_cpu_ms: Spread,
    /// Per round: (1 − this rps / baseline rps) × 100 — the throughput it costs.
    pub rps_cost_pct: Option<Spread>,
    /// Per round: (this CPU per request / baseline's − 1) × 100.
    pub cpu_cost_pct: Option<Spread>,
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AbReport {
    pub options: AbOptions,
    pub rows: Vec<AbRow>,
}

/// Order of the settings in round `r`: forward, then backward.
pub fn round_order(n: usize, r: usize) -> Vec<usize> {
    if r.is_multiple_of(2) {
        (0..n).collect()
    } else {
        (0..n).rev().collect()
    }
}

pub async fn run(
    fleet: &Fleet,
    settings: &[Setting],
    opts: &AbOptions,
) -> anyhow::Result<AbReport> {
    let mut running = Vec::new();
    let mut urls: HashMap<&'static str, (String, u32)> = HashMap::new();
    let outcome = async {
        for kind in procs_of(settings) {
            let tag = format!("ab-{kind:?}").to_lowercase();
            let dp = fleet.start_dp(kind, &Under::Native, &tag).await?;
            urls.insert(
                kind_key(kind),
                (format!("{}/v1", dp.url.trim_end_matches('/')), dp.pid),
            );
            running.push(dp);
        }
        let mut targets = Vec::new();
        for s in settings {
            let (url, pid) = urls
                .get(kind_key(s.proc))
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no gateway for {}", s.id))?;
            let target = Target::new("dp", &url, fleet.key(s.proc, s.key)?)?;
            wait_serving(&target, s.model, Duration::from_secs(60)).await?;
            targets.push((target, pid));
        }
        let warm = Duration::from_secs_f64(opts.warmup_secs);
        for (s, (t, _)) in settings.iter().zip(&targets) {
            load::closed_loop(t, chat_body(s.model, false), opts.conns, warm).await?;
        }
        let mut samples: Vec<Vec<AbSample>> = vec![Vec::new(); settings.len()];
        let mut first_errors: Vec<Option<String>> = vec![None; settings.len()];
        let window = Duration::from_secs_f64(opts.secs);
        for round in 0..opts.rounds {
            eprintln!("  A/B round {} of {}", round + 1, opts.rounds);
            for i in round_order(settings.len(), round) {
                let (t, pid) = &targets[i];
                let before = CpuMark::take(&[*pid])?;
                let l =
                    load::closed_loop(t, chat_body(settings[i].model, false), opts.conns, window)
                        .await?;
                let (used, _) = CpuMark::take(&[*pid])?.since(&before);
                let cpu = used.first().copied().unwrap_or(0.0);
                if first_errors[i].is_none() {
                    first_errors[i] = l.first_error.clone();
                }
                samples[i].push(AbSample {
                    rps: l.rps,
                    dp_cpu_ms: if l.ok > 0 {
                        cpu * 1000.0 / l.ok as f64
                    } else {
                        0.0
                    },
                    errors: l.errors,
                });
            }
        }
        Ok::<_, anyhow::Error>((samples, first_errors))
    }
    .await;
    for dp in running {
        dp.stop().await;
    }
    let (samples, first_errors) = outcome?;
    let rows = rows_of(settings, samples, first_errors);
    Ok(AbReport {
        options: opts.clone(),
        rows,
    })
}

fn kind_key(kind: ProcKind) -> &'static str {
    match kind {
        ProcKind::Yaml => "yaml",
        ProcKind::AccessLog => "access-log",
        ProcKind::Otlp => "otlp",
        ProcKind::Cp => "cp",
    }
}

/// Medians, spreads and per-round paired costs against each baseline.
pub fn rows_of(
    settings: &[Setting],
    samples: Vec<Vec<AbSample>>,
    first_errors: Vec<Option<String>>,
) -> Vec<AbRow> {
    let index: HashMap<&str, usize> = settings
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id, i))
        .collect();
    let paired = |i: usize, f: &dyn Fn(&AbSample, &AbSample) -> Option<f64>| -> Option<Spread> {
        let b = *index.get(settings[i].baseline?)?;
        let v: Vec<f64> = samples[i]
            .iter()
            .zip(&samples[b])
            .filter_map(|(me, base)| f(me, base))
            .collect();
        (!v.is_empty()).then(|| Spread::of(&v))
    };
    settings
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let rps: Vec<f64> = samples[i].iter().map(|x| x.rps).collect();
            let cpu: Vec<f64> = samples[i].iter().map(|x| x.dp_cpu_ms).collect();
            AbRow {
                id: s.id.into(),
                name: s.name.into(),
                proc: s.proc,
                baseline: s.baseline.map(Into::into),
                budget_pct: s.budget_pct,
                rps: Spread::of(&rps),
                dp_cpu_ms: Spread::of(&cpu),
                rps_cost_pct: paired(i, &|me, base| {
                    (base.rps > 0.0).then(|| (1.0 - me.rps / base.rps) * 100.0)
                }),
                cpu_cost_pct: paired(i, &|me, base| {
                    (base.dp_cpu_ms > 0.0).then(|| (me.dp_cpu_ms / base.dp_cpu_ms - 1.0) * 100.0)
                }),
                samples: samples[i].clone(),
                first_error: first_errors[i].clone(),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::fleet::settings;

    #[test]
    fn rounds_alternate_direction() {
        assert_eq!(round_order(3, 0), vec![0, 1, 2]);
        assert_eq!(round_order(3, 1), vec![2, 1, 0]);
    }

    #[test]
    fn costs_are_paired_per_round_against_the_baseline() {
        let s: Vec<Setting> = settings(false, false).into_iter().take(2).collect();
        let sample = |rps: f64, cpu: f64| AbSample {
            rps,
            dp_cpu_ms: cpu,
            errors: 0,
        };
        // The machine slows down in round 2; the feature costs 10 % CPU and
        // ~9.1 % throughput in both rounds.
        let samples = vec![
            vec![sample(1000.0, 0.050), sample(500.0, 0.100)],
            vec![sample(1000.0 / 1.1, 0.055), sample(500.0 / 1.1, 0.110)],
        ];
        let rows = rows_of(&s, samples, vec![None, None]);
        assert!(rows[0].rps_cost_pct.is_none());
        let rps_cost = rows[1].rps_cost_pct.unwrap();
        assert!(
            (rps_cost.median - 100.0 / 11.0).abs() < 1e-9,
            "{rps_cost:?}"
        );
        assert!((rps_cost.max - rps_cost.min).abs() < 1e-9);
        let cpu_cost = rows[1].cpu_cost_pct.unwrap();
        assert!((cpu_cost.median - 10.0).abs() < 1e-9, "{cpu_cost:?}");
        assert_eq!(rows[1].rps.min, 500.0 / 1.1);
    }
}
