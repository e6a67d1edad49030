//! Chaos: the control plane is killed while calls continue, the data plane
//! is killed with SIGKILL and restarted on the same data directory, the
//! control plane comes back on the same address; afterwards the control
//! plane holds exactly one usage record per call the upstream served.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::RwLock;
use tokio::task::JoinHandle;
use tollgate_dp::metering::spool::{Spool, SPOOL_DIR};
use tollgate_e2e::{http, pb, ControlPlane, DataPlane, Gateway, MockServer};

const WORKERS: usize = 4;
/// Between two calls of a worker: keeps the total under the 1,000 records
/// one ListUsageRecords page returns.
const PACE: Duration = Duration::from_millis(40);

/// Callers hammering the proxy. Every call holds the gate shared, so the
/// test can take it exclusively to get a moment with no call in flight.
struct Load {
    url: Arc<Mutex<String>>,
    gate: Arc<RwLock<()>>,
    stop: Arc<AtomicBool>,
    /// (data-plane URL, request id) of every call answered 200.
    ok_calls: Arc<Mutex<Vec<(String, String)>>>,
    failures: Arc<Mutex<Vec<String>>>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, key: &str) -> Load {
        let load = Load {
            url: Arc::new(Mutex::new(url.to_string())),
            gate: Arc::new(RwLock::new(())),
            stop: Arc::new(AtomicBool::new(false)),
            ok_calls: Arc::new(Mutex::new(Vec::new())),
            failures: Arc::new(Mutex::new(Vec::new())),
            workers: Vec::new(),
        };
        let workers = (0..WORKERS)
            .map(|w| {
                let (url, gate, stop) = (load.url.clone(), load.gate.clone(), load.stop.clone());
                let (ok, failures) = (load.ok_calls.clone(), load.failures.clone());
                let key = key.to_string();
                tokio::spawn(async move {
                    let client = http();
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(PACE).await;
                        let _in_flight = gate.read().await;
                        let base = url.lock().unwrap().clone();
                        n += 1;
                        let body = json!({
                            "model": "gpt-test",
                            "stream": (w + n).is_multiple_of(3),
                            "messages": [{"role": "user", "content": format!("chaos call {w}-{n}")}],
                        });
                        let sent = client
                            .post(format!("{base}/v1/chat/completions"))
                            .bearer_auth(&key)
                            .json(&body)
                            .send()
                            .await;
                        match sent {
                            Ok(resp) if resp.status() == 200 => {
                                let id = resp.headers()["x-request-id"]
                                    .to_str()
                                    .unwrap()
                                    .to_string();
                                // A stream's usage is known at its end.
                                match resp.bytes().await {
                                    Ok(_) => ok.lock().unwrap().push((base, id)),
                                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                                }
                            }
                            Ok(resp) => failures
                                .lock()
                                .unwrap()
                                .push(format!("status {}", resp.status())),
                            Err(e) => failures.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load { workers, ..load }
    }

    async fn stop(self) -> (Vec<(String, String)>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        let ok = self.ok_calls.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (ok, failures)
    }
}

fn served(mock: &MockServer) -> usize {
    mock.requests().len()
}

/// Waits until the upstream has served `n` calls.
async fn until_served(mock: &MockServer, n: usize) {
    let start = Instant::now();
    while served(mock) < n {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "load stalled at {} of {n} calls",
            served(mock)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the spool in `dir` holds every record of `n` calls.
async fn until_spooled(dir: &Path, n: usize) {
    let start = Instant::now();
    loop {
        let depth = Spool::inspect(dir).unwrap();
        if depth.appended == n as u64 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "spool holds {depth:?}, want {n} appended"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn usage_records(cp: &ControlPlane) -> Vec<pb::UsageRecordView> {
    cp.admin()
        .await
        .usage
        .list_usage_records(pb::ListUsageRecordsRequest {
            tenant: "acme".into(),
            limit: 1000,
        })
        .await
        .unwrap()
        .into_inner()
        .records
}

fn spool_dir(dp: &DataPlane) -> PathBuf {
    dp.data_dir.join(SPOOL_DIR)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_usage_lost_when_dp_is_killed_and_cp_is_down() {
    let mut gw = Gateway::start().await;
    let cp_addr = gw.cp.url().trim_start_matches("http://").to_string();
    let load = Load::start(gw.dp.url(), &gw.key);

    // 1. Normal operation, then the control plane dies mid-load (a report
    //    it stored may never be acknowledged: re-sent and counted once).
    until_served(&gw.mock, 40).await;
    gw.cp.proc.kill().await;
    let cp_down_since = Instant::now();
    let at_cp_kill = served(&gw.mock);

    // 2. Calls continue against the data plane alone.
    until_served(&gw.mock, at_cp_kill + 40).await;

    // 3. kill -9 the data plane once every finished call's record is on
    //    disk (a call in flight when a process dies cannot be metered: see
    //    docs/usage-spool.md), then restart it on the same data directory.
    {
        let _no_calls = load.gate.write().await;
        until_spooled(&spool_dir(&gw.dp), served(&gw.mock)).await;
        let unreported = Spool::inspect(&spool_dir(&gw.dp)).unwrap().records;
        assert!(unreported >= 40, "control plane is down: {unreported}");
        gw.dp.proc.kill().await;
        let dp_dir = gw.dp.data_dir.clone();
        gw.dp = DataPlane::start(gw.cp.url(), &gw.cp.dp_token, &dp_dir, "dp-1", &[]).await;
        *load.url.lock().unwrap() = gw.dp.url().to_string();
        gw.dp.proc.wait_for_log("usage spool opened").await;
    }

    // 4. The restarted data plane serves from its persisted snapshot.
    let at_dp_restart = served(&gw.mock);
    until_served(&gw.mock, at_dp_restart + 40).await;

    // 5. After an outage long enough for several failed reports, the
    //    control plane returns on the same address while calls go on.
    let outage = Duration::from_secs(3);
    tokio::time::sleep(outage.saturating_sub(cp_down_since.elapsed())).await;
    gw.cp = ControlPlane::start_on(&gw.cp.data_dir, &cp_addr).await;
    let at_cp_restart = served(&gw.mock);
    until_served(&gw.mock, at_cp_restart + 40).await;
    let (ok, failures) = load.stop().await;

    // Every call succeeded: none was in flight at the kill, and the data
    // plane never needed the control plane to serve.
    assert!(failures.is_empty(), "{failures:?}");
    let total = served(&gw.mock);
    assert_eq!(ok.len(), total);
    assert!(total < 1000, "{total} calls: more than one page of records");
    assert!(gw
        .mock
        .requests()
        .iter()
        .all(|r| r.path == "/v1/chat/completions"));

    // Usage drains into the control plane...
    let start = Instant::now();
    loop {
        let stored = usage_records(&gw.cp).await.len();
        if stored >= total {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "control plane has {stored} of {total} usage records"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start = Instant::now();
    while Spool::inspect(&spool_dir(&gw.dp)).unwrap().records > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "spool never drained"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and, once any late duplicate could have landed, exactly once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let records = usage_records(&gw.cp).await;
    assert_eq!(records.len(), total, "one record per served call");
    let ids: HashSet<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids.len(), total, "each request id exactly once");
    let expected: HashSet<&str> = ok.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, expected);
    let rows = gw
        .admin()
        .await
        .usage
        .get_usage(pb::GetUsageRequest {
            tenant: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(
        rows.iter().map(|r| r.calls).sum::<i64>(),
        i64::try_from(total).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_while_cp_is_down_keeps_usage_for_the_next_run() {
    let mut gw = Gateway::start().await;
    let cp_addr = gw.cp.url().trim_start_matches("http://").to_string();
    gw.cp.proc.kill().await;
    let mut request_ids = HashSet::new();
    for n in 0..10 {
        let resp = gw
            .post(
                "/v1/chat/completions",
                &json!({"model": "gpt-test",
                        "messages": [{"role": "user", "content": format!("call {n}")}]}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        request_ids.insert(resp.headers()["x-request-id"].to_str().unwrap().to_string());
    }
    // SIGTERM: usage is durable, so shutdown does not wait for the absent
    // control plane beyond a short last try.
    let started = Instant::now();
    let status = gw.dp.proc.terminate().await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(Spool::inspect(&spool_dir(&gw.dp)).unwrap().records, 10);

    let dp_dir = gw.dp.data_dir.clone();
    gw.dp = DataPlane::start(gw.cp.url(), &gw.cp.dp_token, &dp_dir, "dp-1", &[]).await;
    gw.cp = ControlPlane::start_on(&gw.cp.data_dir, &cp_addr).await;
    gw.wait_for_usage_calls(10).await;
    let start = Instant::now();
    while Spool::inspect(&spool_dir(&gw.dp)).unwrap().records > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "spool never drained"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let records = usage_records(&gw.cp).await;
    let seen: HashSet<String> = records.iter().map(|r| r.request_id.clone()).collect();
    assert_eq!(records.len(), 10);
    assert_eq!(seen, request_ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dp_killed_in_the_middle_of_calls_loses_at_most_the_calls_in_flight() {
    let mut gw = Gateway::start().await;
    let load = Load::start(gw.dp.url(), &gw.key);
    until_served(&gw.mock, 60).await;

    // kill -9 with calls in flight and records being written.
    let killed_url = gw.dp.url().to_string();
    gw.dp.proc.kill().await;
    let dp_dir = gw.dp.data_dir.clone();
    gw.dp = DataPlane::start(gw.cp.url(), &gw.cp.dp_token, &dp_dir, "dp-1", &[]).await;
    *load.url.lock().unwrap() = gw.dp.url().to_string();
    let at_restart = served(&gw.mock);
    until_served(&gw.mock, at_restart + 40).await;
    let (ok, _failures) = load.stop().await;

    let start = Instant::now();
    while Spool::inspect(&spool_dir(&gw.dp)).unwrap().records > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "spool never drained"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let records = usage_records(&gw.cp).await;
    let recorded: HashSet<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(recorded.len(), records.len(), "a request id counted twice");

    // Calls to the restarted data plane: every one metered.
    let after: Vec<&str> = ok
        .iter()
        .filter(|(url, _)| url != &killed_url)
        .map(|(_, id)| id.as_str())
        .collect();
    assert!(after.len() >= 40);
    assert!(after.iter().all(|id| recorded.contains(id)));
    // Calls answered before the kill: at most one per caller can still
    // have been between its response and the write of its record.
    let before_missing = ok
        .iter()
        .filter(|(url, id)| url == &killed_url && !recorded.contains(id.as_str()))
        .count();
    assert!(
        before_missing <= WORKERS,
        "{before_missing} answered calls unmetered"
    );
    // Upstream calls without a record: those in flight at the kill, plus
    // the ones above; never more than two per caller.
    let total = served(&gw.mock);
    assert!(records.len() <= total);
    assert!(
        total - records.len() <= 2 * WORKERS,
        "{} served, {} metered",
        total,
        records.len()
    );
}

/// Billing under chaos: with a priced model and a prepaid balance, the data
/// plane is killed with SIGKILL mid-load and restarted, then the control
/// plane is stopped for a while (calls go on from the data plane's lease)
/// and restarted. Afterwards the ledger's usage charges equal, to the
/// micro-dollar, the cost of the usage records, one per call the upstream
/// served, each priced exactly from its tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_matches_served_calls_after_dp_kill_and_cp_outage() {
    const TOPUP: i64 = 100_000_000;
    let mut gw = Gateway::start().await;
    let cp_addr = gw.cp.url().trim_start_matches("http://").to_string();
    let mut admin = gw.admin().await;
    admin
        .billing
        .set_price(pb::SetPriceRequest {
            tenant: "acme".into(),
            model: "gpt-test".into(),
            provider: String::new(),
            price: Some(pb::PriceValues {
                input_per_mtok: 3_000_000,
                output_per_mtok: 15_000_000,
                per_request_micros: 7,
                max_output_tokens: 50,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    admin
        .billing
        .add_ledger_entry(pb::AddLedgerEntryRequest {
            tenant: "acme".into(),
            kind: "topup".into(),
            amount_micros: TOPUP,
            idempotency_key: "chaos-topup".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    gw.cp.wait_for_ack("dp-1", gw.cp.version().await).await;
    let load = Load::start(gw.dp.url(), &gw.key);

    // 1. kill -9 the data plane mid-load (once finished calls are spooled)
    //    and restart it on the same data directory.
    until_served(&gw.mock, 40).await;
    {
        let _no_calls = load.gate.write().await;
        until_spooled(&spool_dir(&gw.dp), served(&gw.mock)).await;
        gw.dp.proc.kill().await;
        let dp_dir = gw.dp.data_dir.clone();
        gw.dp = DataPlane::start(gw.cp.url(), &gw.cp.dp_token, &dp_dir, "dp-1", &[]).await;
        *load.url.lock().unwrap() = gw.dp.url().to_string();
        gw.dp.proc.wait_for_log("usage spool opened").await;
    }
    let at_dp_restart = served(&gw.mock);
    until_served(&gw.mock, at_dp_restart + 40).await;

    // 2. Stop the control plane for a while: the data plane spends from
    //    its lease; then bring it back on the same address.
    gw.cp.proc.kill().await;
    let at_cp_kill = served(&gw.mock);
    until_served(&gw.mock, at_cp_kill + 40).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    gw.cp = ControlPlane::start_on(&gw.cp.data_dir, &cp_addr).await;
    let at_cp_restart = served(&gw.mock);
    until_served(&gw.mock, at_cp_restart + 40).await;
    let (ok, failures) = load.stop().await;
    assert!(failures.is_empty(), "{failures:?}");
    let total = served(&gw.mock);
    assert_eq!(ok.len(), total);

    // Records drain; then compare the ledger with them.
    let start = Instant::now();
    while usage_records(&gw.cp).await.len() < total {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "usage records never reached {total}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let records = usage_records(&gw.cp).await;
    assert_eq!(records.len(), total, "one record per served call");
    let mut expected_total = 0;
    for r in &records {
        // (in × 3 + out × 15) per million + 7 µ$, rounded half up once.
        let n = r.prompt_tokens * 3_000_000 + r.completion_tokens * 15_000_000 + 7_000_000;
        let expected = (n + 500_000) / 1_000_000;
        assert_eq!(r.cost_micros, expected, "{r:?}");
        expected_total += expected;
    }
    let ledger = gw
        .admin()
        .await
        .billing
        .list_ledger(pb::ListLedgerRequest {
            tenant: "acme".into(),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ledger.totals_by_kind["usage"], -expected_total);
    assert_eq!(
        ledger.entries.iter().filter(|e| e.kind == "usage").count(),
        total,
        "one charge per served call"
    );
    assert_eq!(ledger.balance_micros, TOPUP - expected_total);
}
