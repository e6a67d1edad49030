//! Data-plane groups at the sync level: a tenant-scoped group's data planes
//! receive that tenant's configuration and nothing of any other tenant, may
//! act only for it, and are cut off within a second when their token is
//! revoked.

use std::time::{Duration, Instant};

use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tollgate_proto::admin::v1 as admin;
use tollgate_proto::client::AdminClient;
use tollgate_proto::sync::v1 as pb;
use tollgate_proto::sync::v1::sync_service_client::SyncServiceClient;
use tonic::{Code, Streaming};

use crate::harness::{contains, eventually, Bearer, Cp};

const KEY_A: &str = "sk-tenant-A-secret-0123456789abcdef";
const KEY_B: &str = "sk-tenant-B-secret-0123456789abcdef";

fn hello(node: &str) -> pb::DataPlaneMessage {
    pb::DataPlaneMessage {
        kind: Some(pb::data_plane_message::Kind::Hello(pb::Hello {
            node_id: node.into(),
            software_version: "0.1.0-test".into(),
            current_version: 0,
        })),
    }
}

async fn sync_with(
    cp: &Cp,
    token: &str,
) -> SyncServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
> {
    SyncServiceClient::with_interceptor(cp.channel().await, Bearer::new(token))
        .max_decoding_message_size(64 * 1024 * 1024)
}

struct Sub {
    _tx: mpsc::Sender<pb::DataPlaneMessage>,
    rx: Streaming<pb::ControlPlaneMessage>,
}

async fn subscribe(cp: &Cp, token: &str, node: &str) -> Result<Sub, tonic::Status> {
    let (tx, out) = mpsc::channel(8);
    tx.send(hello(node)).await.unwrap();
    let rx = sync_with(cp, token)
        .await
        .subscribe(ReceiverStream::new(out))
        .await?
        .into_inner();
    Ok(Sub { _tx: tx, rx })
}

async fn next(s: &mut Streaming<pb::ControlPlaneMessage>) -> pb::control_plane_message::Kind {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("a message within 10 s")
        .unwrap()
        .unwrap()
        .kind
        .unwrap()
}

async fn next_snapshot(s: &mut Streaming<pb::ControlPlaneMessage>) -> pb::Snapshot {
    match next(s).await {
        pb::control_plane_message::Kind::Snapshot(s) => s,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

struct Setup {
    op: AdminClient,
    a_id: String,
    b_id: String,
    /// A registration token of the group scoped to tenant A.
    a_token: String,
    a_token_id: String,
}

async fn setup(cp: &Cp) -> Setup {
    let mut op = AdminClient::connect(&cp.running().url, &cp.running().admin_token)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (name, key) in [("tenant-a", KEY_A), ("tenant-b", KEY_B)] {
        let t = op
            .tenants
            .create_tenant(admin::CreateTenantRequest { name: name.into() })
            .await
            .unwrap()
            .into_inner();
        op.providers
            .add_provider(admin::AddProviderRequest {
                tenant: name.into(),
                name: "oa".into(),
                kind: "openai".into(),
                base_url: "https://api.openai.example/v1".into(),
                api_key: key.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        op.keys
            .create_key(admin::CreateKeyRequest {
                tenant: name.into(),
                name: "app".into(),
                expires_at_ms: 0,
                providers: Vec::new(),
            })
            .await
            .unwrap();
        ids.push(t.id);
    }
    op.dp_groups
        .create_data_plane_group(admin::CreateDataPlaneGroupRequest {
            name: "a-onprem".into(),
            tenant: "tenant-a".into(),
        })
        .await
        .unwrap();
    let created = op
        .dp_groups
        .create_data_plane_token(admin::CreateDataPlaneTokenRequest {
            group: "a-onprem".into(),
            name: "rack-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    Setup {
        op,
        a_id: ids[0].clone(),
        b_id: ids[1].clone(),
        a_token: created.secret,
        a_token_id: created.token.unwrap().id,
    }
}

#[tokio::test]
async fn tenant_scoped_data_plane_receives_only_its_tenant() {
    let cp = Cp::start().await;
    let mut s = setup(&cp).await;

    let mut sub = subscribe(&cp, &s.a_token, "dp-a").await.unwrap();
    match next(&mut sub.rx).await {
        pb::control_plane_message::Kind::Welcome(w) => {
            assert_eq!(w.node_id, "a-onprem/dp-a");
            assert_eq!(w.group_name, "a-onprem");
            assert_eq!(w.tenant_id, s.a_id);
        }
        other => panic!("expected Welcome first, got {other:?}"),
    }
    let snap = next_snapshot(&mut sub.rx).await;
    assert_eq!(snap.tenants.len(), 1);
    assert_eq!(snap.tenants[0].id, s.a_id);
    assert_eq!(snap.tenants[0].providers[0].api_key, KEY_A);
    assert_eq!(snap.tenants[0].keys.len(), 1);
    // Nothing of B anywhere in what went over the wire.
    let bytes = snap.encode_to_vec();
    assert!(!contains(&bytes, KEY_B));
    assert!(!contains(&bytes, &s.b_id));
    assert!(!contains(&bytes, "tenant-b"));

    // The built-in shared token still receives every tenant.
    let mut shared = subscribe(&cp, &cp.running().dp_token, "dp-cloud")
        .await
        .unwrap();
    let all = next_snapshot(&mut shared.rx).await;
    assert_eq!(all.tenants.len(), 2);
    assert_eq!(all.version, snap.version);

    // A change of B: the scoped node gets the new version, still only A.
    s.op.models
        .add_model(admin::AddModelRequest {
            tenant: "tenant-b".into(),
            name: "gpt-b".into(),
            provider: "oa".into(),
            upstream_model: String::new(),
        })
        .await
        .unwrap();
    let next_a = next_snapshot(&mut sub.rx).await;
    assert!(next_a.version > snap.version);
    assert_eq!(next_a.tenants.len(), 1);
    assert_eq!(next_a.tenants[0].id, s.a_id);
    assert!(!contains(&next_a.encode_to_vec(), "gpt-b"));
    assert_eq!(next_snapshot(&mut shared.rx).await.version, next_a.version);

    // It may report usage, take leases and report health for A only.
    let mut c = sync_with(&cp, &s.a_token).await;
    let record = |tenant: &str| pb::UsageRecord {
        id: format!("ur-{tenant}"),
        tenant_id: tenant.into(),
        ..Default::default()
    };
    let denied = c
        .report_usage(pb::UsageBatch {
            node_id: "dp-a".into(),
            records: vec![record(&s.a_id), record(&s.b_id)],
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let ack = c
        .report_usage(pb::UsageBatch {
            node_id: "dp-a".into(),
            records: vec![record(&s.a_id)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.stored_ids, [format!("ur-{}", s.a_id)]);
    let lease = c
        .acquire_lease(pb::LeaseRequest {
            node_id: "dp-a".into(),
            tenant_id: s.b_id.clone(),
            amount_micros: 1_000_000,
            lease_id: String::new(),
            key_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(lease.code(), Code::PermissionDenied);
    let health = c
        .report_target_health(pb::TargetHealthReport {
            node_id: "dp-a".into(),
            tenant_id: s.b_id.clone(),
            provider_id: "pv_x".into(),
            status_code: 401,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(health.code(), Code::PermissionDenied);

    // The listing shows group, node id and the version each applied.
    let st =
        s.op.data_planes
            .get_config_status(admin::GetConfigStatusRequest {})
            .await
            .unwrap()
            .into_inner();
    let by_node = |n: &str| {
        st.data_planes
            .iter()
            .find(|d| d.node_id == n)
            .unwrap()
            .clone()
    };
    let a = by_node("a-onprem/dp-a");
    assert_eq!(
        (a.group_name.as_str(), a.tenant_id.as_str()),
        ("a-onprem", s.a_id.as_str())
    );
    assert_eq!(a.token_id, s.a_token_id);
    let cloud = by_node("dp-cloud");
    assert_eq!(
        (cloud.group_name.as_str(), cloud.token_id.as_str()),
        ("shared", "")
    );
}

#[tokio::test]
async fn revoked_token_disconnects_within_a_second_and_is_refused() {
    let cp = Cp::start().await;
    let mut s = setup(&cp).await;
    let mut sub = subscribe(&cp, &s.a_token, "dp-a").await.unwrap();
    assert!(matches!(
        next(&mut sub.rx).await,
        pb::control_plane_message::Kind::Welcome(_)
    ));
    next_snapshot(&mut sub.rx).await;

    let started = Instant::now();
    s.op.dp_groups
        .revoke_data_plane_token(admin::RevokeDataPlaneTokenRequest {
            token_id: s.a_token_id.clone(),
            tenant: String::new(),
        })
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(1), sub.rx.message())
        .await
        .expect("the stream ends within 1 s of the revocation");
    assert_eq!(ended.unwrap_err().code(), Code::Unauthenticated);
    assert!(started.elapsed() < Duration::from_secs(1));

    // A new subscription and every other call with it are refused.
    let again = subscribe(&cp, &s.a_token, "dp-a").await.err().unwrap();
    assert_eq!(again.code(), Code::Unauthenticated);
    let usage = sync_with(&cp, &s.a_token)
        .await
        .report_usage(pb::UsageBatch::default())
        .await
        .unwrap_err();
    assert_eq!(usage.code(), Code::Unauthenticated);
    // A made-up token too; the built-in one still works.
    assert_eq!(
        subscribe(&cp, "tgdr-not-a-token", "x")
            .await
            .err()
            .unwrap()
            .code(),
        Code::Unauthenticated
    );
    let mut shared = subscribe(&cp, &cp.running().dp_token, "dp-cloud")
        .await
        .unwrap();
    assert_eq!(next_snapshot(&mut shared.rx).await.tenants.len(), 2);

    // The registry shows the node disconnected.
    let mut dp = s.op.data_planes.clone();
    eventually(|| {
        let mut dp = dp.clone();
        async move {
            let st = dp
                .get_config_status(admin::GetConfigStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            st.data_planes
                .iter()
                .any(|d| d.node_id == "a-onprem/dp-a" && !d.connected)
        }
    })
    .await;
    let _ = &mut dp;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let cp = Cp::start().await;
    let mut s = setup(&cp).await;
    let soon = tollgate_core::time::now_ms() + 300;
    let t =
        s.op.dp_groups
            .create_data_plane_token(admin::CreateDataPlaneTokenRequest {
                group: "a-onprem".into(),
                name: "short".into(),
                expires_at_ms: soon,
                tenant: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
    assert!(subscribe(&cp, &t.secret, "dp-short").await.is_ok());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        subscribe(&cp, &t.secret, "dp-short")
            .await
            .err()
            .unwrap()
            .code(),
        Code::Unauthenticated
    );
    // Past expiry times are refused at creation.
    let past =
        s.op.dp_groups
            .create_data_plane_token(admin::CreateDataPlaneTokenRequest {
                group: "a-onprem".into(),
                expires_at_ms: 1,
                ..Default::default()
            })
            .await
            .unwrap_err();
    assert_eq!(past.code(), Code::InvalidArgument);
}
