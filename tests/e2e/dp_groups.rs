//! Data-plane groups end to end: a tenant's self-hosted data plane joins
//! with a registration token, serves that tenant and knows nothing of any
//! other (another tenant's key is unknown there: 401), and keeps serving its
//! last snapshot after its token is revoked and the control plane cuts it
//! off.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tollgate_e2e::{http, pb, DataPlane, Gateway, UPSTREAM_KEY};

async fn chat(dp_url: &str, key: &str) -> (u16, Value) {
    let resp = http()
        .post(format!("{dp_url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_scoped_data_plane_serves_only_its_tenant() {
    let gw = Gateway::start().await;
    let mut admin = gw.admin().await;
    // A second tenant on the same mock, served by the shared data plane.
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "beta".into(),
        })
        .await
        .unwrap();
    admin
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: "beta".into(),
            name: "up".into(),
            kind: "openai".into(),
            base_url: gw.mock.base_url.clone(),
            api_key: UPSTREAM_KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .models
        .add_model(pb::AddModelRequest {
            tenant: "beta".into(),
            name: "gpt-test".into(),
            provider: "up".into(),
            upstream_model: "mock-small".into(),
        })
        .await
        .unwrap();
    let beta_key = admin
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "beta".into(),
            name: "app".into(),
            expires_at_ms: 0,
            providers: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;

    // acme's self-hosted data plane.
    admin
        .dp_groups
        .create_data_plane_group(pb::CreateDataPlaneGroupRequest {
            name: "acme-onprem".into(),
            tenant: "acme".into(),
        })
        .await
        .unwrap();
    let created = admin
        .dp_groups
        .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
            group: "acme-onprem".into(),
            name: "rack-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let version = gw.cp.version().await;
    let dp = DataPlane::start(
        gw.cp.url(),
        &created.secret,
        &gw.dir.path().join("dp-acme"),
        "dp-acme",
        &[],
    )
    .await;
    gw.cp.wait_for_ack("acme-onprem/dp-acme", version).await;
    gw.cp.wait_for_ack("dp-1", version).await;

    // acme's key works on its own data plane; beta's is unknown there but
    // works on the shared one.
    assert_eq!(chat(dp.url(), &gw.key).await.0, 200);
    let (status, body) = chat(dp.url(), &beta_key).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(chat(gw.dp.url(), &beta_key).await.0, 200);
    assert_eq!(chat(gw.dp.url(), &gw.key).await.0, 200);

    // The listing shows the node with its group and applied version.
    let status = admin
        .data_planes
        .get_config_status(pb::GetConfigStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let node = status
        .data_planes
        .iter()
        .find(|d| d.node_id == "acme-onprem/dp-acme")
        .unwrap();
    assert_eq!(node.group_name, "acme-onprem");
    assert_eq!(node.tenant_id, gw.tenant_id);
    assert!(node.connected && node.acked_version >= version);

    // Revoked: disconnected within a second; it keeps serving acme from its
    // last snapshot (static stability) and cannot get back in.
    let started = Instant::now();
    admin
        .dp_groups
        .revoke_data_plane_token(pb::RevokeDataPlaneTokenRequest {
            token_id: created.token.unwrap().id,
            tenant: String::new(),
        })
        .await
        .unwrap();
    loop {
        let s = admin
            .data_planes
            .get_config_status(pb::GetConfigStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.data_planes
            .iter()
            .any(|d| d.node_id == "acme-onprem/dp-acme" && !d.connected)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still connected 1 s after the revocation: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(chat(dp.url(), &gw.key).await.0, 200);
}
