//! Validation: a parsed [`ScenarioSpec`] becomes a checked [`Scenario`], or a list of every problem
//! found, each with the path of the offending value so the caller can point at it in the file.
//! One module per concern: [`upstream`], the faults (compiled by [`crate::fault::compile`]),
//! [`proxy`] settings, the load (compiled by [`crate::load::compile`]), the services and named
//! proxies of a [`topology`], the [`phases`] that switch rules on and off, and [`expect`].

mod expect;
mod phases;
mod proxy;
mod topology;
mod upstream;

use crate::spec::check::{Checker, Problem, is_file_name, key};
use crate::spec::{self, ScenarioSpec};
use crate::{fault, load};

use super::{Clock, Scenario};

pub(crate) fn check(spec: &ScenarioSpec) -> Result<Scenario, Vec<Problem>> {
    let mut c = Checker::default();

    if !is_file_name(&spec.name) {
        c.report(
            key("name"),
            format!("`{}` cannot be used as a file name", spec.name),
            "not a usable name",
            Some("use letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 100 characters (for example \"flaky-api\")".into()),
        );
    }

    let upstream = upstream::check(&mut c, spec);
    let mut faults = fault::compile::compile(&mut c, &key("faults"), &spec.faults);
    let mut proxy = proxy::config(&mut c, &key("proxy"), &spec.proxy);
    proxy.upstream_tls = upstream.tls.clone();
    proxy.upstream_http2 = upstream.http2;
    let load = load::compile::compile(&mut c, &spec.load);
    let mut topology = topology::check(&mut c, spec);
    phases::check(&mut c, spec, &mut faults, topology.as_mut());
    let expect = expect::check(&mut c, spec, &faults, &load, topology.as_ref());

    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    Ok(Scenario {
        name: spec.name.clone(),
        description: spec.description.clone().unwrap_or_default(),
        seed: spec.seed,
        upstream,
        faults,
        proxy,
        load,
        expect,
        clock: match spec.run.clock {
            spec::Clock::Real => Clock::Real,
            spec::Clock::Virtual => Clock::Virtual,
        },
        topology,
        dir: std::path::PathBuf::from("."),
        spec: spec.clone(),
    })
}

/// The help for a rule name that names no rule: "did you mean `x`? rules in this scenario: ...",
/// or the list alone. `names` is never empty (the caller says when there are no rules).
fn rules_help(name: &str, names: &[&str]) -> String {
    let list = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match spec::error::did_you_mean(name, names) {
        Some(best) => format!("did you mean `{best}`? rules in this scenario: {list}"),
        None => format!("rules in this scenario: {list}"),
    }
}
