//! The order in which a call tries a route's targets: priority groups in
//! order, each group ordered by the route's strategy; a caller's
//! `x-tollgate-providers` list restricts and reorders the targets.
//!
//! Reads only atomics of the targets' stats: no lock, no I/O.

use rand::Rng;

use super::policy::Strategy;
use super::table::ModelRoute;

/// Provider names of an `x-tollgate-providers` header value, in order.
pub fn parse_preference(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Indices into `route.targets`, in the order to try them. With a caller
/// preference, only targets of the named providers, in the named order
/// (the strategy's order among targets of one provider). Targets out of
/// rotation are left out; open breakers are the caller's to check.
pub fn plan<R: Rng + ?Sized>(
    route: &ModelRoute,
    preference: Option<&[&str]>,
    rng: &mut R,
) -> Vec<usize> {
    let mut order = Vec::with_capacity(route.targets.len());
    for group in &route.groups {
        let start = order.len();
        order.extend(group.clone().filter(|&i| route.targets[i].in_rotation()));
        order_group(route, &mut order[start..], rng);
    }
    if let Some(names) = preference {
        let rank = |i: &usize| {
            let name = route.targets[*i].route.provider.name.as_str();
            names.iter().position(|n| *n == name)
        };
        order.retain(|i| rank(i).is_some());
        order.sort_by_key(rank);
    }
    order
}

fn order_group<R: Rng + ?Sized>(route: &ModelRoute, group: &mut [usize], rng: &mut R) {
    if group.len() < 2 {
        return;
    }
    let targets = &route.targets;
    match route.policy.strategy {
        Strategy::Ordered => {}
        Strategy::Weighted => weighted_shuffle(route, group, rng),
        Strategy::LeastInFlight => {
            // Random first so ties spread, then a stable sort.
            weighted_shuffle(route, group, rng);
            group.sort_by_key(|&i| targets[i].stats.in_flight());
        }
        Strategy::Latency => {
            weighted_shuffle(route, group, rng);
            // Unmeasured targets (0) first, so each gets measured.
            group.sort_by_key(|&i| targets[i].stats.latency_ewma_us());
        }
    }
}

/// Weighted random order without replacement (Efraimidis–Spirakis: sort by
/// u^(1/w), highest first): the first pick is target i with probability
/// wᵢ/Σw, and so on for the rest.
fn weighted_shuffle<R: Rng + ?Sized>(route: &ModelRoute, group: &mut [usize], rng: &mut R) {
    let mut keyed: Vec<(f64, usize)> = group
        .iter()
        .map(|&i| {
            let u: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
            let w = f64::from(route.targets[i].weight.max(1));
            (u.powf(1.0 / w), i)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (slot, (_, i)) in group.iter_mut().zip(keyed) {
        *slot = i;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{ProviderKind, ProviderTarget, Route, SecretString};
    use crate::routing::policy::RoutePolicy;
    use crate::routing::stats::{ProviderHealth, TargetStats};
    use crate::routing::table::Target;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::sync::Arc;
    use std::time::Duration;

    pub(crate) fn target(provider: &str, priority: u32, weight: u32) -> Target {
        let p = ProviderTarget {
            id: format!("pv_{provider}"),
            name: provider.into(),
            kind: ProviderKind::Mock,
            base_url: String::new(),
            api_key: SecretString::new(""),
            chat_url: String::new(),
            auth_header: None,
            api_key_header: None,
            client: None,
            url_query: String::new(),
        };
        Target {
            route: Arc::new(Route {
                model_id: "md".into(),
                public_name: "m".into(),
                provider: Arc::new(p),
                upstream_model: format!("up-{provider}"),
                billing: None,
            }),
            from_suffix: false,
            priority,
            weight,
            stats: Arc::new(TargetStats::default()),
            health: Arc::new(ProviderHealth::default()),
            disabled: false,
        }
    }

    pub(crate) fn route(targets: Vec<Target>, strategy: Strategy) -> ModelRoute {
        let policy = RoutePolicy {
            strategy,
            ..RoutePolicy::default()
        };
        ModelRoute::new("md".into(), "m".into(), targets, policy)
    }

    fn names(r: &ModelRoute, order: &[usize]) -> Vec<String> {
        order
            .iter()
            .map(|&i| r.targets[i].route.provider.name.clone())
            .collect()
    }

    #[test]
    fn weighted_first_picks_follow_the_weights() {
        let r = route(
            vec![target("a", 0, 1), target("b", 0, 3), target("c", 0, 6)],
            Strategy::Weighted,
        );
        let mut rng = StdRng::seed_from_u64(7);
        let mut firsts = [0u32; 3];
        const N: u32 = 20_000;
        for _ in 0..N {
            let order = plan(&r, None, &mut rng);
            assert_eq!(order.len(), 3);
            firsts[order[0]] += 1;
        }
        let share = |n: u32| f64::from(n) / f64::from(N);
        assert!((share(firsts[0]) - 0.1).abs() < 0.015, "{firsts:?}");
        assert!((share(firsts[1]) - 0.3).abs() < 0.015, "{firsts:?}");
        assert!((share(firsts[2]) - 0.6).abs() < 0.015, "{firsts:?}");
    }

    #[test]
    fn priority_groups_come_in_order() {
        let r = route(
            vec![
                target("backup", 1, 100),
                target("a", 0, 1),
                target("b", 0, 1),
            ],
            Strategy::Weighted,
        );
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let order = names(&r, &plan(&r, None, &mut rng));
            assert_eq!(order[2], "backup");
        }
    }

    #[test]
    fn ordered_least_in_flight_and_latency() {
        let mut rng = StdRng::seed_from_u64(3);
        let r = route(
            vec![target("a", 0, 1), target("b", 0, 1), target("c", 0, 1)],
            Strategy::Ordered,
        );
        assert_eq!(names(&r, &plan(&r, None, &mut rng)), ["a", "b", "c"]);

        let r = route(
            vec![target("a", 0, 1), target("b", 0, 1), target("c", 0, 1)],
            Strategy::LeastInFlight,
        );
        let _a1 = r.targets[0].stats.enter();
        let _a2 = r.targets[0].stats.enter();
        let _c1 = r.targets[2].stats.enter();
        assert_eq!(names(&r, &plan(&r, None, &mut rng)), ["b", "c", "a"]);

        let r = route(
            vec![target("a", 0, 1), target("b", 0, 1), target("c", 0, 1)],
            Strategy::Latency,
        );
        r.targets[0]
            .stats
            .observe_latency(Duration::from_millis(50));
        r.targets[1]
            .stats
            .observe_latency(Duration::from_millis(10));
        // c is unmeasured: tried first so it gets a measurement.
        assert_eq!(names(&r, &plan(&r, None, &mut rng)), ["c", "b", "a"]);
    }

    #[test]
    fn caller_preference_restricts_and_orders() {
        let r = route(
            vec![target("a", 0, 1), target("b", 0, 1), target("c", 1, 1)],
            Strategy::Ordered,
        );
        let mut rng = StdRng::seed_from_u64(3);
        let pref = parse_preference(" c, a ,zzz,");
        assert_eq!(pref, ["c", "a", "zzz"]);
        assert_eq!(names(&r, &plan(&r, Some(&pref), &mut rng)), ["c", "a"]);
        assert!(plan(&r, Some(&["nope"]), &mut rng).is_empty());
    }

    #[test]
    fn rejected_credentials_are_left_out() {
        let r = route(
            vec![target("a", 0, 1), target("b", 0, 1)],
            Strategy::Ordered,
        );
        r.targets[0].health.reject(401);
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(names(&r, &plan(&r, None, &mut rng)), ["b"]);
    }
}
