//! Tenant A can never see or touch tenant B's objects.

use tollgate_proto::admin::v1 as pb;
use tonic::Code;

use crate::harness::Cp;

#[tokio::test]
async fn tenants_cannot_reach_each_others_objects() {
    let cp = Cp::start().await;
    let mut a = cp.admin().await;
    let ta = a.tenant("tenant-a").await;
    a.tenant("tenant-b").await;
    let pa = a
        .provider("tenant-a", "shared-name", "sk-aaaaaaaaaaaaaaaa")
        .await;
    let pb_ = a
        .provider("tenant-b", "shared-name", "sk-bbbbbbbbbbbbbbbb")
        .await;
    let only_b = a
        .provider("tenant-b", "only-b", "sk-cccccccccccccccc")
        .await;
    a.model("tenant-b", "b-model", "only-b").await.unwrap();
    let kb = a.key("tenant-b", "b-key").await.key.unwrap();

    // B's provider, by name or by id, cannot back a model of A.
    for r in ["only-b", only_b.id.as_str(), pb_.id.as_str()] {
        let e = a.model("tenant-a", "stolen", r).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{r}");
    }
    // Same provider name in both tenants resolves to A's own.
    let m = a.model("tenant-a", "a-model", "shared-name").await.unwrap();
    assert_eq!(m.provider_id, pa.id);
    assert_eq!(m.tenant_id, ta.id);

    // Lists of A show only A's objects.
    let providers = a
        .providers
        .list_providers(pb::ListProvidersRequest {
            tenant: "tenant-a".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .providers;
    assert_eq!(
        providers.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        vec![pa.id.clone()]
    );
    let models = a
        .models
        .list_models(pb::ListModelsRequest {
            tenant: "tenant-a".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(
        models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["a-model"]
    );
    let keys = a
        .keys
        .list_keys(pb::ListKeysRequest {
            tenant: "tenant-a".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert!(keys.is_empty());

    // Revoking B's key through A: NotFound, and B's key stays active.
    for r in [kb.id.as_str(), "b-key"] {
        let e = a
            .keys
            .revoke_key(pb::RevokeKeyRequest {
                tenant: "tenant-a".into(),
                key: r.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    let b_keys = a
        .keys
        .list_keys(pb::ListKeysRequest {
            tenant: "tenant-b".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(b_keys, vec![kb.clone()]);
    assert_eq!(b_keys[0].revoked_at_ms, 0);

    // Deleting B's provider or model through A: NotFound, nothing changes.
    let e = a
        .providers
        .delete_provider(pb::DeleteProviderRequest {
            tenant: "tenant-a".into(),
            provider: only_b.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = a
        .models
        .delete_model(pb::DeleteModelRequest {
            tenant: "tenant-a".into(),
            model: "b-model".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let b_models = a
        .models
        .list_models(pb::ListModelsRequest {
            tenant: "tenant-b".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(b_models.len(), 1);
    let b_providers = a
        .providers
        .list_providers(pb::ListProvidersRequest {
            tenant: "tenant-b".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .providers;
    assert_eq!(b_providers.len(), 2);
}
