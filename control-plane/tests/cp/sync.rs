//! Config push over SyncService.Subscribe and the data-plane registry.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tollgate_proto::admin::v1 as admin;
use tollgate_proto::sync::v1 as pb;
use tonic::{Code, Streaming};

use crate::harness::{eventually, Cp, OPENAI_KEY};

fn hello(node: &str) -> pb::DataPlaneMessage {
    pb::DataPlaneMessage {
        kind: Some(pb::data_plane_message::Kind::Hello(pb::Hello {
            node_id: node.into(),
            software_version: "0.1.0-test".into(),
            current_version: 0,
        })),
    }
}

fn ack(version: u64, accepted: bool, reason: &str) -> pb::DataPlaneMessage {
    pb::DataPlaneMessage {
        kind: Some(pb::data_plane_message::Kind::Ack(pb::SnapshotAck {
            version,
            accepted,
            reason: reason.into(),
        })),
    }
}

pub async fn next_snapshot(s: &mut Streaming<pb::ControlPlaneMessage>) -> pb::Snapshot {
    let msg = tokio::time::timeout(Duration::from_secs(1), s.message())
        .await
        .expect("a snapshot within 1 s")
        .unwrap()
        .unwrap();
    match msg.kind {
        Some(pb::control_plane_message::Kind::Snapshot(s)) => s,
        Some(pb::control_plane_message::Kind::Welcome(_)) => panic!("unexpected Welcome"),
        None => panic!("empty message"),
    }
}

pub struct Subscription {
    pub tx: mpsc::Sender<pb::DataPlaneMessage>,
    pub rx: Streaming<pb::ControlPlaneMessage>,
}

pub async fn subscribe(cp: &Cp, node: &str) -> Subscription {
    let (tx, out) = mpsc::channel(8);
    tx.send(hello(node)).await.unwrap();
    let rx = cp
        .sync()
        .await
        .subscribe(ReceiverStream::new(out))
        .await
        .unwrap()
        .into_inner();
    Subscription { tx, rx }
}

#[tokio::test]
async fn change_is_pushed_and_ack_shows_in_status() {
    let cp = Cp::start().await;
    let mut a = cp.admin().await;
    a.tenant("acme").await;
    let p = a.provider("acme", "openai", OPENAI_KEY).await;
    let key = a.key("acme", "app").await;

    let mut sub = subscribe(&cp, "dp-1").await;
    let v = next_snapshot(&mut sub.rx).await;
    let status = a
        .data_planes
        .get_config_status(admin::GetConfigStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.version, status.version);
    assert_eq!(v.tenants.len(), 1);
    let t = &v.tenants[0];
    assert_eq!((t.name.as_str(), t.active), ("acme", true));
    assert_eq!(t.providers[0].id, p.id);
    assert_eq!(t.providers[0].api_key, OPENAI_KEY);
    assert_eq!(t.providers[0].base_url, "https://api.openai.example/v1");
    assert_eq!(
        t.keys[0].key_hash,
        tollgate_core::keys::hash_caller_key(&key.secret)
    );
    assert!(t.models.is_empty());

    let m = a.model("acme", "gpt-4o", "openai").await.unwrap();
    let v2 = next_snapshot(&mut sub.rx).await;
    assert_eq!(v2.version, v.version + 1);
    assert_eq!(v2.tenants[0].models.len(), 1);
    assert_eq!(v2.tenants[0].models[0].id, m.id);
    assert_eq!(v2.tenants[0].models[0].provider_id, p.id);
    assert_eq!(v2.tenants[0].models[0].upstream_model, "gpt-4o");

    sub.tx.send(ack(v2.version, true, "")).await.unwrap();
    let mut dp = a.data_planes.clone();
    eventually(|| {
        let mut dp = dp.clone();
        async move {
            let s = dp
                .get_config_status(admin::GetConfigStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            s.data_planes.len() == 1 && s.data_planes[0].acked_version == v2.version
        }
    })
    .await;
    let s = dp
        .get_config_status(admin::GetConfigStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.version, v2.version);
    let d = &s.data_planes[0];
    assert_eq!(d.node_id, "dp-1");
    assert!(d.connected);
    assert!(d.last_seen_ms > 0);

    // Revoking the key removes it from the next snapshot; a rejection is recorded.
    a.keys
        .revoke_key(admin::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "app".into(),
        })
        .await
        .unwrap();
    let v3 = next_snapshot(&mut sub.rx).await;
    assert_eq!(v3.version, v2.version + 1);
    assert!(v3.tenants[0].keys.is_empty());
    sub.tx
        .send(ack(v3.version, false, "unknown provider kind"))
        .await
        .unwrap();
    eventually(|| {
        let mut dp = dp.clone();
        async move {
            let s = dp
                .get_config_status(admin::GetConfigStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            s.data_planes[0].rejected_version == v3.version
        }
    })
    .await;
    let s = dp
        .get_config_status(admin::GetConfigStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.data_planes[0].reject_reason, "unknown provider kind");
    assert_eq!(s.data_planes[0].acked_version, v2.version);

    // Closing the stream marks the node disconnected.
    drop(sub);
    eventually(|| {
        let mut dp = dp.clone();
        async move {
            let s = dp
                .get_config_status(admin::GetConfigStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            !s.data_planes[0].connected
        }
    })
    .await;
}

#[tokio::test]
async fn subscribe_requires_hello_with_node_id() {
    let cp = Cp::start().await;
    for first in [ack(1, true, ""), hello("")] {
        let (tx, out) = mpsc::channel(1);
        tx.send(first).await.unwrap();
        // The error arrives on the stream (the call itself is answered at
        // once so a client that sends Hello late cannot deadlock).
        let mut rx = cp
            .sync()
            .await
            .subscribe(ReceiverStream::new(out))
            .await
            .unwrap()
            .into_inner();
        let e = tokio::time::timeout(Duration::from_secs(5), rx.message())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("Hello") || e.message().contains("node_id"));
    }
    // Wrong token: refused before anything else.
    let mut c = tollgate_proto::sync::v1::sync_service_client::SyncServiceClient::with_interceptor(
        cp.channel().await,
        crate::harness::Bearer::new("tgdp-wrong"),
    );
    let (tx, out) = mpsc::channel(1);
    tx.send(hello("dp")).await.unwrap();
    let e = c.subscribe(ReceiverStream::new(out)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn hello_sent_after_the_call_returns_is_accepted() {
    let cp = Cp::start().await;
    let (tx, out) = mpsc::channel(1);
    let mut rx = cp
        .sync()
        .await
        .subscribe(ReceiverStream::new(out))
        .await
        .unwrap()
        .into_inner();
    tx.send(hello("late")).await.unwrap();
    assert_eq!(next_snapshot(&mut rx).await.version, 1);
}

#[tokio::test]
async fn burst_of_changes_reaches_every_subscriber_as_latest_version() {
    let cp = Cp::start().await;
    let mut a = cp.admin().await;
    let mut s1 = subscribe(&cp, "dp-1").await;
    let mut s2 = subscribe(&cp, "dp-2").await;
    let v0 = next_snapshot(&mut s1.rx).await.version;
    assert_eq!(next_snapshot(&mut s2.rx).await.version, v0);
    for i in 0..5 {
        a.tenant(&format!("t{i}")).await;
    }
    for sub in [&mut s1, &mut s2] {
        // Versions strictly increase and end at v0 + 5 (intermediate ones
        // may be coalesced away).
        let mut last = v0;
        while last < v0 + 5 {
            let s = next_snapshot(&mut sub.rx).await;
            assert!(s.version > last);
            last = s.version;
            if last == v0 + 5 {
                assert_eq!(s.tenants.len(), 5);
            }
        }
    }
}

#[tokio::test]
async fn shutdown_ends_subscription_streams() {
    let cp = Cp::start().await;
    let mut sub = subscribe(&cp, "dp-1").await;
    next_snapshot(&mut sub.rx).await;
    let dir = tokio::time::timeout(Duration::from_secs(5), cp.shutdown())
        .await
        .expect("graceful shutdown with an open subscription");
    let end = tokio::time::timeout(Duration::from_secs(5), sub.rx.message())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None) | Err(_)));
    drop(dir);
}

/// A provider key that cannot be decrypted (damaged ciphertext) does not
/// hold back everyone's configuration: that provider ships disabled and
/// without a key, the others as usual.
#[tokio::test]
async fn undecryptable_provider_ships_disabled_not_stalling_the_snapshot() {
    let cp = Cp::start().await;
    let mut a = cp.admin().await;
    a.tenant("acme").await;
    let good = a.provider("acme", "good", OPENAI_KEY).await;
    let bad = a.provider("acme", "bad", OPENAI_KEY).await;
    // Damage `bad`'s ciphertext behind the control plane's back.
    let url = format!("sqlite://{}", cp.dir.path().join("tollgate.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("UPDATE providers SET api_key_ciphertext = $1 WHERE id = $2")
        .bind("v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .bind(&bad.id)
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    // Any change rebuilds the snapshot from the database.
    a.model("acme", "gpt-4o", "good").await.unwrap();

    let mut sub = subscribe(&cp, "dp-1").await;
    let snap = next_snapshot(&mut sub.rx).await;
    let t = &snap.tenants[0];
    assert_eq!(t.models.len(), 1, "the change after the damage is shipped");
    let p = |id: &str| t.providers.iter().find(|p| p.id == id).unwrap();
    assert_eq!(p(&good.id).api_key, OPENAI_KEY);
    assert!(!p(&good.id).disabled);
    assert_eq!(p(&bad.id).api_key, "");
    assert!(p(&bad.id).disabled);
}
