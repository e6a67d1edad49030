//! Routes (targets, policy) and credential rotation through the admin API
//! and the sync service, as data planes see them in snapshots.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tollgate_proto::admin::v1 as admin;
use tollgate_proto::admin::v1::route_service_client::RouteServiceClient;
use tollgate_proto::sync::v1 as pb;
use tonic::Code;

use crate::harness::{Bearer, Cp, OPENAI_KEY};

async fn latest_snapshot(cp: &Cp) -> pb::Snapshot {
    let mut sync = cp.sync().await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::DataPlaneMessage {
        kind: Some(pb::data_plane_message::Kind::Hello(pb::Hello {
            node_id: "dp-routes".into(),
            software_version: "test".into(),
            current_version: 0,
        })),
    })
    .await
    .unwrap();
    let mut stream = sync
        .subscribe(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let msg = tokio::time::timeout(Duration::from_secs(15), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match msg.kind {
        Some(pb::control_plane_message::Kind::Snapshot(s)) => s,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[tokio::test]
async fn routes_and_rejected_credentials_reach_the_snapshot() {
    scenario(Cp::start().await, "acme".into()).await;
}

/// The same on Postgres when `TOLLGATE_TEST_POSTGRES_URL` is set.
#[tokio::test]
async fn routes_and_rejected_credentials_on_postgres() {
    let Ok(url) = std::env::var("TOLLGATE_TEST_POSTGRES_URL") else {
        eprintln!("TOLLGATE_TEST_POSTGRES_URL not set; skipping");
        return;
    };
    let name = format!("routes-{}", tollgate_core::time::now_ms());
    scenario(Cp::start_with_database(&url).await, name).await;
}

/// The tenant's snapshot entry (the database may hold other tenants).
fn tenant<'a>(snap: &'a pb::Snapshot, name: &str) -> &'a pb::TenantConfig {
    snap.tenants.iter().find(|t| t.name == name).unwrap()
}

async fn scenario(cp: Cp, tn: String) {
    let mut a = cp.admin().await;
    let t = a.tenant(&tn).await;
    let p1 = a.provider(&tn, "p1", OPENAI_KEY).await;
    let p2 = a.provider(&tn, "p2", "sk-second-credential").await;
    a.model(&tn, "gpt-4o", "p1").await.unwrap();
    let mut routes = RouteServiceClient::with_interceptor(
        cp.channel().await,
        Bearer::new(&cp.running().admin_token),
    );
    let r = routes
        .add_route_target(admin::AddRouteTargetRequest {
            tenant: tn.clone(),
            model: "gpt-4o".into(),
            provider: "p2".into(),
            upstream_model: "gpt-4o-2024".into(),
            priority: 1,
            weight: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.targets.len(), 2);
    assert_eq!(
        (r.targets[1].provider_name.as_str(), r.targets[1].weight),
        ("p2", 1)
    );
    let e = routes
        .set_route_policy(admin::SetRoutePolicyRequest {
            tenant: tn.clone(),
            model: "gpt-4o".into(),
            policy: Some(admin::RoutePolicy {
                strategy: "round-robin".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    routes
        .set_route_policy(admin::SetRoutePolicyRequest {
            tenant: tn.clone(),
            model: "gpt-4o".into(),
            policy: Some(admin::RoutePolicy {
                strategy: "ordered".into(),
                ttft_timeout_ms: 1500,
                fallback_model: "gpt-4o-long".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    let snap = latest_snapshot(&cp).await;
    let m = &tenant(&snap, &tn).models[0];
    let targets: Vec<(&str, &str, u32)> = m
        .targets
        .iter()
        .map(|t| {
            (
                t.provider_id.as_str(),
                t.upstream_model.as_str(),
                t.priority,
            )
        })
        .collect();
    assert_eq!(
        targets,
        [
            (p1.id.as_str(), "gpt-4o", 0),
            (p2.id.as_str(), "gpt-4o-2024", 1)
        ]
    );
    let policy = m.policy.as_ref().unwrap();
    assert_eq!(
        (
            policy.strategy.as_str(),
            policy.ttft_timeout_ms,
            policy.fallback_model.as_str()
        ),
        ("ordered", 1500, "gpt-4o-long")
    );
    assert!(tenant(&snap, &tn).providers.iter().all(|p| !p.disabled));

    // A data plane reports p2's credential rejected.
    let mut sync = cp.sync().await;
    let report = |status: u32| pb::TargetHealthReport {
        node_id: "dp-1".into(),
        tenant_id: t.id.clone(),
        provider_id: p2.id.clone(),
        status_code: status,
        reason: String::new(),
    };
    let e = sync.report_target_health(report(500)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    sync.report_target_health(report(401)).await.unwrap();
    sync.report_target_health(report(401)).await.unwrap();
    let health = a
        .providers
        .list_provider_health(admin::ListProviderHealthRequest { tenant: tn.clone() })
        .await
        .unwrap()
        .into_inner()
        .providers;
    let h2 = health.iter().find(|h| h.provider_id == p2.id).unwrap();
    assert!(h2.disabled);
    assert!(
        h2.reason.contains("401") && h2.reason.contains("dp-1"),
        "{}",
        h2.reason
    );
    assert!(
        !health
            .iter()
            .find(|h| h.provider_id == p1.id)
            .unwrap()
            .disabled
    );
    let snap = latest_snapshot(&cp).await;
    let disabled: Vec<&str> = tenant(&snap, &tn)
        .providers
        .iter()
        .filter(|p| p.disabled)
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(disabled, ["p2"]);

    // An operator puts it back.
    let h = a
        .providers
        .enable_provider(admin::EnableProviderRequest {
            tenant: tn.clone(),
            provider: "p2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!h.disabled);
    let snap = latest_snapshot(&cp).await;
    assert!(tenant(&snap, &tn).providers.iter().all(|p| !p.disabled));

    // Removing targets: not the last one.
    routes
        .remove_route_target(admin::RemoveRouteTargetRequest {
            tenant: tn.clone(),
            model: "gpt-4o".into(),
            provider: "p1".into(),
            upstream_model: String::new(),
        })
        .await
        .unwrap();
    let e = routes
        .remove_route_target(admin::RemoveRouteTargetRequest {
            tenant: tn.clone(),
            model: "gpt-4o".into(),
            provider: "p2".into(),
            upstream_model: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let snap = latest_snapshot(&cp).await;
    assert_eq!(tenant(&snap, &tn).models[0].provider_id, p2.id);
}
