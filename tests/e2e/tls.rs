//! TLS everywhere (docs/tls.md): the control plane's port and the data
//! plane's proxy listener serve rustls with certificates of a private CA made
//! in the test, the data plane syncs over `https://` verifying the control
//! plane with `--cp-ca-file`, certificates are replaced without a restart,
//! and plaintext or an untrusted CA fail cleanly.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::{pb, served_certificate, ControlPlane, DataPlane, Gateway, TestCa};

fn https_client(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// Waits until a new connection to `addr` is served the certificate `sha256`.
async fn wait_for_certificate(addr: SocketAddr, ca: &TestCa, sha256: &str) -> Duration {
    let start = Instant::now();
    loop {
        let served = served_certificate(addr, ca).await.unwrap();
        if served == sha256 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{addr} still serves {served}, not {sha256}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn chat() -> serde_json::Value {
    json!({"model": "gpt-test", "messages": [{"role": "user", "content": "over tls"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_and_data_plane_over_tls_serve_calls_and_reload_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let ca = TestCa::new(&pki, "test-ca");
    let cp_cert = ca.issue(&pki, "cp", 1);
    let dp_cert = ca.issue(&pki, "dp", 2);
    let cp = ControlPlane::start_tls(&dir.path().join("cp"), &cp_cert, &ca).await;
    assert!(cp.url().starts_with("https://127.0.0.1:"), "{}", cp.url());
    let ca_file = ca.pem_path.to_str().unwrap().to_string();
    let (dp_crt, dp_key) = (
        dp_cert.cert_path.to_str().unwrap().to_string(),
        dp_cert.key_path.to_str().unwrap().to_string(),
    );
    // The harness configured the tenant through the admin API (gRPC over
    // TLS) and waited for the data plane's ack: the sync channel is up over
    // https:// with the private CA.
    let gw = Gateway::start_with_cp(
        dir,
        cp,
        &[
            "--cp-ca-file",
            &ca_file,
            "--tls-cert",
            &dp_crt,
            "--tls-key",
            &dp_key,
            "--tls-reload-secs",
            "1",
        ],
    )
    .await;
    assert!(
        gw.dp.url().starts_with("https://127.0.0.1:"),
        "{}",
        gw.dp.url()
    );
    let (cp_addr, dp_addr) = (addr_of(gw.cp.url()), addr_of(gw.dp.url()));

    // A call over HTTPS to the data plane.
    let client = https_client(&ca);
    let resp = client
        .post(format!("{}/v1/chat/completions", gw.dp.url()))
        .bearer_auth(&gw.key)
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["choices"][0]["message"]["content"].as_str().is_some(),
        "{body}"
    );
    // Its usage reaches the control plane over the TLS channel.
    gw.wait_for_usage_calls(1).await;
    // The control plane's HTTP routes are on the same TLS port.
    let status = client
        .get(format!("{}/status.json", gw.cp.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);

    // Plain HTTP to either TLS port: a readable 400, not a hang or garbage.
    let plain = tollgate_e2e::http();
    let r = plain
        .post(format!("http://{dp_addr}/v1/chat/completions"))
        .bearer_auth(&gw.key)
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let err: serde_json::Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_request", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("https://"),
        "{err}"
    );
    let r = plain
        .get(format!("http://{cp_addr}/status.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("use https://"));
    // And an HTTPS client that does not trust the CA is refused.
    let untrusting = reqwest::Client::new();
    let e = untrusting
        .get(format!("{}/status.json", gw.cp.url()))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");

    // Certificate reload: new files, no restart; new connections see them.
    assert_eq!(
        served_certificate(cp_addr, &ca).await.unwrap(),
        cp_cert.sha256
    );
    assert_eq!(
        served_certificate(dp_addr, &ca).await.unwrap(),
        dp_cert.sha256
    );
    let cp_new = ca.issue(&pki, "cp", 11);
    let dp_new = ca.issue(&pki, "dp", 12);
    assert_ne!(cp_new.sha256, cp_cert.sha256);
    wait_for_certificate(cp_addr, &ca, &cp_new.sha256).await;
    wait_for_certificate(dp_addr, &ca, &dp_new.sha256).await;
    gw.cp.proc.wait_for_log(&cp_new.sha256).await;
    gw.dp.proc.wait_for_log(&dp_new.sha256).await;

    // Same processes, still serving: a new client calls through, and a
    // config change still reaches the data plane over the sync channel.
    let resp = https_client(&ca)
        .post(format!("{}/v1/chat/completions", gw.dp.url()))
        .bearer_auth(&gw.key)
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut admin = gw.admin().await;
    admin
        .models
        .add_model(pb::AddModelRequest {
            tenant: "acme".into(),
            name: "gpt-after-reload".into(),
            provider: "up".into(),
            upstream_model: "mock-small".into(),
        })
        .await
        .unwrap();
    let v = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", v).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plane_with_the_wrong_ca_refuses_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let ca = TestCa::new(&pki, "real-ca");
    let other = TestCa::new(&pki, "other-ca");
    let cp = ControlPlane::start_tls(&dir.path().join("cp"), &ca.issue(&pki, "cp", 1), &ca).await;
    let wrong = other.pem_path.to_str().unwrap().to_string();
    let dp = DataPlane::start(
        cp.url(),
        &cp.dp_token,
        &dir.path().join("dp"),
        "dp-wrong-ca",
        &["--cp-ca-file", &wrong],
    )
    .await;
    dp.proc
        .wait_for_log("the control plane's certificate is not trusted")
        .await;
    let log = dp.proc.log_text();
    assert!(log.contains("--cp-ca-file"), "{log}");
    assert!(!log.contains(&cp.dp_token), "the token leaked into the log");
    // The data plane never registered: its token was not sent to a server
    // it does not trust.
    let status = cp
        .admin()
        .await
        .data_planes
        .get_config_status(pb::GetConfigStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        status
            .data_planes
            .iter()
            .all(|d| d.node_id != "dp-wrong-ca"),
        "{status:?}"
    );
}
