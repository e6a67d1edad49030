//! The scenario suite: starts the mock and the real `tollgate-dp` binary,
//! measures every scenario direct to the mock and through the gateway in
//! the same run, and writes the report.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::ab::{AbOptions, AbReport};
use crate::client::{chat_body, Conn, Target};
use crate::fleet::{Fleet, FleetOptions};
use crate::icount::{IcountOptions, IcountReport};
use crate::load::{self, IdleOutcome, IdleStreams, LoadResult, StreamResult};
use crate::mock::{HOLD_MODEL, RELEASE_PATH};
use crate::procfs::{self, CpuMark, Memory};

/// Model the scenarios call (the mock answers any name).
pub const MODEL: &str = "bench-small";
/// Caller key configured in the gateway.
pub const GATEWAY_KEY: &str = "tg-bench-key";
/// Key the gateway sends upstream (the mock does not check it).
pub const UPSTREAM_KEY: &str = "bench-upstream-key";

/// What to run, and how long.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteOptions {
    pub dp_bin: PathBuf,
    pub mock_bin: PathBuf,
    /// Output path without extension: `.md` and `.json` are written.
    pub out: PathBuf,
    /// Length of each measured window, in seconds.
    pub secs: f64,
    pub warmup_secs: f64,
    /// Connections of the saturated (closed-loop) run.
    pub conns: usize,
    /// Connections available to the open-loop runs.
    pub open_conns: usize,
    pub rates: Vec<u64>,
    pub streams: usize,
    pub stream_concurrency: usize,
    /// Numbers of idle streams held open at once.
    pub idle: Vec<usize>,
    pub reply_words: usize,
    pub chunk_delay_us: u64,
    pub dp_threads: usize,
    /// Git commit measured (for the record).
    pub commit: Option<String>,
    /// Date of the run, as the caller wants it printed.
    pub date: Option<String>,
    /// The gateways of the feature comparisons (binaries, control plane,
    /// OTLP endpoint).
    pub fleet: FleetOptions,
    /// Wall-clock A/B of the feature settings (`None`: skipped).
    pub ab: Option<AbOptions>,
    /// Instructions per request under callgrind (`None`: skipped).
    pub icount: Option<IcountOptions>,
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub mem_total_mib: u64,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub open_files_limit: Option<u64>,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Machine {
    fn probe() -> Machine {
        let cpuinfo = read_trimmed("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let mem_total_mib = read_trimmed("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            mem_total_mib,
            loadavg_start: read_trimmed("/proc/loadavg"),
            loadavg_end: String::new(),
            open_files_limit: procfs::open_files_limit(),
        }
    }
}

/// CPU time per successful request over a measured window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuPerRequest {
    /// Gateway (zero when the gateway was not in the path).
    pub dp_ms: f64,
    pub mock_ms: f64,
    pub loadgen_ms: f64,
    /// Gateway CPU per request less what it burns when idle (timers,
    /// background tasks) over the same wall time.
    pub dp_net_ms: f64,
    /// Average cores the gateway used over the window.
    pub dp_cores: f64,
    pub mock_cores: f64,
}

/// A non-streamed run and the CPU it cost.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub load: LoadResult,
    pub cpu: CpuPerRequest,
}

/// The same scenario direct to the mock and through the gateway.
#[derive(Debug, Clone, Serialize)]
pub struct Pair<T> {
    pub direct: T,
    pub dp: T,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenLoop {
    pub rate: u64,
    #[serde(flatten)]
    pub pair: Pair<Measured>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamMeasured {
    pub result: StreamResult,
    pub cpu: CpuPerRequest,
}

/// Idle open streams and the memory they hold.
#[derive(Debug, Clone, Serialize)]
pub struct IdleMeasured {
    pub outcome: IdleOutcome,
    /// The process serving the caller: the mock (direct) or the gateway.
    pub server_rss_before_kib: u64,
    pub server_rss_open_kib: u64,
    /// (open − before) / opened.
    pub server_kib_per_stream: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleRun {
    /// Streams asked for.
    pub requested: usize,
    /// Streams attempted (fewer than asked when the open-file limit is low).
    pub streams: usize,
    pub result: Option<Pair<IdleMeasured>>,
    /// Why the run was reduced or skipped, if it was.
    pub skipped: Option<String>,
}

/// Sockets a process may need besides the streams.
const FD_SLACK: u64 = 1024;

/// How many idle streams fit the open-file limit (inherited by the gateway,
/// which holds a downstream and an upstream socket per stream), rounded down
/// to 500, and why it is fewer than asked.
pub fn feasible_idle_streams(requested: usize, limit: Option<u64>) -> (usize, Option<String>) {
    let Some(limit) = limit else {
        return (requested, None);
    };
    let fit = limit.saturating_sub(FD_SLACK) / 2;
    if requested as u64 <= fit {
        return (requested, None);
    }
    let n = usize::try_from(fit / 500 * 500).unwrap_or(0);
    let why = format!(
        "{requested} asked, {n} run: the open-file limit is {limit} and the gateway needs 2 per \
         stream (raise the hard limit: `ulimit -n` needs CAP_SYS_RESOURCE)"
    );
    (n, Some(why))
}

/// Memory of both processes once the load is over.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemoryAfterLoad {
    pub dp_at_start: Memory,
    pub dp: Memory,
    pub mock: Memory,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub machine: Machine,
    pub options: SuiteOptions,
    pub open_loop: Vec<OpenLoop>,
    pub saturated: Pair<Measured>,
    pub streams: Pair<StreamMeasured>,
    pub memory_after_load: MemoryAfterLoad,
    pub idle_cpu: IdleCpu,
    pub idle: Vec<IdleRun>,
    /// Features on vs off, wall clock: interleaved rounds.
    pub ab: Option<AbReport>,
    /// Features on vs off: instructions per request (callgrind).
    pub icount: Option<IcountReport>,
    pub pending: Vec<String>,
}

/// Model with rate limits (RPM, TPM, concurrency) far above the load, so
/// every call pays the limiter's checks and none is refused.
pub const LIMITED_MODEL: &str = "bench-limited";

/// Model whose calls are answered from the response cache after the first.
pub const CACHED_MODEL: &str = "bench-cached";
/// Model with caching on but every answer too large to store: each call
/// pays the lookup (hash) and the store check, and is a miss.
pub const CACHE_MISS_MODEL: &str = "bench-cache-miss";

/// The route with [`ROUTED_TARGETS`] weighted targets (all the mock, as
/// distinct provider credentials).
pub const ROUTED_MODEL: &str = "bench-routed";
pub const ROUTED_TARGETS: usize = 50;

async fn start_dp(
    opts: &SuiteOptions,
    config: &Path,
    rust_log: &str,
    args: &[String],
    log: &Path,
) -> anyhow::Result<Running> {
    let mut dp_cmd = Command::new(&opts.dp_bin);
    dp_cmd
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--threads")
        .arg(opts.dp_threads.to_string())
        .args(args)
        .env("RUST_LOG", rust_log);
    Running::spawn(dp_cmd, "tollgate-dp ready:", log)
        .await
        .context("start tollgate-dp")
}

/// What the gateway burns with no request in flight.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct IdleCpu {
    pub dp_cores: f64,
}

/// A child process that printed its `… ready: URL` line.
pub struct Running {
    child: Child,
    pub pid: u32,
    pub url: String,
    pub log: PathBuf,
}

impl Running {
    pub async fn spawn(cmd: Command, ready_prefix: &str, log: &Path) -> anyhow::Result<Running> {
        Self::spawn_within(cmd, ready_prefix, log, Duration::from_secs(60)).await
    }

    /// Like [`Running::spawn`], waiting up to `within` for the ready line
    /// (a process under valgrind starts tens of times slower).
    pub async fn spawn_within(
        mut cmd: Command,
        ready_prefix: &str,
        log: &Path,
        within: Duration,
    ) -> anyhow::Result<Running> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("create the log file {}", log.display()))?;
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("spawn")?;
        let pid = child.id().context("the child has no pid")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(within, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix(ready_prefix) {
                    return Ok(url.trim().to_string());
                }
            }
            bail!("exited before printing {ready_prefix:?}")
        })
        .await
        .with_context(|| format!("no {ready_prefix:?} line within {within:?}"))?
        .with_context(|| format!("see {}", log.display()))?;
        // Keep draining stdout so a chatty child never blocks on the pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Running {
            child,
            pid,
            url,
            log: log.to_path_buf(),
        })
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The gateway configuration: one tenant, the mock as an `openai` provider
/// (and as [`ROUTED_TARGETS`] more credentials behind [`ROUTED_MODEL`]).
pub fn dp_config_yaml(mock_base_url: &str) -> String {
    use std::fmt::Write as _;
    let mut providers = String::new();
    let mut targets = String::new();
    for i in 0..=ROUTED_TARGETS {
        // `mock` is the baseline's; `mock-1` … `mock-50` serve the routed model.
        let name = if i == 0 {
            "mock".to_string()
        } else {
            format!("mock-{i}")
        };
        let _ = write!(
            providers,
            "      - name: {name}\n        kind: openai\n        base_url: {mock_base_url}\n        api_key: {UPSTREAM_KEY}\n"
        );
        if i > 0 {
            let _ = writeln!(targets, "          - {{provider: {name}, weight: 1}}");
        }
    }
    format!(
        "tenants:\n\
         \x20 - name: bench\n\
         \x20   providers:\n\
         {providers}\
         \x20   models:\n\
         \x20     - name: {MODEL}\n\
         \x20       provider: mock\n\
         \x20     - name: {HOLD_MODEL}\n\
         \x20       provider: mock\n\
         \x20     - name: {ROUTED_MODEL}\n\
         \x20       upstream_model: {MODEL}\n\
         \x20       targets:\n\
         {targets}\
         \x20     - name: {CACHED_MODEL}\n\
         \x20       provider: mock\n\
         \x20       cache: {{enabled: true, ttl_ms: 3600000}}\n\
         \x20     - name: {CACHE_MISS_MODEL}\n\
         \x20       provider: mock\n\
         \x20       cache: {{enabled: true, max_entry_bytes: 1}}\n\
         \x20     - name: {LIMITED_MODEL}\n\
         \x20       provider: mock\n\
         \x20       rate_limits: {{rpm: 1000000000000, tpm: 1000000000000000, concurrency: 1000000}}\n\
         \x20   keys:\n\
         \x20     - name: bench\n\
         \x20       key: {GATEWAY_KEY}\n"
    )
}

struct Bench {
    opts: SuiteOptions,
    /// Cores the gateway uses with no load (measured after the warm-up).
    dp_idle_cores: std::cell::Cell<f64>,
    direct: Target,
    dp: Target,
    mock_pid: u32,
    dp_pid: u32,
}

fn per_request_ms(cpu_secs: f64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        cpu_secs * 1000.0 / requests as f64
    }
}

impl Bench {
    fn pids(&self) -> [u32; 3] {
        [self.dp_pid, self.mock_pid, std::process::id()]
    }

    fn cpu(&self, before: &CpuMark, requests: u64) -> anyhow::Result<CpuPerRequest> {
        let after = CpuMark::take(&self.pids())?;
        let (used, wall) = after.since(before);
        let (dp, mock, me) = (used[0], used[1], used[2]);
        let dp_net = (dp - self.dp_idle_cores.get() * wall).max(0.0);
        Ok(CpuPerRequest {
            dp_ms: per_request_ms(dp, requests),
            dp_net_ms: per_request_ms(dp_net, requests),
            mock_ms: per_request_ms(mock, requests),
            loadgen_ms: per_request_ms(me, requests),
            dp_cores: dp / wall.max(1e-9),
            mock_cores: mock / wall.max(1e-9),
        })
    }

    fn targets(&self) -> [&Target; 2] {
        [&self.direct, &self.dp]
    }

    fn secs(&self) -> Duration {
        Duration::from_secs_f64(self.opts.secs)
    }

    async fn sanity(&self) -> anyhow::Result<()> {
        for t in self.targets() {
            let mut conn = Conn::open(t.addr).await?;
            let body = conn
                .exchange(t.chat_request(chat_body(MODEL, false))?)
                .await
                .with_context(|| format!("first call to {}", t.name))?;
            if !String::from_utf8_lossy(&body).contains("chat.completion") {
                bail!("{}: not a chat completion: {body:?}", t.name);
            }
            conn.stream(t.chat_request(chat_body(MODEL, true))?, || {})
                .await
                .with_context(|| format!("first stream through {}", t.name))?;
        }
        Ok(())
    }

    async fn warmup(&self) -> anyhow::Result<()> {
        let d = Duration::from_secs_f64(self.opts.warmup_secs);
        for t in self.targets() {
            load::closed_loop(t, chat_body(MODEL, false), self.opts.conns, d).await?;
            load::streams(t, chat_body(MODEL, true), 50, 10).await?;
        }
        Ok(())
    }

    async fn open_loop(&self, rate: u64) -> anyhow::Result<OpenLoop> {
        let mut runs = Vec::new();
        for t in self.targets() {
            eprintln!("  open loop {rate} rps → {}", t.name);
            let before = CpuMark::take(&self.pids())?;
            let load = load::open_loop(
                t,
                chat_body(MODEL, false),
                rate as f64,
                self.opts.open_conns,
                self.secs(),
            )
            .await?;
            let cpu = self.cpu(&before, load.ok)?;
            runs.push(Measured { load, cpu });
        }
        let [direct, dp] = pair(runs)?;
        Ok(OpenLoop {
            rate,
            pair: Pair { direct, dp },
        })
    }

    async fn saturated(&self) -> anyhow::Result<Pair<Measured>> {
        let mut runs = Vec::new();
        for t in self.targets() {
            eprintln!("  closed loop {} conns → {}", self.opts.conns, t.name);
            let before = CpuMark::take(&self.pids())?;
            let load =
                load::closed_loop(t, chat_body(MODEL, false), self.opts.conns, self.secs()).await?;
            let cpu = self.cpu(&before, load.ok)?;
            runs.push(Measured { load, cpu });
        }
        let [direct, dp] = pair(runs)?;
        Ok(Pair { direct, dp })
    }

    async fn streams(&self) -> anyhow::Result<Pair<StreamMeasured>> {
        let mut runs = Vec::new();
        for t in self.targets() {
            eprintln!(
                "  {} streams, {} at a time → {}",
                self.opts.streams, self.opts.stream_concurrency, t.name
            );
            let before = CpuMark::take(&self.pids())?;
            let result = load::streams(
                t,
                chat_body(MODEL, true),
                self.opts.streams,
                self.opts.stream_concurrency,
            )
            .await?;
            let cpu = self.cpu(&before, result.ok)?;
            runs.push(StreamMeasured { result, cpu });
        }
        let [direct, dp] = pair(runs)?;
        Ok(Pair { direct, dp })
    }

    async fn release_held_streams(&self) -> anyhow::Result<()> {
        let mut conn = Conn::open(self.direct.addr).await?;
        conn.exchange(self.direct.post(RELEASE_PATH, bytes::Bytes::new())?)
            .await?;
        Ok(())
    }

    async fn idle(&self, requested: usize) -> anyhow::Result<IdleRun> {
        let (n, limited_by) = feasible_idle_streams(requested, procfs::open_files_limit());
        if n == 0 {
            return Ok(IdleRun {
                requested,
                streams: 0,
                result: None,
                skipped: limited_by,
            });
        }
        let mut runs = Vec::new();
        for (t, server_pid) in [(&self.direct, self.mock_pid), (&self.dp, self.dp_pid)] {
            eprintln!("  {n} idle streams → {}", t.name);
            let before = procfs::memory(server_pid)?.rss_kib;
            let held = IdleStreams::start(t, chat_body(HOLD_MODEL, true), n, 256);
            let outcome = held.wait_open(Duration::from_secs(120)).await;
            // Let allocator and socket buffers settle before reading RSS.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let open = procfs::memory(server_pid)?.rss_kib;
            self.release_held_streams().await?;
            let mut outcome_done = held.finish(Duration::from_secs(120)).await;
            outcome_done.open_secs = outcome.open_secs;
            let opened = outcome.opened.max(1);
            runs.push(IdleMeasured {
                outcome: outcome_done,
                server_rss_before_kib: before,
                server_rss_open_kib: open,
                server_kib_per_stream: open.saturating_sub(before) as f64 / opened as f64,
            });
        }
        let [direct, dp] = pair(runs)?;
        Ok(IdleRun {
            requested,
            streams: n,
            result: Some(Pair { direct, dp }),
            skipped: limited_by,
        })
    }
}

fn pair<T>(runs: Vec<T>) -> anyhow::Result<[T; 2]> {
    runs.try_into()
        .map_err(|_| anyhow::anyhow!("expected one run per target"))
}

async fn start_mock(opts: &SuiteOptions, work: &Path) -> anyhow::Result<Running> {
    let mut mock_cmd = Command::new(&opts.mock_bin);
    mock_cmd
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--reply-words")
        .arg(opts.reply_words.to_string())
        .arg("--chunk-delay-us")
        .arg(opts.chunk_delay_us.to_string());
    Running::spawn(mock_cmd, "bench-mock ready:", &work.join("mock.log"))
        .await
        .context("start the mock")
}

fn work_dir() -> anyhow::Result<PathBuf> {
    let work = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    Ok(work)
}

/// The feature comparisons (A/B rounds, then instruction counts) against
/// the gateways of `fleet`: a control plane when there is one, and fresh
/// gateways started for each.
async fn feature_comparisons(
    opts: &SuiteOptions,
    mock_url: &str,
    config: &Path,
    work: &Path,
) -> anyhow::Result<(Option<AbReport>, Option<IcountReport>)> {
    if opts.ab.is_none() && opts.icount.is_none() {
        return Ok((None, None));
    }
    let fleet = Fleet::start(&opts.fleet, mock_url, config, work).await?;
    let settings = opts.fleet.settings();
    let outcome = async {
        let ab = match &opts.ab {
            Some(o) => {
                eprintln!(
                    "features, wall clock: {} settings × {} interleaved rounds of {} s",
                    settings.len(),
                    o.rounds,
                    o.secs
                );
                Some(crate::ab::run(&fleet, &settings, o).await?)
            }
            None => None,
        };
        let icount = match &opts.icount {
            Some(o) => {
                eprintln!("features, instructions per request (callgrind)");
                Some(crate::icount::run(&fleet, &settings, o).await?)
            }
            None => None,
        };
        Ok::<_, anyhow::Error>((ab, icount))
    }
    .await;
    fleet.stop().await;
    outcome
}

/// Only the feature comparisons (`tollgate-bench features`): the mock, the
/// control plane and the gateways they need, no direct-vs-gateway scenarios.
pub async fn run_features(
    opts: &SuiteOptions,
) -> anyhow::Result<(Option<AbReport>, Option<IcountReport>)> {
    let work = work_dir()?;
    let mock = start_mock(opts, &work).await?;
    let config = work.join("gateway.yaml");
    std::fs::write(&config, dp_config_yaml(&mock.url))?;
    let out = feature_comparisons(opts, &mock.url, &config, &work).await;
    mock.stop().await;
    // BENCH_KEEP_WORK=1 keeps the logs and callgrind dumps for profiling.
    if out.is_ok() && std::env::var_os("BENCH_KEEP_WORK").is_none() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("logs and callgrind dumps kept in {}", work.display());
    }
    out
}

/// Runs the whole suite and returns what it measured.
pub async fn run(opts: SuiteOptions) -> anyhow::Result<SuiteReport> {
    let mut machine = Machine::probe();
    let work = work_dir()?;
    let mock = start_mock(&opts, &work).await?;

    let config = work.join("gateway.yaml");
    std::fs::write(&config, dp_config_yaml(&mock.url))?;
    let dp = start_dp(&opts, &config, "warn", &[], &work.join("dp.log")).await?;
    eprintln!(
        "mock {} (pid {}), gateway {} (pid {})",
        mock.url, mock.pid, dp.url, dp.pid
    );

    let bench = Bench {
        direct: Target::new("direct", &mock.url, UPSTREAM_KEY)?,
        dp: Target::new(
            "dp",
            &format!("{}/v1", dp.url.trim_end_matches('/')),
            GATEWAY_KEY,
        )?,
        mock_pid: mock.pid,
        dp_pid: dp.pid,
        dp_idle_cores: std::cell::Cell::new(0.0),
        opts: opts.clone(),
    };
    let outcome = measure(&bench).await;
    let logs = format!("logs: {} and {}", mock.log.display(), dp.log.display());
    dp.stop().await;
    let compared = match &outcome {
        Ok(_) => feature_comparisons(&opts, &mock.url, &config, &work).await,
        Err(_) => Ok((None, None)),
    };
    mock.stop().await;
    let (open_loop, saturated, streams, memory_after_load, idle) =
        outcome.with_context(|| logs.clone())?;
    let (ab, icount) = compared.with_context(|| format!("logs in {}", work.display()))?;
    let idle_cpu = IdleCpu {
        dp_cores: bench.dp_idle_cores.get(),
    };
    machine.loadavg_end = read_trimmed("/proc/loadavg");
    let _ = std::fs::remove_dir_all(&work);
    let pending = pending_scenarios(opts.fleet.otlp_endpoint.is_some());
    Ok(SuiteReport {
        machine,
        options: opts,
        open_loop,
        saturated,
        streams,
        memory_after_load,
        idle_cpu,
        idle,
        ab,
        icount,
        pending,
    })
}

type Measurements = (
    Vec<OpenLoop>,
    Pair<Measured>,
    Pair<StreamMeasured>,
    MemoryAfterLoad,
    Vec<IdleRun>,
);

async fn measure(bench: &Bench) -> anyhow::Result<Measurements> {
    let dp_at_start = procfs::memory(bench.dp_pid)?;
    bench.sanity().await?;
    eprintln!("warming up");
    bench.warmup().await?;
    let before = CpuMark::take(&bench.pids())?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (used, wall) = CpuMark::take(&bench.pids())?.since(&before);
    bench.dp_idle_cores.set(used[0] / wall.max(1e-9));
    let mut open_loop = Vec::new();
    for rate in &bench.opts.rates {
        open_loop.push(bench.open_loop(*rate).await?);
    }
    let saturated = bench.saturated().await?;
    let streams = bench.streams().await?;
    let memory_after_load = MemoryAfterLoad {
        dp_at_start,
        dp: procfs::memory(bench.dp_pid)?,
        mock: procfs::memory(bench.mock_pid)?,
    };
    let mut idle = Vec::new();
    for n in &bench.opts.idle {
        idle.push(bench.idle(*n).await?);
    }
    Ok((open_loop, saturated, streams, memory_after_load, idle))
}

/// Scenarios of issue 15 that the gateway cannot express yet.
pub fn pending_scenarios(otlp: bool) -> Vec<String> {
    if otlp {
        return Vec::new();
    }
    vec![
        "OTLP tracing on vs off: pass `--otlp-endpoint URL` (the flag of the `otel` branch) to add \
         the row"
            .into(),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn gateway_config_names_the_mock_and_both_models() {
        let yaml = dp_config_yaml("http://127.0.0.1:9/v1");
        assert!(yaml.contains("base_url: http://127.0.0.1:9/v1"));
        assert!(yaml.contains("kind: openai"));
        assert!(yaml.contains(&format!("- name: {MODEL}")));
        assert!(yaml.contains(&format!("- name: {HOLD_MODEL}")));
        assert!(yaml.contains(&format!("key: {GATEWAY_KEY}")));
        assert!(!yaml.contains('\t'));
        // The gateway accepts it, and the routed model has all its targets.
        let snapshot = tollgate_dp::config::file::parse_yaml(&yaml, 1, &|_| None).unwrap();
        let compiled = tollgate_dp::config::compile(&snapshot).unwrap();
        let tenant = compiled.tenants.values().next().unwrap();
        assert_eq!(tenant.routes[ROUTED_MODEL].targets.len(), ROUTED_TARGETS);
        assert_eq!(tenant.routes[MODEL].targets.len(), 1);
    }

    #[test]
    fn idle_streams_fit_the_open_file_limit() {
        assert_eq!(feasible_idle_streams(10_000, Some(65_536)), (10_000, None));
        assert_eq!(feasible_idle_streams(10_000, None), (10_000, None));
        let (n, why) = feasible_idle_streams(10_000, Some(20_000));
        assert_eq!(n, 9_000);
        assert!(why.unwrap().contains("20000"));
        assert_eq!(feasible_idle_streams(1_000, Some(1_500)).0, 0);
    }

    #[test]
    fn cpu_per_request_handles_an_empty_window() {
        assert_eq!(per_request_ms(1.0, 0), 0.0);
        assert!((per_request_ms(0.5, 10_000) - 0.05).abs() < 1e-12);
    }
}
