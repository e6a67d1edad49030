//! Micro-benchmark of route planning (issue 5: routing with 50 targets vs
//! 1 target must cost < 2 % of gateway throughput). Planning is the only
//! per-call routing work that grows with the number of targets (breaker
//! admission and stats touch only the target tried; later targets are
//! drawn only when a call fails over). Ignored in normal
//! runs; run with
//! `cargo nextest run -p tollgate-dp --release --run-ignored only -E 'test(route_planning_cost)' --no-capture`.
//! Prints ns per plan for each route and the difference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use tollgate_dp::config::{compile, file::parse_yaml};
use tollgate_dp::routing::select::Plan;
use tollgate_dp::routing::table::Target;

fn yaml(targets: usize) -> String {
    let mut providers = String::new();
    let mut list = String::new();
    for i in 0..targets {
        providers.push_str(&format!(
            "      - name: p{i}\n        kind: openai\n        base_url: http://127.0.0.1:9/v1\n        api_key: k{i}\n"
        ));
        list.push_str(&format!(
            "          - {{provider: p{i}, weight: {}}}\n",
            1 + i % 3
        ));
    }
    format!(
        "tenants:\n  - name: t\n    providers:\n{providers}    models:\n      - name: m\n        upstream_model: x\n        targets:\n{list}    keys:\n      - name: k\n        key: tg-bench\n"
    )
}

fn ns_per_plan(targets: usize, strategy_iters: u32) -> f64 {
    let snapshot = parse_yaml(&yaml(targets), 1, &|_| None).unwrap();
    let config = compile(&snapshot).unwrap();
    let tenant = config.tenants.values().next().unwrap();
    let (route, _) = tenant.find_route("m").unwrap();
    assert_eq!(route.targets.len(), targets);
    let mut rng = rand::thread_rng();
    let mut sink = 0usize;
    let started = Instant::now();
    for _ in 0..strategy_iters {
        // What a call does before its first attempt: count the eligible
        // targets and draw the first (the rest only on failover).
        let allow = |_: &Target| true;
        let mut p = Plan::new(route, None, allow, &mut rng);
        sink += p.next(route, allow, &mut rng).unwrap();
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(strategy_iters);
    assert!(sink < usize::MAX);
    ns
}

#[test]
#[ignore = "micro-benchmark; run explicitly"]
fn route_planning_cost() {
    let iters = 200_000;
    // Warm up both.
    ns_per_plan(1, iters / 10);
    ns_per_plan(50, iters / 10);
    let one = ns_per_plan(1, iters);
    let fifty = ns_per_plan(50, iters);
    println!(
        "route planning: 1 target {one:.0} ns, 50 targets {fifty:.0} ns, difference {:.0} ns per call",
        fifty - one
    );
}
