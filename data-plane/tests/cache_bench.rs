//! Micro-benchmark of the response cache's key (issue 8: hashing adds ≤ 2 %
//! to a miss). The key is the only per-call cache work on a miss besides
//! one map lookup: a canonical serialization (object keys sorted) fed to
//! SHA-256. Ignored in normal runs; run with
//! `cargo nextest run -p tollgate-dp --test cache_bench --run-ignored only --no-capture`
//! (optimised: prefix `CARGO_PROFILE_DEV_OPT_LEVEL=3`). Prints ns per key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use serde_json::{Map, Value};
use tollgate_dp::cache::key::{cache_key, CacheEndpoint};

fn body(prompt: &str) -> Map<String, Value> {
    let v = serde_json::json!({
        "model": "bench",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": prompt}
        ],
        "max_tokens": 64,
        "temperature": 0.2
    });
    v.as_object().unwrap().clone()
}

fn ns_per_key(body: &Map<String, Value>, n: u32) -> f64 {
    let mut sink = 0u8;
    let started = Instant::now();
    for _ in 0..n {
        sink ^= cache_key(
            "tn_bench",
            CacheEndpoint::ChatCompletions,
            "bench",
            "",
            body,
        )
        .digest[0];
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(n);
    assert!(u32::from(sink) < 256);
    ns
}

#[test]
#[ignore = "micro-benchmark; run explicitly"]
fn cache_key_cost() {
    // The bench harness' request, and one with a 4 KB prompt.
    let small = body("Say hello to the benchmark in a few words.");
    let large = body(&"lorem ipsum dolor sit amet ".repeat(152));
    ns_per_key(&small, 20_000);
    let s = ns_per_key(&small, 200_000);
    let l = ns_per_key(&large, 50_000);
    println!("cache key: {s:.0} ns for the bench request, {l:.0} ns with a 4 KB prompt");
}
