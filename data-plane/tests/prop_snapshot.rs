//! Property tests of the configuration snapshot decoder and compiler:
//! arbitrary protobuf bytes and structurally random snapshots (duplicate ids,
//! dangling provider references, odd kinds, wildcard and empty model names,
//! random guardrail settings, extreme prices and policies) are accepted or
//! refused with an error — never a panic — and the compiler's verdict
//! survives a protobuf round trip.
#![allow(clippy::unwrap_used)]
// `..Default::default()` everywhere: other branches add snapshot fields.
#![allow(clippy::needless_update)]

mod prop_support;

use proptest::prelude::*;
use prost::Message;
use tollgate_dp::config::compile::compile;
use tollgate_proto::sync::v1 as pb;

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(&["a", "b", "c", ""][..]).prop_map(str::to_owned),
        "[a-z0-9_*-]{0,6}",
    ]
}

fn provider() -> impl Strategy<Value = pb::ProviderConfig> {
    (
        id(),
        id(),
        proptest::sample::select(
            &[
                "openai",
                "azure",
                "anthropic",
                "gemini",
                "mock",
                "",
                "bogus",
            ][..],
        ),
        prop_oneof![
            "https?://[a-z.]{0,10}(:[0-9]{1,5})?(/[a-z]{0,5})?",
            ".{0,12}"
        ],
        ".{0,12}",
        any::<bool>(),
        proptest::collection::hash_map("[a-z_]{0,10}", ".{0,10}", 0..3),
    )
        .prop_map(|(id, name, kind, base_url, api_key, disabled, settings)| {
            pb::ProviderConfig {
                id,
                name,
                kind: kind.into(),
                base_url,
                api_key,
                disabled,
                settings,
            }
        })
}

fn price() -> impl Strategy<Value = pb::Price> {
    (
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        proptest::option::of(any::<i64>()),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(|(i, cr, cw, o, r, req, max)| pb::Price {
            input_per_mtok: i,
            cache_read_per_mtok: cr,
            cache_write_per_mtok: cw,
            output_per_mtok: o,
            reasoning_per_mtok: r,
            per_request_micros: req,
            max_output_tokens: max,
        })
}

fn policy() -> impl Strategy<Value = pb::RoutePolicy> {
    (
        proptest::sample::select(&["", "weighted", "priority", "least_latency", "zzz"][..]),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(strategy, attempts, retries, connect, total, base)| pb::RoutePolicy {
                strategy: strategy.into(),
                max_attempts: attempts,
                retries_per_target: retries,
                connect_timeout_ms: connect,
                total_timeout_ms: total,
                retry_base_ms: base,
                retry_max_ms: base / 2,
                ..Default::default()
            },
        )
}

fn cache_policy() -> impl Strategy<Value = pb::CachePolicy> {
    (
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(
            |(enabled, ttl_ms, max_entry_bytes, only_deterministic, hit_cost_bps)| {
                pb::CachePolicy {
                    enabled,
                    ttl_ms,
                    max_entry_bytes,
                    only_deterministic,
                    hit_cost_bps,
                }
            },
        )
}

fn model() -> impl Strategy<Value = pb::ModelConfig> {
    (
        id(),
        prop_oneof![
            proptest::sample::select(&["gpt", "gpt-*", "*", "", "m"][..]).prop_map(str::to_owned),
            ".{0,10}"
        ],
        id(),
        ".{0,10}",
        proptest::collection::vec(
            (id(), ".{0,8}", any::<u32>()).prop_map(|(provider_id, upstream_model, priority)| {
                pb::RouteTargetConfig {
                    provider_id,
                    upstream_model,
                    priority,
                    ..Default::default()
                }
            }),
            0..3,
        ),
        proptest::option::of(policy()),
        proptest::collection::vec(".{0,6}", 0..2),
        proptest::option::of(cache_policy()),
        proptest::option::of(price()),
    )
        .prop_map(
            |(id, name, provider_id, upstream_model, targets, policy, aliases, cache, price)| {
                pb::ModelConfig {
                    id,
                    name,
                    provider_id,
                    upstream_model,
                    targets,
                    policy,
                    aliases,
                    cache_policy: cache,
                    price,
                    ..Default::default()
                }
            },
        )
}

fn guardrail() -> impl Strategy<Value = pb::GuardrailConfig> {
    (
        id(),
        id(),
        proptest::sample::select(
            &[
                "keyword", "regex", "pii", "size", "model", "webhook", "nope",
            ][..],
        ),
        proptest::sample::select(&["block", "redact", "log", "x"][..]),
        proptest::sample::select(&["input", "output", "both", ""][..]),
        prop_oneof![
            prop_support::json().prop_map(|v| v.to_string()),
            Just(r#"{"words":["a"],"whole_word":true}"#.to_owned()),
            Just(r#"{"patterns":["(a+)+$","["]}"#.to_owned()),
            ".{0,16}",
        ],
    )
        .prop_map(
            |(id, name, kind, action, direction, settings)| pb::GuardrailConfig {
                id,
                name,
                kind: kind.into(),
                action: action.into(),
                direction: direction.into(),
                settings,
                ..Default::default()
            },
        )
}

fn tenant() -> impl Strategy<Value = pb::TenantConfig> {
    (
        id(),
        id(),
        any::<bool>(),
        proptest::collection::vec(provider(), 0..3),
        proptest::collection::vec(model(), 0..3),
        proptest::collection::vec(
            (
                id(),
                id(),
                "[0-9a-f]{0,8}",
                any::<i64>(),
                proptest::collection::vec(id(), 0..2),
            )
                .prop_map(
                    |(id, name, key_hash, expires_at_ms, allowed_provider_ids)| {
                        pb::CallerKeyConfig {
                            id,
                            name,
                            key_hash,
                            expires_at_ms,
                            allowed_provider_ids,
                            ..Default::default()
                        }
                    },
                ),
            0..3,
        ),
        proptest::option::of((any::<u32>(), any::<bool>()).prop_map(|(bps, frozen)| {
            pb::TenantBilling {
                price_multiplier_bps: bps,
                frozen,
                ..Default::default()
            }
        })),
        proptest::collection::vec(guardrail(), 0..2),
    )
        .prop_map(
            |(id, name, active, providers, models, keys, billing, guardrails)| pb::TenantConfig {
                id,
                name,
                active,
                providers,
                models,
                keys,
                billing,
                guardrails,
                ..Default::default()
            },
        )
}

fn snapshot() -> impl Strategy<Value = pb::Snapshot> {
    (any::<u64>(), proptest::collection::vec(tenant(), 0..3)).prop_map(|(version, tenants)| {
        pb::Snapshot {
            version,
            tenants,
            ..Default::default()
        }
    })
}

proptest! {
    #![proptest_config(prop_support::config())]

    #[test]
    fn prop_arbitrary_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        if let Ok(s) = pb::Snapshot::decode(&bytes[..]) {
            let _ = compile(&s);
        }
    }

    #[test]
    fn prop_random_snapshots_compile_or_fail_cleanly(s in snapshot()) {
        let first = compile(&s).map(|_| ()).map_err(|e| e.to_string());
        let decoded = pb::Snapshot::decode(&s.encode_to_vec()[..]).unwrap();
        let again = compile(&decoded).map(|_| ()).map_err(|e| e.to_string());
        prop_assert_eq!(first, again);
    }

    #[test]
    fn prop_truncated_or_corrupted_snapshots_never_panic(
        s in snapshot(),
        cut in any::<usize>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = s.encode_to_vec();
        if !bytes.is_empty() {
            let len = bytes.len();
            for (i, b) in flips {
                bytes[i % len] = b;
            }
            bytes.truncate(cut % (len + 1));
        }
        if let Ok(s) = pb::Snapshot::decode(&bytes[..]) {
            let _ = compile(&s);
        }
    }
}
