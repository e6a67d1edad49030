//! Which admin RPCs are changes, the action each one records and the fields
//! its audit event may carry: an allowlist per action, never a dump of the
//! request. Secrets (provider API keys, caller keys and their prefixes,
//! passwords, session and data-plane tokens, redemption codes, webhook URLs
//! and guardrail settings, which may embed credentials) are never named here.
//!
//! Every RPC of `proto/tollgate/admin/v1/*.proto` is either in [`AUDITED`] or
//! in [`NOT_AUDITED`]; a test fails for one that is in neither, so a new RPC
//! cannot be forgotten.

use prost::Message;
use serde_json::{json, Value};
use tollgate_proto::admin::v1 as pb;

/// What the request or the response of a call says about its change.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Described {
    /// A tenant reference (id or name) from the request, or the tenant id
    /// from the response; empty: not known here.
    pub tenant: String,
    /// The changed object's id (or the reference the request used).
    pub target: String,
    /// A JSON object of allowlisted, non-secret fields (or null).
    pub details: Value,
}

fn d(tenant: &str, target: &str, details: Value) -> Described {
    Described {
        tenant: tenant.to_owned(),
        target: target.to_owned(),
        details,
    }
}

/// What is recorded for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A change: recorded when (and as) it commits.
    Change,
    /// Sign-in: recorded on success and, as a security event, on refusal.
    SignIn,
}

/// One audited RPC.
#[derive(Debug)]
pub struct AuditedMethod {
    /// gRPC path, `/tollgate.admin.v1.<Service>/<Method>`.
    pub path: &'static str,
    pub action: &'static str,
    pub target_kind: &'static str,
    pub kind: Kind,
    /// Reads the request message (the bytes of one gRPC message).
    pub request: fn(&[u8]) -> Described,
    /// Reads the response message of a successful call.
    pub response: fn(&[u8]) -> Described,
}

/// An undecodable message describes nothing (the service refuses it anyway).
fn decode<M: Message + Default>(bytes: &[u8]) -> M {
    M::decode(bytes).unwrap_or_default()
}

macro_rules! rpc {
    ($path:literal => $action:literal on $target:literal,
     |$r:ident: $Req:ty| $req:expr,
     |$p:ident: $Resp:ty| $resp:expr) => {
        rpc!(@ Kind::Change, $path, $action, $target, |$r: $Req| $req, |$p: $Resp| $resp)
    };
    (@ $kind:expr, $path:literal, $action:literal, $target:literal,
     |$r:ident: $Req:ty| $req:expr,
     |$p:ident: $Resp:ty| $resp:expr) => {
        AuditedMethod {
            path: concat!("/tollgate.admin.v1.", $path),
            action: $action,
            target_kind: $target,
            kind: $kind,
            request: |bytes| {
                let $r: $Req = decode(bytes);
                $req
            },
            response: |bytes| {
                let $p: $Resp = decode(bytes);
                $resp
            },
        }
    };
}

fn nothing() -> Described {
    Described::default()
}

fn rate_limits(v: Option<pb::RateLimitValues>) -> Value {
    let v = v.unwrap_or_default();
    json!({
        "requests_per_second": v.requests_per_second,
        "requests_per_minute": v.requests_per_minute,
        "requests_per_day": v.requests_per_day,
        "tokens_per_minute": v.tokens_per_minute,
        "tokens_per_day": v.tokens_per_day,
        "max_concurrent": v.max_concurrent,
    })
}

fn price(v: Option<pb::PriceValues>) -> Value {
    let v = v.unwrap_or_default();
    json!({
        "input_per_mtok": v.input_per_mtok,
        "cache_read_per_mtok": v.cache_read_per_mtok,
        "cache_write_per_mtok": v.cache_write_per_mtok,
        "output_per_mtok": v.output_per_mtok,
        "reasoning_per_mtok": v.reasoning_per_mtok,
        "per_request_micros": v.per_request_micros,
        "max_output_tokens": v.max_output_tokens,
    })
}

fn route_policy(v: Option<pb::RoutePolicy>) -> Value {
    let v = v.unwrap_or_default();
    json!({
        "strategy": v.strategy,
        "max_attempts": v.max_attempts,
        "retries_per_target": v.retries_per_target,
        "no_same_target_retry": v.no_same_target_retry,
        "connect_timeout_ms": v.connect_timeout_ms,
        "total_timeout_ms": v.total_timeout_ms,
        "ttft_timeout_ms": v.ttft_timeout_ms,
        "idle_timeout_ms": v.idle_timeout_ms,
        "retry_base_ms": v.retry_base_ms,
        "retry_max_ms": v.retry_max_ms,
        "breaker_failures": v.breaker_failures,
        "breaker_cooldown_ms": v.breaker_cooldown_ms,
        "fallback_model": v.fallback_model,
    })
}

fn cache_settings(v: Option<pb::CacheSettings>) -> Value {
    let v = v.unwrap_or_default();
    json!({
        "enabled": v.enabled,
        "ttl_ms": v.ttl_ms,
        "max_entry_bytes": v.max_entry_bytes,
        "only_deterministic": v.only_deterministic,
        "hit_cost_bps": v.hit_cost_bps,
    })
}

fn scope_of(kind: &str, target: &str) -> Value {
    json!({ "scope": kind, "scope_target": target })
}

/// Every admin RPC that changes something, with its action.
pub static AUDITED: &[AuditedMethod] = &[
    // ---------------------------------------------------------- tenants
    rpc!("TenantService/CreateTenant" => "tenant.create" on "tenant",
        |r: pb::CreateTenantRequest| d("", "", json!({ "name": r.name })),
        |p: pb::Tenant| d(&p.id, &p.id, Value::Null)),
    // -------------------------------------------------------- providers
    rpc!("ProviderService/AddProvider" => "provider.add" on "provider",
        |r: pb::AddProviderRequest| {
            let mut settings: Vec<&String> = r.settings.keys().collect();
            settings.sort();
            d(&r.tenant, "", json!({
                "name": r.name,
                "kind": r.kind,
                "base_url": r.base_url,
                "api_key_set": !r.api_key.is_empty(),
                "setting_names": settings,
            }))
        },
        |p: pb::Provider| d(&p.tenant_id, &p.id, Value::Null)),
    rpc!("ProviderService/DeleteProvider" => "provider.delete" on "provider",
        |r: pb::DeleteProviderRequest| d(&r.tenant, &r.provider, Value::Null),
        |_p: pb::DeleteProviderResponse| nothing()),
    rpc!("ProviderService/EnableProvider" => "provider.enable" on "provider",
        |r: pb::EnableProviderRequest| d(&r.tenant, &r.provider, Value::Null),
        |p: pb::ProviderHealth| d("", &p.provider_id, json!({ "name": p.provider_name }))),
    // ----------------------------------------------------------- models
    rpc!("ModelService/AddModel" => "model.add" on "model",
        |r: pb::AddModelRequest| d(&r.tenant, "", json!({
            "name": r.name,
            "provider": r.provider,
            "upstream_model": r.upstream_model,
        })),
        |p: pb::Model| d(&p.tenant_id, &p.id, Value::Null)),
    rpc!("ModelService/DeleteModel" => "model.delete" on "model",
        |r: pb::DeleteModelRequest| d(&r.tenant, &r.model, Value::Null),
        |_p: pb::DeleteModelResponse| nothing()),
    // ----------------------------------------------------------- routes
    rpc!("RouteService/AddRouteTarget" => "route.target_add" on "model",
        |r: pb::AddRouteTargetRequest| d(&r.tenant, &r.model, json!({
            "provider": r.provider,
            "upstream_model": r.upstream_model,
            "priority": r.priority,
            "weight": r.weight,
        })),
        |p: pb::Route| d(&p.tenant_id, &p.model_id, Value::Null)),
    rpc!("RouteService/RemoveRouteTarget" => "route.target_remove" on "model",
        |r: pb::RemoveRouteTargetRequest| d(&r.tenant, &r.model, json!({
            "provider": r.provider,
            "upstream_model": r.upstream_model,
        })),
        |p: pb::Route| d(&p.tenant_id, &p.model_id, Value::Null)),
    rpc!("RouteService/SetRoutePolicy" => "route.policy_set" on "model",
        |r: pb::SetRoutePolicyRequest| d(&r.tenant, &r.model, json!({
            "policy": route_policy(r.policy),
        })),
        |p: pb::Route| d(&p.tenant_id, &p.model_id, Value::Null)),
    // ------------------------------------------------------ caller keys
    // Never the secret nor its display prefix (the key's first characters).
    rpc!("KeyService/CreateKey" => "key.create" on "key",
    |r: pb::CreateKeyRequest| d(&r.tenant, "", json!({
        "name": r.name,
        "expires_at_ms": r.expires_at_ms,
        "providers": r.providers,
    })),
    |p: pb::CreateKeyResponse| {
        let key = p.key.unwrap_or_default();
        d(&key.tenant_id, &key.id, Value::Null)
    }),
    rpc!("KeyService/RevokeKey" => "key.revoke" on "key",
        |r: pb::RevokeKeyRequest| d(&r.tenant, &r.key, Value::Null),
        |p: pb::CallerKey| d(&p.tenant_id, &p.id, json!({ "name": p.name }))),
    // The new secret is in the response: only the key's id is read from it.
    rpc!("KeyService/RegenerateKey" => "key.regenerate" on "key",
    |r: pb::RegenerateKeyRequest| d(&r.tenant, &r.key, Value::Null),
    |p: pb::CreateKeyResponse| {
        let key = p.key.unwrap_or_default();
        d(&key.tenant_id, &key.id, json!({ "name": key.name }))
    }),
    // ------------------------------------------------- users, sessions
    rpc!(@ Kind::SignIn, "AuthService/SignIn", "auth.sign_in", "session",
    |r: pb::SignInRequest| d("", "", json!({ "email": r.email })),
    |p: pb::SignInResponse| {
        let who = p.principal.unwrap_or_default();
        d(&who.tenant_id, &who.user_id, json!({ "email": who.email }))
    }),
    rpc!("AuthService/SignOut" => "auth.sign_out" on "session",
        |_r: pb::SignOutRequest| nothing(),
        |_p: pb::SignOutResponse| nothing()),
    rpc!("AuthService/CreateUser" => "user.create" on "user",
    |r: pb::CreateUserRequest| d(&r.tenant, "", json!({
        "email": r.email,
        "role": r.role,
        "password_generated": r.password.is_empty(),
    })),
    |p: pb::CreateUserResponse| {
        let user = p.user.unwrap_or_default();
        d(&user.tenant_id, &user.id, Value::Null)
    }),
    rpc!("AuthService/DisableUser" => "user.disable" on "user",
        |r: pb::DisableUserRequest| d(&r.tenant, &r.user, Value::Null),
        |p: pb::User| d(&p.tenant_id, &p.id, json!({ "email": p.email }))),
    // ---------------------------------------------------------- billing
    rpc!("BillingService/SetPrice" => "price.set" on "model",
        |r: pb::SetPriceRequest| d(&r.tenant, &r.model, json!({
            "provider": r.provider,
            "price": price(r.price),
        })),
        |p: pb::ModelPrice| d(&p.tenant_id, "", Value::Null)),
    rpc!("BillingService/DeletePrice" => "price.delete" on "model",
        |r: pb::DeletePriceRequest| d(&r.tenant, &r.model, json!({ "provider": r.provider })),
        |_p: pb::DeletePriceResponse| nothing()),
    rpc!("BillingService/SetAccount" => "account.set" on "tenant",
        |r: pb::SetAccountRequest| d(&r.tenant, "", json!({
            "price_multiplier_bps": r.price_multiplier_bps,
            "credit_limit_micros": r.credit_limit_micros,
        })),
        |p: pb::Account| d(&p.tenant_id, &p.tenant_id, Value::Null)),
    rpc!("BillingService/AddLedgerEntry" => "ledger.add" on "ledger_entry",
    |r: pb::AddLedgerEntryRequest| d(&r.tenant, "", json!({
        "kind": r.kind,
        "amount_micros": r.amount_micros,
        "idempotency_key": r.idempotency_key,
        "reference": r.reference,
        "note": r.note,
    })),
    |p: pb::LedgerEntry| d(&p.tenant_id, &p.id, json!({
        "balance_after_micros": p.balance_after_micros,
    }))),
    // Never the codes: each is a bearer credit.
    rpc!("BillingService/GenerateCodes" => "codes.generate" on "code_batch",
        |r: pb::GenerateCodesRequest| d("", "", json!({
            "count": r.count,
            "value_micros": r.value_micros,
            "expires_at_ms": r.expires_at_ms,
            "note": r.note,
        })),
        |p: pb::GenerateCodesResponse| d("", &p.batch_id, Value::Null)),
    rpc!("BillingService/RedeemCode" => "code.redeem" on "ledger_entry",
    |r: pb::RedeemCodeRequest| d(&r.tenant, "", Value::Null),
    |p: pb::LedgerEntry| d(&p.tenant_id, &p.id, json!({
        "amount_micros": p.amount_micros,
        "balance_after_micros": p.balance_after_micros,
    }))),
    rpc!("BillingService/FreezeTenant" => "tenant.freeze" on "tenant",
        |r: pb::FreezeTenantRequest| d(&r.tenant, "", json!({ "reason": r.reason })),
        |p: pb::Account| d(&p.tenant_id, &p.tenant_id, Value::Null)),
    rpc!("BillingService/UnfreezeTenant" => "tenant.unfreeze" on "tenant",
        |r: pb::UnfreezeTenantRequest| d(&r.tenant, "", Value::Null),
        |p: pb::Account| d(&p.tenant_id, &p.tenant_id, Value::Null)),
    // The webhook URL may carry a token: only whether there is one.
    rpc!("BillingService/SetBudget" => "budget.set" on "budget",
        |r: pb::SetBudgetRequest| d(&r.tenant, "", json!({
            "period": r.period,
            "key": r.key,
            "amount_micros": r.amount_micros,
            "soft_micros": r.soft_micros,
            "utc_offset_minutes": r.utc_offset_minutes,
            "webhook_set": !r.webhook_url.is_empty(),
        })),
        |p: pb::Budget| d(&p.tenant_id, &p.id, Value::Null)),
    rpc!("BillingService/DeleteBudget" => "budget.delete" on "budget",
        |r: pb::DeleteBudgetRequest| d(&r.tenant, "", json!({ "period": r.period, "key": r.key })),
        |_p: pb::DeleteBudgetResponse| nothing()),
    // ------------------------------------------------------------ cache
    rpc!("CachePolicyService/SetCachePolicy" => "cache_policy.set" on "cache_policy",
        |r: pb::SetCachePolicyRequest| {
            let scope = r.scope.unwrap_or_default();
            let mut details = scope_of(&scope.kind, &scope.target);
            details["settings"] = cache_settings(r.settings);
            d(&r.tenant, &scope.target, details)
        },
        |p: pb::CachePolicyEntry| d(&p.tenant_id, &p.target_id, Value::Null)),
    rpc!("CachePolicyService/ClearCachePolicy" => "cache_policy.clear" on "cache_policy",
        |r: pb::ClearCachePolicyRequest| {
            let scope = r.scope.unwrap_or_default();
            d(&r.tenant, &scope.target, scope_of(&scope.kind, &scope.target))
        },
        |p: pb::ClearCachePolicyResponse| d("", "", json!({ "removed": p.removed }))),
    // ------------------------------------------------------ data planes
    // Never the registration token nor its last characters.
    rpc!("DataPlaneGroupService/CreateDataPlaneGroup" => "dp_group.create" on "dp_group",
        |r: pb::CreateDataPlaneGroupRequest| d(&r.tenant, "", json!({ "name": r.name })),
        |p: pb::DataPlaneGroup| d(&p.tenant_id, &p.id, Value::Null)),
    rpc!("DataPlaneGroupService/CreateDataPlaneToken" => "dp_token.create" on "dp_token",
    |r: pb::CreateDataPlaneTokenRequest| d(&r.tenant, "", json!({
        "group": r.group,
        "name": r.name,
        "expires_at_ms": r.expires_at_ms,
    })),
    |p: pb::CreatedDataPlaneToken| {
        let token = p.token.unwrap_or_default();
        d("", &token.id, json!({ "group_id": token.group_id }))
    }),
    rpc!("DataPlaneGroupService/RevokeDataPlaneToken" => "dp_token.revoke" on "dp_token",
        |r: pb::RevokeDataPlaneTokenRequest| d(&r.tenant, &r.token_id, Value::Null),
        |p: pb::DataPlaneToken| d("", &p.id, json!({ "group_id": p.group_id }))),
    // ------------------------------------------------------- guardrails
    // Settings may hold a webhook URL or secret header: not recorded.
    rpc!("GuardrailService/CreateGuardrail" => "guardrail.create" on "guardrail",
        |r: pb::CreateGuardrailRequest| d(&r.tenant, "", json!({
            "name": r.name,
            "kind": r.kind,
            "action": r.action,
            "direction": r.direction,
        })),
        |p: pb::Guardrail| d(&p.tenant_id, &p.id, Value::Null)),
    rpc!("GuardrailService/DeleteGuardrail" => "guardrail.delete" on "guardrail",
        |r: pb::DeleteGuardrailRequest| d(&r.tenant, &r.guardrail, Value::Null),
        |_p: pb::DeleteGuardrailResponse| nothing()),
    rpc!("GuardrailService/AttachGuardrail" => "guardrail.attach" on "guardrail",
        |r: pb::AttachGuardrailRequest| d(&r.tenant, &r.guardrail, scope_of(&r.scope, &r.target)),
        |p: pb::Guardrail| d(&p.tenant_id, &p.id, Value::Null)),
    rpc!("GuardrailService/DetachGuardrail" => "guardrail.detach" on "guardrail",
        |r: pb::DetachGuardrailRequest| d(&r.tenant, &r.guardrail, scope_of(&r.scope, &r.target)),
        |p: pb::Guardrail| d(&p.tenant_id, &p.id, Value::Null)),
    // ------------------------------------------------------ rate limits
    rpc!("RateLimitService/SetRateLimit" => "rate_limit.set" on "rate_limit",
        |r: pb::SetRateLimitRequest| {
            let scope = r.scope.unwrap_or_default();
            let mut details = scope_of(&scope.kind, &scope.target);
            details["limits"] = rate_limits(r.limits);
            details["tier"] = Value::String(r.tier);
            d(&r.tenant, &scope.target, details)
        },
        |p: pb::RateLimitEntry| d(&p.tenant_id, &p.target_id, Value::Null)),
    rpc!("RateLimitService/ClearRateLimit" => "rate_limit.clear" on "rate_limit",
        |r: pb::ClearRateLimitRequest| {
            let scope = r.scope.unwrap_or_default();
            d(&r.tenant, &scope.target, scope_of(&scope.kind, &scope.target))
        },
        |p: pb::ClearRateLimitResponse| d("", "", json!({ "removed": p.removed }))),
    rpc!("RateLimitService/SetRateLimitTier" => "rate_limit_tier.set" on "rate_limit_tier",
        |r: pb::SetRateLimitTierRequest| d("", &r.name, json!({ "limits": rate_limits(r.limits) })),
        |_p: pb::RateLimitTier| nothing()),
    rpc!("RateLimitService/DeleteRateLimitTier" => "rate_limit_tier.delete" on "rate_limit_tier",
        |r: pb::DeleteRateLimitTierRequest| d("", &r.name, Value::Null),
        |p: pb::DeleteRateLimitTierResponse| d("", "", json!({ "removed": p.removed }))),
    // -------------------------------------------------------- incidents
    rpc!("StatusService/CreateIncident" => "incident.create" on "incident",
        |r: pb::CreateIncidentRequest| d("", "", json!({
            "title": r.title,
            "impact": r.impact,
            "components": r.components,
        })),
        |p: pb::Incident| d("", &p.id, Value::Null)),
    rpc!("StatusService/UpdateIncident" => "incident.update" on "incident",
        |r: pb::UpdateIncidentRequest| d("", &r.id, json!({
            "title": r.title,
            "impact": r.impact,
            "state": r.state,
            "components": r.components,
        })),
        |p: pb::Incident| d("", &p.id, Value::Null)),
];

/// RPCs that change nothing (reads, and a provider test call that only
/// reads the stored credential).
pub static NOT_AUDITED: &[&str] = &[
    "TenantService/GetTenant",
    "TenantService/ListTenants",
    "ProviderService/ListProviders",
    "ProviderService/ListProviderHealth",
    "ModelService/ListModels",
    "RouteService/GetRoute",
    "KeyService/ListKeys",
    "UsageService/GetUsage",
    "UsageService/ListUsageRecords",
    "DataPlaneService/GetConfigStatus",
    "AuthService/WhoAmI",
    "AuthService/ListUsers",
    "BillingService/ListPrices",
    "BillingService/GetAccount",
    "BillingService/ListLedger",
    "BillingService/ListBudgets",
    "BillingService/ListBudgetAlerts",
    "CachePolicyService/ListCachePolicies",
    "ConsoleService/TestProvider",
    "ConsoleService/ListCodeBatches",
    "DataPlaneGroupService/ListDataPlaneGroups",
    "DataPlaneGroupService/ListDataPlaneTokens",
    "GuardrailService/ListGuardrails",
    "RateLimitService/ListRateLimits",
    "RateLimitService/ListRateLimitTiers",
    "StatusService/ListIncidents",
    "UsageQueryService/QueryUsage",
    "UsageQueryService/SearchRequests",
    "AuditService/ListAuditEvents",
];

/// The audited method served at `path`, if any.
pub fn lookup(path: &str) -> Option<&'static AuditedMethod> {
    if !path.starts_with("/tollgate.admin.v1.") {
        return None;
    }
    AUDITED.iter().find(|m| m.path == path)
}

/// `request` and `response` details in one object, without empty strings
/// and nulls (an unset optional field says nothing).
pub fn merge_details(request: &Value, response: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for v in [request, response] {
        if let Value::Object(map) = v {
            for (k, v) in map {
                match v {
                    Value::Null => {}
                    Value::String(s) if s.is_empty() => {}
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Every `rpc Name(` of every admin proto, as `Service/Name`.
    fn proto_rpcs() -> Vec<String> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/tollgate/admin/v1");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let mut service = String::new();
            for line in text.lines() {
                let line = line.trim();
                if let Some(rest) = line.strip_prefix("service ") {
                    service = rest.trim_end_matches('{').trim().to_owned();
                } else if let Some(rest) = line.strip_prefix("rpc ") {
                    let name = rest.split('(').next().unwrap().trim();
                    out.push(format!("{service}/{name}"));
                }
            }
        }
        assert!(out.len() > 60, "found only {} rpcs", out.len());
        out
    }

    #[test]
    fn every_admin_rpc_is_classified_once() {
        for rpc in proto_rpcs() {
            let path = format!("/tollgate.admin.v1.{rpc}");
            let audited = lookup(&path).is_some();
            let read = NOT_AUDITED.contains(&rpc.as_str());
            assert!(
                audited ^ read,
                "{rpc}: list it in AUDITED (a change) or NOT_AUDITED (a read), exactly once"
            );
        }
        let mut actions: Vec<_> = AUDITED.iter().map(|m| m.action).collect();
        actions.sort_unstable();
        let n = actions.len();
        actions.dedup();
        assert_eq!(actions.len(), n, "actions are unique");
    }

    #[test]
    fn secrets_in_requests_never_reach_the_details() {
        let secret = "sk-SECRETvalue-0123456789";
        let add = pb::AddProviderRequest {
            tenant: "acme".into(),
            name: "openai".into(),
            kind: "openai".into(),
            api_key: secret.into(),
            settings: [("api_version".to_string(), secret.to_string())].into(),
            ..Default::default()
        };
        let m = lookup("/tollgate.admin.v1.ProviderService/AddProvider").unwrap();
        let got = (m.request)(&add.encode_to_vec());
        assert_eq!(got.tenant, "acme");
        assert_eq!(got.details["api_key_set"], json!(true));
        assert_eq!(got.details["setting_names"], json!(["api_version"]));
        assert!(!got.details.to_string().contains(secret));

        let m = lookup("/tollgate.admin.v1.KeyService/CreateKey").unwrap();
        let resp = pb::CreateKeyResponse {
            key: Some(pb::CallerKey {
                id: "ck_1".into(),
                tenant_id: "tn_1".into(),
                prefix: "tg-SECR".into(),
                ..Default::default()
            }),
            secret: secret.into(),
        };
        let got = (m.response)(&resp.encode_to_vec());
        assert_eq!((got.tenant.as_str(), got.target.as_str()), ("tn_1", "ck_1"));
        assert!(!format!("{got:?}").contains("SECR"));

        let sign_in = pb::SignInRequest {
            email: "a@b.test".into(),
            password: secret.into(),
        };
        let m = lookup("/tollgate.admin.v1.AuthService/SignIn").unwrap();
        let got = (m.request)(&sign_in.encode_to_vec());
        assert_eq!(got.details, json!({ "email": "a@b.test" }));

        let redeem = pb::RedeemCodeRequest {
            tenant: "acme".into(),
            code: secret.into(),
        };
        let m = lookup("/tollgate.admin.v1.BillingService/RedeemCode").unwrap();
        assert!(!format!("{:?}", (m.request)(&redeem.encode_to_vec())).contains(secret));

        let budget = pb::SetBudgetRequest {
            tenant: "acme".into(),
            period: "day".into(),
            webhook_url: format!("https://hooks.test/{secret}"),
            ..Default::default()
        };
        let m = lookup("/tollgate.admin.v1.BillingService/SetBudget").unwrap();
        let got = (m.request)(&budget.encode_to_vec());
        assert_eq!(got.details["webhook_set"], json!(true));
        assert!(!got.details.to_string().contains(secret));
    }

    #[test]
    fn garbage_describes_nothing_and_details_merge_without_empties() {
        let m = lookup("/tollgate.admin.v1.TenantService/CreateTenant").unwrap();
        assert_eq!((m.request)(b"\xff\xff\xff").tenant, "");
        assert!(lookup("/tollgate.admin.v1.TenantService/ListTenants").is_none());
        assert!(lookup("/tollgate.sync.v1.SyncService/Subscribe").is_none());
        let merged = merge_details(
            &json!({ "name": "a", "empty": "", "unset": null, "n": 0 }),
            &json!({ "id": "x" }),
        );
        assert_eq!(merged, json!({ "name": "a", "n": 0, "id": "x" }));
    }
}
