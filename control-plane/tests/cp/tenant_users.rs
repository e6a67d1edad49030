//! Signed-in tenant users: every admin RPC is scoped to the user's tenant
//! and role. A session of tenant A naming tenant B (or B's objects) gets
//! NotFound or PermissionDenied and changes nothing.

use tollgate_proto::admin::v1 as pb;
use tollgate_proto::client::AdminClient;
use tonic::Code;

use crate::harness::Cp;

const PASSWORD: &str = "correct-horse-battery-staple";

async fn operator(cp: &Cp) -> AdminClient {
    AdminClient::connect(&cp.running().url, &cp.running().admin_token)
        .await
        .unwrap()
}

async fn add_user(op: &mut AdminClient, tenant: &str, email: &str, role: &str) -> pb::User {
    op.auth
        .create_user(pb::CreateUserRequest {
            tenant: tenant.into(),
            email: email.into(),
            password: PASSWORD.into(),
            role: role.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

async fn sign_in(
    cp: &Cp,
    email: &str,
    password: &str,
) -> Result<pb::SignInResponse, tonic::Status> {
    // Sign-in needs no token: any value that is not a session is ignored by
    // the service, so connect with a placeholder.
    let mut anon = AdminClient::connect(&cp.running().url, "none")
        .await
        .unwrap();
    anon.auth
        .sign_in(pb::SignInRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn session(cp: &Cp, email: &str) -> AdminClient {
    let token = sign_in(cp, email, PASSWORD).await.unwrap().token;
    assert!(token.starts_with("tgs-"));
    AdminClient::connect(&cp.running().url, &token)
        .await
        .unwrap()
}

/// The code of a call's error, or `Code::Ok`.
macro_rules! code {
    ($call:expr) => {
        match $call.await {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        }
    };
}

struct TenantB {
    id: String,
    provider_id: String,
    model_id: String,
    key_id: String,
    /// Display prefix of B's key secret: unchanged unless it was regenerated.
    key_prefix: String,
    user_id: String,
}

async fn setup_b(op: &mut AdminClient) -> TenantB {
    let t = op
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "tenant-b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let p = op
        .providers
        .add_provider(pb::AddProviderRequest {
            tenant: "tenant-b".into(),
            name: "pb".into(),
            kind: "mock".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let m = op
        .models
        .add_model(pb::AddModelRequest {
            tenant: "tenant-b".into(),
            name: "mb".into(),
            provider: "pb".into(),
            upstream_model: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let k = op
        .keys
        .create_key(pb::CreateKeyRequest {
            tenant: "tenant-b".into(),
            name: "kb".into(),
            expires_at_ms: 0,
            providers: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    let u = add_user(op, "tenant-b", "bob@b.test", "member").await;
    TenantB {
        id: t.id,
        provider_id: p.id,
        model_id: m.id,
        key_id: k.id,
        key_prefix: k.prefix,
        user_id: u.id,
    }
}

#[tokio::test]
async fn session_of_tenant_a_cannot_see_or_change_tenant_b() {
    let cp = Cp::start().await;
    let mut op = operator(&cp).await;
    let ta = op
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "tenant-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    op.providers
        .add_provider(pb::AddProviderRequest {
            tenant: "tenant-a".into(),
            name: "pa".into(),
            kind: "mock".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let b = setup_b(&mut op).await;
    add_user(&mut op, "tenant-a", "owner@a.test", "owner").await;
    let version_before = op
        .data_planes
        .get_config_status(pb::GetConfigStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .version;

    let mut a = session(&cp, "owner@a.test").await;
    let who = a
        .auth
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            who.kind.as_str(),
            who.tenant_id.as_str(),
            who.tenant_name.as_str(),
            who.role.as_str()
        ),
        ("user", ta.id.as_str(), "tenant-a", "owner")
    );

    // Every tenant-scoped RPC, naming B by name and by id: NotFound, with
    // the message of a tenant that does not exist.
    for t in ["tenant-b".to_string(), b.id.clone()] {
        let t = &t;
        let e = a
            .tenants
            .get_tenant(pb::GetTenantRequest { tenant: t.clone() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(e.message(), format!("tenant '{t}' not found"));
        let nope = a
            .tenants
            .get_tenant(pb::GetTenantRequest {
                tenant: "no-such-tenant".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(nope.code(), Code::NotFound);

        let codes = [
            code!(a
                .providers
                .list_providers(pb::ListProvidersRequest { tenant: t.clone() })),
            code!(a.providers.add_provider(pb::AddProviderRequest {
                tenant: t.clone(),
                name: "evil".into(),
                kind: "mock".into(),
                ..Default::default()
            })),
            code!(a.providers.delete_provider(pb::DeleteProviderRequest {
                tenant: t.clone(),
                provider: b.provider_id.clone(),
            })),
            code!(a
                .providers
                .list_provider_health(pb::ListProviderHealthRequest { tenant: t.clone() })),
            code!(a.providers.enable_provider(pb::EnableProviderRequest {
                tenant: t.clone(),
                provider: "pb".into(),
            })),
            code!(a
                .models
                .list_models(pb::ListModelsRequest { tenant: t.clone() })),
            code!(a.models.add_model(pb::AddModelRequest {
                tenant: t.clone(),
                name: "evil".into(),
                provider: "pb".into(),
                upstream_model: String::new(),
            })),
            code!(a.models.delete_model(pb::DeleteModelRequest {
                tenant: t.clone(),
                model: b.model_id.clone(),
            })),
            code!(a.routes.get_route(pb::GetRouteRequest {
                tenant: t.clone(),
                model: "mb".into(),
            })),
            code!(a.routes.add_route_target(pb::AddRouteTargetRequest {
                tenant: t.clone(),
                model: "mb".into(),
                provider: "pb".into(),
                upstream_model: "x".into(),
                priority: 0,
                weight: 1,
            })),
            code!(a.routes.remove_route_target(pb::RemoveRouteTargetRequest {
                tenant: t.clone(),
                model: "mb".into(),
                provider: "pb".into(),
                upstream_model: String::new(),
            })),
            code!(a.routes.set_route_policy(pb::SetRoutePolicyRequest {
                tenant: t.clone(),
                model: "mb".into(),
                policy: Some(pb::RoutePolicy {
                    max_attempts: 1,
                    ..Default::default()
                }),
            })),
            code!(a.keys.create_key(pb::CreateKeyRequest {
                tenant: t.clone(),
                name: "evil".into(),
                expires_at_ms: 0,
                providers: Vec::new(),
            })),
            code!(a.keys.list_keys(pb::ListKeysRequest { tenant: t.clone() })),
            code!(a.keys.revoke_key(pb::RevokeKeyRequest {
                tenant: t.clone(),
                key: b.key_id.clone(),
            })),
            code!(a.keys.regenerate_key(pb::RegenerateKeyRequest {
                tenant: t.clone(),
                key: b.key_id.clone(),
            })),
            code!(a.usage.get_usage(pb::GetUsageRequest {
                tenant: t.clone(),
                ..Default::default()
            })),
            code!(a.usage.list_usage_records(pb::ListUsageRecordsRequest {
                tenant: t.clone(),
                limit: 10,
            })),
            code!(a.usage_query.query_usage(pb::QueryUsageRequest {
                tenant: t.clone(),
                ..Default::default()
            })),
            code!(a.usage_query.search_requests(pb::SearchRequestsRequest {
                tenant: t.clone(),
                ..Default::default()
            })),
            code!(a
                .billing
                .get_account(pb::GetAccountRequest { tenant: t.clone() })),
            code!(a
                .billing
                .list_prices(pb::ListPricesRequest { tenant: t.clone() })),
            code!(a.billing.list_ledger(pb::ListLedgerRequest {
                tenant: t.clone(),
                ..Default::default()
            })),
            code!(a.billing.redeem_code(pb::RedeemCodeRequest {
                tenant: t.clone(),
                code: "TG-NOPE".into(),
            })),
            code!(a
                .billing
                .list_budgets(pb::ListBudgetsRequest { tenant: t.clone() })),
            code!(a
                .billing
                .list_budget_alerts(pb::ListBudgetAlertsRequest { tenant: t.clone() })),
            code!(a.cache.set_cache_policy(pb::SetCachePolicyRequest {
                tenant: t.clone(),
                ..Default::default()
            })),
            code!(a
                .cache
                .list_cache_policies(pb::ListCachePoliciesRequest { tenant: t.clone() })),
            code!(a.cache.clear_cache_policy(pb::ClearCachePolicyRequest {
                tenant: t.clone(),
                ..Default::default()
            })),
            code!(a.rate_limits.set_rate_limit(pb::SetRateLimitRequest {
                tenant: t.clone(),
                scope: Some(pb::RateLimitScope {
                    kind: "tenant".into(),
                    target: String::new(),
                }),
                limits: Some(pb::RateLimitValues {
                    requests_per_minute: 1,
                    ..Default::default()
                }),
                tier: String::new(),
            })),
            code!(a
                .rate_limits
                .list_rate_limits(pb::ListRateLimitsRequest { tenant: t.clone() })),
            // Audit log (security2): B's events are B's.
            code!(a.audit.list_audit_events(pb::ListAuditEventsRequest {
                tenant: t.clone(),
                ..Default::default()
            })),
            code!(a.rate_limits.clear_rate_limit(pb::ClearRateLimitRequest {
                tenant: t.clone(),
                scope: Some(pb::RateLimitScope {
                    kind: "key".into(),
                    target: b.key_id.clone(),
                }),
            })),
            code!(a.guardrails.create_guardrail(pb::CreateGuardrailRequest {
                tenant: t.clone(),
                name: "evil".into(),
                kind: "keyword".into(),
                action: "block".into(),
                direction: String::new(),
                settings: r#"{"keywords":["x"]}"#.into(),
            })),
            code!(a
                .guardrails
                .list_guardrails(pb::ListGuardrailsRequest { tenant: t.clone() })),
            code!(a.guardrails.delete_guardrail(pb::DeleteGuardrailRequest {
                tenant: t.clone(),
                guardrail: "any".into(),
            })),
            code!(a.guardrails.attach_guardrail(pb::AttachGuardrailRequest {
                tenant: t.clone(),
                guardrail: "any".into(),
                scope: "tenant".into(),
                target: String::new(),
            })),
            code!(a.guardrails.detach_guardrail(pb::DetachGuardrailRequest {
                tenant: t.clone(),
                guardrail: "any".into(),
                scope: "tenant".into(),
                target: String::new(),
            })),
            code!(a.console.test_provider(pb::TestProviderRequest {
                tenant: t.clone(),
                provider: "pb".into(),
            })),
            code!(a
                .auth
                .list_users(pb::ListUsersRequest { tenant: t.clone() })),
            code!(a.auth.create_user(pb::CreateUserRequest {
                tenant: t.clone(),
                email: "evil@b.test".into(),
                password: PASSWORD.into(),
                role: "owner".into(),
            })),
            code!(a.auth.disable_user(pb::DisableUserRequest {
                tenant: t.clone(),
                user: b.user_id.clone(),
            })),
        ];
        for (i, c) in codes.iter().enumerate() {
            assert_eq!(*c, Code::NotFound, "call #{i} with tenant {t}");
        }
    }

    // Naming its own tenant with B's object ids finds nothing either.
    let own = "tenant-a".to_string();

    // Money and account state are the operator's: even the owner of its own
    // tenant cannot top it up, change its price multiplier or credit limit,
    // unfreeze it or mint codes.
    let owner_may_not = [
        code!(a.billing.add_ledger_entry(pb::AddLedgerEntryRequest {
            tenant: own.clone(),
            kind: "topup".into(),
            amount_micros: 1_000_000,
            idempotency_key: "self-topup".into(),
            ..Default::default()
        })),
        code!(a.billing.set_account(pb::SetAccountRequest {
            tenant: own.clone(),
            price_multiplier_bps: Some(1),
            credit_limit_micros: Some(1_000_000_000),
        })),
        code!(a.billing.unfreeze_tenant(pb::UnfreezeTenantRequest {
            tenant: own.clone(),
        })),
        code!(a.billing.generate_codes(pb::GenerateCodesRequest {
            count: 1,
            value_micros: 1_000_000,
            ..Default::default()
        })),
        code!(a.console.list_code_batches(pb::ListCodeBatchesRequest {})),
    ];
    for (i, c) in owner_may_not.iter().enumerate() {
        assert_eq!(*c, Code::PermissionDenied, "billing call #{i}");
    }
    assert_eq!(
        code!(a.providers.delete_provider(pb::DeleteProviderRequest {
            tenant: own.clone(),
            provider: b.provider_id.clone(),
        })),
        Code::NotFound
    );
    assert_eq!(
        code!(a.console.test_provider(pb::TestProviderRequest {
            tenant: own.clone(),
            provider: b.provider_id.clone(),
        })),
        Code::NotFound
    );
    assert_eq!(
        code!(a.models.add_model(pb::AddModelRequest {
            tenant: own.clone(),
            name: "stolen".into(),
            provider: b.provider_id.clone(),
            upstream_model: String::new(),
        })),
        Code::NotFound
    );
    assert_eq!(
        code!(a.models.delete_model(pb::DeleteModelRequest {
            tenant: own.clone(),
            model: b.model_id.clone(),
        })),
        Code::NotFound
    );
    // Rate limits: B's key or model named within A's tenant is not found;
    // tiers belong to the operator.
    for (kind, target) in [("key", &b.key_id), ("model", &b.model_id)] {
        assert_eq!(
            code!(a.rate_limits.set_rate_limit(pb::SetRateLimitRequest {
                tenant: own.clone(),
                scope: Some(pb::RateLimitScope {
                    kind: kind.into(),
                    target: target.clone(),
                }),
                limits: Some(pb::RateLimitValues {
                    requests_per_minute: 1,
                    ..Default::default()
                }),
                tier: String::new(),
            })),
            Code::NotFound,
            "{kind}"
        );
    }
    assert_eq!(
        code!(a
            .rate_limits
            .set_rate_limit_tier(pb::SetRateLimitTierRequest {
                name: "mine".into(),
                limits: None,
            })),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(a
            .rate_limits
            .delete_rate_limit_tier(pb::DeleteRateLimitTierRequest {
                name: "mine".into(),
            })),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(a.keys.revoke_key(pb::RevokeKeyRequest {
            tenant: own.clone(),
            key: b.key_id.clone(),
        })),
        Code::NotFound
    );
    assert_eq!(
        code!(a.keys.regenerate_key(pb::RegenerateKeyRequest {
            tenant: own.clone(),
            key: b.key_id.clone(),
        })),
        Code::NotFound
    );
    assert_eq!(
        code!(a.auth.disable_user(pb::DisableUserRequest {
            tenant: own.clone(),
            user: b.user_id.clone(),
        })),
        Code::NotFound
    );

    // Installation-wide RPCs are for operators only.
    assert_eq!(
        code!(a.tenants.create_tenant(pb::CreateTenantRequest {
            name: "evil".into()
        })),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(a
            .data_planes
            .get_config_status(pb::GetConfigStatusRequest {})),
        Code::PermissionDenied
    );
    // Status page incidents are installation-wide (observability).
    assert_eq!(
        code!(a.status.create_incident(pb::CreateIncidentRequest {
            title: "fake outage".into(),
            ..Default::default()
        })),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(a.status.list_incidents(pb::ListIncidentsRequest::default())),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(a.auth.list_users(pb::ListUsersRequest {
            tenant: String::new()
        })),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(a.auth.create_user(pb::CreateUserRequest {
            tenant: String::new(),
            email: "root@x.test".into(),
            password: PASSWORD.into(),
            role: "owner".into(),
        })),
        Code::PermissionDenied
    );
    let tenants = a
        .tenants
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap()
        .into_inner()
        .tenants;
    assert_eq!(
        tenants.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["tenant-a"]
    );
    // A's own objects are visible.
    let mine = a
        .providers
        .list_providers(pb::ListProvidersRequest {
            tenant: "tenant-a".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .providers;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].name, "pa");

    // None of A's refused changes reached the audit log: its only events
    // are its sign-ins.
    let a_events = op
        .audit
        .list_audit_events(pb::ListAuditEventsRequest {
            actor: "owner@a.test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(!a_events.is_empty());
    assert!(
        a_events.iter().all(|e| e.action == "auth.sign_in"),
        "{a_events:?}"
    );

    // Nothing of B changed, and no configuration write happened.
    let status = op
        .data_planes
        .get_config_status(pb::GetConfigStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.version, version_before);
    let pbs = op
        .providers
        .list_providers(pb::ListProvidersRequest {
            tenant: "tenant-b".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .providers;
    assert_eq!(pbs.len(), 1);
    let keys = op
        .keys
        .list_keys(pb::ListKeysRequest {
            tenant: "tenant-b".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!((keys.len(), keys[0].revoked_at_ms), (1, 0));
    assert_eq!(keys[0].prefix, b.key_prefix, "B's key was not regenerated");
    let users = op
        .auth
        .list_users(pb::ListUsersRequest {
            tenant: "tenant-b".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].disabled_at_ms, 0);
    let route = op
        .routes
        .get_route(pb::GetRouteRequest {
            tenant: "tenant-b".into(),
            model: "mb".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(route.targets.len(), 1);
    assert_eq!(route.policy.unwrap().max_attempts, 0);
}

#[tokio::test]
async fn roles_limit_what_a_session_may_do() {
    let cp = Cp::start().await;
    let mut op = operator(&cp).await;
    op.tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "acme".into(),
        })
        .await
        .unwrap();
    for (email, role) in [
        ("v@acme.test", "viewer"),
        ("m@acme.test", "member"),
        ("a@acme.test", "admin"),
        ("o@acme.test", "owner"),
    ] {
        add_user(&mut op, "acme", email, role).await;
    }
    let provider = |name: &str| pb::AddProviderRequest {
        tenant: "acme".into(),
        name: name.into(),
        kind: "mock".into(),
        ..Default::default()
    };
    let key = |name: &str| pb::CreateKeyRequest {
        tenant: "acme".into(),
        name: name.into(),
        expires_at_ms: 0,
        providers: Vec::new(),
    };
    let list = || pb::ListProvidersRequest {
        tenant: "acme".into(),
    };

    let mut v = session(&cp, "v@acme.test").await;
    assert_eq!(code!(v.providers.list_providers(list())), Code::Ok);
    assert_eq!(
        code!(v.providers.add_provider(provider("v"))),
        Code::PermissionDenied
    );
    assert_eq!(code!(v.keys.create_key(key("v"))), Code::PermissionDenied);
    assert_eq!(
        code!(v.auth.list_users(pb::ListUsersRequest {
            tenant: "acme".into()
        })),
        Code::PermissionDenied
    );

    let mut m = session(&cp, "m@acme.test").await;
    let created = m.keys.create_key(key("m")).await.unwrap().into_inner();
    assert!(created.secret.starts_with("tg-"));
    assert_eq!(
        code!(m.providers.add_provider(provider("m"))),
        Code::PermissionDenied
    );
    // A member revokes the keys it created, and no others.
    op.keys.create_key(key("by-operator")).await.unwrap();
    let e = m
        .keys
        .revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "by-operator".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("member"), "{}", e.message());
    // The same holds for regenerating: its own key yes, others' no.
    let regen = |key: &str| pb::RegenerateKeyRequest {
        tenant: "acme".into(),
        key: key.into(),
    };
    let e = m
        .keys
        .regenerate_key(regen("by-operator"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("regenerate"), "{}", e.message());
    assert_eq!(
        code!(v.keys.regenerate_key(regen("m"))),
        Code::PermissionDenied
    );
    let renewed = m
        .keys
        .regenerate_key(regen("m"))
        .await
        .unwrap()
        .into_inner();
    assert!(renewed.secret.starts_with("tg-") && renewed.secret != created.secret);
    assert_eq!(renewed.key.unwrap().id, created.key.clone().unwrap().id);
    let own = m
        .keys
        .revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "m".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(own.revoked_at_ms, 0);
    assert_eq!(
        code!(v.keys.revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "by-operator".into(),
        })),
        Code::PermissionDenied
    );

    let mut a = session(&cp, "a@acme.test").await;
    assert_eq!(code!(a.providers.add_provider(provider("a"))), Code::Ok);
    assert_eq!(
        code!(a.keys.revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "by-operator".into(),
        })),
        Code::Ok
    );
    let new_user = |email: &str, role: &str| pb::CreateUserRequest {
        tenant: "acme".into(),
        email: email.into(),
        password: String::new(),
        role: role.into(),
    };
    let made = a
        .auth
        .create_user(new_user("m2@acme.test", "member"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        made.generated_password.len(),
        24,
        "generated and shown once"
    );
    assert_eq!(
        code!(a.auth.create_user(new_user("o2@acme.test", "owner"))),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(a.auth.disable_user(pb::DisableUserRequest {
            tenant: "acme".into(),
            user: "o@acme.test".into(),
        })),
        Code::PermissionDenied
    );
    // The generated password signs in.
    sign_in(&cp, "m2@acme.test", &made.generated_password)
        .await
        .unwrap();

    let mut o = session(&cp, "o@acme.test").await;
    assert_eq!(
        code!(o.auth.create_user(new_user("a2@acme.test", "admin"))),
        Code::Ok
    );
    assert_eq!(
        code!(o.auth.create_user(new_user("x@acme.test", "root"))),
        Code::InvalidArgument
    );
    // Disabling the viewer ends its session at once.
    assert_eq!(
        code!(o.auth.disable_user(pb::DisableUserRequest {
            tenant: "acme".into(),
            user: "v@acme.test".into(),
        })),
        Code::Ok
    );
    assert_eq!(
        code!(v.providers.list_providers(list())),
        Code::Unauthenticated
    );
    assert_eq!(
        sign_in(&cp, "v@acme.test", PASSWORD)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn sign_in_failures_do_not_say_which_part_was_wrong_and_sessions_end() {
    let cp = Cp::start().await;
    let mut op = operator(&cp).await;
    op.tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "acme".into(),
        })
        .await
        .unwrap();
    add_user(&mut op, "acme", "Ann@Acme.test", "admin").await;

    let wrong_password = sign_in(&cp, "ann@acme.test", "not-the-password")
        .await
        .unwrap_err();
    let wrong_email = sign_in(&cp, "nobody@acme.test", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(wrong_password.code(), Code::Unauthenticated);
    assert_eq!(wrong_email.code(), Code::Unauthenticated);
    assert_eq!(wrong_password.message(), wrong_email.message());
    assert!(!wrong_password.message().contains("ann"));

    // Email is case-insensitive.
    let ok = sign_in(&cp, "ANN@acme.test", PASSWORD).await.unwrap();
    assert!(ok.expires_at_ms > tollgate_core::time::now_ms());
    assert_eq!(ok.principal.unwrap().tenant_name, "acme");

    // Sign-out ends the session.
    let mut s = AdminClient::connect(&cp.running().url, &ok.token)
        .await
        .unwrap();
    s.auth.sign_out(pb::SignOutRequest {}).await.unwrap();
    assert_eq!(
        code!(s.auth.who_am_i(pb::WhoAmIRequest {})),
        Code::Unauthenticated
    );

    // An expired session is refused.
    let late = sign_in(&cp, "ann@acme.test", PASSWORD).await.unwrap();
    let mut s = AdminClient::connect(&cp.running().url, &late.token)
        .await
        .unwrap();
    assert_eq!(code!(s.auth.who_am_i(pb::WhoAmIRequest {})), Code::Ok);
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&tollgate_cp::store::sqlite_url(
        &cp.running().data_dir.join("tollgate.db"),
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE sessions SET expires_at_ms = $1")
        .bind(tollgate_core::time::now_ms() - 1)
        .execute(&db)
        .await
        .unwrap();
    let e = s
        .tenants
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("sign in again"), "{}", e.message());
    // Password guessing is cut off after 5 failures, even with the right
    // password, for known and unknown emails alike.
    for email in ["ann@acme.test", "ghost@acme.test"] {
        for _ in 0..5 {
            let e = sign_in(&cp, email, "guess-guess-guess").await.unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated);
        }
    }
    let locked = sign_in(&cp, "ann@acme.test", PASSWORD).await.unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted);
    let ghost = sign_in(&cp, "ghost@acme.test", PASSWORD).await.unwrap_err();
    assert_eq!(ghost.code(), Code::ResourceExhausted);

    // A made-up session token is refused the same way.
    let mut fake = AdminClient::connect(&cp.running().url, "tgs-made-up")
        .await
        .unwrap();
    assert_eq!(
        code!(fake.auth.who_am_i(pb::WhoAmIRequest {})),
        Code::Unauthenticated
    );
    // No token: refused, except for sign-in.
    let mut none = AdminClient::connect(&cp.running().url, "none")
        .await
        .unwrap();
    assert_eq!(
        code!(none.auth.who_am_i(pb::WhoAmIRequest {})),
        Code::Unauthenticated
    );
    assert_eq!(
        code!(none.tenants.list_tenants(pb::ListTenantsRequest {})),
        Code::Unauthenticated
    );
}

/// Users, sessions and tenant scoping on Postgres, when
/// `TOLLGATE_TEST_POSTGRES_URL` points at a database (names are unique per
/// run, so a shared database can be reused).
#[tokio::test]
async fn users_sessions_and_scoping_on_postgres() {
    let Ok(url) = std::env::var("TOLLGATE_TEST_POSTGRES_URL") else {
        eprintln!("TOLLGATE_TEST_POSTGRES_URL not set; skipping the Postgres users scenario");
        return;
    };
    let cp = Cp::start_with_database(&url).await;
    let mut op = operator(&cp).await;
    let run = tollgate_core::time::now_ms();
    let (ta, tb) = (format!("pgu-a-{run}"), format!("pgu-b-{run}"));
    for t in [&ta, &tb] {
        op.tenants
            .create_tenant(pb::CreateTenantRequest { name: t.clone() })
            .await
            .unwrap();
    }
    let email = format!("owner-{run}@a.test");
    add_user(&mut op, &ta, &email, "owner").await;
    let op_email = format!("ops-{run}@x.test");
    add_user(&mut op, "", &op_email, "viewer").await;
    let operators = op
        .auth
        .list_users(pb::ListUsersRequest {
            tenant: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .users;
    assert!(operators
        .iter()
        .any(|u| u.email == op_email && u.tenant_id.is_empty()));

    let mut a = session(&cp, &email).await;
    let who = a
        .auth
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.tenant_name, ta);
    assert_eq!(
        code!(a
            .providers
            .list_providers(pb::ListProvidersRequest { tenant: tb.clone() })),
        Code::NotFound
    );
    assert_eq!(
        code!(a.providers.add_provider(pb::AddProviderRequest {
            tenant: ta.clone(),
            name: "pa".into(),
            kind: "mock".into(),
            ..Default::default()
        })),
        Code::Ok
    );
    let users = a
        .auth
        .list_users(pb::ListUsersRequest { tenant: ta.clone() })
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(users.len(), 1);
    // The operator viewer reads every tenant and changes none.
    let mut ops = session(&cp, &op_email).await;
    assert_eq!(
        code!(ops
            .providers
            .list_providers(pb::ListProvidersRequest { tenant: ta.clone() })),
        Code::Ok
    );
    assert_eq!(
        code!(ops.keys.create_key(pb::CreateKeyRequest {
            tenant: tb.clone(),
            name: "k".into(),
            expires_at_ms: 0,
            providers: Vec::new(),
        })),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(ops
            .data_planes
            .get_config_status(pb::GetConfigStatusRequest {})),
        Code::Ok
    );
    op.auth
        .disable_user(pb::DisableUserRequest {
            tenant: ta.clone(),
            user: email.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        code!(a.auth.who_am_i(pb::WhoAmIRequest {})),
        Code::Unauthenticated
    );
}

/// Data-plane groups (docs/operations.md): a tenant's owner manages the
/// tokens of its own tenant-scoped groups only; naming another tenant, or a
/// group of another tenant or a shared group, finds nothing and changes
/// nothing; creating groups is for operators.
#[tokio::test]
async fn tenant_session_manages_only_its_own_dp_group_tokens() {
    let cp = Cp::start().await;
    let mut op = operator(&cp).await;
    let mut ids = Vec::new();
    for name in ["tenant-a", "tenant-b"] {
        let t = op
            .tenants
            .create_tenant(pb::CreateTenantRequest { name: name.into() })
            .await
            .unwrap()
            .into_inner();
        ids.push(t.id);
    }
    add_user(&mut op, "tenant-a", "alice@a.test", "owner").await;
    add_user(&mut op, "tenant-a", "mia@a.test", "member").await;
    let group = |name: &str, tenant: &str| pb::CreateDataPlaneGroupRequest {
        name: name.into(),
        tenant: tenant.into(),
    };
    for (name, tenant) in [
        ("a-onprem", "tenant-a"),
        ("b-onprem", "tenant-b"),
        ("cloud", ""),
    ] {
        op.dp_groups
            .create_data_plane_group(group(name, tenant))
            .await
            .unwrap();
    }
    let b_token = op
        .dp_groups
        .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
            group: "b-onprem".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();

    let mut a = session(&cp, "alice@a.test").await;
    for t in ["tenant-b".to_string(), ids[1].clone()] {
        let codes = [
            code!(a
                .dp_groups
                .list_data_plane_groups(pb::ListDataPlaneGroupsRequest { tenant: t.clone() })),
            code!(a
                .dp_groups
                .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
                    group: "b-onprem".into(),
                    tenant: t.clone(),
                    ..Default::default()
                })),
            code!(a
                .dp_groups
                .list_data_plane_tokens(pb::ListDataPlaneTokensRequest {
                    group: "b-onprem".into(),
                    tenant: t.clone(),
                })),
            code!(a
                .dp_groups
                .revoke_data_plane_token(pb::RevokeDataPlaneTokenRequest {
                    token_id: b_token.id.clone(),
                    tenant: t.clone(),
                })),
        ];
        for (i, c) in codes.iter().enumerate() {
            assert_eq!(*c, Code::NotFound, "call #{i} with tenant {t}");
        }
    }
    // Its own tenant with B's group, B's token or the shared group: NotFound.
    let own = "tenant-a".to_string();
    for g in ["b-onprem", "cloud"] {
        assert_eq!(
            code!(a
                .dp_groups
                .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
                    group: g.into(),
                    tenant: own.clone(),
                    ..Default::default()
                })),
            Code::NotFound,
            "{g}"
        );
        assert_eq!(
            code!(a
                .dp_groups
                .list_data_plane_tokens(pb::ListDataPlaneTokensRequest {
                    group: g.into(),
                    tenant: own.clone(),
                })),
            Code::NotFound,
            "{g}"
        );
    }
    assert_eq!(
        code!(a
            .dp_groups
            .revoke_data_plane_token(pb::RevokeDataPlaneTokenRequest {
                token_id: b_token.id.clone(),
                tenant: own.clone(),
            })),
        Code::NotFound
    );
    // Without a tenant, and creating groups: not for tenant users.
    assert_eq!(
        code!(a
            .dp_groups
            .list_data_plane_groups(pb::ListDataPlaneGroupsRequest::default())),
        Code::InvalidArgument
    );
    assert_eq!(
        code!(a
            .dp_groups
            .create_data_plane_group(group("mine", "tenant-a"))),
        Code::PermissionDenied
    );
    // B's token is untouched.
    let b_tokens = op
        .dp_groups
        .list_data_plane_tokens(pb::ListDataPlaneTokensRequest {
            group: "b-onprem".into(),
            tenant: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(b_tokens.len(), 1);
    assert_eq!(b_tokens[0].revoked_at_ms, 0);

    // Its own group: listed, tokens created, listed and revoked.
    let groups = a
        .dp_groups
        .list_data_plane_groups(pb::ListDataPlaneGroupsRequest {
            tenant: own.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert_eq!(
        groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
        ["a-onprem"]
    );
    let mine = a
        .dp_groups
        .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
            group: "a-onprem".into(),
            tenant: own.clone(),
            name: "rack-1".into(),
            expires_at_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(mine.secret.starts_with("tgdr-"));
    let revoked = a
        .dp_groups
        .revoke_data_plane_token(pb::RevokeDataPlaneTokenRequest {
            token_id: mine.token.unwrap().id,
            tenant: own.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at_ms > 0);
    // A member may look but not create tokens.
    let mut m = session(&cp, "mia@a.test").await;
    assert_eq!(
        code!(m
            .dp_groups
            .list_data_plane_tokens(pb::ListDataPlaneTokensRequest {
                group: "a-onprem".into(),
                tenant: own.clone(),
            })),
        Code::Ok
    );
    assert_eq!(
        code!(m
            .dp_groups
            .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
                group: "a-onprem".into(),
                tenant: own.clone(),
                ..Default::default()
            })),
        Code::PermissionDenied
    );
}
