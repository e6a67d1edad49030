//! Micro-benchmark of a rate-limit check (issue 7: "a limiter check is a
//! few atomic operations"): a key with RPM, TPM and concurrency limits far
//! above the load, admitted and settled per call, as the pipeline does.
//! Ignored in normal runs; run with
//! `cargo nextest run -p tollgate-dp --release --test ratelimit_bench --run-ignored only --no-capture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use tollgate_dp::ratelimit::admission::admit;
use tollgate_dp::ratelimit::{LimiterRegistry, RateLimitTable};
use tollgate_proto::sync::v1 as pb;

#[test]
#[ignore = "micro-benchmark; run explicitly"]
fn limiter_check_cost() {
    let registry = LimiterRegistry::default();
    let snapshot = pb::Snapshot {
        version: 1,
        tenants: vec![pb::TenantConfig {
            id: "tn_b".into(),
            keys: vec![pb::CallerKeyConfig {
                id: "ck_b".into(),
                ..Default::default()
            }],
            rate_limits: vec![pb::RateLimitRule {
                scope: "key".into(),
                target_id: "ck_b".into(),
                requests_per_minute: 1 << 40,
                tokens_per_minute: 1 << 45,
                max_concurrent: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let table = RateLimitTable::compile(&snapshot, &registry);
    let limits = table.for_key("ck_b").unwrap().clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let run = |n: u32| {
            let limits = limits.clone();
            async move {
                let started = Instant::now();
                for _ in 0..n {
                    let (adm, headers) = admit(&limits, "md_b", 200).await;
                    adm.expect("far below the limits").settle(Some(150));
                    std::hint::black_box(headers);
                }
                started.elapsed().as_nanos() as f64 / f64::from(n)
            }
        };
        run(20_000).await;
        let ns = run(500_000).await;
        println!("rate limit check (admit + settle, RPM + TPM + concurrency): {ns:.0} ns per call");
    });
}
