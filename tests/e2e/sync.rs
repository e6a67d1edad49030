//! Config push from the control plane, and static stability of the data
//! plane when the control plane is gone.

use std::time::Instant;

use serde_json::{json, Value};
use tollgate_e2e::{http, pb, ControlPlane, DataPlane, Gateway};

async fn model_ids(gw_url: &str, key: &str) -> Vec<String> {
    let list: Value = http()
        .get(format!("{gw_url}/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_change_is_pushed_and_acked() {
    let gw = Gateway::start().await;
    let mut admin = gw.admin().await;
    let before = gw.cp.version().await;
    let started = Instant::now();
    admin
        .models
        .add_model(pb::AddModelRequest {
            tenant: "acme".into(),
            name: "gpt-new".into(),
            provider: "up".into(),
            upstream_model: "mock-large".into(),
        })
        .await
        .unwrap();
    let after = gw.cp.version().await;
    assert!(after > before, "a config write bumps the version");
    gw.cp.wait_for_ack("dp-1", after).await;
    eprintln!(
        "model visible to the data plane after {:?}",
        started.elapsed()
    );
    let ids = model_ids(gw.dp.url(), &gw.key).await;
    assert_eq!(ids, vec!["gpt-new", "gpt-test"]);

    let status = admin
        .data_planes
        .get_config_status(pb::GetConfigStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let dp = status
        .data_planes
        .iter()
        .find(|d| d.node_id == "dp-1")
        .unwrap();
    assert!(dp.connected);
    assert_eq!(dp.acked_version, after);
    assert_eq!(dp.rejected_version, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plane_restarted_without_control_plane_serves_last_snapshot() {
    let mut gw = Gateway::start().await;
    let chat =
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": "still there?"}]});
    assert_eq!(gw.post("/v1/chat/completions", &chat).await.status(), 200);

    // The control plane crashes, then the data plane restarts.
    gw.cp.proc.kill().await;
    gw.dp.proc.terminate().await;
    let dp = DataPlane::start(gw.cp.url(), &gw.cp.dp_token, &gw.dp.data_dir, "dp-1", &[]).await;
    gw.dp = dp;

    let ready = http()
        .get(format!("{}/readyz", gw.dp.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "serves from the persisted snapshot");
    let resp = gw.post("/v1/chat/completions", &chat).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .ends_with("\"still there?\""));
    assert_eq!(model_ids(gw.dp.url(), &gw.key).await, vec!["gpt-test"]);

    // The persisted snapshot holds provider keys: it must not be readable
    // as plain text.
    for entry in std::fs::read_dir(&gw.dp.data_dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            let needle = tollgate_e2e::UPSTREAM_KEY.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} contains the provider key in clear",
                p.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plane_reconnects_when_control_plane_returns() {
    let mut gw = Gateway::start().await;
    let addr = gw.cp.url().trim_start_matches("http://").to_string();
    gw.cp.proc.kill().await;
    // Same data dir, same port.
    let cp = ControlPlane::start_on(&gw.cp.data_dir, &addr).await;
    gw.cp = cp;
    gw.admin()
        .await
        .models
        .add_model(pb::AddModelRequest {
            tenant: "acme".into(),
            name: "after-restart".into(),
            provider: "up".into(),
            upstream_model: "mock-small".into(),
        })
        .await
        .unwrap();
    let v = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", v).await;
    assert_eq!(
        model_ids(gw.dp.url(), &gw.key).await,
        vec!["after-restart", "gpt-test"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plane_without_any_config_is_live_but_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9.
    let dp = DataPlane::start("http://127.0.0.1:9", "tgdp-none", dir.path(), "lonely", &[]).await;
    let health = http()
        .get(format!("{}/healthz", dp.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = http()
        .get(format!("{}/readyz", dp.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let resp = http()
        .post(format!("{}/v1/chat/completions", dp.url()))
        .bearer_auth("tg-anything")
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].is_string());
}
