//! Upstream HTTPS: certificates are verified, private CAs can be trusted with
//! --upstream-ca-file, and connections are reused across calls.

use serde_json::json;
use tollgate_e2e::{pb, Gateway, TlsTerminator};

async fn add_tls_provider(gw: &Gateway, tls: &TlsTerminator) {
    let mut admin = gw.admin().await;
    admin
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: "acme".into(),
            name: "tls".into(),
            kind: "openai".into(),
            base_url: tls.base_url(),
            api_key: tollgate_e2e::UPSTREAM_KEY.into(),

            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .models
        .add_model(pb::AddModelRequest {
            tenant: "acme".into(),
            name: "gpt-tls".into(),
            provider: "tls".into(),
            upstream_model: "mock-small".into(),
        })
        .await
        .unwrap();
    let v = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", v).await;
}

fn chat(stream: bool) -> serde_json::Value {
    json!({"model": "gpt-tls", "stream": stream, "messages": [{"role": "user", "content": "over tls"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_private_ca_reuses_connections() {
    let dir = tempfile::tempdir().unwrap();
    // The mock is only reachable through the TLS front in this test.
    let backend = tollgate_e2e::MockServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        tollgate_e2e::MockOptions {
            required_api_key: Some(tollgate_e2e::UPSTREAM_KEY.into()),
            // `[DONE]` and the end of the body in separate reads, as real
            // providers often send them: the pooled connection must survive.
            end_delay: std::time::Duration::from_millis(30),
            ..tollgate_e2e::MockOptions::recording()
        },
    )
    .await
    .unwrap();
    let tls = TlsTerminator::start(backend.addr, dir.path()).await;
    let ca = tls.ca_pem_path.to_str().unwrap().to_string();
    let gw = Gateway::start_with_dp_args(&["--upstream-ca-file", &ca]).await;
    add_tls_provider(&gw, &tls).await;

    for i in 0..5 {
        let resp = gw.post("/v1/chat/completions", &chat(i % 2 == 1)).await;
        assert_eq!(resp.status(), 200);
        let body = resp.text().await.unwrap();
        assert!(body.contains("over"), "{body}");
        // Give the upstream time to end the body (30 ms after `[DONE]`), so
        // the next call finds the drained connection back in the pool.
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    }
    assert_eq!(backend.requests().len(), 5);
    assert_eq!(
        tls.connections(),
        1,
        "five sequential calls must share one pooled TLS connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_upstream_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let backend = tollgate_e2e::MockServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let tls = TlsTerminator::start(backend.addr, dir.path()).await;
    // No --upstream-ca-file: the test CA is not trusted.
    let gw = Gateway::start().await;
    add_tls_provider(&gw, &tls).await;
    let resp = gw.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(resp.status(), 502);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
    assert!(
        backend.requests().is_empty(),
        "nothing may reach an unverified upstream"
    );
}
