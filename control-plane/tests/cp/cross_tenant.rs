//! Cross-tenant isolation: a signed-in session of tenant A naming tenant B
//! (or B's objects) in every tenant-scoped admin RPC gets NotFound or
//! PermissionDenied and changes nothing. Every new tenant-scoped RPC is
//! added here.

use tollgate_proto::admin::v1 as pb;
use tollgate_proto::client::AdminClient;
use tonic::Code;

use crate::harness::Cp;
use crate::tenant_users::{add_user, operator, session, PASSWORD};

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
