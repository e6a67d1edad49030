//! The same scenario on Postgres, when `TOLLGATE_TEST_POSTGRES_URL` points at
//! a real server (the test script starts one); skipped otherwise.

use std::time::Duration;

use tollgate_proto::admin::v1 as admin;
use tollgate_proto::sync::v1 as pb;
use tonic::Code;

use crate::harness::{Cp, OPENAI_KEY};
use crate::sync::subscribe;

#[tokio::test]
async fn full_scenario_on_postgres() {
    let Ok(url) = std::env::var("TOLLGATE_TEST_POSTGRES_URL") else {
        eprintln!("TOLLGATE_TEST_POSTGRES_URL not set; skipping the Postgres scenario");
        return;
    };
    let cp = Cp::start_with_database(&url).await;
    let mut a = cp.admin().await;
    // Unique names: the database may be shared between runs.
    let suffix = tollgate_core::time::now_ms();
    let (ta, tb) = (format!("pg-a-{suffix}"), format!("pg-b-{suffix}"));
    let t = a.tenant(&ta).await;
    a.tenant(&tb).await;
    let dup = a
        .tenants
        .create_tenant(admin::CreateTenantRequest { name: ta.clone() })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);

    let p = a.provider(&ta, "openai", OPENAI_KEY).await;
    a.provider(&tb, "only-b", "sk-bbbbbbbbbbbbbbbb").await;
    assert_eq!(
        a.model(&ta, "x", "only-b").await.unwrap_err().code(),
        Code::NotFound
    );
    let m = a.model(&ta, "gpt-4o", "openai").await.unwrap();
    assert_eq!(m.provider_id, p.id);
    let key = a.key(&ta, "app").await;
    let revoked = a
        .keys
        .revoke_key(admin::RevokeKeyRequest {
            tenant: ta.clone(),
            key: "app".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at_ms > 0);
    let key2 = a.key(&ta, "app2").await;

    let mut sub = subscribe(&cp, "dp-pg").await;
    let msg = tokio::time::timeout(Duration::from_secs(1), sub.rx.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(pb::control_plane_message::Kind::Snapshot(s)) = msg.kind else {
        panic!("expected a snapshot");
    };
    let mine = s.tenants.iter().find(|x| x.id == t.id).unwrap();
    assert_eq!(mine.providers[0].api_key, OPENAI_KEY);
    assert_eq!(mine.models[0].name, "gpt-4o");
    let hashes: Vec<_> = mine.keys.iter().map(|k| k.key_hash.clone()).collect();
    assert_eq!(hashes, [tollgate_core::keys::hash_caller_key(&key2.secret)]);
    assert_ne!(key.secret, key2.secret);

    let record = |id: String, status: u32| pb::UsageRecord {
        id,
        tenant_id: t.id.clone(),
        key_id: "ck_x".into(),
        model: "gpt-4o".into(),
        started_at_ms: 1_000,
        status_code: status,
        prompt_tokens: 7,
        completion_tokens: 3,
        cost_micros: 11,
        stream: true,
        ..Default::default()
    };
    let batch = pb::UsageBatch {
        node_id: "dp-pg".into(),
        records: vec![
            record(format!("ur_{suffix}_1"), 200),
            record(format!("ur_{suffix}_2"), 500),
        ],
    };
    let mut sync = cp.sync().await;
    assert_eq!(
        sync.report_usage(batch.clone())
            .await
            .unwrap()
            .into_inner()
            .duplicates,
        0
    );
    assert_eq!(
        sync.report_usage(batch)
            .await
            .unwrap()
            .into_inner()
            .duplicates,
        2
    );
    let rows = a
        .usage
        .get_usage(admin::GetUsageRequest {
            tenant: ta.clone(),
            since_ms: 0,
            until_ms: 0,
            by_key: true,
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].calls,
            rows[0].errors,
            rows[0].total_tokens,
            rows[0].cost_micros
        ),
        (2, 1, 20, 22)
    );
    let recs = a
        .usage
        .list_usage_records(admin::ListUsageRecordsRequest {
            tenant: ta.clone(),
            limit: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(recs.len(), 1);
    assert!(recs[0].stream);

    a.models
        .delete_model(admin::DeleteModelRequest {
            tenant: ta.clone(),
            model: "gpt-4o".into(),
        })
        .await
        .unwrap();
    a.providers
        .delete_provider(admin::DeleteProviderRequest {
            tenant: ta,
            provider: p.id,
        })
        .await
        .unwrap();
    drop(sub);
    cp.shutdown().await;
}
