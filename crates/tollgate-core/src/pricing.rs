//! Cost of a call from its normalised usage: pure integer arithmetic.
//!
//! Prices are micro-dollars per million tokens for each disjoint usage
//! bucket, plus an optional fixed price per request. A tenant's multiplier
//! (basis points, 10 000 = 100 %) scales the whole price.
//!
//! Rounding, stated once: the exact cost is
//! `(Σ bucket_tokens × price_per_million + per_request × 10^6) × bps / (10^6 × 10^4)`
//! micro-dollars, computed in `i128` and rounded **half up once on the
//! total** (after the multiplier), then saturated to `i64`. Nothing is
//! rounded per bucket, so splitting the same tokens differently between
//! equally priced buckets never changes the cost.

use crate::money::Micros;
use crate::usage::Usage;

/// 100 % in basis points.
pub const FULL_MULTIPLIER_BPS: u32 = 10_000;

/// Prices of one model (or one provider target of it). All values are
/// micro-dollars per million tokens, except `per_request_micros`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    /// Input tokens that were neither read from nor written to a cache.
    pub input: Micros,
    pub cache_read: Micros,
    pub cache_write: Micros,
    pub output: Micros,
    /// Reasoning tokens when priced apart from output; `None`: they are
    /// output tokens and cost `output`.
    pub reasoning: Option<Micros>,
    /// Fixed price of each call, whatever its tokens.
    pub per_request_micros: Micros,
}

/// Usage split into the disjoint buckets that are priced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buckets {
    pub input_uncached: i64,
    pub cache_read: i64,
    pub cache_write: i64,
    /// Output tokens that are not reasoning tokens (all output when
    /// reasoning is not priced apart).
    pub output: i64,
    /// Reasoning tokens priced apart (0 when they count as output).
    pub reasoning: i64,
}

impl Buckets {
    /// Splits normalised usage (`prompt_tokens` includes cache reads and
    /// writes, `completion_tokens` includes reasoning). Negative counts (a
    /// provider reporting nonsense) count as 0; a detail bucket larger than
    /// its total is capped at the total, so no token is charged twice.
    pub fn of(usage: &Usage, reasoning_apart: bool) -> Buckets {
        let prompt = usage.prompt_tokens.max(0);
        let cache_read = usage.cache_read_tokens.clamp(0, prompt);
        let cache_write = usage.cache_write_tokens.clamp(0, prompt - cache_read);
        let completion = usage.completion_tokens.max(0);
        let reasoning = if reasoning_apart {
            usage.reasoning_tokens.clamp(0, completion)
        } else {
            0
        };
        Buckets {
            input_uncached: prompt - cache_read - cache_write,
            cache_read,
            cache_write,
            output: completion - reasoning,
            reasoning,
        }
    }
}

/// Cost in micro-dollars of one call; see the module docs for the rounding.
/// Negative prices or multipliers are treated as 0 (validated at the
/// control plane; never a credit from a call).
pub fn cost_micros(usage: &Usage, price: &Price, multiplier_bps: u32) -> Micros {
    let b = Buckets::of(usage, price.reasoning.is_some());
    let p = |v: Micros| i128::from(v.max(0));
    let t = |v: i64| i128::from(v);
    // Saturating: absurd prices × absurd counts cap at i64::MAX, never wrap.
    let per_million = [
        (t(b.input_uncached), p(price.input)),
        (t(b.cache_read), p(price.cache_read)),
        (t(b.cache_write), p(price.cache_write)),
        (t(b.output), p(price.output)),
        (t(b.reasoning), p(price.reasoning.unwrap_or(price.output))),
        (1_000_000, p(price.per_request_micros)),
    ]
    .iter()
    .fold(0_i128, |acc, &(n, pr)| {
        acc.saturating_add(n.saturating_mul(pr))
    });
    round_half_up(
        per_million.saturating_mul(i128::from(multiplier_bps)),
        10_000_000_000,
    )
}

/// Worst-case cost of a call before it runs: `input_tokens` at the input
/// price (no cache discount assumed) and `max_output_tokens` at the higher
/// of the output and reasoning prices.
pub fn worst_case_micros(
    input_tokens: i64,
    max_output_tokens: i64,
    price: &Price,
    multiplier_bps: u32,
) -> Micros {
    let output_price = price.output.max(price.reasoning.unwrap_or(0));
    let input_price = price.input.max(price.cache_write);
    let usage = Usage {
        prompt_tokens: input_tokens,
        completion_tokens: max_output_tokens,
        ..Usage::default()
    };
    let worst = Price {
        input: input_price,
        output: output_price,
        reasoning: None,
        ..*price
    };
    cost_micros(&usage, &worst, multiplier_bps)
}

/// `n / d` rounded half up, for `n ≥ 0, d > 0`, saturated to `i64`.
fn round_half_up(n: i128, d: i128) -> Micros {
    let q = n.saturating_add(d / 2) / d;
    i64::try_from(q).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn price(input: i64, cache_read: i64, cache_write: i64, output: i64) -> Price {
        Price {
            input,
            cache_read,
            cache_write,
            output,
            reasoning: None,
            per_request_micros: 0,
        }
    }

    #[test]
    fn openai_shape_with_cached_prompt_tokens() {
        // gpt-4o-like: $2.50 in, $1.25 cached, $10 out per million.
        let p = price(2_500_000, 1_250_000, 0, 10_000_000);
        let u = Usage {
            prompt_tokens: 1_000,
            completion_tokens: 200,
            cache_read_tokens: 400,
            ..Usage::default()
        };
        // 600×2.5 + 400×1.25 + 200×10 = 1500 + 500 + 2000 = 4000 µ$.
        assert_eq!(cost_micros(&u, &p, FULL_MULTIPLIER_BPS), 4_000);
    }

    #[test]
    fn anthropic_shape_with_cache_write_and_read() {
        // Sonnet-like: $3 in, $0.30 read, $3.75 write, $15 out.
        let p = price(3_000_000, 300_000, 3_750_000, 15_000_000);
        // Anthropic input_tokens=10, cache_read=1000, cache_creation=2000
        // normalises to prompt_tokens = 3010.
        let u = Usage {
            prompt_tokens: 3_010,
            completion_tokens: 50,
            cache_read_tokens: 1_000,
            cache_write_tokens: 2_000,
            reasoning_tokens: 0,
        };
        // 10×3 + 1000×0.3 + 2000×3.75 + 50×15 = 30 + 300 + 7500 + 750.
        assert_eq!(cost_micros(&u, &p, FULL_MULTIPLIER_BPS), 8_580);
    }

    #[test]
    fn reasoning_priced_apart_or_as_output() {
        let mut p = price(1_000_000, 0, 0, 4_000_000);
        let u = Usage {
            prompt_tokens: 100,
            completion_tokens: 300,
            reasoning_tokens: 200,
            ..Usage::default()
        };
        // As output: 100×1 + 300×4 = 1300.
        assert_eq!(cost_micros(&u, &p, FULL_MULTIPLIER_BPS), 1_300);
        p.reasoning = Some(10_000_000);
        // Apart: 100×1 + 100×4 + 200×10 = 2500.
        assert_eq!(cost_micros(&u, &p, FULL_MULTIPLIER_BPS), 2_500);
    }

    #[test]
    fn gemini_shape_cached_included_in_prompt() {
        // promptTokenCount=1000 with cachedContentTokenCount=800.
        let p = price(1_250_000, 312_500, 0, 5_000_000);
        let u = Usage {
            prompt_tokens: 1_000,
            completion_tokens: 10,
            cache_read_tokens: 800,
            ..Usage::default()
        };
        // 200×1.25 + 800×0.3125 + 10×5 = 250 + 250 + 50.
        assert_eq!(cost_micros(&u, &p, FULL_MULTIPLIER_BPS), 550);
    }

    #[test]
    fn per_request_price_and_multiplier() {
        let mut p = price(0, 0, 0, 0);
        p.per_request_micros = 1_000;
        assert_eq!(cost_micros(&Usage::default(), &p, 10_000), 1_000);
        // 80 % (reseller discount) and 125 % (markup).
        assert_eq!(cost_micros(&Usage::default(), &p, 8_000), 800);
        assert_eq!(cost_micros(&Usage::default(), &p, 12_500), 1_250);
        assert_eq!(cost_micros(&Usage::default(), &p, 0), 0);
    }

    #[test]
    fn rounding_is_half_up_once_on_the_total() {
        let p = price(1, 0, 0, 0); // 1 µ$ per million tokens
        let tokens = |n| Usage {
            prompt_tokens: n,
            ..Usage::default()
        };
        assert_eq!(cost_micros(&tokens(499_999), &p, 10_000), 0);
        assert_eq!(cost_micros(&tokens(500_000), &p, 10_000), 1); // exactly .5 → up
        assert_eq!(cost_micros(&tokens(1_499_999), &p, 10_000), 1);
        assert_eq!(cost_micros(&tokens(1_500_000), &p, 10_000), 2);
        // Buckets are not rounded separately: 0.4 + 0.4 = 0.8 → 1, where
        // per-bucket rounding would give 0.
        let p2 = price(1, 1, 0, 0);
        let u = Usage {
            prompt_tokens: 800_000,
            cache_read_tokens: 400_000,
            ..Usage::default()
        };
        assert_eq!(cost_micros(&u, &p2, 10_000), 1);
        // The multiplier applies before the rounding: 0.5 µ$ × 150 % = 0.75 → 1.
        assert_eq!(cost_micros(&tokens(500_000), &p, 15_000), 1);
        // ... 1.5 × 30 % = 0.45 → 0.
        assert_eq!(cost_micros(&tokens(1_500_000), &p, 3_000), 0);
    }

    #[test]
    fn nonsense_usage_never_charges_twice_or_negative() {
        let p = price(1_000_000, 1_000_000, 1_000_000, 1_000_000);
        let u = Usage {
            prompt_tokens: 10,
            completion_tokens: -5,
            cache_read_tokens: 50,
            cache_write_tokens: 7,
            reasoning_tokens: 99,
        };
        // Cache buckets capped at the prompt total: 10 tokens, output 0.
        assert_eq!(cost_micros(&u, &p, 10_000), 10);
        let neg = price(-1_000_000, 0, 0, 0);
        assert_eq!(cost_micros(&u, &neg, 10_000), 0);
    }

    #[test]
    fn huge_values_saturate() {
        let p = price(i64::MAX, i64::MAX, i64::MAX, i64::MAX);
        let u = Usage {
            prompt_tokens: i64::MAX,
            completion_tokens: i64::MAX,
            ..Usage::default()
        };
        assert_eq!(cost_micros(&u, &p, u32::MAX), i64::MAX);
    }

    #[test]
    fn worst_case_covers_any_actual_usage_within_the_limits() {
        let mut p = price(3_000_000, 300_000, 3_750_000, 15_000_000);
        p.reasoning = Some(20_000_000);
        p.per_request_micros = 7;
        let worst = worst_case_micros(1_000, 500, &p, 9_000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..10_000 {
            let prompt = rng.gen_range(0..=1_000);
            let completion = rng.gen_range(0..=500);
            let read = rng.gen_range(0..=prompt);
            let u = Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                cache_read_tokens: read,
                cache_write_tokens: rng.gen_range(0..=prompt - read),
                reasoning_tokens: rng.gen_range(0..=completion),
            };
            assert!(cost_micros(&u, &p, 9_000) <= worst);
        }
    }

    /// Reference: the exact rational cost, rounded half up by comparing
    /// twice the remainder with the divisor (a different formula from the
    /// implementation's `(n + d/2) / d`).
    fn reference(u: &Usage, p: &Price, bps: u32) -> i64 {
        let b = Buckets::of(u, p.reasoning.is_some());
        let n: u128 = [
            (b.input_uncached, p.input),
            (b.cache_read, p.cache_read),
            (b.cache_write, p.cache_write),
            (b.output, p.output),
            (b.reasoning, p.reasoning.unwrap_or(p.output)),
            (1_000_000, p.per_request_micros),
        ]
        .iter()
        .map(|&(t, pr)| t as u128 * pr as u128)
        .sum::<u128>()
            * u128::from(bps);
        let d = 10_000_000_000_u128;
        let (q, r) = (n / d, n % d);
        (q + u128::from(2 * r >= d)) as i64
    }

    #[test]
    fn property_matches_exact_reference_and_is_monotonic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for _ in 0..50_000 {
            let p = Price {
                input: rng.gen_range(0..100_000_000),
                cache_read: rng.gen_range(0..100_000_000),
                cache_write: rng.gen_range(0..100_000_000),
                output: rng.gen_range(0..100_000_000),
                reasoning: rng.gen_bool(0.5).then(|| rng.gen_range(0..100_000_000)),
                per_request_micros: rng.gen_range(0..10_000),
            };
            let prompt = rng.gen_range(0..2_000_000);
            let read = rng.gen_range(0..=prompt);
            let completion = rng.gen_range(0..200_000);
            let u = Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                cache_read_tokens: read,
                cache_write_tokens: rng.gen_range(0..=prompt - read),
                reasoning_tokens: rng.gen_range(0..=completion),
            };
            let bps = rng.gen_range(0..30_000);
            let c = cost_micros(&u, &p, bps);
            assert_eq!(c, reference(&u, &p, bps), "{u:?} {p:?} {bps}");
            // One more output token never costs less.
            let more = Usage {
                completion_tokens: u.completion_tokens + 1,
                ..u
            };
            assert!(cost_micros(&more, &p, bps) >= c);
            // A higher multiplier never costs less.
            assert!(cost_micros(&u, &p, bps + 1) >= c);
            // Error of the single rounding is at most half a micro-dollar:
            // compare with the exact value scaled by 2.
            let exact2 = 2 * reference_exact_numerator(&u, &p, bps);
            let d = 10_000_000_000_i128;
            assert!((2 * i128::from(c) * d - exact2).abs() <= d);
        }
    }

    fn reference_exact_numerator(u: &Usage, p: &Price, bps: u32) -> i128 {
        let b = Buckets::of(u, p.reasoning.is_some());
        (i128::from(b.input_uncached) * i128::from(p.input)
            + i128::from(b.cache_read) * i128::from(p.cache_read)
            + i128::from(b.cache_write) * i128::from(p.cache_write)
            + i128::from(b.output) * i128::from(p.output)
            + i128::from(b.reasoning) * i128::from(p.reasoning.unwrap_or(p.output))
            + i128::from(p.per_request_micros) * 1_000_000)
            * i128::from(bps)
    }
}
