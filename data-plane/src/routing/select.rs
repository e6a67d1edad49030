//! The order in which a call tries a route's targets: priority groups in
//! order, each group ordered by the route's strategy; a caller's
//! `x-tollgate-providers` list restricts and reorders the targets.
//!
//! Reads only atomics of the targets' stats: no lock, no I/O.

use rand::Rng;

use super::policy::Strategy;
use super::table::{ModelRoute, Target};

/// Provider names of an `x-tollgate-providers` header value, in order.
pub fn parse_preference(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The targets a call may try, drawn lazily: the first costs one pass over
/// the route's targets (counting what is eligible) plus one weighted draw in
/// the first group; the rest are drawn only when the call fails over. The
/// draws follow the route's strategy within each priority group, groups in
/// order. With a caller preference, only targets of the named providers, in
/// the named order (the strategy's order among targets of one provider).
/// Targets out of rotation are left out; open breakers are the caller's to
/// check.
#[derive(Debug)]
pub struct Plan {
    /// Targets in rotation that the call's preference admits.
    pub in_rotation: usize,
    /// Of those, the ones the `allow` filter admits: what will be drawn.
    pub eligible: usize,
    /// Remaining eligible targets of the current group (unordered for the
    /// weighted strategies, in configured order for `Ordered`).
    pool: Vec<usize>,
    /// The next group to draw from once `pool` is empty.
    next_group: usize,
    /// A caller preference forces the whole order up front (rare path).
    preferred: Option<std::vec::IntoIter<usize>>,
    /// The first group's target already drawn by the fast path; the rest
    /// of that group is pooled only if the call fails over.
    drawn_first: Option<(std::ops::Range<usize>, usize)>,
    /// `drawn_first` is still to be handed out.
    first_pending: bool,
}

impl Plan {
    /// `allow` further restricts the targets (a caller key's provider list).
    pub fn new<R: Rng + ?Sized>(
        route: &ModelRoute,
        preference: Option<&[&str]>,
        allow: impl Fn(&Target) -> bool,
        rng: &mut R,
    ) -> Plan {
        let rank = |t: &Target| -> Option<usize> {
            let names = preference?;
            names.iter().position(|n| *n == t.route.provider.name)
        };
        let mut in_rotation = 0;
        let mut eligible = 0;
        let first_group = route.groups.first().cloned().unwrap_or(0..0);
        let mut first_group_whole = true;
        for (i, t) in route.targets.iter().enumerate() {
            let ok = if t.in_rotation() && (preference.is_none() || rank(t).is_some()) {
                in_rotation += 1;
                let allowed = allow(t);
                eligible += usize::from(allowed);
                allowed
            } else {
                false
            };
            if !ok && first_group.contains(&i) {
                first_group_whole = false;
            }
        }
        let mut plan = Plan {
            in_rotation,
            eligible,
            pool: Vec::new(),
            next_group: 0,
            preferred: None,
            drawn_first: None,
            first_pending: false,
        };
        // Fast path: every target of the first group may be tried and the
        // draw is by weight alone — one binary search, no pool.
        if preference.is_none()
            && route.policy.strategy == Strategy::Weighted
            && first_group_whole
            && !first_group.is_empty()
        {
            let cum = &route.cum_weights;
            let base = match first_group.start {
                0 => 0,
                s => cum[s - 1],
            };
            let total = cum[first_group.end - 1] - base;
            let r = base + rng.gen_range(0..total);
            let i = first_group.start + cum[first_group.clone()].partition_point(|&c| c <= r);
            plan.drawn_first = Some((first_group, i.min(route.targets.len() - 1)));
            plan.first_pending = true;
            plan.next_group = 1;
            return plan;
        }
        if preference.is_some() && eligible > 0 {
            let mut order = Vec::with_capacity(eligible);
            while let Some(i) = plan.draw(route, &allow, rng) {
                if rank(&route.targets[i]).is_some() {
                    order.push(i);
                }
            }
            order.sort_by_key(|&i| rank(&route.targets[i]));
            plan.preferred = Some(order.into_iter());
        } else if eligible == 0 {
            plan.next_group = route.groups.len();
        }
        plan
    }

    /// The next target to try, or `None` when every eligible one was drawn.
    pub fn next<R: Rng + ?Sized>(
        &mut self,
        route: &ModelRoute,
        allow: impl Fn(&Target) -> bool,
        rng: &mut R,
    ) -> Option<usize> {
        if self.first_pending {
            self.first_pending = false;
            return self.drawn_first.as_ref().map(|(_, first)| *first);
        }
        match self.preferred.as_mut() {
            Some(order) => order.next(),
            None => self.draw(route, &allow, rng),
        }
    }

    fn draw<R: Rng + ?Sized>(
        &mut self,
        route: &ModelRoute,
        allow: &impl Fn(&Target) -> bool,
        rng: &mut R,
    ) -> Option<usize> {
        if let Some((group, first)) = self.drawn_first.take() {
            // Failing over from the fast path's pick: the rest of its group.
            self.pool.extend(group.filter(|&i| {
                let t = &route.targets[i];
                i != first && t.in_rotation() && allow(t)
            }));
        }
        while self.pool.is_empty() {
            let group = route.groups.get(self.next_group)?.clone();
            self.next_group += 1;
            self.pool.extend(group.filter(|&i| {
                let t = &route.targets[i];
                t.in_rotation() && allow(t)
            }));
        }
        let targets = &route.targets;
        let slot = match route.policy.strategy {
            Strategy::Ordered => 0,
            Strategy::Weighted => weighted_pick(targets, &self.pool, |_| true, rng),
            Strategy::LeastInFlight => {
                least_pick(targets, &self.pool, |t| u64::from(t.stats.in_flight()), rng)
            }
            // Unmeasured targets (0) first, so each gets measured.
            Strategy::Latency => {
                least_pick(targets, &self.pool, |t| t.stats.latency_ewma_us(), rng)
            }
        };
        Some(match route.policy.strategy {
            Strategy::Ordered => self.pool.remove(slot),
            _ => self.pool.swap_remove(slot),
        })
    }
}

/// Indices into `route.targets`, in the order to try them: every draw of a
/// [`Plan`] at once (tests and tools; calls use the lazy plan).
pub fn plan<R: Rng + ?Sized>(
    route: &ModelRoute,
    preference: Option<&[&str]>,
    rng: &mut R,
) -> Vec<usize> {
    let mut p = Plan::new(route, preference, |_| true, rng);
    let mut order = Vec::with_capacity(p.eligible);
    while let Some(i) = p.next(route, |_| true, rng) {
        order.push(i);
    }
    order
}

/// A slot of `pool` drawn with probability weight/Σweight among the slots
/// `admit` accepts (at least one must be accepted).
fn weighted_pick<R: Rng + ?Sized>(
    targets: &[Target],
    pool: &[usize],
    admit: impl Fn(&Target) -> bool,
    rng: &mut R,
) -> usize {
    if pool.len() == 1 {
        return 0;
    }
    let weight = |t: &Target| u64::from(t.weight.max(1));
    let total: u64 = pool
        .iter()
        .map(|&i| &targets[i])
        .filter(|t| admit(t))
        .map(weight)
        .sum();
    let mut r = rng.gen_range(0..total.max(1));
    let mut last = 0;
    for (slot, &i) in pool.iter().enumerate() {
        let t = &targets[i];
        if !admit(t) {
            continue;
        }
        last = slot;
        let w = weight(t);
        if r < w {
            return slot;
        }
        r -= w;
    }
    last
}

/// The slot with the least `key`; ties drawn by weight.
fn least_pick<R: Rng + ?Sized>(
    targets: &[Target],
    pool: &[usize],
    key: impl Fn(&Target) -> u64,
    rng: &mut R,
) -> usize {
    let least = pool.iter().map(|&i| key(&targets[i])).min().unwrap_or(0);
    weighted_pick(targets, pool, |t| key(t) == least, rng)
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
    fn failover_draws_follow_the_weights_of_what_is_left() {
        // After `c` (weight 6) is drawn first, `b` (3) comes before `a` (1)
        // three times out of four.
        let r = route(
            vec![target("a", 0, 1), target("b", 0, 3), target("c", 0, 6)],
            Strategy::Weighted,
        );
        let mut rng = StdRng::seed_from_u64(11);
        let (mut after_c, mut b_second) = (0u32, 0u32);
        for _ in 0..20_000 {
            let order = plan(&r, None, &mut rng);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2], "every target exactly once");
            if order[0] == 2 {
                after_c += 1;
                b_second += u32::from(order[1] == 1);
            }
        }
        let share = f64::from(b_second) / f64::from(after_c);
        assert!((share - 0.75).abs() < 0.02, "{b_second}/{after_c}");
    }

    #[test]
    fn the_allow_filter_and_counts() {
        let r = route(
            vec![target("a", 0, 1), target("b", 0, 1), target("c", 1, 1)],
            Strategy::Weighted,
        );
        r.targets[1].health.reject(401);
        let mut rng = StdRng::seed_from_u64(5);
        let only_c = |t: &Target| t.route.provider.name == "c";
        let mut p = Plan::new(&r, None, only_c, &mut rng);
        assert_eq!((p.in_rotation, p.eligible), (2, 1));
        assert_eq!(p.next(&r, only_c, &mut rng), Some(2));
        assert_eq!(p.next(&r, only_c, &mut rng), None);
        let none = |_: &Target| false;
        let mut p = Plan::new(&r, None, none, &mut rng);
        assert_eq!((p.in_rotation, p.eligible), (2, 0));
        assert_eq!(p.next(&r, none, &mut rng), None);
        // A preference counts only the providers it names.
        let p = Plan::new(&r, Some(&["b", "c"]), |_: &Target| true, &mut rng);
        assert_eq!((p.in_rotation, p.eligible), (1, 1));
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
