//! `KeyService.RegenerateKey`: a new secret for the same key. The next
//! snapshot carries the new hash and not the old one; everything that hangs
//! off the key's id (allowlist, expiry, budget, rate limits) stays.

use tollgate_core::keys::hash_caller_key;
use tollgate_core::time::now_ms;
use tollgate_proto::admin::v1 as admin;
use tollgate_proto::client::AdminClient;
use tonic::Code;

use crate::harness::{contains, database_bytes, Cp, OPENAI_KEY};
use crate::sync::{next_snapshot, subscribe};

#[tokio::test]
async fn regenerate_swaps_the_secret_and_keeps_the_key() {
    let cp = Cp::start().await;
    let mut a = cp.admin().await;
    a.tenant("acme").await;
    let p = a.provider("acme", "openai", OPENAI_KEY).await;
    a.provider("acme", "other", OPENAI_KEY).await;
    let mut op = AdminClient::connect(&cp.running().url, &cp.running().admin_token)
        .await
        .unwrap();
    let expires_at_ms = now_ms() + 86_400_000;
    let created = op
        .keys
        .create_key(admin::CreateKeyRequest {
            tenant: "acme".into(),
            name: "app".into(),
            expires_at_ms,
            providers: vec!["openai".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let before = created.key.clone().unwrap();
    op.billing
        .set_budget(admin::SetBudgetRequest {
            tenant: "acme".into(),
            period: "month".into(),
            amount_micros: 5_000_000,
            key: "app".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    op.rate_limits
        .set_rate_limit(admin::SetRateLimitRequest {
            tenant: "acme".into(),
            scope: Some(admin::RateLimitScope {
                kind: "key".into(),
                target: "app".into(),
            }),
            limits: Some(admin::RateLimitValues {
                requests_per_minute: 120,
                ..Default::default()
            }),
            tier: String::new(),
        })
        .await
        .unwrap();

    let mut sub = subscribe(&cp, "dp-1").await;
    let v1 = next_snapshot(&mut sub.rx).await;
    let k1 = v1.tenants[0].keys[0].clone();
    assert_eq!(k1.key_hash, hash_caller_key(&created.secret));
    assert!(k1.budgeted);
    let limits1 = v1.tenants[0].rate_limits.clone();
    assert_eq!(limits1.len(), 1);

    let renewed = op
        .keys
        .regenerate_key(admin::RegenerateKeyRequest {
            tenant: "acme".into(),
            key: before.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let after = renewed.key.clone().unwrap();
    assert!(renewed.secret.starts_with("tg-") && renewed.secret.len() == 46);
    assert_ne!(renewed.secret, created.secret);
    assert_eq!(
        after,
        admin::CallerKey {
            prefix: renewed.secret[..7].to_owned(),
            ..before.clone()
        }
    );
    assert_eq!(after.allowed_provider_ids, vec![p.id.clone()]);
    assert_eq!(after.expires_at_ms, expires_at_ms);

    // Pushed at once: one new version, the same key with only its hash new.
    let v2 = next_snapshot(&mut sub.rx).await;
    assert_eq!(v2.version, v1.version + 1);
    let keys = &v2.tenants[0].keys;
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0],
        tollgate_proto::sync::v1::CallerKeyConfig {
            key_hash: hash_caller_key(&renewed.secret),
            ..k1
        }
    );
    assert_eq!(v2.tenants[0].rate_limits, limits1);
    let budgets = op
        .billing
        .list_budgets(admin::ListBudgetsRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .budgets;
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets[0].amount_micros, 5_000_000);

    // Only the hash is stored; the list shows the new prefix.
    let listed = a
        .keys
        .list_keys(admin::ListKeysRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(listed, vec![after.clone()]);
    let db = database_bytes(cp.running().data_dir.as_path());
    assert!(!contains(&db, &renewed.secret) && !contains(&db, &created.secret));

    // By name too; bad references and revoked keys are refused and change nothing.
    let again = op
        .keys
        .regenerate_key(admin::RegenerateKeyRequest {
            tenant: "acme".into(),
            key: "app".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(again.secret, renewed.secret);
    let v3 = next_snapshot(&mut sub.rx).await;
    assert_eq!(
        v3.tenants[0].keys[0].key_hash,
        hash_caller_key(&again.secret)
    );
    let refuse = |key: &str| admin::RegenerateKeyRequest {
        tenant: "acme".into(),
        key: key.into(),
    };
    for (key, code) in [("", Code::InvalidArgument), ("nope", Code::NotFound)] {
        let e = op.keys.regenerate_key(refuse(key)).await.unwrap_err();
        assert_eq!(e.code(), code, "{key:?}: {}", e.message());
    }
    op.keys
        .revoke_key(admin::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "app".into(),
        })
        .await
        .unwrap();
    let v4 = next_snapshot(&mut sub.rx).await;
    assert!(v4.tenants[0].keys.is_empty());
    let e = op.keys.regenerate_key(refuse("app")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.message(),
        "key 'app' is revoked; create a new key instead"
    );
    let status = op
        .data_planes
        .get_config_status(admin::GetConfigStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.version, v4.version);
}
