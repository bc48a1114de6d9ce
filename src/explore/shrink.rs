//! Shrinking a failing seed to a minimal scenario (`traceforge explore --shrink`).
//!
//! Starting from the scenario with the failing seed, the shrinker edits its spec one change at a
//! time, builds each variant with [`Base::from_spec`] (so a variant is exactly what the written
//! `.min.toml` plays) and replays it with [`trial`]: a change is kept when the *target*
//! expectation (the first one that broke for the seed) still breaks. In order:
//!
//! 1. **requests**: bisection on the smallest prefix of the request indices that still fails.
//!    With the same seed, request `i` is the same request whatever the total (targets are drawn
//!    from `load/target/<index>`, fault rolls from the rule's name and the request id), so a
//!    prefix replays the start of the run. An open loop given as `rate` x `duration` is first
//!    written as the same number of `requests`; a closed loop bounded by time alone, or a load
//!    with `stages`, keeps its length (a step says so).
//! 2. **rules**: each fault rule, of `[[faults]]` then of every `[[proxies]]` entry, in order, is
//!    dropped and stays out when the run still fails; phases and expectations that named only
//!    that rule lose the name (a phase left naming nothing goes too). Unnamed rules are first given
//!    the names they had (`error-2`), so dropping one does not rename, and so reseed, the others.
//! 3. **numbers**: each fixed probability below 1 is lowered by bisection on a grid of
//!    hundredths (a lower probability only removes fires: the roll is the same draw), then the
//!    open loop's `rate` (on a grid of thousandths of it), then the retries, down to 0.
//!
//! Every step is reported through `on_step` as it is decided. The number of trials is capped
//! ([`MAX_TRIALS`]); a step says so when the cap ends shrinking early.

use std::path::{Path, PathBuf};

use super::{Base, Trial, to_toml, trial};
use crate::expect::Verdict;
use crate::runner::{self, RunOptions};
use crate::scenario::{Clock, Scenario, ScenarioSpec};
use crate::spec::schedule::ProbabilitySpec;
use crate::spec::{FaultEntry, FaultSpec};

/// The most trials one shrink plays to shrink (the first, which confirms the seed fails,
/// included); the final one, which confirms the minimal scenario fails, may go one past it.
pub const MAX_TRIALS: usize = 500;

/// One shrinking step: what was tried and whether it was kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// A human line: "requests 200 -> 100: still fails".
    pub what: String,
    /// True when the change was kept (the target expectation still broke).
    pub kept: bool,
}

/// The minimal scenario a failing seed shrank to.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The failing seed (also the minimal scenario's `seed`).
    pub seed: u64,
    /// The minimal scenario's spec, named `<name>-min`.
    pub spec: ScenarioSpec,
    /// The `.min.toml` text: header comments, then the spec as TOML.
    pub text: String,
    /// The names of the expectations the minimal scenario breaks, the target one first.
    pub failing: Vec<String>,
    /// What was removed or lowered, one human line each: "requests 200 -> 37".
    pub removed: Vec<String>,
    /// Trials played.
    pub steps: usize,
    /// Set when the target was asked for ([`shrink_target`]): a file-name-safe form of the
    /// expectation, which names the file and the scenario (`NAME.<label>.min.toml`,
    /// `<name>-<label>-min`) so the shrunk scenarios of one search do not overwrite each other.
    pub label: Option<String>,
}

/// Shrinks the failure of `seed` to a minimal scenario. Errs when the seed does not break an
/// expectation (or cannot be played). `scratch` is a folder trials may use; nothing is kept there.
pub fn shrink(
    base: &Base,
    seed: u64,
    scratch: &Path,
    on_step: &mut dyn FnMut(&Step),
) -> Result<Shrunk, String> {
    shrink_target(base, seed, None, scratch, on_step)
}

/// [`shrink`] with the target expectation given: the seed must break `target`, and the minimal
/// scenario is labelled with it (see [`Shrunk::label`]). With `None`, the target is the first
/// expectation the seed breaks, and there is no label.
pub fn shrink_target(
    base: &Base,
    seed: u64,
    target: Option<&str>,
    scratch: &Path,
    on_step: &mut dyn FnMut(&Step),
) -> Result<Shrunk, String> {
    let asked = target;
    let scenario = base
        .with_seed(seed)
        .map_err(|e| format!("{}: seed {seed}: {e}", base.origin))?;
    let mut spec = scenario.spec.clone();
    spec.seed = seed;
    if scenario.clock == Clock::Real {
        on_step(&Step {
            what: "the scenario runs on the real clock: every trial takes its real time, and a \
                   failure that depends on timing may not replay the same; shrinking keeps only \
                   changes that failed when tried"
                .into(),
            kept: false,
        });
    }
    // The seed as given must fail; its first broken expectation is the target. A run that could
    // not finish is played once more (see `Shrinker::attempt`).
    let mut trials = 1;
    let mut played = trial(&scenario, scratch);
    if matches!(played, Trial::Error(_)) {
        trials += 1;
        played = trial(&scenario, scratch);
    }
    let first = match played {
        Trial::Broke(verdicts) => verdicts,
        Trial::Held => {
            return Err(format!(
                "seed {seed} does not fail {}: every expectation held, so there is nothing to shrink",
                base.origin
            ));
        }
        Trial::Error(e) => {
            return Err(format!(
                "seed {seed} of {} could not be played ({e}): only a broken expectation can be shrunk",
                base.origin
            ));
        }
    };
    let target = match asked {
        Some(name) => first
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.name.clone()),
        None => first.first().map(|v| v.name.clone()),
    };
    let Some(target) = target else {
        if let Some(name) = asked {
            return Err(format!(
                "seed {seed} of {} does not break `{name}`: only an expectation the seed breaks can be shrunk",
                base.origin
            ));
        }
        return Err(format!(
            "seed {seed} of {}: no expectation broke",
            base.origin
        ));
    };
    let label = asked.map(label_of);
    let mut s = Shrinker {
        base,
        scratch,
        label,
        target,
        trials,
        capped: false,
        on_step,
        original: spec.clone(),
        spec,
        broke: first,
        kept: 0,
        requests_from: None,
        dropped_expectations: false,
        verifying: false,
    };
    s.name_rules();
    s.original = s.spec.clone();
    // One change can make another possible (no retries left, a lower probability needs fewer
    // requests...): the steps are tried again while a pass keeps something.
    for pass in 1..=MAX_PASSES {
        let kept = s.kept;
        if pass > 1 {
            s.report(
                format!(
                    "pass {pass}: the last pass changed the scenario, so every step is tried again"
                ),
                false,
            );
        }
        s.requests();
        s.rules();
        s.probabilities();
        s.rate();
        s.retries();
        if s.kept == kept || s.capped {
            break;
        }
        if pass == MAX_PASSES {
            s.report(
                format!("stopped after {MAX_PASSES} passes: the scenario may shrink further"),
                false,
            );
        }
    }
    s.expectations();
    s.rename(seed);
    s.verify()?;
    Ok(s.finish(seed))
}

/// The most passes over the steps.
const MAX_PASSES: usize = 4;

/// What one trial of a variant said.
enum Attempt {
    /// The target expectation still broke; these are the broken verdicts.
    Fails(Vec<Verdict>),
    /// It did not: why, for the step line.
    Passes(String),
    /// The trial cap is reached: nothing was played.
    Capped,
}

struct Shrinker<'a> {
    base: &'a Base,
    scratch: &'a Path,
    /// Names the result when the target was asked for.
    label: Option<String>,
    target: String,
    trials: usize,
    capped: bool,
    on_step: &'a mut dyn FnMut(&Step),
    /// The smallest failing spec so far.
    spec: ScenarioSpec,
    /// What `spec` breaks.
    broke: Vec<Verdict>,
    /// The spec shrinking started from (its rules named).
    original: ScenarioSpec,
    /// Changes kept so far.
    kept: usize,
    /// The request count shrinking started from, and how to say it (`60`, `duration 1h at
    /// rate 0.5/s`).
    requests_from: Option<(u64, String)>,
    /// Whether the expectations other than the target were dropped.
    dropped_expectations: bool,
    /// Playing the final scenario, which the cap does not stop.
    verifying: bool,
}

impl Shrinker<'_> {
    fn report(&mut self, what: String, kept: bool) {
        (self.on_step)(&Step { what, kept });
    }

    fn attempt(&mut self, candidate: &ScenarioSpec) -> Attempt {
        if self.trials >= MAX_TRIALS && !self.verifying {
            if !self.capped {
                self.capped = true;
                self.report(
                    format!(
                        "stopped after {MAX_TRIALS} trials (the cap): the scenario may shrink further"
                    ),
                    false,
                );
            }
            return Attempt::Capped;
        }
        let scenario = match self.base.from_spec(candidate) {
            Ok(s) => s,
            Err(e) => {
                let first = e.to_string();
                let line = first.lines().next().unwrap_or("invalid").to_string();
                return Attempt::Passes(format!("does not validate ({line})"));
            }
        };
        self.trials += 1;
        let mut played = trial(&scenario, self.scratch);
        if matches!(played, Trial::Error(_)) && (self.trials < MAX_TRIALS || self.verifying) {
            // A run that could not finish says nothing about the change; it may have been
            // disturbed from outside (a panic elsewhere in the process): play it once more.
            self.trials += 1;
            played = trial(&scenario, self.scratch);
        }
        match played {
            Trial::Broke(verdicts) if verdicts.iter().any(|v| v.name == self.target) => {
                Attempt::Fails(verdicts)
            }
            Trial::Broke(verdicts) => Attempt::Passes(format!(
                "`{}` holds (it breaks {} instead)",
                self.target,
                verdicts
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Trial::Held => Attempt::Passes(format!("`{}` holds", self.target)),
            Trial::Error(e) => Attempt::Passes(format!("could not run ({e})")),
        }
    }

    /// Plays `candidate`; keeps it when the target still breaks. Reports the step as
    /// `"<what>: still fails"` or `"<what>: <why not>"`. `None` once the cap is reached.
    fn try_change(&mut self, what: &str, candidate: ScenarioSpec) -> Option<bool> {
        match self.attempt(&candidate) {
            Attempt::Fails(broke) => {
                self.spec = candidate;
                self.broke = broke;
                self.kept += 1;
                self.report(format!("{what}: still fails"), true);
                Some(true)
            }
            Attempt::Passes(why) => {
                self.report(format!("{what}: {why}"), false);
                Some(false)
            }
            Attempt::Capped => None,
        }
    }

    /// Gives every unnamed rule the name it has anyway (`<kind>-<position>`), as a table: a
    /// rule's draws are keyed by its name, so dropping an earlier rule must not rename it.
    fn name_rules(&mut self) {
        name_all(&mut self.spec.faults);
        for proxy in &mut self.spec.proxies {
            name_all(&mut proxy.faults);
        }
    }

    /// Step 1: the fewest requests, by bisection on a prefix of the request indices.
    fn requests(&mut self) {
        let load = &self.spec.load;
        if load.stages.is_some() {
            self.report(
                "requests: not shrunk: the load has stages, whose length is not a count of requests".into(),
                false,
            );
            return;
        }
        let n = match (load.requests, load.duration, load.rate) {
            (Some(n), _, _) => n,
            (None, None, None) => {
                let mut candidate = self.spec.clone();
                candidate.load.requests = Some(100);
                match self.try_change("requests (default) -> 100, written out", candidate) {
                    Some(true) => 100,
                    _ => return,
                }
            }
            (None, Some(duration), Some(rate)) => {
                let n = (rate * duration.get().as_secs_f64()).floor() as u64;
                let mut candidate = self.spec.clone();
                candidate.load.duration = None;
                candidate.load.requests = Some(n.max(1));
                let what = format!("duration {duration} at rate {rate}/s -> requests {n}");
                self.requests_from
                    .get_or_insert((n.max(1), format!("duration {duration} at rate {rate}/s")));
                match self.try_change(&what, candidate) {
                    Some(true) => n.max(1),
                    _ => return,
                }
            }
            (None, Some(duration), None) => {
                self.report(
                    format!(
                        "requests: not shrunk: a closed loop bounded by duration {duration} has no fixed count of requests"
                    ),
                    false,
                );
                return;
            }
            (None, None, Some(_)) => return,
        };
        self.requests_from.get_or_insert((n, n.to_string()));
        let (mut lo, mut hi) = (1u64, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let mut candidate = self.spec.clone();
            candidate.load.requests = Some(mid);
            match self.try_change(&format!("requests {hi} -> {mid}"), candidate) {
                Some(true) => hi = mid,
                Some(false) => lo = mid + 1,
                None => break,
            }
        }
    }

    /// Step 2: the fewest rules: drop each one, keep it out when the run still fails.
    fn rules(&mut self) {
        // (proxy, rule name) in the order written.
        let mut all: Vec<(Option<String>, String)> = rule_names(&self.spec.faults)
            .into_iter()
            .map(|n| (None, n))
            .collect();
        for proxy in &self.spec.proxies {
            all.extend(
                rule_names(&proxy.faults)
                    .into_iter()
                    .map(|n| (Some(proxy.name.clone()), n)),
            );
        }
        for (proxy, name) in all {
            let label = match &proxy {
                None => format!("rule `{name}`"),
                Some(p) => format!("rule `{name}` of proxy `{p}`"),
            };
            let mut candidate = self.spec.clone();
            drop_rule(&mut candidate, proxy.as_deref(), &name);
            if self
                .try_change(&format!("{label} dropped"), candidate)
                .is_none()
            {
                return;
            }
        }
    }

    /// Step 3a: every fixed probability below 1, lowered by bisection on hundredths.
    fn probabilities(&mut self) {
        let mut all: Vec<(Option<String>, String, f64)> = probabilities(&self.spec.faults)
            .into_iter()
            .map(|(n, p)| (None, n, p))
            .collect();
        for proxy in &self.spec.proxies {
            all.extend(
                probabilities(&proxy.faults)
                    .into_iter()
                    .map(|(n, p)| (Some(proxy.name.clone()), n, p)),
            );
        }
        for (proxy, name, p) in all {
            let label = match &proxy {
                None => format!("probability of `{name}`"),
                Some(q) => format!("probability of `{name}` of proxy `{q}`"),
            };
            // Grid points strictly below p: 0.01, 0.02, ...; index `below + 1` is p itself.
            let below = ((p * 100.0).ceil() as u64).saturating_sub(1);
            let value = |k: u64| if k > below { p } else { k as f64 / 100.0 };
            let (mut lo, mut hi) = (1u64, below + 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let mut candidate = self.spec.clone();
                set_probability(&mut candidate, proxy.as_deref(), &name, value(mid));
                let what = format!("{label} {} -> {}", value(hi), value(mid));
                match self.try_change(&what, candidate) {
                    Some(true) => hi = mid,
                    Some(false) => lo = mid + 1,
                    None => break,
                }
            }
        }
    }

    /// Step 3b: the open loop's rate, lowered by bisection on thousandths of the rate it had.
    fn rate(&mut self) {
        let load = &self.spec.load;
        let (Some(rate), Some(first)) = (load.rate, self.original.load.rate) else {
            return;
        };
        if load.stages.is_some() || load.requests.is_none() {
            // Bounded by time, a lower rate would also mean fewer requests: not only a number.
            return;
        }
        let value = |k: u64| {
            if k >= 1000 {
                first
            } else {
                round6(first * k as f64 / 1000.0)
            }
        };
        let Some(current) = (1..=1000u64).find(|&k| value(k) >= rate) else {
            return;
        };
        let (mut lo, mut hi) = (1u64, current);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let v = value(mid);
            let mut candidate = self.spec.clone();
            candidate.load.rate = Some(v);
            match self.try_change(&format!("rate {} -> {v}", value(hi)), candidate) {
                Some(true) => hi = mid,
                Some(false) => lo = mid + 1,
                None => break,
            }
        }
    }

    /// Step 3c: the fewest retries, down to 0.
    fn retries(&mut self) {
        let load = &self.spec.load;
        let from_retry = load.retry.as_ref().and_then(|r| r.max);
        let Some(n) = load.retries.or(from_retry) else {
            return;
        };
        let field = if load.retries.is_some() {
            "retries"
        } else {
            "retry.max"
        };
        let set = |spec: &mut ScenarioSpec, v: u32| {
            if spec.load.retries.is_some() {
                spec.load.retries = Some(v);
            } else if let Some(r) = spec.load.retry.as_mut() {
                r.max = Some(v);
            }
        };
        let (mut lo, mut hi) = (0u32, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let mut candidate = self.spec.clone();
            set(&mut candidate, mid);
            match self.try_change(&format!("{field} {hi} -> {mid}"), candidate) {
                Some(true) => hi = mid,
                Some(false) => lo = mid + 1,
                None => break,
            }
        }
    }

    /// Last: only the target expectation stays. Expectations do not change what plays, but the
    /// others break for reasons of their own in a cut-down run (a minimum count of requests) and
    /// would hide what the scenario is about.
    fn expectations(&mut self) {
        if self.capped {
            return;
        }
        let Some(expect) = only_target(&self.spec.expect, &self.target) else {
            return;
        };
        let others: Vec<String> = self
            .broke
            .iter()
            .filter(|v| v.name != self.target)
            .map(|v| v.name.clone())
            .collect();
        let before = toml::Value::try_from(&self.spec.expect).ok();
        if before == toml::Value::try_from(&expect).ok() {
            return;
        }
        let mut candidate = self.spec.clone();
        candidate.expect = expect;
        let what = if others.is_empty() {
            format!("expectations other than `{}` dropped", self.target)
        } else {
            format!(
                "expectations other than `{}` dropped (they break too: {})",
                self.target,
                others.join(", ")
            )
        };
        if self.try_change(&what, candidate) == Some(true) {
            self.dropped_expectations = true;
        }
    }

    /// What the kept changes removed, read off the original and the final spec.
    fn removed(&self) -> Vec<String> {
        let (from, to) = (&self.original, &self.spec);
        let mut out = Vec::new();
        if let (Some((n, said)), Some(m)) = (&self.requests_from, to.load.requests) {
            if said != &n.to_string() {
                out.push(format!("{said} -> requests {m}"));
            } else if m < *n {
                out.push(format!("requests {said} -> {m}"));
            }
        }
        let mut lists = vec![(None, &from.faults, Some(&to.faults))];
        for proxy in &from.proxies {
            let now = to.proxies.iter().find(|q| q.name == proxy.name);
            lists.push((
                Some(proxy.name.as_str()),
                &proxy.faults,
                now.map(|q| &q.faults),
            ));
        }
        // Rules dropped first, then lowered probabilities, each in the order written.
        let mut lowered = Vec::new();
        for (proxy, before, after) in lists {
            let of = proxy
                .map(|p| format!(" of proxy `{p}`"))
                .unwrap_or_default();
            let after: &[FaultEntry] = after.map(Vec::as_slice).unwrap_or(&[]);
            let find = |name: &str| {
                after
                    .iter()
                    .map(table)
                    .find(|t| t.name.as_deref() == Some(name))
            };
            for rule in before.iter().map(table) {
                let Some(name) = rule.name.as_deref() else {
                    continue;
                };
                match find(name) {
                    None => out.push(format!("rule `{name}`{of} dropped")),
                    Some(now) => {
                        let p0 = rule.probability.and_then(ProbabilitySpec::fixed);
                        let p1 = now.probability.and_then(ProbabilitySpec::fixed);
                        if let (Some(p0), Some(p1)) = (p0, p1)
                            && p1 < p0
                        {
                            lowered.push(format!("probability of `{name}`{of} {p0} -> {p1}"));
                        }
                    }
                }
            }
        }
        out.extend(lowered);
        if let (Some(r0), Some(r1)) = (from.load.rate, to.load.rate)
            && r1 < r0
        {
            out.push(format!("rate {r0} -> {r1}"));
        }
        let retries =
            |s: &ScenarioSpec| s.load.retries.or(s.load.retry.as_ref().and_then(|r| r.max));
        if let (Some(n0), Some(n1)) = (retries(from), retries(to))
            && n1 < n0
        {
            let field = if to.load.retries.is_some() {
                "retries"
            } else {
                "retry.max"
            };
            out.push(format!("{field} {n0} -> {n1}"));
        }
        if self.dropped_expectations {
            out.push(format!("expectations other than `{}` dropped", self.target));
        }
        out
    }

    /// Names the minimal scenario `<name>-min`, with the seed and a description.
    fn rename(&mut self, seed: u64) {
        let origin_name = self.original.name.clone();
        self.spec.name = min_name(&origin_name, self.label.as_deref());
        self.spec.seed = seed;
        self.spec.description = Some(format!(
            "Minimal reproduction of `{}` breaking in {origin_name} with seed {seed} (shrunk by traceforge explore)",
            self.target
        ));
    }

    /// Plays the minimal scenario as it will be written (beyond the cap): the target must break.
    fn verify(&mut self) -> Result<(), String> {
        self.verifying = true;
        let attempt = self.attempt(&self.spec.clone());
        match attempt {
            Attempt::Fails(broke) => {
                if let Some(v) = broke.iter().find(|v| v.name == self.target) {
                    let line = format!(
                        "{} as written breaks `{}` (measured {}, expected {})",
                        self.spec.name, v.name, v.measured, v.threshold
                    );
                    self.report(line, true);
                }
                self.broke = broke;
                Ok(())
            }
            Attempt::Capped => Err("the trial cap was reached".into()),
            Attempt::Passes(why) => Err(format!(
                "the shrunk scenario of {} (seed {}) no longer breaks `{}`: {why}{}",
                self.base.origin,
                self.spec.seed,
                self.target,
                if self.original.run.clock == crate::spec::Clock::Real {
                    " (on the real clock a failure that depends on timing may not replay)"
                } else {
                    " (a run that does not replay the same: please report it)"
                }
            )),
        }
    }

    fn finish(self, seed: u64) -> Shrunk {
        let removed = self.removed();
        let spec = self.spec;
        let target = self.broke.iter().find(|v| v.name == self.target);
        let mut failing = vec![self.target.clone()];
        failing.extend(
            self.broke
                .iter()
                .filter(|v| v.name != self.target)
                .map(|v| v.name.clone()),
        );
        let mut text = format!(
            "# Shrunk by traceforge explore from {}, seed {seed}.\n",
            self.base.origin
        );
        if let Some(v) = target {
            text.push_str(&format!(
                "# Fails: {} (measured {}, expected {})\n",
                v.name, v.measured, v.threshold
            ));
        }
        for other in self.broke.iter().filter(|v| v.name != self.target) {
            text.push_str(&format!(
                "# Also fails: {} (measured {}, expected {})\n",
                other.name, other.measured, other.threshold
            ));
        }
        if removed.is_empty() {
            text.push_str("# Removed: nothing (every change made the failure go away)\n");
        } else {
            text.push_str(&format!("# Removed: {}\n", removed.join("; ")));
        }
        text.push_str(
            "# This scenario fails until the bug is fixed: `traceforge run` exits 1 on it. Once it\n\
             # passes, accept its golden file again (`traceforge run FILE --accept`) and keep it as a\n\
             # regression scenario.\n",
        );
        match to_toml(&spec) {
            Ok(toml) => text.push_str(&toml),
            Err(e) => text.push_str(&format!("# {e}\n")),
        }
        Shrunk {
            seed,
            spec,
            text,
            failing,
            removed,
            steps: self.trials,
            label: self.label,
        }
    }
}

/// The expectations with only the one named `target` (`success_rate`, `status.503`,
/// `faults.outage`, `delays_honoured.network`, `targets[/api].latency.p99`, `proxies.db...`):
/// a key of `[expect]` is kept when the name is it or starts with it, and of a keyed table
/// (`status`, `latency`, `faults`) or a list of names (`delays_honoured`) only the named entry.
/// `None` when the spec cannot be rebuilt.
fn only_target(expect: &crate::spec::ExpectSpec, target: &str) -> Option<crate::spec::ExpectSpec> {
    let toml::Value::Table(table) = toml::Value::try_from(expect).ok()? else {
        return None;
    };
    let mut kept = toml::Table::new();
    for (key, value) in table {
        if target == key {
            kept.insert(key, value);
            continue;
        }
        if let Some(rest) = target.strip_prefix(&format!("{key}.")) {
            let value = match value {
                toml::Value::Table(inner) if inner.contains_key(rest) => {
                    let mut one = toml::Table::new();
                    one.extend(inner.into_iter().filter(|(k, _)| k == rest));
                    toml::Value::Table(one)
                }
                toml::Value::Array(items) if items.iter().any(|i| i.as_str() == Some(rest)) => {
                    toml::Value::Array(
                        items
                            .into_iter()
                            .filter(|i| i.as_str() == Some(rest))
                            .collect(),
                    )
                }
                other => other,
            };
            kept.insert(key, value);
        } else if target.starts_with(&format!("{key}[")) {
            kept.insert(key, value);
        }
    }
    toml::Value::Table(kept).try_into().ok()
}

/// `<name>-min` (or `<name>-<label>-min`), kept within the 64 characters a name may have.
fn min_name(name: &str, label: Option<&str>) -> String {
    let full = match label {
        Some(label) => format!("{name}-{label}"),
        None => name.to_string(),
    };
    let mut stem: String = full.chars().take(60).collect();
    while stem.ends_with(['-', '_', '.']) {
        stem.pop();
    }
    format!("{stem}-min")
}

/// An expectation's name as a file-name-safe label: `status.503` -> `status-503`,
/// `targets[/api].latency.p99` -> `targets-api-latency-p99`.
pub fn label_of(expectation: &str) -> String {
    let mut out = String::new();
    for c in expectation.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out.chars().take(40).collect()
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn table(entry: &FaultEntry) -> &FaultSpec {
    match entry {
        FaultEntry::Table(t) => t,
        FaultEntry::Compact { spec, .. } => spec,
    }
}

fn table_mut(entry: &mut FaultEntry) -> &mut FaultSpec {
    if let FaultEntry::Compact { spec, .. } = entry {
        *entry = FaultEntry::Table(spec.clone());
    }
    match entry {
        FaultEntry::Table(t) => t,
        FaultEntry::Compact { spec, .. } => spec,
    }
}

fn name_all(entries: &mut [FaultEntry]) {
    for (i, entry) in entries.iter_mut().enumerate() {
        if table(entry).name.is_none() {
            let t = table_mut(entry);
            t.name = Some(format!("{}-{}", t.kind, i + 1));
        }
    }
}

fn rule_names(entries: &[FaultEntry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| table(e).name.clone())
        .collect()
}

fn probabilities(entries: &[FaultEntry]) -> Vec<(String, f64)> {
    entries
        .iter()
        .filter_map(|e| {
            let t = table(e);
            let p = t.probability?.fixed()?;
            (p > 0.0 && p < 1.0).then(|| (t.name.clone(), p))
        })
        .filter_map(|(n, p)| Some((n?, p)))
        .collect()
}

fn rules_of<'s>(
    spec: &'s mut ScenarioSpec,
    proxy: Option<&str>,
) -> Option<&'s mut Vec<FaultEntry>> {
    match proxy {
        None => Some(&mut spec.faults),
        Some(p) => spec
            .proxies
            .iter_mut()
            .find(|q| q.name == p)
            .map(|q| &mut q.faults),
    }
}

fn set_probability(spec: &mut ScenarioSpec, proxy: Option<&str>, name: &str, p: f64) {
    if let Some(rules) = rules_of(spec, proxy) {
        for entry in rules.iter_mut() {
            if table(entry).name.as_deref() == Some(name) {
                table_mut(entry).probability = Some(ProbabilitySpec::Fixed(p));
            }
        }
    }
}

/// Drops the rule, and the references to its name that nothing else answers to any more.
fn drop_rule(spec: &mut ScenarioSpec, proxy: Option<&str>, name: &str) {
    if let Some(rules) = rules_of(spec, proxy) {
        rules.retain(|e| table(e).name.as_deref() != Some(name));
    }
    match proxy {
        None => {
            spec.expect.faults.remove(name);
            spec.expect.delays_honoured.retain(|n| n != name);
        }
        Some(p) => {
            if let Some(e) = spec.expect.proxies.get_mut(p) {
                e.faults.remove(name);
            }
        }
    }
    let still_named = rule_names(&spec.faults).iter().any(|n| n == name)
        || spec
            .proxies
            .iter()
            .any(|q| rule_names(&q.faults).iter().any(|n| n == name));
    if !still_named {
        spec.phases.retain_mut(|phase| {
            let before = phase.enable.len() + phase.disable.len();
            phase.enable.retain(|n| n != name);
            phase.disable.retain(|n| n != name);
            before == 0 || phase.enable.len() + phase.disable.len() > 0
        });
    }
}

/// Where `traceforge run FILE` looks for `FILE`'s golden folder when `--golden-dir` is not given
/// (the rule of `src/cli/run.rs`): `golden/` in the working directory if it exists, else the
/// `golden/` beside the scenario's folder, else the one inside it, else `./golden`.
pub fn golden_dir_for(file: &Path) -> PathBuf {
    let own = PathBuf::from("golden");
    if own.is_dir() {
        return own;
    }
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    for candidate in [folder.join("..").join("golden"), folder.join("golden")] {
        if candidate.is_dir() {
            return candidate;
        }
    }
    own
}

/// The `.min.toml` file name for the scenario `base` was read from: `NAME.min.toml`, from the
/// original file's stem.
pub fn file_name(base: &Base) -> String {
    let stem = Path::new(&base.origin)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into());
    format!("{stem}.min.toml")
}

/// The file a shrunk scenario is written to: `NAME.min.toml`, or `NAME.<label>.min.toml`.
pub fn file_name_of(base: &Base, shrunk: &Shrunk) -> String {
    let plain = file_name(base);
    match &shrunk.label {
        Some(label) => plain.replacen(".min.toml", &format!(".{label}.min.toml"), 1),
        None => plain,
    }
}

/// Writes `NAME.min.toml` into `dir`, and its golden file where `traceforge run` on that file
/// looks for it when run from the same working directory ([`golden_dir_for`]). Returns both paths.
pub fn write(shrunk: &Shrunk, base: &Base, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let golden = golden_dir_for(&dir.join(file_name_of(base, shrunk)));
    write_with_golden(shrunk, base, dir, &golden)
}

/// [`write()`] with the golden folder given (what `traceforge run --golden-dir DIR` reads).
pub fn write_with_golden(
    shrunk: &Shrunk,
    base: &Base,
    dir: &Path,
    golden_dir: &Path,
) -> std::io::Result<(PathBuf, PathBuf)> {
    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
    std::fs::create_dir_all(dir)?;
    let file = dir.join(file_name_of(base, shrunk));
    std::fs::write(&file, &shrunk.text)?;
    // Read back as `traceforge run` reads it: the same file, the folder it is in.
    let scenario: Scenario = crate::scenario::load(&file, &[])
        .map_err(|e| invalid(format!("the shrunk scenario does not load: {e}")))?;
    std::fs::create_dir_all(golden_dir)?;
    let mut options = RunOptions::new(golden_dir.to_path_buf()).accepting();
    let statics = static_dir_for(&file);
    options.static_dir = statics.is_dir().then_some(statics);
    let played = match scenario.clock {
        Clock::Virtual => runner::run_virtual(&scenario, &options),
        Clock::Real => runner::play(&scenario, &options),
    };
    played.map_err(|e| invalid(format!("the shrunk scenario could not be played: {e}")))?;
    let snap = golden_dir.join(format!("{}.snap", scenario.name));
    if !snap.is_file() {
        return Err(invalid(format!(
            "playing the shrunk scenario wrote no golden file at {}",
            snap.display()
        )));
    }
    Ok((file, snap))
}

/// The static folder `traceforge run` serves for `file`: `static/` in the working directory,
/// else beside or inside the scenario's folder.
fn static_dir_for(file: &Path) -> PathBuf {
    let own = PathBuf::from("static");
    if own.is_dir() {
        return own;
    }
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    for candidate in [folder.join("..").join("static"), folder.join("static")] {
        if candidate.is_dir() {
            return candidate;
        }
    }
    own
}
