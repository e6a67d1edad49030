//! Micro-benchmark of the response cache's key (issue 8: hashing adds ≤ 2 %
//! to a miss). The key is the only per-call cache work on a miss besides
//! one map lookup: a canonical serialization (object keys sorted) into a
//! reused buffer, hashed once with keyed BLAKE3. For comparison it also
//! times SHA-256 over the same canonical bytes (the previous hash). Ignored
//! in normal runs; run with
//! `cargo nextest run -p tollgate-dp --cargo-profile perf --test cache_bench --run-ignored only --no-capture`.
//! Prints ns per key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tollgate_dp::cache::key::{cache_key, canonical, CacheEndpoint};

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

fn ns_per(n: u32, mut f: impl FnMut() -> u8) -> f64 {
    let mut sink = 0u8;
    let started = Instant::now();
    for _ in 0..n {
        sink ^= f();
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(n);
    assert!(u32::from(sink) < 256);
    ns
}

fn key_ns(body: &Map<String, Value>, n: u32) -> f64 {
    ns_per(n, || {
        cache_key(
            "tn_bench",
            CacheEndpoint::ChatCompletions,
            "bench",
            "",
            body,
        )
        .digest[0]
    })
}

/// The same canonical walk into a reused buffer, hashed with SHA-256.
fn sha_ns(body: &Map<String, Value>, n: u32) -> f64 {
    let mut buf = Vec::new();
    ns_per(n, || {
        buf.clear();
        canonical(&mut buf, CacheEndpoint::ChatCompletions, "bench", "", body);
        Sha256::digest(&buf)[0]
    })
}

#[test]
#[ignore = "micro-benchmark; run explicitly"]
fn cache_key_cost() {
    // The bench harness' request, and one with a 4 KB prompt.
    let small = body("Say hello to the benchmark in a few words.");
    let large = body(&"lorem ipsum dolor sit amet ".repeat(152));
    key_ns(&small, 20_000);
    let s = key_ns(&small, 200_000);
    let l = key_ns(&large, 50_000);
    println!(
        "cache key (keyed BLAKE3): {s:.0} ns for the bench request, {l:.0} ns with a 4 KB prompt"
    );
    let s = sha_ns(&small, 200_000);
    let l = sha_ns(&large, 50_000);
    println!(
        "same walk + SHA-256:      {s:.0} ns for the bench request, {l:.0} ns with a 4 KB prompt"
    );
}
