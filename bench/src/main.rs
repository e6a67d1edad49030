//! `tollgate-bench`: the benchmark suite (`suite`, driven by `bench/run.sh`)
//! and ad-hoc load against any loopback OpenAI-compatible URL.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tollgate_bench::client::{chat_body, Target};
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

#[derive(Subcommand)]
enum Cmd {
    /// Every scenario, direct and through a freshly started gateway.
    Suite {
        #[arg(long)]
        dp_bin: PathBuf,
        #[arg(long)]
        mock_bin: PathBuf,
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
        /// Skip the feature on/off comparison (two more gateways).
        #[arg(long)]
        no_features: bool,
    },
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
        Cmd::Suite {
            dp_bin,
            mock_bin,
            out,
            secs,
            warmup_secs,
            conns,
            open_conns,
            rates,
            streams,
            stream_concurrency,
            idle,
            reply_words,
            chunk_delay_us,
            dp_threads,
            commit,
            date,
            no_features,
        } => {
            let opts = SuiteOptions {
                dp_bin,
                mock_bin,
                out: out.clone(),
                secs,
                warmup_secs,
                conns,
                open_conns,
                rates,
                streams,
                stream_concurrency,
                idle,
                reply_words,
                chunk_delay_us,
                dp_threads,
                commit,
                date,
                features: !no_features,
            };
            let r = suite::run(opts).await?;
            let md = report::markdown(&r);
            let (md_path, json_path) = (out.with_extension("md"), out.with_extension("json"));
            std::fs::write(&md_path, &md)
                .with_context(|| format!("write {}", md_path.display()))?;
            std::fs::write(&json_path, report::json(&r)?)
                .with_context(|| format!("write {}", json_path.display()))?;
            println!("{md}");
            eprintln!("wrote {} and {}", md_path.display(), json_path.display());
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
