//! Secret hygiene: provider API keys and caller keys appear in no output of
//! an end-to-end run — control-plane and data-plane stdout and stderr, admin
//! API answers (providers, keys, health, usage), the control plane's
//! database files, the data plane's spool and persisted snapshot, and every
//! HTTP answer of the proxy — across successes and failures (bad key,
//! invalid body, unknown model, upstream 401, upstream 500).

use std::path::{Path, PathBuf};

use serde_json::json;
use tollgate_e2e::{http, pb, Gateway, UPSTREAM_KEY};
use tollgate_mock::Fault;

/// The key of a provider whose upstream refuses it (answers 401).
const REJECTED_UPSTREAM_KEY: &str = "sk-rejected-secret-8d2c61f0aa";

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// `(file, secret)` for every file under `dir` holding a secret.
fn leaks_in_files(dir: &Path, secrets: &[&str]) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for p in files_under(dir) {
        let bytes = std::fs::read(&p).unwrap_or_default();
        for s in secrets {
            if contains(&bytes, s) {
                out.push((p.clone(), (*s).to_string()));
            }
        }
    }
    out
}

/// Status line, headers and body of a proxy answer, as text.
async fn transcript(resp: reqwest::Response) -> String {
    let mut t = format!("{}\n", resp.status());
    for (k, v) in resp.headers() {
        t.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    t.push_str(&String::from_utf8_lossy(&resp.bytes().await.unwrap()));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output() {
    let mut gw = Gateway::start().await;
    let mut admin = gw.admin().await;
    admin
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: "acme".into(),
            name: "rejected".into(),
            kind: "openai".into(),
            base_url: gw.mock.base_url.clone(),
            api_key: REJECTED_UPSTREAM_KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .models
        .add_model(pb::AddModelRequest {
            tenant: "acme".into(),
            name: "gpt-rejected".into(),
            provider: "rejected".into(),
            upstream_model: "mock-small".into(),
        })
        .await
        .unwrap();
    let second = admin
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "acme".into(),
            name: "second".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let version = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", version).await;

    let secrets = [UPSTREAM_KEY, REJECTED_UPSTREAM_KEY, &gw.key, &second];
    let url = format!("{}/v1/chat/completions", gw.dp.url());
    let hi = json!({"model":"gpt-test","messages":[{"role":"user","content":"hi"}]});
    let mut answers = String::new();
    let mut statuses = Vec::new();
    let calls: Vec<(String, String)> = vec![
        (gw.key.clone(), hi.to_string()),
        (
            second.clone(),
            json!({"model":"gpt-test","stream":true,"messages":[{"role":"user","content":"hi"}]})
                .to_string(),
        ),
        // A key one character off, and a key of another shape.
        (format!("{}x", gw.key), hi.to_string()),
        ("tg-not-a-key".into(), hi.to_string()),
        (gw.key.clone(), "{not json".into()),
        (
            gw.key.clone(),
            json!({"model":"no-such","messages":[{"role":"user","content":"hi"}]}).to_string(),
        ),
        // The upstream refuses the provider key: 401 upstream.
        (
            gw.key.clone(),
            json!({"model":"gpt-rejected","messages":[{"role":"user","content":"hi"}]}).to_string(),
        ),
    ];
    for (key, body) in calls {
        let resp = http()
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        answers.push_str(&transcript(resp).await);
    }
    // The upstream fails with 500 on every attempt.
    gw.mock.script(std::iter::repeat_n(Fault::status(500), 8));
    let resp = http()
        .post(&url)
        .bearer_auth(&second)
        .json(&hi)
        .send()
        .await
        .unwrap();
    statuses.push(resp.status().as_u16());
    answers.push_str(&transcript(resp).await);
    assert_eq!(
        statuses,
        vec![200, 200, 401, 401, 400, 404, 502, 500],
        "{answers}"
    );

    // Admin API answers, as a client would print them.
    let providers = admin
        .providers
        .list_providers(pb::ListProvidersRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(providers.providers.len(), 2);
    let keys = admin
        .keys
        .list_keys(pb::ListKeysRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let health = admin
        .providers
        .list_provider_health(pb::ListProviderHealthRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // Two successes, the upstream 401 and the upstream 500.
    gw.wait_for_usage_calls(4).await;
    let usage = admin
        .usage
        .list_usage_records(pb::ListUsageRecordsRequest {
            tenant: "acme".into(),
            limit: 100,
        })
        .await
        .unwrap()
        .into_inner();
    let admin_text = format!("{providers:?}\n{keys:?}\n{health:?}\n{usage:?}");

    for s in &secrets {
        assert!(!answers.contains(s), "a proxy answer holds {s}:\n{answers}");
        assert!(!admin_text.contains(s), "an admin answer holds {s}");
    }
    let root = gw.dir.path().to_path_buf();
    let written = files_under(&root);
    for expected in [
        "tollgate.db",
        "spool",
        "cp-",
        "dp-",
        "stdout.log",
        "snapshot",
    ] {
        assert!(
            written
                .iter()
                .any(|p| p.to_string_lossy().contains(expected)),
            "no {expected} file among {written:?}"
        );
    }
    assert_eq!(leaks_in_files(&root, &secrets), Vec::new());

    // Stopped: the SQLite WAL is checkpointed and the logs are complete.
    gw.dp.proc.terminate().await;
    gw.cp.proc.terminate().await;
    assert_eq!(leaks_in_files(&root, &secrets), Vec::new());

    // The scan finds a secret where there is one.
    let canary = gw.dp.data_dir.join("canary");
    std::fs::write(&canary, format!("..{REJECTED_UPSTREAM_KEY}..")).unwrap();
    assert_eq!(
        leaks_in_files(&root, &secrets),
        vec![(canary, REJECTED_UPSTREAM_KEY.to_string())]
    );
}
