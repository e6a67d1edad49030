//! Audit log: a scripted sequence of admin changes produces exactly the
//! expected events, in order, with the right actor and tenant and without
//! any secret; rejected changes and reads leave none; tenant sessions see
//! only their own tenant's events.

use tollgate_proto::admin::v1 as pb;
use tollgate_proto::client::AdminClient;
use tonic::Code;

use crate::harness::Cp;

const PASSWORD: &str = "Owner-Password-Secret-9481";
const PROVIDER_KEY: &str = "sk-proj-AUDITsecretPROVIDERkey0123456789";
const WEBHOOK_SECRET: &str = "hooktoken-SECRET-7731";

async fn connect(cp: &Cp, token: &str) -> AdminClient {
    AdminClient::connect(&cp.running().url, token)
        .await
        .unwrap()
}

async fn sign_in(cp: &Cp, email: &str, password: &str) -> Result<String, tonic::Status> {
    let mut anon = connect(cp, "none").await;
    anon.auth
        .sign_in(pb::SignInRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .map(|r| r.into_inner().token)
}

async fn list(client: &mut AdminClient, req: pb::ListAuditEventsRequest) -> Vec<pb::AuditEvent> {
    client
        .audit
        .list_audit_events(req)
        .await
        .unwrap()
        .into_inner()
        .events
}

/// Every event oldest first, read in pages of `page`.
async fn all_events(client: &mut AdminClient, page: u32) -> Vec<pb::AuditEvent> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let resp = client
            .audit
            .list_audit_events(pb::ListAuditEventsRequest {
                limit: page,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(resp.events);
        if resp.next_page_token.is_empty() {
            break;
        }
        token = resp.next_page_token;
    }
    out.reverse();
    out
}

#[tokio::test]
async fn scripted_changes_produce_exactly_the_expected_events_without_secrets() {
    let cp = Cp::start().await;
    let operator_token = cp.running().admin_token.clone();
    let mut op = connect(&cp, &operator_token).await;

    // --- the script -----------------------------------------------------
    let acme = op
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let provider = op
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: "acme".into(),
            name: "openai".into(),
            kind: "openai".into(),
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: PROVIDER_KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let model = op
        .models
        .add_model(pb::AddModelRequest {
            tenant: acme.id.clone(),
            name: "gpt".into(),
            provider: "openai".into(),
            upstream_model: "gpt-4o".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let created = op
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "acme".into(),
            name: "app".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let key1 = created.key.unwrap();
    let key1_secret = created.secret;
    let budget = op
        .billing
        .set_budget(pb::SetBudgetRequest {
            tenant: "acme".into(),
            period: "day".into(),
            amount_micros: 5_000_000,
            webhook_url: format!("https://hooks.test/{WEBHOOK_SECRET}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let owner = op
        .auth
        .create_user(pb::CreateUserRequest {
            tenant: "acme".into(),
            email: "owner@acme.test".into(),
            password: PASSWORD.into(),
            role: "owner".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let codes = op
        .billing
        .generate_codes(pb::GenerateCodesRequest {
            count: 2,
            value_micros: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    // A refused sign-in is a security event; then the owner signs in.
    let refused = sign_in(&cp, "owner@acme.test", "wrong-password-123")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let session = sign_in(&cp, "owner@acme.test", PASSWORD).await.unwrap();
    let mut own = connect(&cp, &session).await;
    let created = own
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "acme".into(),
            name: "ci".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let key2 = created.key.unwrap();
    let key2_secret = created.secret;
    // Rejected changes record nothing: a duplicate name, a bad argument,
    // a role that may not, an unknown tenant.
    let dup = own
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: "acme".into(),
            name: "openai".into(),
            kind: "openai".into(),
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: PROVIDER_KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let bad = own
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "acme".into(),
            name: "two words".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let denied = own
        .billing
        .generate_codes(pb::GenerateCodesRequest {
            count: 1,
            value_micros: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let unknown = op
        .keys
        .revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "no-such-key".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let no_token = connect(&cp, "tgop-wrong")
        .await
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "evil".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    // Reads record nothing.
    own.keys
        .list_keys(pb::ListKeysRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap();
    let revoked = own
        .keys
        .revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "app".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(revoked.revoked_at_ms, 0);
    let redeemed = own
        .billing
        .redeem_code(pb::RedeemCodeRequest {
            tenant: "acme".into(),
            code: codes.codes[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    own.auth.sign_out(pb::SignOutRequest {}).await.unwrap();

    // --- what the log says ----------------------------------------------
    let events = all_events(&mut op, 3).await;
    let got: Vec<(&str, &str, &str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.actor_id.as_str(),
                e.tenant_id.as_str(),
                e.target_id.as_str(),
                e.outcome.as_str(),
            )
        })
        .collect();
    let op_actor = "operator-token";
    let expected: Vec<(&str, &str, &str, &str, &str)> = vec![
        ("tenant.create", op_actor, &acme.id, &acme.id, "ok"),
        ("provider.add", op_actor, &acme.id, &provider.id, "ok"),
        ("model.add", op_actor, &acme.id, &model.id, "ok"),
        ("key.create", op_actor, &acme.id, &key1.id, "ok"),
        ("budget.set", op_actor, &acme.id, &budget.id, "ok"),
        ("user.create", op_actor, &acme.id, &owner.id, "ok"),
        ("codes.generate", op_actor, "", &codes.batch_id, "ok"),
        ("auth.sign_in_failed", "", "", "", "denied"),
        ("auth.sign_in", &owner.id, &acme.id, &owner.id, "ok"),
        ("key.create", &owner.id, &acme.id, &key2.id, "ok"),
        ("key.revoke", &owner.id, &acme.id, &key1.id, "ok"),
        ("code.redeem", &owner.id, &acme.id, &redeemed.id, "ok"),
        ("auth.sign_out", &owner.id, &acme.id, "", "ok"),
    ];
    assert_eq!(got, expected);

    // Actors, details and times.
    let by = |action: &str| events.iter().find(|e| e.action == action).unwrap();
    assert_eq!(by("tenant.create").actor_kind, "operator");
    let k2 = events
        .iter()
        .find(|e| e.action == "key.create" && e.actor_id == owner.id)
        .unwrap();
    assert_eq!(
        (k2.actor_kind.as_str(), k2.actor_email.as_str()),
        ("user", "owner@acme.test")
    );
    let failed = by("auth.sign_in_failed");
    assert_eq!(
        (failed.actor_kind.as_str(), failed.actor_email.as_str()),
        ("anonymous", "owner@acme.test")
    );
    let details = |action: &str| -> serde_json::Value {
        serde_json::from_str(&by(action).details_json).unwrap()
    };
    assert_eq!(
        details("provider.add"),
        serde_json::json!({
            "name": "openai",
            "kind": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key_set": true,
            "setting_names": [],
        })
    );
    assert_eq!(details("budget.set")["webhook_set"], true);
    assert_eq!(details("budget.set")["amount_micros"], 5_000_000);
    assert_eq!(details("code.redeem")["amount_micros"], 1_000_000);
    assert_eq!(details("user.create")["role"], "owner");
    assert!(events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert!(events.iter().all(|e| e.id.starts_with("ae_")));
    assert!(events.iter().all(|e| e.peer.starts_with("127.0.0.1:")));

    // No secret in the API's answer nor anywhere in the database files.
    let mut secrets = vec![
        PROVIDER_KEY.to_owned(),
        key1_secret,
        key2_secret,
        PASSWORD.to_owned(),
        "wrong-password-123".to_owned(),
        session.clone(),
        operator_token.clone(),
    ];
    secrets.extend(codes.codes.iter().cloned());
    let answer = format!("{events:?}");
    // The budget's webhook URL is stored (in the budgets table) but is not
    // the audit log's to show.
    for s in secrets.iter().map(String::as_str).chain([WEBHOOK_SECRET]) {
        assert!(!answer.contains(s), "a secret in the audit API answer");
    }
    let data_dir = cp.running().data_dir.clone();
    let mut stored = Vec::new();
    for file in ["tollgate.db", "tollgate.db-wal"] {
        if let Ok(bytes) = std::fs::read(data_dir.join(file)) {
            stored.extend(bytes);
        }
    }
    assert!(
        stored
            .windows(b"auth.sign_in_failed".len())
            .any(|w| w == b"auth.sign_in_failed"),
        "the scan reads the rows"
    );
    for s in &secrets {
        let hit = stored.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(!hit, "a secret ({} bytes) in the database files", s.len());
    }

    // Filters: action prefix, actor, tenant, time.
    let keys = list(
        &mut op,
        pb::ListAuditEventsRequest {
            action_prefix: "key.".into(),
            ..Default::default()
        },
    )
    .await;
    let actions: Vec<_> = keys.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["key.revoke", "key.create", "key.create"]);
    let by_owner = list(
        &mut op,
        pb::ListAuditEventsRequest {
            actor: "owner@acme.test".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        by_owner.len(),
        6,
        "sign-in failed, in, key, revoke, redeem, out"
    );
    let installation = list(
        &mut op,
        pb::ListAuditEventsRequest {
            tenant: "-".into(),
            ..Default::default()
        },
    )
    .await;
    let actions: Vec<_> = installation.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["auth.sign_in_failed", "codes.generate"]);
    let since = by("auth.sign_in").at_ms;
    let later = list(
        &mut op,
        pb::ListAuditEventsRequest {
            tenant: "acme".into(),
            since_ms: since,
            ..Default::default()
        },
    )
    .await;
    assert!(later.iter().all(|e| e.at_ms >= since));
    assert!(later.iter().any(|e| e.action == "auth.sign_out"));
    assert!(!later
        .iter()
        .any(|e| e.action == "tenant.create" && e.at_ms < since));
}

#[tokio::test]
async fn tenant_admins_see_only_their_own_tenants_events() {
    let cp = Cp::start().await;
    let mut op = connect(&cp, &cp.running().admin_token).await;
    for (tenant, email, role) in [
        ("tenant-a", "owner@a.test", "owner"),
        ("tenant-b", "owner@b.test", "owner"),
        ("tenant-a", "viewer@a.test", "viewer"),
    ] {
        let _ = op
            .tenants
            .create_tenant(pb::CreateTenantRequest {
                name: tenant.into(),
            })
            .await;
        op.auth
            .create_user(pb::CreateUserRequest {
                tenant: tenant.into(),
                email: email.into(),
                password: PASSWORD.into(),
                role: role.into(),
            })
            .await
            .unwrap();
    }
    let mut a = connect(&cp, &sign_in(&cp, "owner@a.test", PASSWORD).await.unwrap()).await;
    let mut b = connect(&cp, &sign_in(&cp, "owner@b.test", PASSWORD).await.unwrap()).await;
    for (client, tenant) in [(&mut a, "tenant-a"), (&mut b, "tenant-b")] {
        client
            .keys
            .create_key(pb::CreateKeyRequest {
                tenant: tenant.into(),
                name: "k".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let tenant_b = op
        .tenants
        .get_tenant(pb::GetTenantRequest {
            tenant: "tenant-b".into(),
        })
        .await
        .unwrap()
        .into_inner();

    // A sees A's events only, whether it names its tenant or not.
    let mine = list(&mut a, Default::default()).await;
    let named = list(
        &mut a,
        pb::ListAuditEventsRequest {
            tenant: "tenant-a".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(mine, named);
    assert!(!mine.is_empty());
    assert!(mine
        .iter()
        .all(|e| e.tenant_id != tenant_b.id && !e.tenant_id.is_empty()));
    assert!(mine.iter().any(|e| e.action == "key.create"));
    // Naming B (by name or id) is NotFound, like a tenant that does not exist.
    for t in ["tenant-b", tenant_b.id.as_str()] {
        let e = a
            .audit
            .list_audit_events(pb::ListAuditEventsRequest {
                tenant: t.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(e.message(), format!("tenant '{t}' not found"));
    }
    // An actor filter naming B's owner finds nothing from A's session.
    let theirs = list(
        &mut a,
        pb::ListAuditEventsRequest {
            actor: "owner@b.test".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(theirs.is_empty());
    // Viewers may not read the audit log.
    let mut viewer = connect(&cp, &sign_in(&cp, "viewer@a.test", PASSWORD).await.unwrap()).await;
    let e = viewer
        .audit
        .list_audit_events(pb::ListAuditEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The operator sees both tenants.
    let all = list(&mut op, Default::default()).await;
    assert!(all.iter().any(|e| e.tenant_id == tenant_b.id));
    assert!(all.len() > mine.len());
}
