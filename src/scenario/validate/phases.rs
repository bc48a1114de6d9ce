//! `[[phases]]`: blocks of the run that switch rules on or off. Each phase's `from` and `until`
//! are on one axis (request indices or time since the start), `from` before `until`; its `enable`
//! and `disable` name rules of the scenario (`[[faults]]`, or the rules of `[[proxies]]`: a name
//! several proxies use is switched in each). The phases are compiled into the [`Gate`] of every
//! rule they name, which the rule's window checks per request ([`crate::fault::phase`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::fault::{FaultRule, Gate, Span};
use crate::scenario::Topology;
use crate::spec::check::{Checker, Seg, key, with};
use crate::spec::extent::{Axis, Extent};
use crate::spec::{PhaseSpec, ScenarioSpec};

pub(super) fn check(
    c: &mut Checker,
    spec: &ScenarioSpec,
    faults: &mut [FaultRule],
    topology: Option<&mut Topology>,
) {
    if spec.phases.is_empty() {
        return;
    }
    let mut rules: Vec<&mut FaultRule> = faults.iter_mut().collect();
    if let Some(t) = topology {
        rules.extend(t.proxies.iter_mut().flat_map(|p| p.faults.iter_mut()));
    }
    let mut names: Vec<&str> = Vec::new();
    for rule in &rules {
        if !names.contains(&rule.name.as_str()) {
            names.push(rule.name.as_str());
        }
    }
    let names: Vec<String> = names.into_iter().map(str::to_string).collect();
    let mut gates: BTreeMap<String, Gate> = BTreeMap::new();
    for (i, phase) in spec.phases.iter().enumerate() {
        let here = with(&key("phases"), Seg::Index(i));
        let span = span_of(c, &here, phase);
        if phase.enable.is_empty() && phase.disable.is_empty() {
            c.report(
                here.clone(),
                format!("phase `{}` switches no rule on or off", phase_name(i, phase)),
                "no `enable` or `disable`",
                Some("add `enable = [\"RULE\"]` (on only in this phase) or `disable = [\"RULE\"]` (off in this phase)".into()),
            );
        }
        for (list, on) in [(&phase.enable, true), (&phase.disable, false)] {
            let field = with(
                &here,
                Seg::Key(if on { "enable" } else { "disable" }.into()),
            );
            for (j, name) in list.iter().enumerate() {
                let p = with(&field, Seg::Index(j));
                if !names.contains(name) {
                    unknown_rule(c, p, name, &names);
                    continue;
                }
                if !on && phase.enable.contains(name) {
                    c.report(
                        p,
                        format!(
                            "phase `{}` both enables and disables `{name}`",
                            phase_name(i, phase)
                        ),
                        "also in `enable`",
                        Some("keep it in one of the two lists".into()),
                    );
                    continue;
                }
                if let Some(span) = span {
                    let gate = gates.entry(name.clone()).or_default();
                    if on { &mut gate.on } else { &mut gate.off }.push(span);
                }
            }
        }
    }
    for rule in rules {
        if let Some(gate) = gates.get(&rule.name) {
            rule.window.gates = Some(Arc::new(gate.clone()));
        }
    }
}

/// `name`, or `phase-<position>`.
fn phase_name(i: usize, phase: &PhaseSpec) -> String {
    phase
        .name
        .clone()
        .unwrap_or_else(|| format!("phase-{}", i + 1))
}

/// The phase's block: `from` (default the start) and `until` (default the end) on one axis,
/// `from` before `until`.
fn span_of(c: &mut Checker, here: &[Seg], phase: &PhaseSpec) -> Option<Span> {
    let until_at = with(here, Seg::Key("until".into()));
    let axis = phase
        .from
        .or(phase.until)
        .map_or(Axis::Requests, Extent::axis);
    if let (Some(from), Some(until)) = (phase.from, phase.until) {
        if from.axis() != until.axis() {
            c.report(
                until_at,
                format!(
                    "this phase starts at {from} and ends at {until}: `from` and `until` must both count {} or both count {}",
                    from.axis().as_str(),
                    until.axis().as_str()
                ),
                &format!("{} here, {} in `from`", until.axis().as_str(), from.axis().as_str()),
                Some("write both as request indices (`from = 10`, `until = 20`) or both as times (`from = \"10s\"`, `until = \"20s\"`)".into()),
            );
            return None;
        }
        let empty = match (from, until) {
            (Extent::Requests(a), Extent::Requests(b)) => a >= b,
            (Extent::Time(a), Extent::Time(b)) => a >= b,
            _ => false,
        };
        if empty {
            c.report(
                until_at,
                format!("the phase from {from} until {until} is empty"),
                "not after `from`",
                Some("`until` is where the phase ends, excluded: make it later than `from`".into()),
            );
            return None;
        }
    }
    Some(match axis {
        Axis::Requests => Span::Requests {
            from: match phase.from {
                Some(Extent::Requests(n)) => n,
                _ => 0,
            },
            until: match phase.until {
                Some(Extent::Requests(n)) => Some(n),
                _ => None,
            },
        },
        Axis::Time => Span::Time {
            from: match phase.from {
                Some(Extent::Time(d)) => d,
                _ => Duration::ZERO,
            },
            until: match phase.until {
                Some(Extent::Time(d)) => Some(d),
                _ => None,
            },
        },
    })
}

fn unknown_rule(c: &mut Checker, path: Vec<Seg>, name: &str, names: &[String]) {
    let help = if names.is_empty() {
        "this scenario has no fault rules to switch".to_string()
    } else {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        super::rules_help(name, &refs)
    };
    c.report(
        path,
        format!("there is no fault rule named `{name}`"),
        "unknown rule",
        Some(help),
    );
}
