//! Billing on the data plane: prices compiled into routes, the cost of each
//! call (header `x-tollgate-cost-micros` and usage record), and balance
//! leases that admit a call only when its worst-case cost is covered
//! (docs/billing.md). Nothing here does I/O on the request path.

pub mod lease;
pub mod transport;

use tollgate_core::pricing::{self, Price, FULL_MULTIPLIER_BPS};
use tollgate_core::usage::Usage;
use tollgate_proto::sync::v1 as pb;

pub use lease::{LeaseBook, LeaseSettings, Reservation};

/// Output tokens assumed for a call that sets no limit when its model's
/// price names none.
pub const DEFAULT_MAX_OUTPUT_TOKENS: i64 = 4096;

/// Billing settings of a tenant, from the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantBilling {
    pub multiplier_bps: u32,
    pub frozen: bool,
}

impl TenantBilling {
    pub fn from_proto(b: Option<&pb::TenantBilling>) -> Option<TenantBilling> {
        b.map(|b| TenantBilling {
            multiplier_bps: b.price_multiplier_bps,
            frozen: b.frozen,
        })
    }
}

/// The price of one route target for one tenant, multiplier included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteBilling {
    pub price: Price,
    pub multiplier_bps: u32,
    pub max_output_tokens: i64,
}

impl RouteBilling {
    /// The target's own price, else the model's; `None`: unpriced (free).
    pub fn compile(
        tenant: Option<&TenantBilling>,
        model: &pb::ModelConfig,
        provider_id: &str,
    ) -> Option<RouteBilling> {
        let p = model
            .target_prices
            .iter()
            .find(|tp| tp.provider_id == provider_id)
            .and_then(|tp| tp.price.as_ref())
            .or(model.price.as_ref())?;
        Some(RouteBilling {
            price: Price {
                input: p.input_per_mtok,
                cache_read: p.cache_read_per_mtok,
                cache_write: p.cache_write_per_mtok,
                output: p.output_per_mtok,
                reasoning: p.reasoning_per_mtok,
                per_request_micros: p.per_request_micros,
            },
            multiplier_bps: tenant.map_or(FULL_MULTIPLIER_BPS, |t| t.multiplier_bps),
            max_output_tokens: if p.max_output_tokens > 0 {
                p.max_output_tokens
            } else {
                DEFAULT_MAX_OUTPUT_TOKENS
            },
        })
    }

    /// Cost of a finished call.
    pub fn cost(&self, usage: &Usage) -> i64 {
        pricing::cost_micros(usage, &self.price, self.multiplier_bps)
    }

    /// Upper bound of a call's cost before it runs: every body byte counted
    /// as an input token (a token is at least one byte) and the caller's
    /// output limit, else the model's.
    pub fn worst_case(&self, body_bytes: usize, max_output: Option<i64>) -> i64 {
        let input = i64::try_from(body_bytes).unwrap_or(i64::MAX);
        let output = max_output.map_or(self.max_output_tokens, |n| n.max(0));
        pricing::worst_case_micros(input, output, &self.price, self.multiplier_bps)
    }
}

/// The caller's output limit in a request body (chat, messages, responses).
pub fn max_output_tokens(body: &serde_json::Map<String, serde_json::Value>) -> Option<i64> {
    ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(serde_json::Value::as_i64))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn model(price: Option<pb::Price>, targets: Vec<pb::TargetPrice>) -> pb::ModelConfig {
        pb::ModelConfig {
            price,
            target_prices: targets,
            ..Default::default()
        }
    }

    #[test]
    fn target_price_overrides_model_price_and_multiplier_applies() {
        let base = pb::Price {
            input_per_mtok: 1_000_000,
            output_per_mtok: 2_000_000,
            ..Default::default()
        };
        let special = pb::Price {
            input_per_mtok: 10_000_000,
            ..Default::default()
        };
        let m = model(
            Some(base),
            vec![pb::TargetPrice {
                provider_id: "pv_b".into(),
                price: Some(special),
            }],
        );
        let t = TenantBilling {
            multiplier_bps: 5_000,
            frozen: false,
        };
        let a = RouteBilling::compile(Some(&t), &m, "pv_a").unwrap();
        let b = RouteBilling::compile(Some(&t), &m, "pv_b").unwrap();
        let u = Usage {
            prompt_tokens: 1_000,
            completion_tokens: 1_000,
            ..Usage::default()
        };
        // (1000×1 + 1000×2) × 50 % = 1500.
        assert_eq!(a.cost(&u), 1_500);
        // 1000×10 × 50 % = 5000.
        assert_eq!(b.cost(&u), 5_000);
        assert_eq!(a.max_output_tokens, DEFAULT_MAX_OUTPUT_TOKENS);
        assert!(RouteBilling::compile(Some(&t), &model(None, vec![]), "pv_a").is_none());
    }

    #[test]
    fn worst_case_uses_body_bytes_and_output_limit() {
        let m = model(
            Some(pb::Price {
                input_per_mtok: 1_000_000,
                output_per_mtok: 1_000_000,
                max_output_tokens: 100,
                ..Default::default()
            }),
            vec![],
        );
        let r = RouteBilling::compile(None, &m, "x").unwrap();
        // 1050 tokens × $1 per million = 1050 µ$.
        assert_eq!(r.worst_case(1_000, Some(50)), 1_050);
        // Without a limit: the price's max_output_tokens (100).
        assert_eq!(r.worst_case(1_000, None), 1_100);
        assert_eq!(r.worst_case(1_000, Some(0)), 1_000);
        let mut body = serde_json::Map::new();
        body.insert("max_tokens".into(), 7.into());
        assert_eq!(max_output_tokens(&body), Some(7));
    }
}
