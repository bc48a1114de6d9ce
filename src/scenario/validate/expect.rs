//! Validation of `[expect]`: success rates, status and latency bounds, retry and lateness ranges,
//! bounds per fault rule and per target. Names must refer to rules and targets that exist.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fault::{DelayModel, FaultAction, FaultRule, RandomDelay};
use crate::load::LoadConfig;
use crate::record::ResultName;
use crate::scenario::Expectations;
use crate::scenario::Topology;
use crate::scenario::expectation::{CountRange, ProxyExpectations};
use crate::spec::check::{Checker, Seg, key, with};
use crate::spec::error::did_you_mean;
use crate::spec::{ProxyExpectSpec, RangeSpec, ScenarioSpec};

pub(super) fn check(
    c: &mut Checker,
    spec: &ScenarioSpec,
    faults: &[FaultRule],
    load: &LoadConfig,
    topology: Option<&Topology>,
) -> Expectations {
    use crate::scenario::expectation::TargetExpectations;

    let e = &spec.expect;
    let at = key("expect");
    let field = |name: &str| with(&at, Seg::Key(name.into()));
    if let Some(rate) = e.success_rate {
        c.probability(field("success_rate"), rate);
    }
    let retries = e
        .retries
        .as_ref()
        .map(|r| count_range(c, field("retries"), r));
    let late = e.late.as_ref().map(|r| count_range(c, field("late"), r));

    let names: Vec<&str> = faults.iter().map(|r| r.name.as_str()).collect();
    let unknown_rule = |c: &mut Checker, path: Vec<Seg>, name: &str| {
        let help = if let Some(owner) = topology.and_then(|t| {
            t.proxies
                .iter()
                .find(|p| p.faults.iter().any(|r| r.name == name))
        }) {
            format!(
                "`{name}` is a rule of proxy `{}`: expect it under [expect.proxies.{}]",
                owner.name, owner.name
            )
        } else if topology.is_some() {
            "top-level expectations name top-level rules, and this scenario's rules belong to its [[proxies]]: expect them under [expect.proxies.NAME]".to_string()
        } else if names.is_empty() {
            "this scenario has no fault rules".to_string()
        } else {
            super::rules_help(name, &names)
        };
        c.report(
            path,
            format!("there is no fault rule named `{name}`"),
            "unknown rule",
            Some(help),
        );
    };
    let mut fault_bounds = Vec::new();
    for (name, r) in &e.faults {
        let p = with(&field("faults"), Seg::Key(name.clone()));
        let bound = count_range(c, p.clone(), r);
        if names.contains(&name.as_str()) {
            fault_bounds.push((name.clone(), bound));
        } else {
            unknown_rule(c, p, name);
        }
    }
    let mut delays = Vec::new();
    for (i, name) in e.delays_honoured.iter().enumerate() {
        let p = with(&field("delays_honoured"), Seg::Index(i));
        match faults.iter().find(|r| r.name == *name) {
            None => unknown_rule(c, p, name),
            Some(rule) => match &rule.action {
                FaultAction::Delay(RandomDelay {
                    model: DelayModel::Fixed(d) | DelayModel::Uniform(d, _),
                    jitter,
                }) => delays.push((name.clone(), d.saturating_sub(jitter.unwrap_or_default()))),
                // A ramp's delay is never below the lower of its two ends.
                FaultAction::Delay(RandomDelay {
                    model: DelayModel::Ramp(r),
                    jitter,
                }) => delays.push((
                    name.clone(),
                    r.from.min(r.to).saturating_sub(jitter.unwrap_or_default()),
                )),
                FaultAction::Delay(_) => c.report(
                    p,
                    format!(
                        "`{name}` draws its delay from a distribution, which has no lower bound"
                    ),
                    "no lower bound",
                    Some("`delays_honoured` checks fixed delays and ranges".into()),
                ),
                other => c.report(
                    p,
                    format!(
                        "`{name}` is not a delay rule (its kind is `{}`)",
                        other.kind()
                    ),
                    "not a delay",
                    Some("list only rules of kind `delay` here".into()),
                ),
            },
        }
    }

    let status = check_status_bounds(c, field("status"), &e.status);
    let latency = check_latency_bounds(c, field("latency"), &e.latency);
    let paths: Vec<&str> = load.targets.iter().map(|t| t.path.as_str()).collect();
    let mut targets = Vec::new();
    for (i, t) in e.targets.iter().enumerate() {
        let at_t = with(&field("targets"), Seg::Index(i));
        let tf = |name: &str| with(&at_t, Seg::Key(name.into()));
        if !paths.contains(&t.path.as_str()) {
            let list = paths
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let help = match did_you_mean(&t.path, &paths) {
                Some(best) => format!("did you mean `{best}`? target paths: {list}"),
                None => format!("target paths: {list}"),
            };
            c.report(
                tf("path"),
                format!("`{}` is not a path in `load.targets`", t.path),
                "unknown target",
                Some(help),
            );
        }
        if let Some(rate) = t.success_rate {
            c.probability(tf("success_rate"), rate);
        }
        let status = check_status_bounds(c, tf("status"), &t.status);
        let latency = check_latency_bounds(c, tf("latency"), &t.latency);
        if t.success_rate.is_none() && status.is_empty() && latency.is_empty() {
            c.report(
                at_t.clone(),
                format!("nothing is expected of `{}`", t.path),
                "empty",
                Some("add `latency`, `status` or `success_rate`".into()),
            );
        }
        targets.push(TargetExpectations {
            path: t.path.clone(),
            success_rate: t.success_rate,
            status,
            latency,
        });
    }
    Expectations {
        success_rate: e.success_rate,
        status,
        latency,
        retries,
        late,
        faults: fault_bounds,
        delays,
        targets,
        proxies: check_proxies(c, field("proxies"), &e.proxies, topology),
    }
}

fn count_range(c: &mut Checker, path: Vec<Seg>, r: &RangeSpec) -> CountRange {
    if r.min.is_none() && r.max.is_none() {
        c.report(
            path,
            "this bound says nothing",
            "empty",
            Some("write `{ min = 1 }`, `{ max = 40 }` or both".into()),
        );
    } else if let (Some(lo), Some(hi)) = (r.min, r.max) {
        if lo > hi {
            c.report(
                path,
                format!("`min` ({lo}) is above `max` ({hi})"),
                "empty range",
                None,
            );
        }
    }
    CountRange {
        min: r.min,
        max: r.max,
    }
}

/// `[expect.proxies.NAME]`: every name a `[[proxies]]` entry, every rule one of its own.
fn check_proxies(
    c: &mut Checker,
    at: Vec<Seg>,
    specs: &BTreeMap<String, ProxyExpectSpec>,
    topology: Option<&Topology>,
) -> Vec<ProxyExpectations> {
    let proxies = topology.map(|t| t.proxies.as_slice()).unwrap_or_default();
    let proxy_names: Vec<&str> = proxies.iter().map(|p| p.name.as_str()).collect();
    let mut out = Vec::new();
    for (name, e) in specs {
        let p = with(&at, Seg::Key(name.clone()));
        let field = |n: &str| with(&p, Seg::Key(n.into()));
        let Some(proxy) = proxies.iter().find(|x| x.name == *name) else {
            let help = if proxy_names.is_empty() {
                "this scenario has no [[proxies]]: expectations here are for named proxies"
                    .to_string()
            } else {
                let list = proxy_names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                match did_you_mean(name, &proxy_names) {
                    Some(best) => {
                        format!("did you mean `{best}`? proxies in this scenario: {list}")
                    }
                    None => format!("proxies in this scenario: {list}"),
                }
            };
            c.report_key(
                p,
                format!("there is no [[proxies]] entry named `{name}`"),
                "unknown proxy",
                Some(help),
            );
            continue;
        };
        if e.requests.is_none()
            && e.calls_per_request.is_none()
            && e.status.is_empty()
            && e.faults.is_empty()
            && e.latency.is_empty()
        {
            c.report_key(
                p.clone(),
                format!("nothing is expected of proxy `{name}`"),
                "empty",
                Some("add `requests`, `calls_per_request`, `status`, `faults` or `latency`, or remove the table".into()),
            );
        }
        let requests = e
            .requests
            .as_ref()
            .map(|r| count_range(c, field("requests"), r));
        let calls_per_request = e
            .calls_per_request
            .as_ref()
            .map(|r| count_range(c, field("calls_per_request"), r));
        let rules: Vec<&str> = proxy.faults.iter().map(|r| r.name.as_str()).collect();
        let mut faults = Vec::new();
        for (rule, r) in &e.faults {
            let rp = with(&field("faults"), Seg::Key(rule.clone()));
            let bound = count_range(c, rp.clone(), r);
            if rules.contains(&rule.as_str()) {
                faults.push((rule.clone(), bound));
                continue;
            }
            let help = if rules.is_empty() {
                format!("proxy `{name}` has no fault rules")
            } else {
                let list = rules
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                match did_you_mean(rule, &rules) {
                    Some(best) => format!("did you mean `{best}`? rules of proxy `{name}`: {list}"),
                    None => format!("rules of proxy `{name}`: {list}"),
                }
            };
            c.report_key(
                rp,
                format!("proxy `{name}` has no fault rule named `{rule}`"),
                "unknown rule",
                Some(help),
            );
        }
        out.push(ProxyExpectations {
            proxy: name.clone(),
            requests,
            calls_per_request,
            status: check_status_bounds(c, field("status"), &e.status),
            faults,
            latency: check_latency_bounds(c, field("latency"), &e.latency),
        });
    }
    out
}

fn check_status_bounds(
    c: &mut Checker,
    at: Vec<Seg>,
    specs: &BTreeMap<String, crate::spec::CountSpec>,
) -> Vec<crate::scenario::expectation::StatusBound> {
    use crate::scenario::expectation::{ResultKey, StatusBound};

    const NAMES: [&str; 13] = ResultName::NAMES;
    let mut out = Vec::new();
    for (name, bound) in specs {
        let p = with(&at, Seg::Key(name.clone()));
        let key = match ResultName::parse(name) {
            Some(ResultName::Class(class)) => Some(ResultKey::Class(class)),
            Some(ResultName::Error(kind)) => Some(ResultKey::Error(kind)),
            None => name
                .parse::<u16>()
                .ok()
                .filter(|s| (100..=599).contains(s))
                .map(ResultKey::Status),
        };
        let Some(key) = key else {
            let help = match did_you_mean(name, &NAMES) {
                Some(best) => format!(
                    "did you mean `{best}`? keys are statuses (100 to 599) or {}",
                    NAMES.join(", ")
                ),
                None => format!("keys are statuses (100 to 599) or {}", NAMES.join(", ")),
            };
            c.report(
                p,
                format!("`{name}` is not a status, a status class, a transport error or a WebSocket error"),
                "unknown result",
                Some(help),
            );
            continue;
        };
        for (share, name) in [
            (bound.min_share, "min_share"),
            (bound.max_share, "max_share"),
        ] {
            if let Some(s) = share {
                c.probability(with(&p, Seg::Key(name.into())), s);
            }
        }
        if let (Some(lo), Some(hi)) = (bound.min_count, bound.max_count) {
            if lo > hi {
                c.report(
                    with(&p, Seg::Key("min_count".into())),
                    format!("`min_count` ({lo}) is above `max_count` ({hi})"),
                    "empty range",
                    Some(
                        "no count can meet both bounds: lower `min_count` or raise `max_count`"
                            .into(),
                    ),
                );
            }
        }
        if let (Some(lo), Some(hi)) = (bound.min_share, bound.max_share) {
            if lo > hi {
                c.report(
                    with(&p, Seg::Key("min_share".into())),
                    format!("`min_share` ({lo}) is above `max_share` ({hi})"),
                    "empty range",
                    Some(
                        "no share can meet both bounds: lower `min_share` or raise `max_share`"
                            .into(),
                    ),
                );
            }
        }
        if bound.min_count.is_none()
            && bound.max_count.is_none()
            && bound.min_share.is_none()
            && bound.max_share.is_none()
        {
            c.report(
                p,
                "this bound says nothing",
                "empty",
                Some("use `min_count`, `max_count`, `min_share` or `max_share`".into()),
            );
            continue;
        }
        out.push(StatusBound {
            key,
            min_count: bound.min_count,
            max_count: bound.max_count,
            min_share: bound.min_share,
            max_share: bound.max_share,
        });
    }
    out
}

fn check_latency_bounds(
    c: &mut Checker,
    at: Vec<Seg>,
    specs: &BTreeMap<String, crate::spec::LatencyBoundSpec>,
) -> Vec<crate::scenario::expectation::LatencyBound> {
    use crate::scenario::expectation::{LatencyBound, Op};
    use crate::spec::LatencyBoundSpec;

    let mut out = Vec::new();
    for (name, spec) in specs {
        let p = with(&at, Seg::Key(name.clone()));
        let Some(statistic) = parse_statistic(name) else {
            let known = ["p50", "p90", "p95", "p99", "p99.9", "mean", "max"];
            let help = match did_you_mean(name, &known) {
                Some(best) => format!(
                    "did you mean `{best}`? keys are `pN` (p50, p99, \"p99.9\"), `mean` or `max`"
                ),
                None => "keys are `pN` (p50, p99, \"p99.9\"), `mean` or `max`".to_string(),
            };
            c.report(
                p,
                format!("`{name}` is not a latency statistic"),
                "unknown statistic",
                Some(help),
            );
            continue;
        };
        let mut push = |op, bound| {
            out.push(LatencyBound {
                key: name.clone(),
                statistic,
                op,
                bound,
            })
        };
        match spec {
            LatencyBoundSpec::Text(text) => match parse_comparison(text) {
                Ok((op, d)) => push(op, d),
                Err(e) => c.report(
                    p,
                    e,
                    "not a bound",
                    Some("write it like \"< 800ms\", \"<= 1s\" or \"> 100ms\", or { max = \"800ms\" }".into()),
                ),
            },
            LatencyBoundSpec::Table { min, max } => {
                if min.is_none() && max.is_none() {
                    c.report(
                        p,
                        "this bound says nothing",
                        "empty",
                        Some("write { max = \"800ms\" } or { min = \"100ms\" }".into()),
                    );
                    continue;
                }
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        c.report(p.clone(), format!("`min` ({lo}) is above `max` ({hi})"), "empty range", None);
                    }
                }
                if let Some(lo) = min {
                    push(Op::Ge, lo.get());
                }
                if let Some(hi) = max {
                    push(Op::Le, hi.get());
                }
            }
        }
    }
    out
}

/// `p99` -> the 0.99 quantile, `p99.9` -> 0.999, `mean`, `max`.
fn parse_statistic(name: &str) -> Option<crate::scenario::expectation::Statistic> {
    use crate::scenario::expectation::Statistic;
    match name {
        "mean" => return Some(Statistic::Mean),
        "max" => return Some(Statistic::Max),
        _ => {}
    }
    let number = name.strip_prefix('p')?;
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    (value > 0.0 && value <= 100.0).then_some(Statistic::Quantile(value / 100.0))
}

/// `"< 800ms"` -> (Lt, 800ms).
fn parse_comparison(text: &str) -> Result<(crate::scenario::expectation::Op, Duration), String> {
    use crate::scenario::expectation::Op;
    let t = text.trim();
    let (op, rest) = if let Some(r) = t.strip_prefix("<=") {
        (Op::Le, r)
    } else if let Some(r) = t.strip_prefix(">=") {
        (Op::Ge, r)
    } else if let Some(r) = t.strip_prefix('<') {
        (Op::Lt, r)
    } else if let Some(r) = t.strip_prefix('>') {
        (Op::Gt, r)
    } else {
        return Err(format!(
            "`{t}` has no comparison; start it with <, <=, > or >="
        ));
    };
    let d = crate::spec::duration::parse_duration(rest)?;
    Ok((op, d))
}
