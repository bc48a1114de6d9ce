//! Fault rules compiled into a [`FaultPlan`], and the pure decision function the proxy calls for
//! every request. A decision depends only on the scenario seed, the rule and the request id, never
//! on arrival order, so the same request id gets the same faults at any concurrency.

pub mod compact;

use std::fmt;
use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};
use hyper::Method;
use rand::Rng;

use crate::scenario::duration::DelaySpec;
use crate::seed;

/// What a rule does when it fires.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Hold the request, then forward it.
    Delay(DelaySpec),
    /// Answer with this status without forwarding.
    Error { status: u16 },
    /// Answer 503 without forwarding.
    Drop,
}

impl FaultAction {
    pub fn kind(&self) -> &'static str {
        match self {
            FaultAction::Delay(_) => "delay",
            FaultAction::Error { .. } => "error",
            FaultAction::Drop => "drop",
        }
    }

    /// Terminal actions answer the request themselves; evaluation stops at the first one.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, FaultAction::Delay(_))
    }
}

/// A compiled path glob, kept with its source text for display.
#[derive(Debug, Clone)]
pub struct PathGlob {
    pattern: String,
    matcher: GlobMatcher,
}

impl PathGlob {
    /// `*` stays within a path segment, `**` crosses segments.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| e.kind().to_string())?;
        Ok(PathGlob {
            pattern: pattern.to_string(),
            matcher: glob.compile_matcher(),
        })
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.matcher.is_match(path)
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

impl PartialEq for PathGlob {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

/// Which requests a rule applies to. Empty conditions match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matcher {
    pub path: Option<PathGlob>,
    pub methods: Vec<Method>,
}

impl Matcher {
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        let path_ok = self.path.as_ref().is_none_or(|g| g.is_match(path));
        let method_ok = self.methods.is_empty() || self.methods.contains(method);
        path_ok && method_ok
    }
}

/// One validated fault rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Unique within the scenario; used in metrics labels, outcomes and golden files.
    pub name: String,
    pub action: FaultAction,
    /// In `[0, 1]`.
    pub probability: f64,
    pub matcher: Matcher,
}

impl fmt::Display for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.name, self.action.kind())?;
        match &self.action {
            FaultAction::Delay(d) => write!(f, " {d}")?,
            FaultAction::Error { status } => write!(f, " {status}")?,
            FaultAction::Drop => {}
        }
        if self.probability < 1.0 {
            write!(f, ", p={}", self.probability)?;
        }
        if let Some(path) = &self.matcher.path {
            write!(f, ", path {}", path.as_str())?;
        }
        if !self.matcher.methods.is_empty() {
            let ms: Vec<&str> = self.matcher.methods.iter().map(Method::as_str).collect();
            write!(f, ", {}", ms.join("|"))?;
        }
        f.write_str(")")
    }
}

/// What happens to one request, in rule order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub steps: Vec<Step>,
}

/// One rule that fired for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Index of the rule in the plan.
    pub rule: usize,
    pub effect: Effect,
}

/// The concrete effect of a fired rule, with any random values already drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    Delay(Duration),
    Error(u16),
    Drop,
}

impl Decision {
    /// The sum of every delay that fired: delays add up.
    pub fn total_delay(&self) -> Duration {
        self.steps
            .iter()
            .map(|s| match s.effect {
                Effect::Delay(d) => d,
                _ => Duration::ZERO,
            })
            .sum()
    }

    /// The terminal step (error or drop), if any. It is always the last step.
    pub fn terminal(&self) -> Option<&Step> {
        self.steps
            .last()
            .filter(|s| !matches!(s.effect, Effect::Delay(_)))
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// The compiled fault rules of a scenario, under its seed.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    seed: u64,
    rules: Vec<FaultRule>,
}

impl FaultPlan {
    pub fn new(seed: u64, rules: Vec<FaultRule>) -> Self {
        FaultPlan { seed, rules }
    }

    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Decides the faults for one request. Pure: the same `(seed, rules, method, path, request_id)`
    /// always gives the same decision. Rules are evaluated in order; delays add up and the first
    /// error or drop ends evaluation. Each rule draws from its own stream, keyed
    /// `fault/<rule-name>/<request-id>`: first the probability, then any random value it needs.
    pub fn decide(&self, method: &Method, path: &str, request_id: &str) -> Decision {
        let mut decision = Decision::default();
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.matcher.matches(method, path) {
                continue;
            }
            let mut rng = seed::rng(self.seed, &format!("fault/{}/{}", rule.name, request_id));
            // Always draw, even at probability 1, so a rule's later draws do not depend on its probability.
            let roll: f64 = rng.random();
            if roll >= rule.probability {
                continue;
            }
            let effect = match &rule.action {
                FaultAction::Delay(DelaySpec::Fixed(d)) => Effect::Delay(*d),
                FaultAction::Delay(DelaySpec::Range(lo, hi)) => {
                    let lo_ns = u64::try_from(lo.as_nanos()).unwrap_or(u64::MAX);
                    let hi_ns = u64::try_from(hi.as_nanos()).unwrap_or(u64::MAX).max(lo_ns);
                    Effect::Delay(Duration::from_nanos(rng.random_range(lo_ns..=hi_ns)))
                }
                FaultAction::Error { status } => Effect::Error(*status),
                FaultAction::Drop => Effect::Drop,
            };
            decision.steps.push(Step {
                rule: index,
                effect,
            });
            if rule.action.is_terminal() {
                break;
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, action: FaultAction, probability: f64, path: Option<&str>) -> FaultRule {
        FaultRule {
            name: name.to_string(),
            action,
            probability,
            matcher: Matcher {
                path: path.and_then(|p| PathGlob::new(p).ok()),
                methods: vec![],
            },
        }
    }

    #[test]
    fn decisions_are_pure_functions_of_seed_rule_and_id() {
        let plan = FaultPlan::new(
            42,
            vec![rule("e", FaultAction::Error { status: 503 }, 0.5, None)],
        );
        let ids: Vec<String> = (0..200).map(|i| seed::request_id(1, i, 0)).collect();
        let forward: Vec<Decision> = ids
            .iter()
            .map(|id| plan.decide(&Method::GET, "/", id))
            .collect();
        let backward: Vec<Decision> = ids
            .iter()
            .rev()
            .map(|id| plan.decide(&Method::GET, "/", id))
            .collect();
        let backward: Vec<Decision> = backward.into_iter().rev().collect();
        assert_eq!(forward, backward);
        let hits = forward.iter().filter(|d| !d.is_empty()).count();
        assert!((60..=140).contains(&hits), "{hits} of 200 at p=0.5");
    }

    #[test]
    fn delays_add_up_and_the_first_terminal_wins() {
        let ms = Duration::from_millis;
        let plan = FaultPlan::new(
            1,
            vec![
                rule(
                    "d1",
                    FaultAction::Delay(DelaySpec::Fixed(ms(10))),
                    1.0,
                    None,
                ),
                rule("d2", FaultAction::Delay(DelaySpec::Fixed(ms(5))), 1.0, None),
                rule("drop", FaultAction::Drop, 1.0, Some("/api/*")),
                rule("err", FaultAction::Error { status: 500 }, 1.0, None),
            ],
        );
        let d = plan.decide(&Method::GET, "/api/x", "id");
        assert_eq!(d.total_delay(), ms(15));
        assert_eq!(
            d.terminal().map(|s| (s.rule, s.effect)),
            Some((2, Effect::Drop))
        );
        let d = plan.decide(&Method::GET, "/other", "id");
        assert_eq!(d.terminal().map(|s| s.effect), Some(Effect::Error(500)));
    }

    #[test]
    fn ranges_stay_in_bounds_and_probability_zero_never_fires() {
        let ms = Duration::from_millis;
        let plan = FaultPlan::new(
            9,
            vec![
                rule(
                    "r",
                    FaultAction::Delay(DelaySpec::Range(ms(100), ms(200))),
                    1.0,
                    None,
                ),
                rule("never", FaultAction::Drop, 0.0, None),
            ],
        );
        for i in 0..100 {
            let d = plan.decide(&Method::GET, "/", &i.to_string());
            assert!((ms(100)..=ms(200)).contains(&d.total_delay()));
            assert!(d.terminal().is_none());
        }
    }

    #[test]
    fn globs_keep_single_star_within_a_segment() {
        let g = PathGlob::new("/api/*").unwrap_or_else(|e| panic!("{e}"));
        assert!(g.is_match("/api/resource"));
        assert!(!g.is_match("/api/a/b"));
        assert!(!g.is_match("/apix"));
        let prefix = PathGlob::new("{/api,/api/**}").unwrap_or_else(|e| panic!("{e}"));
        assert!(prefix.is_match("/api"));
        assert!(prefix.is_match("/api/a/b"));
        assert!(!prefix.is_match("/apiary"));
    }
}
