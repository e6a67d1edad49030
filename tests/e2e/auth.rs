//! Caller authentication: by hash lookup in the pushed snapshot.

use serde_json::{json, Value};
use tollgate_e2e::{http, pb, Gateway};

fn chat() -> Value {
    json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
}

async fn call(gw: &Gateway, auth: Option<(&str, &str)>) -> (u16, Value, bool) {
    let mut req = http()
        .post(format!("{}/v1/chat/completions", gw.dp.url()))
        .json(&chat());
    if let Some((h, v)) = auth {
        req = req.header(h, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let has_id = resp.headers().contains_key("x-request-id");
    (status, resp.json().await.unwrap(), has_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_and_revoked_keys_get_401() {
    let gw = Gateway::start().await;

    let (s, body, has_id) = call(&gw, None).await;
    assert_eq!(s, 401);
    assert!(has_id);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let (s, body, _) = call(&gw, Some(("authorization", "Bearer tg-not-a-real-key"))).await;
    assert_eq!(s, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    // The presented key is not echoed back.
    assert!(!body.to_string().contains("tg-not-a-real-key"));

    // Both header styles work for a good key.
    let bearer = format!("Bearer {}", gw.key);
    assert_eq!(call(&gw, Some(("authorization", &bearer))).await.0, 200);
    assert_eq!(call(&gw, Some(("api-key", &gw.key))).await.0, 200);

    // Revoke: the data plane refuses the key once the new version is applied.
    let mut admin = gw.admin().await;
    admin
        .keys
        .revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "backend".into(),
        })
        .await
        .unwrap();
    let v = gw.cp.version().await;
    let took = gw.cp.wait_for_ack("dp-1", v).await;
    eprintln!("revocation applied by the data plane after {took:?}");
    let (s, body, _) = call(&gw, Some(("authorization", &bearer))).await;
    assert_eq!(s, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_key_gets_401() {
    let gw = Gateway::start().await;
    let mut admin = gw.admin().await;
    // A key that is already expired cannot be created.
    let past = admin
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "acme".into(),
            name: "stale".into(),
            expires_at_ms: tollgate_core::time::now_ms() - 1,
            providers: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(past.code(), tonic::Code::InvalidArgument);

    // Long enough that the key is surely still valid for the first call,
    // even on a loaded machine.
    let expires_at_ms = tollgate_core::time::now_ms() + 3_000;
    let secret = admin
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "acme".into(),
            name: "short-lived".into(),
            expires_at_ms,
            providers: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let v = gw.cp.version().await;
    gw.cp.wait_for_ack("dp-1", v).await;
    let bearer = format!("Bearer {secret}");
    assert_eq!(call(&gw, Some(("authorization", &bearer))).await.0, 200);
    // The data plane checks expiry per request: no config push is needed
    // when the time comes.
    let wait = expires_at_ms - tollgate_core::time::now_ms() + 20;
    tokio::time::sleep(std::time::Duration::from_millis(wait.max(0) as u64)).await;
    let (s, body, _) = call(&gw, Some(("authorization", &bearer))).await;
    assert_eq!(s, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
}
