//! `bench-mock`: the lean OpenAI-compatible upstream of the benchmarks.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tollgate_bench::mock::{self, MockConfig};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Lean mock OpenAI upstream for benchmarks (answers are pre-serialised)"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7491")]
    listen: SocketAddr,
    /// Microseconds to wait before each answer.
    #[arg(long, default_value_t = 0)]
    latency_us: u64,
    /// Words in the reply (one streamed chunk per word).
    #[arg(long, default_value_t = 16)]
    reply_words: usize,
    /// Microseconds between streamed events.
    #[arg(long, default_value_t = 0)]
    chunk_delay_us: u64,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let running = mock::start(
            args.listen,
            MockConfig {
                latency: Duration::from_micros(args.latency_us),
                reply_words: args.reply_words,
                chunk_delay: Duration::from_micros(args.chunk_delay_us),
            },
        )
        .await?;
        // The suite waits for this exact line on stdout.
        println!("bench-mock ready: {}", running.base_url);
        tokio::signal::ctrl_c().await?;
        drop(running);
        Ok(())
    })
}
