//! Load shapes: closed loop (saturation), open loop at a fixed rate with
//! coordinated-omission correction, streams (time to first token) and idle
//! open streams.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

use crate::client::{Conn, Target};

/// Latency histogram in microseconds (1 µs … 60 s, 3 significant digits).
pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).context("histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(us);
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Outcome of a non-streamed load run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadResult {
    /// Successful answers.
    pub ok: u64,
    pub errors: u64,
    /// First error message, if any.
    pub first_error: Option<String>,
    pub wall_secs: f64,
    pub rps: f64,
    /// Open loop: from the intended send time (corrected). Closed loop: from
    /// the actual send.
    pub latency: Latency,
    /// From the actual send (open loop only differs from `latency`).
    pub service: Latency,
}

#[derive(Default)]
struct WorkerTally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl WorkerTally {
    fn error(&mut self, e: &anyhow::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{e:#}"));
        }
    }
}

async fn open_conns(target: &Target, n: usize) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::open(target.addr).await?);
    }
    Ok(conns)
}

type Outcome = (WorkerTally, Histogram<u64>, Histogram<u64>);

fn merge(
    outcomes: Vec<Result<anyhow::Result<Outcome>, tokio::task::JoinError>>,
    wall: Duration,
) -> anyhow::Result<LoadResult> {
    let mut latency = new_histogram()?;
    let mut service = new_histogram()?;
    let mut result = LoadResult::default();
    for outcome in outcomes {
        let (tally, l, s) = outcome??;
        result.ok += tally.ok;
        result.errors += tally.errors;
        if result.first_error.is_none() {
            result.first_error = tally.first_error;
        }
        latency.add(&l).context("merge histograms")?;
        service.add(&s).context("merge histograms")?;
    }
    result.wall_secs = wall.as_secs_f64();
    result.rps = result.ok as f64 / result.wall_secs.max(1e-9);
    result.latency = Latency::of(&latency);
    result.service = Latency::of(&service);
    Ok(result)
}

/// `conns` connections each send the next request as soon as the previous
/// answer is read, for `duration`. Measures saturated throughput.
pub async fn closed_loop(
    target: &Target,
    body: Bytes,
    conns: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let conns = open_conns(target, conns).await?;
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(conns.len());
    for mut conn in conns {
        let target = target.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = WorkerTally::default();
            let mut hist = new_histogram()?;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let outcome = match target.chat_request(body.clone()) {
                    Ok(req) => conn.exchange(req).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(()) => {
                        tally.ok += 1;
                        record(&mut hist, sent.elapsed());
                    }
                    Err(e) => {
                        tally.error(&e);
                        // A broken connection stays broken: reopen it.
                        conn = Conn::open(target.addr).await?;
                    }
                }
            }
            let service = hist.clone();
            Ok::<_, anyhow::Error>((tally, hist, service))
        }));
    }
    let outcomes = futures::future::join_all(tasks).await;
    merge(outcomes, start.elapsed())
}

/// When request `index` should be sent at `rate` per second.
pub fn intended_offset(index: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(index as f64 / rate)
}

/// Where latency is measured from: the intended send time when the worker
/// was still busy with an earlier request at that time (the server held it
/// up: coordinated omission), otherwise the actual send, so that our own
/// timer's lateness is not charged to the server.
pub fn latency_origin(intended: Instant, worker_free: Instant, sent: Instant) -> Instant {
    if worker_free > intended {
        intended
    } else {
        sent
    }
}

/// Sends `rate` requests per second on a fixed schedule for `duration`,
/// over up to `conns` connections (each carries one request at a time).
pub async fn open_loop(
    target: &Target,
    body: Bytes,
    rate: f64,
    conns: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let conns = open_conns(target, conns).await?;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(conns.len());
    for mut conn in conns {
        let target = target.clone();
        let body = body.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = WorkerTally::default();
            let mut corrected = new_histogram()?;
            let mut service = new_histogram()?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let intended = start + intended_offset(i, rate);
                let free = Instant::now();
                if free < intended {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(intended)).await;
                }
                let sent = Instant::now();
                let outcome = match target.chat_request(body.clone()) {
                    Ok(req) => conn.exchange(req).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                let done = Instant::now();
                match outcome {
                    Ok(()) => {
                        tally.ok += 1;
                        record(&mut corrected, done - latency_origin(intended, free, sent));
                        record(&mut service, done - sent);
                    }
                    Err(e) => {
                        tally.error(&e);
                        conn = Conn::open(target.addr).await?;
                    }
                }
            }
            Ok::<_, anyhow::Error>((tally, corrected, service))
        }));
    }
    let outcomes = futures::future::join_all(tasks).await;
    merge(outcomes, start.elapsed())
}

/// Outcome of a streaming run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamResult {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Time to the first SSE data event.
    pub ttft: Latency,
    /// Time to the end of the stream.
    pub total: Latency,
    /// SSE data events per stream (all streams must agree).
    pub data_events: usize,
    /// Streams after which the server did not keep the connection open
    /// (a new connection was opened, outside the timings).
    pub connections_closed_by_server: u64,
}

/// `streams` streamed calls over `concurrency` connections.
pub async fn streams(
    target: &Target,
    body: Bytes,
    streams: usize,
    concurrency: usize,
) -> anyhow::Result<StreamResult> {
    let conns = open_conns(target, concurrency.max(1)).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for mut conn in conns {
        let target = target.clone();
        let body = body.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = WorkerTally::default();
            let mut ttft = new_histogram()?;
            let mut total = new_histogram()?;
            let mut events = 0;
            let mut closed = 0_u64;
            while next.fetch_add(1, Ordering::Relaxed) < streams {
                let outcome = match target.chat_request(body.clone()) {
                    Ok(req) => conn.stream(req, || {}).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(t) => {
                        tally.ok += 1;
                        record(&mut ttft, t.first_event);
                        record(&mut total, t.total);
                        events = t.data_events;
                        if !t.reusable {
                            closed += 1;
                            conn = Conn::open(target.addr).await?;
                        }
                    }
                    Err(e) => {
                        tally.error(&e);
                        conn = Conn::open(target.addr).await?;
                    }
                }
            }
            Ok::<_, anyhow::Error>((tally, ttft, total, events, closed))
        }));
    }
    let mut ttft = new_histogram()?;
    let mut total = new_histogram()?;
    let mut result = StreamResult::default();
    for outcome in futures::future::join_all(tasks).await {
        let (tally, t, tt, events, closed) = outcome??;
        result.ok += tally.ok;
        result.connections_closed_by_server += closed;
        result.errors += tally.errors;
        if result.first_error.is_none() {
            result.first_error = tally.first_error;
        }
        if events > 0 {
            result.data_events = events;
        }
        ttft.add(&t).context("merge histograms")?;
        total.add(&tt).context("merge histograms")?;
    }
    result.ttft = Latency::of(&ttft);
    result.total = Latency::of(&total);
    Ok(result)
}

/// Idle streams held open at the same time.
pub struct IdleStreams {
    opened: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    first_error: Arc<std::sync::Mutex<Option<String>>>,
    changed: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<bool>>,
    wanted: usize,
    started: Instant,
}

/// Progress of [`IdleStreams`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct IdleOutcome {
    pub wanted: usize,
    pub opened: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub open_secs: f64,
    /// Streams read to `[DONE]` after the release.
    pub completed: usize,
}

impl IdleStreams {
    /// Starts `n` streamed calls (each on its own connection, at most
    /// `parallel` connecting at once) whose upstream holds after the first
    /// event.
    pub fn start(target: &Target, body: Bytes, n: usize, parallel: usize) -> IdleStreams {
        let opened = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let first_error = Arc::new(std::sync::Mutex::new(None));
        let changed = Arc::new(Notify::new());
        let gate = Arc::new(Semaphore::new(parallel.max(1)));
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let target = target.clone();
            let body = body.clone();
            let (opened, failed, first_error, changed, gate) = (
                opened.clone(),
                failed.clone(),
                first_error.clone(),
                changed.clone(),
                gate.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut permit = gate.acquire_owned().await.ok();
                let mut counted = false;
                let outcome = async {
                    let mut conn = Conn::open(target.addr).await?;
                    let req = target.chat_request(body)?;
                    conn.stream(req, || {
                        counted = true;
                        permit.take();
                        opened.fetch_add(1, Ordering::Relaxed);
                        changed.notify_one();
                    })
                    .await
                }
                .await;
                match outcome {
                    Ok(_) => true,
                    Err(e) => {
                        if !counted {
                            failed.fetch_add(1, Ordering::Relaxed);
                            changed.notify_one();
                        }
                        if let Ok(mut slot) = first_error.lock() {
                            slot.get_or_insert_with(|| format!("{e:#}"));
                        }
                        false
                    }
                }
            }));
        }
        IdleStreams {
            opened,
            failed,
            first_error,
            changed,
            tasks,
            wanted: n,
            started: Instant::now(),
        }
    }

    fn outcome(&self) -> IdleOutcome {
        IdleOutcome {
            wanted: self.wanted,
            opened: self.opened.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            first_error: self.first_error.lock().ok().and_then(|e| e.clone()),
            open_secs: self.started.elapsed().as_secs_f64(),
            completed: 0,
        }
    }

    /// Waits until every stream has its first event or has failed, or until
    /// `timeout`.
    pub async fn wait_open(&self, timeout: Duration) -> IdleOutcome {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let o = self.outcome();
            if o.opened + o.failed >= self.wanted {
                return o;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.outcome();
            }
        }
    }

    /// After the upstream released them, reads every stream to its end.
    pub async fn finish(self, timeout: Duration) -> IdleOutcome {
        let mut o = self.outcome();
        let deadline = tokio::time::Instant::now() + timeout;
        for task in self.tasks {
            let abort = task.abort_handle();
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(true)) => o.completed += 1,
                Ok(_) => {}
                Err(_) => abort.abort(),
            }
        }
        o.first_error = self.first_error.lock().ok().and_then(|e| e.clone());
        o
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spaces_requests_evenly() {
        assert_eq!(intended_offset(0, 1000.0), Duration::ZERO);
        assert_eq!(intended_offset(250, 1000.0), Duration::from_millis(250));
        assert_eq!(intended_offset(3, 100.0), Duration::from_millis(30));
    }

    #[test]
    fn latency_counts_from_intended_time_only_when_the_worker_was_late() {
        let t0 = Instant::now();
        let intended = t0 + Duration::from_millis(10);
        // Worker idle before the slot, timer woke 1 ms late: our lateness.
        let sent = intended + Duration::from_millis(1);
        assert_eq!(latency_origin(intended, t0, sent), sent);
        // Worker still busy 5 ms past the slot: the server held us up.
        let free = intended + Duration::from_millis(5);
        assert_eq!(latency_origin(intended, free, free), intended);
    }

    #[test]
    fn latency_summary_reads_quantiles_in_ms() {
        let mut h = new_histogram().unwrap();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50_ms - 0.5).abs() < 0.01, "{l:?}");
        assert!((l.p99_ms - 0.99).abs() < 0.01, "{l:?}");
        assert!((l.max_ms - 1.0).abs() < 0.01, "{l:?}");
        assert_eq!(Latency::of(&new_histogram().unwrap()).count, 0);
    }
}
