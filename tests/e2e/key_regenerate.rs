//! Regenerating a caller key (`tollgate key regenerate`): the data plane refuses
//! the old secret and serves the new one once it applies the change, and
//! the calls of both secrets are metered to the same key.

use std::time::Duration;

use tollgate_e2e::{bin_path, http, pb, Gateway};

async fn status_with(gw: &Gateway, secret: &str) -> (u16, serde_json::Value) {
    let r = http()
        .post(format!("{}/chat/completions", gw.dp.v1()))
        .bearer_auth(secret)
        .json(&serde_json::json!({
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerated_key_old_secret_401_new_secret_200() {
    let gw = Gateway::start().await;
    assert_eq!(status_with(&gw, &gw.key).await.0, 200);

    // Through the CLI (which calls KeyService.RegenerateKey).
    let out = std::process::Command::new(bin_path("tollgate"))
        .args(["--cp", gw.cp.url(), "--token", &gw.cp.admin_token, "--json"])
        .args(["key", "regenerate", "--tenant", "acme", "--key", "backend"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let renewed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(renewed["id"], gw.key_id.as_str());
    assert_eq!(renewed["name"], "backend");
    let secret = renewed["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("tg-") && secret != gw.key);
    let v = gw.cp.version().await;
    let took = gw.cp.wait_for_ack("dp-1", v).await;
    assert!(took < Duration::from_secs(1), "applied after {took:?}");

    let (s, body) = status_with(&gw, &gw.key).await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert!(!body.to_string().contains(&gw.key));
    let (s, body) = status_with(&gw, &secret).await;
    assert_eq!(s, 200, "{body}");
    let mut admin = gw.admin().await;

    // Both successful calls count for the same key (the refused one is not
    // a call of any key).
    let mut by_key = Vec::new();
    for _ in 0..300 {
        let rows = admin
            .usage
            .get_usage(pb::GetUsageRequest {
                tenant: "acme".into(),
                by_key: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .rows;
        by_key = rows
            .iter()
            .filter(|r| r.key_id == gw.key_id)
            .map(|r| r.calls)
            .collect();
        if by_key.iter().sum::<i64>() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(by_key.iter().sum::<i64>(), 2, "{by_key:?}");
}
