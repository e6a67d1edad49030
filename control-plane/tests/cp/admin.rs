//! Admin API: CRUD, validation, write-only secrets, authentication.

use tollgate_proto::admin::v1 as pb;
use tonic::Code;

use crate::harness::{contains, database_bytes, Admin, Bearer, Cp, OPENAI_KEY};

#[tokio::test]
async fn tenant_provider_model_key_crud() {
    let cp = Cp::start().await;
    let mut a = cp.admin().await;

    let t = a.tenant("acme").await;
    assert!(t.id.starts_with("tn_"));
    assert_eq!((t.name.as_str(), t.active), ("acme", true));
    let by_id = a
        .tenants
        .get_tenant(pb::GetTenantRequest {
            tenant: t.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id, t);
    let dup = a
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "acme".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let bad = a
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "Bad_Name".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("lowercase"), "{}", bad.message());
    let missing = a
        .tenants
        .get_tenant(pb::GetTenantRequest {
            tenant: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let list = a
        .tenants
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.tenants, vec![t.clone()]);

    // Providers.
    let p = a.provider("acme", "openai", OPENAI_KEY).await;
    assert!(p.id.starts_with("pv_"));
    assert_eq!(p.tenant_id, t.id);
    assert_eq!(p.kind, "openai");
    assert_eq!(p.base_url, "https://api.openai.example/v1");
    assert_eq!(p.key_last4, "wxyz");
    assert_eq!(
        p.key_fingerprint,
        tollgate_core::keys::secret_fingerprint(OPENAI_KEY)
    );
    let mock = a
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: t.id.clone(),
            name: "mock".into(),
            kind: "mock".into(),
            base_url: String::new(),
            api_key: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (mock.key_fingerprint.as_str(), mock.key_last4.as_str()),
        ("", "")
    );
    for (kind, url) in [
        ("openai", ""),
        ("bedrock", "https://x"),
        ("openai", "ftp://x"),
    ] {
        let e = a
            .providers
            .add_provider(pb::AddProviderRequest {
                tenant: "acme".into(),
                name: "x".into(),
                kind: kind.into(),
                base_url: url.into(),
                api_key: "k".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{kind} {url}");
    }
    let providers = a
        .providers
        .list_providers(pb::ListProvidersRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .providers;
    assert_eq!(providers, vec![mock.clone(), p.clone()]);

    // Models.
    let m = a.model("acme", "gpt-4o", "openai").await.unwrap();
    assert_eq!(m.provider_id, p.id);
    assert_eq!(m.provider_name, "openai");
    assert_eq!(m.upstream_model, "gpt-4o");
    let m2 = a
        .models
        .add_model(pb::AddModelRequest {
            tenant: "acme".into(),
            name: "fast".into(),
            provider: mock.id.clone(),
            upstream_model: "mock-fast-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m2.upstream_model, "mock-fast-1");
    let e = a.model("acme", "has space", "openai").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = a.model("acme", "x", "nope").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(
        a.model("acme", "gpt-4o", "mock").await.unwrap_err().code(),
        Code::AlreadyExists
    );
    let models = a
        .models
        .list_models(pb::ListModelsRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .models;
    assert_eq!(models, vec![m2.clone(), m.clone()]);

    // A provider in use cannot be deleted.
    let e = a
        .providers
        .delete_provider(pb::DeleteProviderRequest {
            tenant: "acme".into(),
            provider: "openai".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("gpt-4o"));
    a.models
        .delete_model(pb::DeleteModelRequest {
            tenant: "acme".into(),
            model: m.id.clone(),
        })
        .await
        .unwrap();
    a.providers
        .delete_provider(pb::DeleteProviderRequest {
            tenant: "acme".into(),
            provider: p.id.clone(),
        })
        .await
        .unwrap();
    let e = a
        .providers
        .delete_provider(pb::DeleteProviderRequest {
            tenant: "acme".into(),
            provider: p.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Keys.
    let k = a.key("acme", "ci").await;
    let key = k.key.clone().unwrap();
    assert!(key.id.starts_with("ck_"));
    assert!(k.secret.starts_with("tg-"));
    assert_eq!(key.prefix, k.secret[..7]);
    assert_eq!((key.expires_at_ms, key.revoked_at_ms), (0, 0));
    let listed = a
        .keys
        .list_keys(pb::ListKeysRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.keys, vec![key.clone()]);
    let revoked = a
        .keys
        .revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "ci".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at_ms > 0);
    let again = a
        .keys
        .revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: key.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, revoked);
    let e = a
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "acme".into(),
            name: "old".into(),
            expires_at_ms: 1000,
            providers: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn provider_key_is_never_returned_or_stored_in_clear() {
    let cp = Cp::start().await;
    let mut a = cp.admin().await;
    a.tenant("acme").await;
    let added = a.provider("acme", "openai", OPENAI_KEY).await;
    let listed = a
        .providers
        .list_providers(pb::ListProvidersRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap();
    let model = a.model("acme", "gpt", "openai").await.unwrap();
    for debug in [
        format!("{added:?}"),
        format!("{listed:?}"),
        format!("{model:?}"),
    ] {
        assert!(!debug.contains(OPENAI_KEY), "{debug}");
        assert!(!debug.contains("PLAINTEXTsecret"));
    }
    let db = database_bytes(cp.dir.path());
    assert!(!contains(&db, OPENAI_KEY));
    assert!(!contains(&db, "PLAINTEXTsecret"));
    assert!(contains(&db, "tgenc1:"));
    assert!(!format!("{:?}", cp.running()).contains(&cp.running().admin_token));
}

#[tokio::test]
async fn caller_key_secret_returned_once_and_only_hash_stored() {
    let cp = Cp::start().await;
    let mut a = cp.admin().await;
    a.tenant("acme").await;
    let created = a.key("acme", "app").await;
    let secret = created.secret.clone();
    assert_eq!(secret.len(), 46);
    let listed = a
        .keys
        .list_keys(pb::ListKeysRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap();
    assert!(!format!("{listed:?}").contains(&secret));
    let db = database_bytes(cp.dir.path());
    assert!(!contains(&db, &secret));
    assert!(contains(
        &db,
        &tollgate_core::keys::hash_caller_key(&secret)
    ));
}

#[tokio::test]
async fn requests_without_the_operator_token_are_refused() {
    let cp = Cp::start().await;
    let ch = cp.channel().await;
    let token_file = cp.running().data_dir.join("admin.token");
    for bearer in [
        Bearer::none(),
        Bearer::new("tgop-wrong"),
        Bearer::new(&cp.running().dp_token),
    ] {
        let mut a = Admin::with_bearer(ch.clone(), bearer);
        let e = a
            .tenants
            .list_tenants(pb::ListTenantsRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert!(
            e.message().contains(&token_file.display().to_string()),
            "{}",
            e.message()
        );
        assert!(e.message().contains("TOLLGATE_ADMIN_TOKEN"));
        let e = a
            .data_planes
            .get_config_status(pb::GetConfigStatusRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    // The operator token does not open the sync service.
    let mut sync =
        tollgate_proto::sync::v1::sync_service_client::SyncServiceClient::with_interceptor(
            ch.clone(),
            Bearer::new(&cp.running().admin_token),
        );
    let e = sync
        .report_usage(tollgate_proto::sync::v1::UsageBatch::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("dp.token"));
    // And the right one works.
    let mut a = cp.admin().await;
    assert!(a
        .tenants
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .is_ok());
}

#[tokio::test]
async fn grpc_web_over_http1_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cp = Cp::start().await;
    a_tenant(&cp).await;
    let mut s = tokio::net::TcpStream::connect(cp.running().addr)
        .await
        .unwrap();
    // One gRPC-web frame: flag 0, length 0 (ListTenantsRequest is empty).
    let body = [0u8, 0, 0, 0, 0];
    let head = format!(
        "POST /tollgate.admin.v1.TenantService/ListTenants HTTP/1.1\r\nhost: localhost\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n\
         authorization: Bearer {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        cp.running().admin_token,
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text
        .to_ascii_lowercase()
        .contains("content-type: application/grpc-web+proto"));
    assert!(text.contains("acme"));
    assert!(text.contains("grpc-status:0"));
}

async fn a_tenant(cp: &Cp) {
    cp.admin().await.tenant("acme").await;
}
