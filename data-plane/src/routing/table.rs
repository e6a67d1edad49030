//! The compiled form of a route: targets in priority groups, each with its
//! health records, and the policy. Built once per snapshot version.

use std::ops::Range;
use std::sync::Arc;

use super::policy::RoutePolicy;
use super::stats::{ProviderHealth, TargetStats};
use crate::config::Route;

/// One way to serve a route: a provider credential and an upstream model.
#[derive(Debug, Clone)]
pub struct Target {
    /// What the adapters see. For a wildcard target without its own upstream
    /// model, `upstream_model` is filled from the caller's model per call.
    pub route: Arc<Route>,
    pub from_suffix: bool,
    pub priority: u32,
    /// ≥ 1.
    pub weight: u32,
    pub stats: Arc<TargetStats>,
    pub health: Arc<ProviderHealth>,
    /// The control plane took the credential out of rotation.
    pub disabled: bool,
}

impl Target {
    /// False when the credential is out of rotation (locally or by the CP).
    pub fn in_rotation(&self) -> bool {
        !self.disabled && !self.health.is_rejected()
    }

    /// The route view for one call; allocates only for wildcard targets.
    pub fn route_for(&self, suffix: Option<&str>) -> Arc<Route> {
        match (self.from_suffix, suffix) {
            (true, Some(s)) => Arc::new(Route {
                upstream_model: s.to_string(),
                ..self.route.as_ref().clone()
            }),
            _ => self.route.clone(),
        }
    }
}

/// A public model name (or wildcard) → ordered priority groups of targets.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    pub model_id: String,
    pub public_name: String,
    /// Sorted by priority (stable: configured order within a priority).
    pub targets: Vec<Target>,
    /// Ranges of `targets` with equal priority, lowest priority first.
    pub groups: Vec<Range<usize>>,
    /// Running sums of the targets' weights (`cum_weights[i]` = weights of
    /// `targets[..=i]`): a weighted draw is one binary search.
    pub cum_weights: Vec<u64>,
    pub policy: RoutePolicy,
}

impl ModelRoute {
    /// Builds the groups from targets already sorted by priority.
    pub fn new(
        model_id: String,
        public_name: String,
        mut targets: Vec<Target>,
        policy: RoutePolicy,
    ) -> ModelRoute {
        targets.sort_by_key(|t| t.priority);
        let mut groups = Vec::new();
        let mut start = 0;
        for i in 1..=targets.len() {
            if i == targets.len() || targets[i].priority != targets[start].priority {
                groups.push(start..i);
                start = i;
            }
        }
        let cum_weights = targets
            .iter()
            .scan(0u64, |sum, t| {
                *sum += u64::from(t.weight.max(1));
                Some(*sum)
            })
            .collect();
        ModelRoute {
            model_id,
            public_name,
            targets,
            groups,
            cum_weights,
            policy,
        }
    }

    /// The first target's view: what a one-target route always uses.
    pub fn primary(&self) -> Option<&Arc<Route>> {
        self.targets.first().map(|t| &t.route)
    }
}

/// The public-name part a wildcard route matched: `openai/*` and
/// `openai/gpt-4o` → `gpt-4o`.
pub fn wildcard_prefix(name: &str) -> Option<&str> {
    name.strip_suffix('*').filter(|p| p.ends_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_names() {
        assert_eq!(wildcard_prefix("openai/*"), Some("openai/"));
        assert_eq!(wildcard_prefix("gpt-*"), None);
        assert_eq!(wildcard_prefix("gpt-4o"), None);
    }
}
