//! Guardrail policies through the admin API of a real control plane, on
//! SQLite and (when `TOLLGATE_TEST_POSTGRES_URL` is set) on Postgres: the
//! snapshot carries them with their attachments, revoked keys and deleted
//! models drop out, and one tenant can never reach another's.

use std::time::Duration;

use tollgate_proto::admin::v1 as admin;
use tollgate_proto::admin::v1::guardrail_service_client::GuardrailServiceClient;
use tollgate_proto::sync::v1 as pb;
use tonic::Code;

use crate::harness::{Bearer, Cp, OPENAI_KEY};
use crate::sync::subscribe;

async fn latest_snapshot(cp: &Cp) -> pb::Snapshot {
    let mut sub = subscribe(cp, &format!("dp-{}", tollgate_core::time::now_ms())).await;
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.rx.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(pb::control_plane_message::Kind::Snapshot(s)) = msg.kind else {
        panic!("expected a snapshot");
    };
    s
}

async fn scenario(cp: &Cp) {
    let mut a = cp.admin().await;
    let mut g = GuardrailServiceClient::with_interceptor(
        cp.channel().await,
        Bearer::new(&cp.running().admin_token),
    );
    let suffix = tollgate_core::time::now_ms();
    let (ta, tb) = (format!("gr-a-{suffix}"), format!("gr-b-{suffix}"));
    let t = a.tenant(&ta).await;
    a.tenant(&tb).await;
    a.provider(&ta, "openai", OPENAI_KEY).await;
    let m = a.model(&ta, "gpt-4o", "openai").await.unwrap();
    let k = a.key(&ta, "app").await.key.unwrap();

    let create =
        |tenant: &str, name: &str, kind: &str, settings: &str| admin::CreateGuardrailRequest {
            tenant: tenant.into(),
            name: name.into(),
            kind: kind.into(),
            action: "block".into(),
            direction: String::new(),
            settings: settings.into(),
        };
    let e = g
        .create_guardrail(create(
            &ta,
            "bad",
            "regex",
            r#"{"patterns":["ok","x{2,1}"]}"#,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("patterns[1]"), "{}", e.message());
    let created = g
        .create_guardrail(create(&ta, "kw", "keyword", r#"{"words":["zeus"]}"#))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.direction, "input");
    assert!(created.id.starts_with("gr_"));
    let dup = g
        .create_guardrail(create(&ta, "kw", "keyword", r#"{"words":["x"]}"#))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    for (scope, target) in [("tenant", ""), ("key", "app"), ("model", "gpt-4o")] {
        g.attach_guardrail(admin::AttachGuardrailRequest {
            tenant: ta.clone(),
            guardrail: "kw".into(),
            scope: scope.into(),
            target: target.into(),
        })
        .await
        .unwrap();
    }
    // Tenant b: cannot see, attach, detach or delete a's guardrail, even by id.
    let listed = g
        .list_guardrails(admin::ListGuardrailsRequest { tenant: tb.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.guardrails.is_empty());
    let e = g
        .attach_guardrail(admin::AttachGuardrailRequest {
            tenant: tb.clone(),
            guardrail: created.id.clone(),
            scope: "tenant".into(),
            target: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = g
        .delete_guardrail(admin::DeleteGuardrailRequest {
            tenant: tb.clone(),
            guardrail: created.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Tenant a cannot attach to b's objects either: unknown model.
    let e = g
        .attach_guardrail(admin::AttachGuardrailRequest {
            tenant: ta.clone(),
            guardrail: "kw".into(),
            scope: "model".into(),
            target: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let s = latest_snapshot(cp).await;
    let tc = s.tenants.iter().find(|x| x.id == t.id).unwrap();
    assert_eq!(tc.guardrails.len(), 1);
    let gc = &tc.guardrails[0];
    assert_eq!((gc.name.as_str(), gc.kind.as_str()), ("kw", "keyword"));
    assert!(gc.tenant_wide);
    assert_eq!(gc.key_ids, vec![k.id.clone()]);
    assert_eq!(gc.model_ids, vec![m.id.clone()]);
    let other = s.tenants.iter().find(|x| x.name == tb).unwrap();
    assert!(other.guardrails.is_empty());

    // A revoked key's attachment leaves the snapshot.
    a.keys
        .revoke_key(admin::RevokeKeyRequest {
            tenant: ta.clone(),
            key: "app".into(),
        })
        .await
        .unwrap();
    let s = latest_snapshot(cp).await;
    let gc = &s.tenants.iter().find(|x| x.id == t.id).unwrap().guardrails[0];
    assert!(gc.key_ids.is_empty());

    let after = g
        .detach_guardrail(admin::DetachGuardrailRequest {
            tenant: ta.clone(),
            guardrail: "kw".into(),
            scope: "tenant".into(),
            target: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(after.attachments.iter().all(|x| x.scope != "tenant"));
    g.delete_guardrail(admin::DeleteGuardrailRequest {
        tenant: ta.clone(),
        guardrail: "kw".into(),
    })
    .await
    .unwrap();
    let s = latest_snapshot(cp).await;
    assert!(s
        .tenants
        .iter()
        .find(|x| x.id == t.id)
        .unwrap()
        .guardrails
        .is_empty());
}

#[tokio::test]
async fn guardrails_on_sqlite() {
    let cp = Cp::start().await;
    scenario(&cp).await;
}

#[tokio::test]
async fn guardrails_on_postgres() {
    let Ok(url) = std::env::var("TOLLGATE_TEST_POSTGRES_URL") else {
        eprintln!("TOLLGATE_TEST_POSTGRES_URL not set; skipping the Postgres guardrails scenario");
        return;
    };
    let cp = Cp::start_with_database(&url).await;
    scenario(&cp).await;
}
