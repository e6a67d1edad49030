//! `tollgate-mock`: run the mock OpenAI-compatible provider on a local port.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tollgate_mock::{MockOptions, MockServer};

#[derive(Parser, Debug)]
#[command(
    version,
    long_version = env!("TOLLGATE_LONG_VERSION"),
    about = "Mock model provider (OpenAI, Azure, Anthropic and Gemini wire formats) for tests, demos and benchmarks"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7490")]
    listen: SocketAddr,
    /// Require this API key from callers.
    #[arg(long, env = "TOLLGATE_MOCK_API_KEY")]
    api_key: Option<String>,
    /// Milliseconds to wait before each response.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Milliseconds between streamed events.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let server = MockServer::start_with(
        args.listen,
        MockOptions {
            required_api_key: args.api_key,
            latency: Duration::from_millis(args.latency_ms),
            chunk_delay: Duration::from_millis(args.chunk_delay_ms),
            models: Vec::new(),
            record: false,
            split_stream_every: 0,
            end_delay: Duration::ZERO,
        },
    )
    .await?;
    println!("tollgate-mock ready: {}", server.base_url);
    tokio::signal::ctrl_c().await?;
    server.shutdown();
    Ok(())
}
