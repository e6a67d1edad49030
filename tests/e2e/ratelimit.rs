//! Rate limits through the real binaries (docs/rate-limits.md): a limit
//! shared by two data planes through control-plane quota slices, token
//! limits corrected by real usage, a concurrency limit with a slow
//! upstream, OpenAI and Anthropic shaped 429s with `Retry-After` and the
//! `x-ratelimit-*` headers, limits changed with the CLI reaching the data
//! plane within a second, and refusals recorded with the limit that fired.

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::{bin_path, http, pb, DataPlane, Gateway};
use tollgate_mock::Fault;

fn chat(text: &str, max_tokens: u64) -> serde_json::Value {
    json!({"model": "gpt-test", "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": text}]})
}

async fn set_key_limits(gw: &Gateway, limits: pb::RateLimitValues) {
    let mut admin = gw.admin().await;
    admin
        .rate_limits
        .set_rate_limit(pb::SetRateLimitRequest {
            tenant: "acme".into(),
            scope: Some(pb::RateLimitScope {
                kind: "key".into(),
                target: "backend".into(),
            }),
            limits: Some(limits),
            tier: String::new(),
        })
        .await
        .unwrap();
}

/// Waits until every data plane at `urls` serves the latest version.
async fn synced(gw: &Gateway, nodes: &[&str]) {
    let v = gw.cp.version().await;
    for n in nodes {
        gw.cp.wait_for_ack(n, v).await;
    }
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

fn now_ms() -> i64 {
    tollgate_core::time::now_ms()
}

/// Two data planes, RPS 10 on the key, 16 callers hammering for 8 whole
/// one-second windows: the control plane's slices hold the limit exactly
/// (the documented bound with the control plane up: 0 over) and at least
/// 95 % of what the limit allows is admitted. The same arithmetic holds for
/// RPM (minute windows); seconds keep the test short.
#[tokio::test]
async fn two_data_planes_share_one_limit_without_exceeding_it() {
    const LIMIT: i64 = 10;
    const WINDOWS: i64 = 8;
    let gw = Gateway::start().await;
    let dp2 = DataPlane::start(
        gw.cp.url(),
        &gw.cp.dp_token,
        &gw.dir.path().join("dp-2"),
        "dp-2",
        &[],
    )
    .await;
    set_key_limits(
        &gw,
        pb::RateLimitValues {
            requests_per_second: LIMIT as u64,
            ..Default::default()
        },
    )
    .await;
    synced(&gw, &["dp-1", "dp-2"]).await;
    // Start just after a window begins; stop sending just before the last
    // one ends, so every admitted call falls in one of the WINDOWS windows.
    let start = (now_ms() / 1_000 + 1) * 1_000 + 30;
    let stop = start - 30 + WINDOWS * 1_000 - 120;
    tokio::time::sleep(Duration::from_millis((start - now_ms()).max(0) as u64)).await;
    let mut workers = Vec::new();
    for url in [gw.dp.url().to_string(), dp2.url().to_string()] {
        for _ in 0..8 {
            let (url, key) = (url.clone(), gw.key.clone());
            workers.push(tokio::spawn(async move {
                let client = http();
                let (mut ok, mut limited) = (0_i64, 0_i64);
                while now_ms() < stop {
                    let r = client
                        .post(format!("{url}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .json(&chat("hi", 5))
                        .send()
                        .await
                        .unwrap();
                    match r.status().as_u16() {
                        200 => {
                            assert_eq!(header(&r, "x-ratelimit-limit-requests"), Some("10"));
                            ok += 1;
                        }
                        429 => {
                            let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
                            assert_eq!(retry, 1);
                            limited += 1;
                        }
                        other => panic!("unexpected status {other}"),
                    }
                    let _ = r.bytes().await;
                }
                (ok, limited)
            }));
        }
    }
    let (mut ok, mut limited) = (0, 0);
    for w in workers {
        let (o, l) = w.await.unwrap();
        ok += o;
        limited += l;
    }
    let allowed = LIMIT * WINDOWS;
    assert!(limited > 0, "the callers never hit the limit");
    assert!(ok <= allowed, "{ok} admitted, limit {allowed}");
    assert!(ok * 100 >= allowed * 95, "only {ok} of {allowed} admitted");
}

/// TPM on the key: each call is charged its estimate (body bytes +
/// max_tokens) at admission and corrected to its real usage after the
/// answer, so far more calls fit than the estimates alone would allow, and
/// the headers show what is left exactly.
#[tokio::test]
async fn token_limit_is_corrected_by_real_usage() {
    const TPM: i64 = 3_000;
    const MAX_TOKENS: u64 = 400;
    let gw = Gateway::start().await;
    set_key_limits(
        &gw,
        pb::RateLimitValues {
            tokens_per_minute: TPM as u64,
            ..Default::default()
        },
    )
    .await;
    synced(&gw, &["dp-1"]).await;
    // Not near the end of a minute: the whole test runs in one window.
    while now_ms() % 60_000 > 45_000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let long = "please repeat all of these words back to me in full ".repeat(8);
    let body = chat(&long, MAX_TOKENS);
    let estimate = serde_json::to_vec(&body).unwrap().len() as i64 + MAX_TOKENS as i64;
    let mut used = 0_i64;
    let mut admitted = 0;
    loop {
        let r = gw.post("/v1/chat/completions", &body).await;
        let status = r.status().as_u16();
        assert_eq!(header(&r, "x-ratelimit-limit-tokens"), Some("3000"));
        let remaining: i64 = header(&r, "x-ratelimit-remaining-tokens")
            .unwrap()
            .parse()
            .unwrap();
        let reset = header(&r, "x-ratelimit-reset-tokens").unwrap().to_string();
        assert!(reset.ends_with('s'), "{reset}");
        if status == 429 {
            // Refused exactly when the next estimate no longer fits.
            assert!(TPM - used < estimate, "used {used}, estimate {estimate}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "rate_limit_exceeded");
            assert_eq!(v["error"]["type"], "tokens");
            break;
        }
        assert_eq!(status, 200);
        // At admission: the limit less what earlier calls really used and
        // this call's estimate.
        assert_eq!(remaining, TPM - used - estimate);
        let v: serde_json::Value = r.json().await.unwrap();
        let total = v["usage"]["total_tokens"].as_i64().unwrap();
        assert!(total < estimate && total > 50, "{total}");
        used += total;
        admitted += 1;
        assert!(admitted < 100);
        // The correction happens when the call is logged, just after the
        // answer: give it a moment.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Estimates alone would have admitted TPM / estimate calls.
    assert!(
        admitted > (TPM / estimate) as usize + 2,
        "{admitted} admitted"
    );
}

/// Concurrency 2 on the key with an upstream that takes a second: the
/// third concurrent call is refused at once (OpenAI shape, and Anthropic
/// shape on /v1/messages), slots come back when calls end — also when the
/// caller hangs up — and refusals are recorded with the limit that fired
/// at no cost.
#[tokio::test]
async fn concurrency_limit_with_a_slow_upstream() {
    let gw = Gateway::start().await;
    set_key_limits(
        &gw,
        pb::RateLimitValues {
            max_concurrent: 2,
            ..Default::default()
        },
    )
    .await;
    synced(&gw, &["dp-1"]).await;
    gw.mock
        .set_default(Fault::Latency(Duration::from_millis(1_000)));
    let url = gw.dp.url().to_string();
    let slow = |n: usize| {
        let (url, key) = (url.clone(), gw.key.clone());
        tokio::spawn(async move {
            http()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&chat(&format!("slow {n}"), 5))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let a = slow(1);
    let b = slow(2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = gw.post("/v1/chat/completions", &chat("third", 5)).await;
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(header(&r, "retry-after"), Some("1"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");
    let r = http()
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", &gw.key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "gpt-test", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "third"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!((a.await.unwrap(), b.await.unwrap()), (200, 200));

    // A caller that hangs up still gives its slot back.
    let gone = slow(3);
    tokio::time::sleep(Duration::from_millis(200)).await;
    gone.abort();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (c, d) = (slow(4), slow(5));
    assert_eq!((c.await.unwrap(), d.await.unwrap()), (200, 200));

    // The two refusals are in the metadata log with the limit that fired,
    // and cost nothing.
    let mut admin = gw.admin().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = admin
            .usage
            .list_usage_records(pb::ListUsageRecordsRequest {
                tenant: "acme".into(),
                limit: 100,
            })
            .await
            .unwrap()
            .into_inner()
            .records;
        let refused: Vec<_> = records.iter().filter(|r| r.status_code == 429).collect();
        if refused.len() >= 2 {
            for r in refused {
                assert_eq!(r.error_code, "rate_limit_exceeded:key:concurrency");
                assert_eq!(r.cost_micros, 0);
            }
            break;
        }
        assert!(Instant::now() < deadline, "{records:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `tollgate limit set` reaches the data plane within a second; responses
/// of a limited key carry the headers, and `limit clear` removes them.
#[tokio::test]
async fn limits_set_with_the_cli_apply_within_a_second() {
    let gw = Gateway::start().await;
    let r = gw.post("/v1/chat/completions", &chat("hi", 5)).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(header(&r, "x-ratelimit-limit-requests").is_none());
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin_path("tollgate"))
            .args(["--cp", gw.cp.url(), "--token", &gw.cp.admin_token])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    cli(&[
        "limit", "tier", "set", "--name", "free", "--rpm", "500", "--tpm", "90000",
    ]);
    cli(&[
        "limit", "set", "--tenant", "acme", "--key", "backend", "--rpm", "3", "--tier", "free",
    ]);
    let set_at = Instant::now();
    let r = loop {
        let r = gw.post("/v1/chat/completions", &chat("hi", 5)).await;
        if header(&r, "x-ratelimit-limit-requests").is_some() {
            break r;
        }
        assert!(
            set_at.elapsed() < Duration::from_secs(1),
            "not applied within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(set_at.elapsed() < Duration::from_secs(1));
    // The key's own RPM, and the tier's TPM where the key sets none.
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(header(&r, "x-ratelimit-limit-tokens"), Some("90000"));
    let shown: serde_json::Value =
        serde_json::from_str(&cli(&["--json", "limit", "show", "--tenant", "acme"])).unwrap();
    assert_eq!(shown[0]["effective"]["rpm"], 3);
    assert_eq!(shown[0]["effective"]["tpm"], 90_000);
    cli(&["limit", "clear", "--tenant", "acme", "--key", "backend"]);
    let cleared_at = Instant::now();
    loop {
        let r = gw.post("/v1/chat/completions", &chat("hi", 5)).await;
        if r.status().as_u16() == 200 && header(&r, "x-ratelimit-limit-requests").is_none() {
            break;
        }
        assert!(
            cleared_at.elapsed() < Duration::from_secs(1),
            "not cleared within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `tollgate_rate_limit_rejections_total` series of a Prometheus text
/// exposition: (scope, limit) → value.
fn limit_rejections(text: &str) -> std::collections::BTreeMap<(String, String), f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("tollgate_rate_limit_rejections_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let mut scope = String::new();
        let mut limit = String::new();
        for pair in labels.split(',') {
            let (k, v) = pair.split_once('=').unwrap();
            let v = v.trim_matches('"').to_string();
            match k {
                "scope" => scope = v,
                "limit" => limit = v,
                other => panic!("unexpected label {other} in {line}"),
            }
        }
        out.insert((scope, limit), value.parse().unwrap());
    }
    out
}

/// A scripted run of refusals by two different limits: the data plane's
/// `/metrics` counts each refusal under the limit that fired (scope and
/// kind, exact values), and the usage records (the metadata log the
/// control plane keeps) and the data plane's access log name the same
/// limit, at no cost.
#[tokio::test]
async fn refusals_are_counted_in_metrics_and_logged_with_the_limit_that_fired() {
    const KEY_RPD: u64 = 3;
    const TENANT_TPM: u64 = 2_000;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let gw = Gateway::start_with_dp_args(&["--metrics-listen", &listen]).await;
    set_key_limits(
        &gw,
        pb::RateLimitValues {
            requests_per_day: KEY_RPD,
            ..Default::default()
        },
    )
    .await;
    gw.admin()
        .await
        .rate_limits
        .set_rate_limit(pb::SetRateLimitRequest {
            tenant: "acme".into(),
            scope: Some(pb::RateLimitScope {
                kind: "tenant".into(),
                target: String::new(),
            }),
            limits: Some(pb::RateLimitValues {
                tokens_per_minute: TENANT_TPM,
                ..Default::default()
            }),
            tier: String::new(),
        })
        .await
        .unwrap();
    synced(&gw, &["dp-1"]).await;
    let scrape = || async {
        let r = http()
            .get(format!("http://{listen}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.text().await.unwrap()
    };
    assert!(limit_rejections(&scrape().await).is_empty());

    // Two calls whose estimate alone (max_tokens 5,000) can never fit the
    // tenant's TPM: refused by the tenant's limit, and the key's request
    // they took first is given back.
    for _ in 0..2 {
        let r = gw.post("/v1/chat/completions", &chat("big", 5_000)).await;
        assert_eq!(r.status().as_u16(), 429);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "tokens");
    }
    // Then seven small calls: the key's RPD admits three, refuses four.
    let mut statuses = Vec::new();
    for i in 0..7 {
        let r = gw
            .post("/v1/chat/completions", &chat(&format!("small {i}"), 5))
            .await;
        statuses.push(r.status().as_u16());
        let _ = r.bytes().await;
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429, 429]);

    let text = scrape().await;
    let rejections = limit_rejections(&text);
    let expected: std::collections::BTreeMap<(String, String), f64> = [
        (("key".to_string(), "rpd".to_string()), 4.0),
        (("tenant".to_string(), "tpm".to_string()), 2.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(rejections, expected, "{text}");
    let requests_429: f64 = text
        .lines()
        .filter(|l| l.starts_with("tollgate_requests_total{") && l.contains("status=\"429\""))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(requests_429, 6.0, "{text}");

    // The metadata log: one usage record per call, the refusals with the
    // limit that fired and no cost.
    let mut admin = gw.admin().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let records = loop {
        let records = admin
            .usage
            .list_usage_records(pb::ListUsageRecordsRequest {
                tenant: "acme".into(),
                limit: 100,
            })
            .await
            .unwrap()
            .into_inner()
            .records;
        if records.len() >= 9 {
            break records;
        }
        assert!(Instant::now() < deadline, "{records:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(records.len(), 9, "{records:?}");
    let count = |status: u32, code: &str| {
        records
            .iter()
            .filter(|r| r.status_code == status && r.error_code == code)
            .count()
    };
    assert_eq!(count(200, ""), 3, "{records:?}");
    assert_eq!(count(429, "rate_limit_exceeded:key:rpd"), 4, "{records:?}");
    assert_eq!(
        count(429, "rate_limit_exceeded:tenant:tpm"),
        2,
        "{records:?}"
    );
    for r in records.iter().filter(|r| r.status_code == 429) {
        assert_eq!(r.cost_micros, 0);
    }
    // The data plane's access log line of each refusal names it too.
    let log = gw.dp.proc.log_text();
    let logged = |code: &str| {
        log.lines()
            .filter(|l| l.contains("access") && l.contains(code))
            .count()
    };
    assert_eq!(logged("rate_limit_exceeded:key:rpd"), 4, "{log}");
    assert_eq!(logged("rate_limit_exceeded:tenant:tpm"), 2, "{log}");
}

/// One call of the two-minute run: when it was sent and answered (epoch ms,
/// the clock the data planes' windows use) and whether it was admitted.
#[derive(Debug, Clone, Copy)]
struct Sent {
    sent_ms: i64,
    done_ms: i64,
    admitted: bool,
}

/// Issue 7's accuracy test, literally: two data planes, RPM 60 on the key,
/// real minute windows, four callers (two per data plane) each sending one
/// call a second — four times the limit — for two minutes from wherever
/// the clock stands. Asserted:
/// * over the two minutes no more than the documented bound for an
///   interval of length T is admitted: `limit × (⌈T / window⌉ + 1)` = 180,
///   i.e. 60 above 120 (the fixed-window edge);
/// * per window, at most the limit (the control plane is reachable; if a
///   data plane fell back to its local share, the documented partition
///   bound instead);
/// * at least 95 % of the allowed calls are admitted: per window
///   `min(60, calls offered in it)`.
///
/// Callers pause in the last second of each minute, so every call belongs
/// to one window (a call answered after the boundary it was sent before
/// counts against both windows' bound). Takes two minutes of wall time, so
/// it is ignored in the suite; scripts/test.sh runs it beside the suite,
/// where it waits on the clock without holding a test slot.
#[tokio::test]
#[ignore = "two real minutes; scripts/test.sh runs it beside the suite"]
async fn rpm_60_on_two_data_planes_over_two_real_minutes() {
    const RPM: i64 = 60;
    const WINDOW: i64 = 60_000;
    const RUN_MS: i64 = 120_000;
    const CALLERS_PER_DP: i64 = 2;
    const DPS: i64 = 2;
    const GAP_MS: i64 = 1_000;
    let gw = Gateway::start_with_dp_args(&["--ratelimit-expected-dps", "2"]).await;
    let dp2 = DataPlane::start(
        gw.cp.url(),
        &gw.cp.dp_token,
        &gw.dir.path().join("dp-2"),
        "dp-2",
        &["--ratelimit-expected-dps", "2"],
    )
    .await;
    set_key_limits(
        &gw,
        pb::RateLimitValues {
            requests_per_minute: RPM as u64,
            ..Default::default()
        },
    )
    .await;
    synced(&gw, &["dp-1", "dp-2"]).await;
    let t0 = now_ms() + 200;
    let end = t0 + RUN_MS;
    let callers = DPS * CALLERS_PER_DP;
    let mut workers = Vec::new();
    for (d, url) in [gw.dp.url().to_string(), dp2.url().to_string()]
        .into_iter()
        .enumerate()
    {
        for c in 0..CALLERS_PER_DP {
            let (url, key) = (url.clone(), gw.key.clone());
            // Spread evenly: one call every 1000 / callers ms overall.
            let offset = (d as i64 * CALLERS_PER_DP + c) * 1_000 / callers;
            workers.push(tokio::spawn(async move {
                let client = http();
                let mut sent = Vec::new();
                let mut next = t0 + offset;
                // Bounded: one call a second for at most the run.
                for _ in 0..RUN_MS / 1_000 + 1 {
                    if next % WINDOW >= WINDOW - GAP_MS {
                        next = (next / WINDOW + 1) * WINDOW + offset;
                    }
                    if next >= end {
                        break;
                    }
                    let wait = next - now_ms();
                    if wait > 0 {
                        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                    }
                    let sent_ms = now_ms();
                    let r = client
                        .post(format!("{url}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .json(&chat("hi", 5))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    assert_eq!(header(&r, "x-ratelimit-limit-requests"), Some("60"));
                    let _ = r.bytes().await;
                    assert!(status == 200 || status == 429, "status {status}");
                    sent.push(Sent {
                        sent_ms,
                        done_ms: now_ms(),
                        admitted: status == 200,
                    });
                    next += 1_000;
                }
                sent
            }));
        }
    }
    let mut calls = Vec::new();
    for w in workers {
        calls.extend(w.await.unwrap());
    }
    let window_of = |ms: i64| ms / WINDOW;
    let first = window_of(t0);
    let last = window_of(end - 1);
    let admitted = calls.iter().filter(|c| c.admitted).count() as i64;
    // A data plane that lost the control plane says so in its log.
    let fell_back = [&gw.dp.proc, &dp2.proc]
        .iter()
        .any(|p| p.log_text().contains("using local shares"));
    let per_window_bound = if fell_back {
        // limit + every data plane's local share (docs/rate-limits.md).
        RPM + DPS * ((RPM + DPS - 1) / DPS)
    } else {
        RPM
    };
    let mut allowed = 0;
    let mut report = Vec::new();
    for w in first..=last {
        let offered = calls.iter().filter(|c| window_of(c.sent_ms) == w).count() as i64;
        // Admitted in window w for sure, or possibly (answered after the
        // boundary it was sent before).
        let upper = calls
            .iter()
            .filter(|c| c.admitted && window_of(c.sent_ms) <= w && window_of(c.done_ms) >= w)
            .count() as i64;
        report.push((w - first, offered, upper));
        assert!(
            upper <= per_window_bound,
            "window {w}: {upper} admitted, bound {per_window_bound} (fell back: {fell_back}); {report:?}"
        );
        allowed += offered.min(RPM);
    }
    let windows_touched = (RUN_MS / WINDOW) + 1;
    let interval_bound = RPM * windows_touched;
    println!(
        "rpm 60, 2 data planes, 2 min: {} calls, {admitted} admitted, {allowed} allowed, \
         bound {interval_bound}; per window (offered, admitted): {report:?}; fell back: {fell_back}",
        calls.len()
    );
    assert!(calls.len() as i64 >= (RUN_MS / 1_000 - 4) * callers * 9 / 10);
    assert!(
        admitted <= interval_bound,
        "{admitted} admitted in two minutes, documented bound {interval_bound}"
    );
    assert!(
        admitted * 100 >= allowed * 95,
        "only {admitted} of {allowed} allowed calls admitted; {report:?}"
    );
    assert!(
        calls.iter().any(|c| !c.admitted),
        "callers at four times the limit were never refused"
    );
}

/// Concurrency 1 with a short queue (2 s, one place), set with the CLI,
/// and an upstream that takes a second: a second simultaneous call waits
/// for the slot and succeeds; a third, with the queue full, is refused at
/// once; a waiting caller that hangs up gives its place back, so the next
/// call queues (and succeeds) instead of being refused.
#[tokio::test]
async fn concurrency_queue_waits_for_a_slot_refuses_when_full_and_frees_cancelled_places() {
    let gw = Gateway::start().await;
    let out = std::process::Command::new(bin_path("tollgate"))
        .args(["--cp", gw.cp.url(), "--token", &gw.cp.admin_token])
        .args([
            "--json", "limit", "set", "--tenant", "acme", "--key", "backend",
        ])
        .args([
            "--concurrency",
            "1",
            "--queue-ms",
            "2000",
            "--queue-depth",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(set[0]["effective"]["queue_ms"], 2_000);
    assert_eq!(set[0]["effective"]["queue_depth"], 1);
    synced(&gw, &["dp-1"]).await;
    gw.mock
        .set_default(Fault::Latency(Duration::from_millis(1_000)));
    let url = gw.dp.url().to_string();
    let slow = |n: usize| {
        let (url, key) = (url.clone(), gw.key.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let r = http()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&chat(&format!("slow {n}"), 5))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            (status, started.elapsed())
        })
    };
    // Two at once: the second waits about a second for the first's slot.
    let a = slow(1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = slow(2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The one place is taken: refused at once, as without a queue.
    let started = Instant::now();
    let r = gw.post("/v1/chat/completions", &chat("third", 5)).await;
    assert_eq!(r.status().as_u16(), 429);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(header(&r, "retry-after"), Some("1"));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!((a.0, b.0), (200, 200));
    // b queued ~0.8 s for a's slot, then took its own second upstream.
    assert!(b.1 >= Duration::from_millis(1_600), "{:?}", b.1);

    // A waiting caller hangs up: its place is free for the next one.
    let d = slow(4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gone = slow(5);
    tokio::time::sleep(Duration::from_millis(200)).await;
    gone.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let f = slow(6);
    let (d, f) = (d.await.unwrap(), f.await.unwrap());
    assert_eq!(d.0, 200);
    assert_eq!(
        f.0, 200,
        "the cancelled caller's queue place was not given back"
    );
    assert!(f.1 >= Duration::from_millis(1_200), "{:?}", f.1);

    // Only the queue-full call was refused, with the limit that fired (the
    // caller that hung up while queued reached no upstream: no usage).
    let mut admin = gw.admin().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = admin
            .usage
            .list_usage_records(pb::ListUsageRecordsRequest {
                tenant: "acme".into(),
                limit: 100,
            })
            .await
            .unwrap()
            .into_inner()
            .records;
        if records.len() >= 5 {
            let refused: Vec<_> = records.iter().filter(|r| r.status_code == 429).collect();
            assert_eq!(refused.len(), 1, "{records:?}");
            assert_eq!(refused[0].error_code, "rate_limit_exceeded:key:concurrency");
            assert_eq!(
                records.iter().filter(|r| r.status_code == 200).count(),
                4,
                "{records:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{records:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
