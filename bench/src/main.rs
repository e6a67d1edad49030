//! `tollgate-bench`: the benchmark suite (`suite`, driven by `bench/run.sh`)
//! and ad-hoc load against any loopback OpenAI-compatible URL.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tollgate_bench::ab::AbOptions;
use tollgate_bench::client::{chat_body, Target};
use tollgate_bench::fleet::FleetOptions;
use tollgate_bench::icount::IcountOptions;
use tollgate_bench::suite::{self, SuiteOptions};
use tollgate_bench::{load, procfs, report};

#[derive(Parser)]
#[command(version, about = "Tollgate benchmark harness (see bench/README.md)")]
struct Args {
    /// Load-generator runtime worker threads.
    #[arg(long, default_value_t = 2, global = true)]
    loadgen_threads: usize,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Debug, Clone)]
struct AdHoc {
    /// Base URL, e.g. http://127.0.0.1:7480/v1 (loopback only).
    #[arg(long)]
    url: String,
    /// Caller key (Authorization: Bearer).
    #[arg(long, default_value = suite::GATEWAY_KEY)]
    key: String,
    #[arg(long, default_value = suite::MODEL)]
    model: String,
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
}

/// Options of `suite` and `features`.
#[derive(clap::Args, Debug, Clone)]
struct SuiteArgs {
    #[arg(long)]
    dp_bin: PathBuf,
    #[arg(long)]
    mock_bin: PathBuf,
    /// `tollgate-cp`, for the rows that need a control plane (metering,
    /// budget leases, CP rate limits, guardrails); with --cli-bin.
    #[arg(long)]
    cp_bin: Option<PathBuf>,
    /// The `tollgate` admin CLI that sets up the control plane's tenant.
    #[arg(long)]
    cli_bin: Option<PathBuf>,
    /// Adds the "OTLP traces" row: the gateway gets `--otlp-endpoint URL`.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// Output path without extension (.md and .json are written).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    #[arg(long, default_value_t = 64)]
    conns: usize,
    #[arg(long, default_value_t = 64)]
    open_conns: usize,
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    rates: Vec<u64>,
    #[arg(long, default_value_t = 500)]
    streams: usize,
    #[arg(long, default_value_t = 10)]
    stream_concurrency: usize,
    /// Idle open streams held at once, per run (empty: none).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    idle: Vec<usize>,
    #[arg(long, default_value_t = 16)]
    reply_words: usize,
    #[arg(long, default_value_t = 1000)]
    chunk_delay_us: u64,
    #[arg(long, default_value_t = 2)]
    dp_threads: usize,
    #[arg(long)]
    commit: Option<String>,
    #[arg(long)]
    date: Option<String>,
    /// Skip the wall-clock A/B of the feature settings.
    #[arg(long)]
    no_features: bool,
    /// Interleaved A/B rounds (each setting once per round).
    #[arg(long, default_value_t = 5)]
    ab_rounds: usize,
    /// Seconds of saturated load per setting and round.
    #[arg(long, default_value_t = 3.0)]
    ab_secs: f64,
    /// Skip the instruction counts under callgrind.
    #[arg(long)]
    no_icount: bool,
    /// Calls of the first callgrind window (the second sends twice as many).
    #[arg(long, default_value_t = 300)]
    icount_requests: u64,
    /// Window pairs per setting under callgrind.
    #[arg(long, default_value_t = 2)]
    icount_repeats: usize,
    /// Only these feature settings (ids, comma-separated, e.g.
    /// `limits,access-log`) and the baselines they compare against.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl SuiteArgs {
    fn options(self) -> SuiteOptions {
        SuiteOptions {
            fleet: FleetOptions {
                dp_bin: self.dp_bin.clone(),
                cp_bin: self.cp_bin,
                cli_bin: self.cli_bin,
                dp_threads: self.dp_threads,
                otlp_endpoint: self.otlp_endpoint,
                only: self.only,
            },
            ab: (!self.no_features).then(|| AbOptions {
                rounds: self.ab_rounds.max(1),
                secs: self.ab_secs,
                warmup_secs: self.warmup_secs.min(self.ab_secs),
                conns: self.conns,
            }),
            icount: (!self.no_icount).then(|| IcountOptions {
                requests: self.icount_requests.max(1),
                repeats: self.icount_repeats.max(1),
                conns: 4,
                warmup: 50,
                idle_secs: 2.0,
            }),
            dp_bin: self.dp_bin,
            mock_bin: self.mock_bin,
            out: self.out,
            secs: self.secs,
            warmup_secs: self.warmup_secs,
            conns: self.conns,
            open_conns: self.open_conns,
            rates: self.rates,
            streams: self.streams,
            stream_concurrency: self.stream_concurrency,
            idle: self.idle.into_iter().filter(|n| *n > 0).collect(),
            reply_words: self.reply_words,
            chunk_delay_us: self.chunk_delay_us,
            dp_threads: self.dp_threads,
            commit: self.commit,
            date: self.date,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Every scenario, direct and through a freshly started gateway, then
    /// the feature comparisons.
    Suite(SuiteArgs),
    /// Only the feature comparisons (A/B rounds and instruction counts);
    /// writes <out>.md and <out>.json.
    Features(SuiteArgs),
    /// Saturated load: N connections back to back.
    Closed {
        #[command(flatten)]
        target: AdHoc,
        #[arg(long, default_value_t = 64)]
        conns: usize,
    },
    /// Fixed rate with coordinated-omission correction.
    Open {
        #[command(flatten)]
        target: AdHoc,
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 64)]
        conns: usize,
    },
    /// Idle open streams: opens N streams whose upstream (`bench-mock`,
    /// model `bench-hold`) holds after the first event, waits, then releases
    /// them through the mock. Prints the RSS of --pid before and with them.
    Idle {
        #[command(flatten)]
        target: AdHoc,
        #[arg(long, default_value_t = 1000)]
        streams: usize,
        /// The bench-mock base URL, to release the streams.
        #[arg(long)]
        mock_url: String,
        /// Process whose RSS to report (the gateway or the mock).
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Streamed calls: time to first token and total time.
    Stream {
        #[command(flatten)]
        target: AdHoc,
        #[arg(long, default_value_t = 200)]
        streams: usize,
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
    },
}

fn write_pair(out: &std::path::Path, md: &str, json: &str) -> anyhow::Result<()> {
    let (md_path, json_path) = (out.with_extension("md"), out.with_extension("json"));
    std::fs::write(&md_path, md).with_context(|| format!("write {}", md_path.display()))?;
    std::fs::write(&json_path, json).with_context(|| format!("write {}", json_path.display()))?;
    eprintln!("wrote {} and {}", md_path.display(), json_path.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.loadgen_threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(run(args.command))
}

async fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Suite(args) => {
            let out = args.out.clone();
            let r = suite::run(args.options()).await?;
            let md = report::markdown(&r);
            write_pair(&out, &md, &report::json(&r)?)?;
            println!("{md}");
        }
        Cmd::Features(args) => {
            let out = args.out.clone();
            let opts = args.options();
            let load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            let (ab, icount) = suite::run_features(&opts).await?;
            let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            let md = report::features_markdown(
                &opts,
                ab.as_ref(),
                icount.as_ref(),
                (load_start.trim(), load_end.trim()),
            );
            let json = serde_json::to_string_pretty(&serde_json::json!({
                "options": opts, "ab": ab, "icount": icount,
                "loadavg_start": load_start.trim(), "loadavg_end": load_end.trim(),
            }))?;
            write_pair(&out, &md, &json)?;
            println!("{md}");
        }
        Cmd::Closed { target, conns } => {
            let t = Target::new("target", &target.url, &target.key)?;
            let r = load::closed_loop(
                &t,
                chat_body(&target.model, false),
                conns,
                Duration::from_secs_f64(target.secs),
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Cmd::Open {
            target,
            rate,
            conns,
        } => {
            let t = Target::new("target", &target.url, &target.key)?;
            let r = load::open_loop(
                &t,
                chat_body(&target.model, false),
                rate,
                conns,
                Duration::from_secs_f64(target.secs),
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Cmd::Idle {
            target,
            streams,
            mock_url,
            pid,
        } => {
            let t = Target::new("target", &target.url, &target.key)?;
            let mock = Target::new("mock", &mock_url, "")?;
            let rss = || {
                pid.and_then(|p| procfs::memory(p).ok())
                    .map_or(0, |m| m.rss_kib)
            };
            let before = rss();
            let held = load::IdleStreams::start(
                &t,
                chat_body(tollgate_bench::mock::HOLD_MODEL, true),
                streams,
                256,
            );
            let open = held.wait_open(Duration::from_secs(120)).await;
            tokio::time::sleep(Duration::from_secs_f64(target.secs.min(60.0))).await;
            let with = rss();
            let mut conn = tollgate_bench::client::Conn::open(mock.addr).await?;
            conn.exchange(mock.post(tollgate_bench::mock::RELEASE_PATH, bytes::Bytes::new())?)
                .await?;
            let done = held.finish(Duration::from_secs(120)).await;
            println!(
                "{}",
                serde_json::json!({
                    "opened": open.opened, "failed": open.failed, "completed": done.completed,
                    "rss_before_kib": before, "rss_open_kib": with,
                    "kib_per_stream": with.saturating_sub(before) as f64 / open.opened.max(1) as f64,
                    "first_error": done.first_error,
                })
            );
        }
        Cmd::Stream {
            target,
            streams,
            concurrency,
        } => {
            let t = Target::new("target", &target.url, &target.key)?;
            let r = load::streams(&t, chat_body(&target.model, true), streams, concurrency).await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
    }
    Ok(())
}
