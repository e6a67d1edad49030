//! Observability end to end: a scripted traffic mix through a real data
//! plane, then a Prometheus scrape of its admin listener with exact counter
//! values; health and readiness report config sync and the usage spool.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tollgate_e2e::{http, Gateway};
use tollgate_mock::Fault;

/// A free port on 127.0.0.1 for the admin listener.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Parsed text exposition: (name, labels) → value.
struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut out = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut map = BTreeMap::new();
            // Label values here never contain `",`.
            for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap();
                map.insert(k.to_string(), v.trim_matches('"').to_string());
            }
            out.push((name.to_string(), map, value.parse().unwrap()));
        }
        Scrape(out)
    }

    /// The value of the one series of `name` with exactly these labels; 0
    /// when absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<f64> = self
            .0
            .iter()
            .filter(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| *v)
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} twice");
        found.first().copied().unwrap_or(0.0)
    }
}

async fn scrape(url: &str) -> Scrape {
    let resp = http().get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    Scrape::parse(&resp.text().await.unwrap())
}

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-test", "stream": stream,
           "stream_options": {"include_usage": stream},
           "messages": [{"role": "user", "content": "count my tokens"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrape_shows_exact_counts_of_a_traffic_mix() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let gw = Gateway::start_with_dp_args(&["--metrics-listen", &listen]).await;
    let admin = format!("http://{listen}");

    // Before any call: the gauges already say where sync and spool stand.
    let s = scrape(&admin).await;
    assert_eq!(s.value("tollgate_config_sync_connected", &[]), 1.0);
    assert_eq!(
        s.value("tollgate_config_version", &[]),
        gw.cp.version().await as f64
    );

    let (mut input, mut output) = (0i64, 0i64);
    for _ in 0..3 {
        let r = gw.post("/v1/chat/completions", &chat(false)).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        input += v["usage"]["prompt_tokens"].as_i64().unwrap();
        output += v["usage"]["completion_tokens"].as_i64().unwrap();
    }
    for _ in 0..2 {
        let r = gw.post("/v1/chat/completions", &chat(true)).await;
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        let last_usage = tollgate_e2e::sse_data(&body)
            .iter()
            .filter(|d| d.as_str() != "[DONE]")
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .rfind(|v| v["usage"].is_object())
            .unwrap();
        input += last_usage["usage"]["prompt_tokens"].as_i64().unwrap();
        output += last_usage["usage"]["completion_tokens"].as_i64().unwrap();
    }
    // The provider fails: every attempt answers 500.
    gw.mock.set_default(Fault::status(500));
    let failed = gw.post("/v1/chat/completions", &chat(false)).await;
    let failed_status = failed.status().as_u16();
    assert!(failed_status >= 500, "{failed_status}");
    let failed_attempts: f64 = failed.headers()["x-tollgate-attempts"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(failed_attempts >= 1.0);
    gw.mock.set_default(Fault::Ok);
    // Refused before routing: unknown model, bad key.
    let r = gw
        .post(
            "/v1/chat/completions",
            &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = http()
        .post(format!("{}/v1/chat/completions", gw.dp.url()))
        .bearer_auth("tg-not-a-key")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A call is counted as it finishes, which can be just after its answer
    // reached the caller: scrape until all 8 calls are in (bounded), then
    // check every figure exactly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let s = loop {
        let s = scrape(&admin).await;
        let counted: f64 =
            s.0.iter()
                .filter(|(n, _, _)| n == "tollgate_requests_total")
                .map(|(_, _, v)| v)
                .sum();
        let in_flight = s.value("tollgate_requests_in_flight", &[]);
        if (counted >= 8.0 && in_flight == 0.0) || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let req = |model: &str, provider: &str, status: &str| {
        s.value(
            "tollgate_requests_total",
            &[
                ("endpoint", "chat.completions"),
                ("model", model),
                ("provider", provider),
                ("status", status),
            ],
        )
    };
    assert_eq!(req("gpt-test", "up", "200"), 5.0);
    assert_eq!(req("gpt-test", "up", &failed_status.to_string()), 1.0);
    assert_eq!(req("", "", "404"), 1.0);
    assert_eq!(req("", "", "401"), 1.0);
    let routed = [
        ("endpoint", "chat.completions"),
        ("model", "gpt-test"),
        ("provider", "up"),
    ];
    assert_eq!(
        s.value("tollgate_request_duration_seconds_count", &routed),
        6.0
    );
    assert_eq!(
        s.value("tollgate_time_to_first_token_seconds_count", &routed),
        2.0
    );
    let tokens = |bucket: &str| {
        s.value(
            "tollgate_tokens_total",
            &[
                ("model", "gpt-test"),
                ("provider", "up"),
                ("bucket", bucket),
            ],
        )
    };
    assert!(input > 0 && output > 0);
    assert_eq!(tokens("input"), input as f64);
    assert_eq!(tokens("output"), output as f64);
    let attempts = |status: &str, code: &str| {
        s.value(
            "tollgate_upstream_attempts_total",
            &[("provider", "up"), ("status", status), ("code", code)],
        )
    };
    assert_eq!(attempts("200", ""), 5.0);
    assert_eq!(attempts("500", "upstream_status"), failed_attempts);
    assert_eq!(s.value("tollgate_requests_in_flight", &[]), 0.0);
    // Every target's breaker is reported (0 closed, 1 half-open, 2 open).
    let breaker = s.0.iter().find(|(n, l, _)| {
        n == "tollgate_upstream_breaker_state"
            && l.get("provider").map(String::as_str) == Some("up")
            && l.get("upstream_model").map(String::as_str) == Some("mock-small")
    });
    assert!(breaker.is_some_and(|(_, _, v)| (0.0..=2.0).contains(v)));

    // Metrics stay off the proxy port when the admin listener is set.
    let r = http()
        .get(format!("{}/metrics", gw.dp.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Readiness reports sync and the durable spool.
    let ready: Value = http()
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["config_sync"], "connected");
    assert!(ready["usage_spool"]["records"].is_u64(), "{ready}");
    let proxy_ready: Value = http()
        .get(format!("{}/readyz", gw.dp.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(proxy_ready["config_sync"], "connected");
}
