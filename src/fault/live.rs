//! The proxy's fault rules while it runs. The control API (`traceforge proxy --control`) adds,
//! replaces, removes, enables and disables rules, and resets them to the ones the proxy started
//! with; without it, the rules never change.
//!
//! Every change builds a whole new [`FaultPlan`] (disabled rules left out) and swaps it in with
//! one atomic store. Every request loads the current [`Snapshot`] once, when its decision is made,
//! and is decided by it alone: it sees the rules before a change or after it, never part of one,
//! and readers never wait for a writer. Writers take turns.
//!
//! A rule that is the same before and after a change (same name, same definition) keeps its
//! `max_active` count, since the requests it holds are still in flight. A reset starts a new
//! [`Snapshot`] epoch: time windows (`from`, `until`) count from the reset, and so does the arrival
//! count that stands in for the request index of clients that send no `x-traceforge-index`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use super::{FaultPlan, FaultRule};
use crate::load::Target;
use crate::spec::check::{Checker, display_path};
use crate::spec::{FaultEntry, FaultSpec};

/// One rule of the live set.
#[derive(Debug, Clone)]
pub struct LiveRule {
    /// The rule as a scenario's `[[faults]]` table would write it, its `name` always set; `None`
    /// for a rule of a plan compiled elsewhere ([`LiveRules::fixed`]).
    pub spec: Option<FaultSpec>,
    pub rule: FaultRule,
    /// A disabled rule stays in the list (and keeps its place) but is left out of the plan.
    pub enabled: bool,
}

impl LiveRule {
    pub fn name(&self) -> &str {
        &self.rule.name
    }
}

/// What a request is decided by: the plan of the moment, and the clock and arrival count of the
/// current epoch (since the start, or the last reset).
#[derive(Debug)]
pub struct Snapshot {
    plan: Arc<FaultPlan>,
    epoch: Arc<Epoch>,
}

#[derive(Debug)]
struct Epoch {
    started: Instant,
    arrivals: AtomicU64,
}

impl Epoch {
    fn now() -> Arc<Epoch> {
        Arc::new(Epoch {
            started: Instant::now(),
            arrivals: AtomicU64::new(0),
        })
    }
}

impl Snapshot {
    pub fn plan(&self) -> &Arc<FaultPlan> {
        &self.plan
    }

    /// Time since the proxy started, or since the last reset: what time windows look at.
    pub fn elapsed(&self) -> Duration {
        self.epoch.started.elapsed()
    }

    /// Counts one arrival and returns the count before it: the request index of a client that
    /// sends none (order-dependent, as documented).
    pub fn arrival(&self) -> u64 {
        self.epoch.arrivals.fetch_add(1, Ordering::Relaxed)
    }
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeError {
    /// No rule has this name.
    Unknown(String),
    /// A rule of this name exists already.
    Exists(String),
    /// The rule is not valid: the problems, each at a field of the rule.
    Invalid(Vec<RuleProblem>),
}

/// One problem with a rule, at a field path such as `status` or `match.path` (empty: the rule).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleProblem {
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

impl std::fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::Unknown(name) => write!(f, "no rule is named `{name}`"),
            ChangeError::Exists(name) => write!(
                f,
                "a rule named `{name}` exists already; replace it with PUT /rules/{name}"
            ),
            ChangeError::Invalid(problems) => {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("; "))
            }
        }
    }
}

impl std::error::Error for ChangeError {}

/// The proxy's rules: the ones it started with, the current list, and the plan compiled from it.
#[derive(Debug)]
pub struct LiveRules {
    seed: u64,
    starting: Vec<LiveRule>,
    /// The load profile ranks are counted over, when the plan has one.
    targets: Option<(Vec<Target>, u64)>,
    /// The current list; held by a writer for the whole change, so changes take turns.
    rules: Mutex<Vec<LiveRule>>,
    current: ArcSwap<Snapshot>,
}

impl LiveRules {
    /// Rules written as specs (a scenario's faults, `--fault` flags), compiled already, under
    /// `seed`; every spec gets its rule's name.
    pub fn new(seed: u64, starting: Vec<(FaultSpec, FaultRule)>) -> Self {
        let starting: Vec<LiveRule> = starting
            .into_iter()
            .map(|(mut spec, rule)| {
                spec.name = Some(rule.name.clone());
                LiveRule {
                    spec: Some(spec),
                    rule,
                    enabled: true,
                }
            })
            .collect();
        let plan = FaultPlan::new(seed, starting.iter().map(|r| r.rule.clone()).collect());
        Self::with_plan(seed, starting, Arc::new(plan))
    }

    /// The rules of a plan compiled elsewhere, served as they are (their ranks included).
    pub fn fixed(plan: Arc<FaultPlan>) -> Self {
        let starting = plan
            .rules()
            .iter()
            .map(|rule| LiveRule {
                spec: None,
                rule: rule.clone(),
                enabled: true,
            })
            .collect();
        Self::with_plan(plan.seed(), starting, plan)
    }

    fn with_plan(seed: u64, starting: Vec<LiveRule>, plan: Arc<FaultPlan>) -> Self {
        LiveRules {
            seed,
            rules: Mutex::new(starting.clone()),
            starting,
            targets: None,
            current: ArcSwap::from_pointee(Snapshot {
                plan,
                epoch: Epoch::now(),
            }),
        }
    }

    /// Counts `first`/`after`/`every` over the load profile `targets` (see
    /// [`FaultPlan::with_targets`]), now and after every change.
    pub fn with_targets(mut self, targets: Vec<Target>, requests: u64) -> Self {
        self.targets = Some((targets, requests));
        let rules = self.list();
        let epoch = self.current.load().epoch.clone();
        self.publish(&rules, epoch);
        self
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// What a request is decided by: load it once per request.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The rules in order, disabled ones included.
    pub fn list(&self) -> Vec<LiveRule> {
        self.lock().clone()
    }

    /// The rule named `name`.
    pub fn get(&self, name: &str) -> Option<LiveRule> {
        self.lock().iter().find(|r| r.name() == name).cloned()
    }

    /// Adds a rule after the others. `spec.name` is required and must be new.
    pub fn add(&self, spec: FaultSpec, enabled: bool) -> Result<LiveRule, ChangeError> {
        let live = compile(spec, enabled)?;
        self.change(|rules| {
            if rules.iter().any(|r| r.name() == live.name()) {
                return Err(ChangeError::Exists(live.name().to_string()));
            }
            rules.push(live.clone());
            Ok(live.clone())
        })
    }

    /// Replaces the rule named `name`, in its place. The spec's name, when given, must be `name`;
    /// `enabled: None` keeps the rule's flag.
    pub fn replace(
        &self,
        name: &str,
        mut spec: FaultSpec,
        enabled: Option<bool>,
    ) -> Result<LiveRule, ChangeError> {
        match &spec.name {
            Some(given) if given != name => {
                return Err(ChangeError::Invalid(vec![RuleProblem {
                    path: "name".into(),
                    message: format!(
                        "the body names `{given}` but the URL names `{name}`; a rule cannot be renamed"
                    ),
                    help: Some(format!(
                        "leave `name` out, or DELETE /rules/{name} and POST the rule under its new name"
                    )),
                }]));
            }
            _ => spec.name = Some(name.to_string()),
        }
        let mut live = compile(spec, true)?;
        self.change(|rules| {
            let slot = rules
                .iter_mut()
                .find(|r| r.name() == name)
                .ok_or_else(|| ChangeError::Unknown(name.to_string()))?;
            live.enabled = enabled.unwrap_or(slot.enabled);
            *slot = live.clone();
            Ok(live.clone())
        })
    }

    /// Removes the rule named `name`; returns it.
    pub fn remove(&self, name: &str) -> Result<LiveRule, ChangeError> {
        self.change(|rules| {
            let at = rules
                .iter()
                .position(|r| r.name() == name)
                .ok_or_else(|| ChangeError::Unknown(name.to_string()))?;
            Ok(rules.remove(at))
        })
    }

    /// Enables or disables the rule named `name`; returns it.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<LiveRule, ChangeError> {
        self.change(|rules| {
            let rule = rules
                .iter_mut()
                .find(|r| r.name() == name)
                .ok_or_else(|| ChangeError::Unknown(name.to_string()))?;
            rule.enabled = enabled;
            Ok(rule.clone())
        })
    }

    /// Back to the starting rules, all enabled, in a new epoch (time windows and the arrival
    /// count start again). Returns the rules.
    pub fn reset(&self) -> Vec<LiveRule> {
        let mut rules = self.lock();
        *rules = self.starting.clone();
        self.publish(&rules, Epoch::now());
        rules.clone()
    }

    /// Applies `edit` to the list and publishes the result; nothing changes when it fails.
    fn change<T>(
        &self,
        edit: impl FnOnce(&mut Vec<LiveRule>) -> Result<T, ChangeError>,
    ) -> Result<T, ChangeError> {
        let mut rules = self.lock();
        let mut next = rules.clone();
        let out = edit(&mut next)?;
        let epoch = self.current.load().epoch.clone();
        self.publish(&next, epoch);
        *rules = next;
        Ok(out)
    }

    /// Compiles the enabled rules into a plan and swaps it in.
    fn publish(&self, rules: &[LiveRule], epoch: Arc<Epoch>) {
        let previous = self.current.load();
        let enabled = rules
            .iter()
            .filter(|r| r.enabled)
            .map(|r| r.rule.clone())
            .collect();
        let mut plan = FaultPlan::new(self.seed, enabled);
        // A rule that did not change keeps counting the requests it holds (`max_active`).
        let kept: Vec<_> = plan
            .rules
            .iter()
            .map(|rule| {
                let j = previous.plan.rules.iter().position(|r| r == rule)?;
                previous.plan.active.get(j).cloned()
            })
            .collect();
        for (active, kept) in plan.active.iter_mut().zip(kept) {
            if let Some(kept) = kept {
                *active = kept;
            }
        }
        if let Some((targets, requests)) = &self.targets {
            plan = plan.with_targets(targets.clone(), *requests);
        }
        self.current.store(Arc::new(Snapshot {
            plan: Arc::new(plan),
            epoch,
        }));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LiveRule>> {
        // A writer that panicked left the list as it was before its change: still sound.
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Compiles one rule with the checks a scenario file's `[[faults]]` table gets, and the same
/// messages; problems are at the rule's fields. The name is required.
pub fn compile(spec: FaultSpec, enabled: bool) -> Result<LiveRule, ChangeError> {
    if spec.name.is_none() {
        return Err(ChangeError::Invalid(vec![RuleProblem {
            path: "name".into(),
            message: "a rule needs a `name`".into(),
            help: Some(
                "add `\"name\": \"api-503\"`: the name is how the control API, the metrics and the request log refer to the rule"
                    .into(),
            ),
        }]));
    }
    let mut checker = Checker::default();
    let entries = [FaultEntry::Table(spec.clone())];
    let mut rules = super::compile::compile(&mut checker, &[], &entries);
    if !checker.problems.is_empty() {
        return Err(ChangeError::Invalid(
            checker
                .problems
                .into_iter()
                .map(|p| RuleProblem {
                    // The list's index is not the body's: the body is the rule itself.
                    path: display_path(p.path.get(1..).unwrap_or_default()),
                    message: p.message,
                    help: p.help,
                })
                .collect(),
        ));
    }
    match rules.pop() {
        Some(rule) => Ok(LiveRule {
            spec: Some(spec),
            rule,
            enabled,
        }),
        None => Err(ChangeError::Invalid(vec![RuleProblem {
            path: String::new(),
            message: "not a usable fault".into(),
            help: None,
        }])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::RequestFacts;
    use crate::spec::FaultKind;
    use hyper::Method;

    fn error_spec(name: &str, status: u16) -> FaultSpec {
        let mut spec = FaultSpec::new(FaultKind::Error);
        spec.name = Some(name.into());
        spec.status = Some(status);
        spec
    }

    fn fired(live: &LiveRules) -> Vec<String> {
        let snapshot = live.load();
        let facts = RequestFacts::new(&Method::GET, "/", "r");
        snapshot
            .plan()
            .decide(&facts)
            .fired_rules()
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn changes_swap_the_plan_and_reset_restores_the_start() {
        let start = compile(error_spec("a", 503), true).unwrap_or_else(|e| panic!("{e}"));
        let live = LiveRules::new(
            7,
            vec![(start.spec.clone().unwrap_or_else(|| panic!()), start.rule)],
        );
        assert_eq!(fired(&live), ["a"]);
        live.set_enabled("a", false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(fired(&live).is_empty());
        live.add(error_spec("b", 500), true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fired(&live), ["b"]);
        assert_eq!(
            live.add(error_spec("b", 502), true).map(|_| ()),
            Err(ChangeError::Exists("b".into()))
        );
        live.replace("b", error_spec("b", 502), None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(live.get("b").map(|r| r.enabled), Some(true));
        live.remove("b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            live.remove("b").map(|_| ()),
            Err(ChangeError::Unknown("b".into()))
        );
        assert!(fired(&live).is_empty());
        let rules = live.reset();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].enabled);
        assert_eq!(fired(&live), ["a"]);
    }

    #[test]
    fn invalid_rules_say_what_is_wrong_at_which_field() {
        let Err(ChangeError::Invalid(problems)) = compile(error_spec("x", 700), true) else {
            panic!("a status of 700 must be refused");
        };
        assert_eq!(problems[0].path, "status", "{problems:?}");
        let mut nameless = error_spec("x", 503);
        nameless.name = None;
        let Err(ChangeError::Invalid(problems)) = compile(nameless, true) else {
            panic!("a rule without a name must be refused");
        };
        assert_eq!(problems[0].path, "name");
        let Err(ChangeError::Invalid(problems)) = compile(error_spec("no spaces", 503), true)
        else {
            panic!("an unusable name must be refused");
        };
        assert_eq!(problems[0].path, "name");
    }

    #[test]
    fn a_change_keeps_the_epoch_and_a_reset_starts_a_new_one() {
        let live = LiveRules::new(1, Vec::new());
        assert_eq!(live.load().arrival(), 0);
        assert_eq!(live.load().arrival(), 1);
        live.add(error_spec("a", 503), true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(live.load().arrival(), 2, "a change keeps counting");
        live.reset();
        assert_eq!(
            live.load().arrival(),
            0,
            "a reset counts from the start again"
        );
    }

    #[test]
    fn an_unchanged_rule_keeps_its_max_active_count_across_a_change() {
        let mut limited = error_spec("limited", 503);
        limited.max_active = Some(1);
        let live = LiveRules::new(1, Vec::new());
        live.add(limited, true).unwrap_or_else(|e| panic!("{e}"));
        let facts = RequestFacts::new(&Method::GET, "/", "r");
        let held = live.load().plan().decide(&facts);
        assert_eq!(held.fired_rules(), ["limited"]);
        live.add(error_spec("other", 500), true)
            .unwrap_or_else(|e| panic!("{e}"));
        let next = live.load().plan().decide(&facts);
        assert_eq!(next.fired_rules(), ["other"], "the slot is still held");
        drop(held);
        drop(next);
        assert_eq!(live.load().plan().decide(&facts).fired_rules(), ["limited"]);
    }

    #[test]
    fn a_rename_through_replace_is_refused() {
        let live = LiveRules::new(1, Vec::new());
        live.add(error_spec("a", 503), true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            live.replace("a", error_spec("b", 503), None),
            Err(ChangeError::Invalid(_))
        ));
    }
}
