//! The HTML report (`run --report`, `traceforge report`): one self-contained page, one section per
//! scenario, built from the run's aggregates ([`crate::record::Timeline`] and
//! [`crate::record::Summary`]), never from per-request data. Charts are inline SVG drawn by
//! [`chart`]; the page comes from a minijinja template, auto-escaped. No script, no network, no
//! time of generation: the report of a run on the virtual clock is the same bytes every time.

pub mod chart;

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use super::Played;
use crate::golden;
use crate::record::summary::Latency;
use crate::record::{Summary, Timeline};
use crate::runner::RunReport;
use crate::scenario::topology::{Piece, ProxyUpstream, Template, Topology};
use crate::scenario::{Clock, Scenario};
use crate::spec::duration::format_millis;

const TEMPLATE: &str = include_str!("page.html");

/// One scenario of the report: how it was played, and the scenario itself when it is known (its
/// seed, rules and topology).
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    pub played: &'a Played,
    pub scenario: Option<&'a Scenario>,
}

/// The sections of a report: every played scenario with its scenario, found by name.
pub fn sections<'a>(played: &'a [Played], scenarios: &'a [Scenario]) -> Vec<Section<'a>> {
    played
        .iter()
        .map(|p| Section {
            played: p,
            scenario: scenarios.iter().find(|s| s.name == p.name),
        })
        .collect()
}

/// Writes the report of `sections` as one HTML page.
pub fn write_html<W: Write>(w: &mut W, sections: &[Section<'_>]) -> io::Result<()> {
    let page = Page {
        passed: sections.iter().all(|s| s.played.verdict().passed()),
        scenarios: sections.iter().map(|s| scenario_doc(*s)).collect(),
    };
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", TEMPLATE)
        .map_err(io::Error::other)?;
    let template = env.get_template("report.html").map_err(io::Error::other)?;
    let html = template
        .render(minijinja::context! { page => minijinja::value::Serde(&page) })
        .map_err(io::Error::other)?;
    w.write_all(html.as_bytes())
}

/// [`write_html`] into a string.
pub fn html_string(sections: &[Section<'_>]) -> io::Result<String> {
    let mut out = Vec::new();
    write_html(&mut out, sections)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[derive(Serialize)]
struct Page {
    passed: bool,
    scenarios: Vec<ScenarioDoc>,
}

#[derive(Serialize)]
struct ScenarioDoc {
    name: String,
    anchor: String,
    file: String,
    description: String,
    seed: Option<u64>,
    clock: &'static str,
    /// `pass`, `fail`, `stopped`, `error`.
    verdict: &'static str,
    reason: String,
    run: Option<RunDoc>,
}

#[derive(Serialize)]
struct RunDoc {
    interrupted: bool,
    counts: Vec<(String, String)>,
    expectations: Vec<ExpectationDoc>,
    golden: GoldenDoc,
    charts: Vec<ChartDoc>,
    rules: Vec<RuleDoc>,
    targets: Vec<TargetDoc>,
    proxies: Vec<ProxyDoc>,
    bucket: String,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct ExpectationDoc {
    name: String,
    threshold: String,
    measured: String,
    passed: bool,
}

#[derive(Serialize)]
struct GoldenDoc {
    /// `matched`, `accepted`, `missing`, `differs`, `not compared`.
    status: &'static str,
    path: String,
    new: String,
    diff: Vec<DiffLine>,
}

#[derive(Serialize)]
struct DiffLine {
    /// `add`, `del`, `hunk` or empty.
    class: &'static str,
    text: String,
}

#[derive(Serialize)]
struct ChartDoc {
    /// What the chart shows, for tests and people reading the source: `latency`, `requests`, ...
    id: &'static str,
    title: &'static str,
    svg: String,
    error: String,
    note: String,
}

#[derive(Serialize)]
struct RuleDoc {
    name: String,
    kind: String,
    fired: u64,
    results: String,
}

#[derive(Serialize)]
struct TargetDoc {
    path: String,
    requests: u64,
    success: String,
    results: String,
    p50: String,
    p99: String,
    max: String,
}

#[derive(Serialize)]
struct ProxyDoc {
    name: String,
    calls: u64,
    max_per_request: u64,
    results: String,
    faults: String,
    per_request: String,
    unclaimed: u64,
}

fn scenario_doc(section: Section<'_>) -> ScenarioDoc {
    let Section { played, scenario } = section;
    let verdict = played.verdict();
    ScenarioDoc {
        name: played.name.clone(),
        anchor: anchor(&played.name),
        file: played.file.display().to_string(),
        description: scenario.map(|s| s.description.clone()).unwrap_or_default(),
        seed: scenario.map(|s| s.seed),
        clock: match scenario.map(|s| s.clock) {
            Some(Clock::Virtual) => "virtual",
            Some(Clock::Real) => "real",
            None => "",
        },
        verdict: verdict.label(),
        reason: verdict.reason(),
        run: played.result.as_ref().ok().map(|r| run_doc(r, scenario)),
    }
}

/// An id for links: letters, digits and dashes.
fn anchor(name: &str) -> String {
    let a: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("scenario-{a}")
}

const LATENCY_NOTE: &str = "Percentiles of the requests sent in each time bucket (retries and \
    backoff included, from their intended send time). Below: one band per fault rule, a bar as tall \
    as the attempts it fired on in that bucket, relative to its busiest bucket; the total is in \
    brackets.";
const REQUESTS_NOTE: &str = "Requests by their intended send time, stacked by final result (after \
    retries); retries by the time they were sent.";

fn run_doc(report: &RunReport, scenario: Option<&Scenario>) -> RunDoc {
    let s = &report.summary;
    let mut charts = Vec::new();
    let rules = rule_names(scenario, report.timeline.as_ref());
    if let Some(t) = &report.timeline {
        let latency = chart::latency_over_time(t, &rules);
        charts.push(chart(
            "latency",
            "Latency over time, with fault activity",
            latency,
            LATENCY_NOTE,
        ));
        let requests = chart::requests_over_time(t);
        charts.push(chart(
            "requests",
            "Requests and retries per second",
            requests,
            REQUESTS_NOTE,
        ));
    }
    let mut curves: Vec<(&str, &Latency)> = vec![("request (retries included)", &s.latency)];
    if s.attempt_latency.count() > 0 {
        curves.push(("attempt", &s.attempt_latency));
    }
    charts.push(chart(
        "percentiles",
        "Latency distribution",
        chart::percentile_curve(&curves),
        "The whole run's HDR histograms, from the median to p99.99 on a scale of nines.",
    ));
    if let Some(topology) = scenario.and_then(|s| s.topology.as_ref()) {
        let (nodes, edges) = topology_graph(topology, s);
        charts.push(chart(
            "topology",
            "Topology",
            chart::topology(&nodes, &edges),
            "The load, the services under test, the named proxies in front of their dependencies, and what went along each arrow.",
        ));
    }
    RunDoc {
        interrupted: report.interrupted,
        counts: counts(s),
        expectations: report
            .expectations
            .iter()
            .map(|v| ExpectationDoc {
                name: v.name.clone(),
                threshold: v.threshold.clone(),
                measured: v.measured.clone(),
                passed: v.passed,
            })
            .collect(),
        golden: golden_doc(report.golden.as_ref()),
        charts,
        rules: rule_docs(&rules, scenario, report.timeline.as_ref(), s),
        targets: s
            .targets
            .iter()
            .map(|(path, t)| TargetDoc {
                path: path.clone(),
                requests: t.requests,
                success: percent(t.success_rate()),
                results: join(
                    t.statuses
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .chain(t.errors.iter().map(|(k, v)| (k.clone(), *v))),
                ),
                p50: format_millis(t.latency.quantile(0.5)),
                p99: format_millis(t.latency.quantile(0.99)),
                max: format_millis(t.latency.max()),
            })
            .collect(),
        proxies: s
            .proxies
            .iter()
            .map(|(name, p)| ProxyDoc {
                name: name.clone(),
                calls: p.calls,
                max_per_request: p.max_per_request,
                results: join(
                    p.statuses
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .chain(p.errors.iter().map(|(k, v)| (k.clone(), *v))),
                ),
                faults: join(p.faults.iter().map(|(k, v)| (k.clone(), *v))),
                per_request: report
                    .timeline
                    .as_ref()
                    .and_then(|t| t.calls_per_request().get(name))
                    .map(|counts| {
                        join(
                            counts
                                .iter()
                                .map(|(calls, n)| (format!("{calls} calls"), *n)),
                        )
                    })
                    .unwrap_or_default(),
                unclaimed: p.unattributed(),
            })
            .collect(),
        bucket: report
            .timeline
            .as_ref()
            .map(|t| span(t.width()))
            .unwrap_or_default(),
        warnings: report.warnings.clone(),
    }
}

fn chart(
    id: &'static str,
    title: &'static str,
    drawn: Result<String, String>,
    note: &'static str,
) -> ChartDoc {
    let (svg, error) = match drawn {
        Ok(svg) => (svg, String::new()),
        Err(e) => (String::new(), e),
    };
    ChartDoc {
        id,
        title,
        svg,
        error,
        note: note.to_string(),
    }
}

fn counts(s: &Summary) -> Vec<(String, String)> {
    let l = &s.latency;
    vec![
        ("requests".into(), s.requests.to_string()),
        (
            "succeeded".into(),
            format!("{} ({})", s.succeeded, percent(s.success_rate())),
        ),
        (
            "attempts".into(),
            format!("{} ({} retries)", s.attempts, s.retries),
        ),
        (
            "results".into(),
            join(
                s.statuses
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .chain(s.errors.iter().map(|(k, v)| (k.clone(), *v))),
            ),
        ),
        (
            "latency".into(),
            format!(
                "p50 {}  p90 {}  p99 {}  max {}",
                format_millis(l.quantile(0.5)),
                format_millis(l.quantile(0.9)),
                format_millis(l.quantile(0.99)),
                format_millis(l.max())
            ),
        ),
        ("run time".into(), span(s.elapsed)),
    ]
}

fn golden_doc(golden: Option<&golden::Comparison>) -> GoldenDoc {
    let doc = |status, path: &std::path::Path| GoldenDoc {
        status,
        path: path.display().to_string(),
        new: String::new(),
        diff: Vec::new(),
    };
    match golden {
        None => GoldenDoc {
            status: "not compared",
            path: String::new(),
            new: String::new(),
            diff: Vec::new(),
        },
        Some(golden::Comparison::Matched { path }) => doc("matched", path),
        Some(golden::Comparison::Accepted { path }) => doc("accepted", path),
        Some(golden::Comparison::Missing { path, new }) => GoldenDoc {
            new: new
                .as_ref()
                .map(|n| n.display().to_string())
                .unwrap_or_default(),
            ..doc("missing", path)
        },
        Some(golden::Comparison::Mismatch { path, new, diff }) => GoldenDoc {
            new: new
                .as_ref()
                .map(|n| n.display().to_string())
                .unwrap_or_default(),
            diff: diff
                .lines()
                .map(|line| DiffLine {
                    class: match line.as_bytes().first() {
                        Some(b'+') if !line.starts_with("+++") => "add",
                        Some(b'-') if !line.starts_with("---") => "del",
                        Some(b'@') => "hunk",
                        _ => "",
                    },
                    text: line.to_string(),
                })
                .collect(),
            ..doc("differs", path)
        },
    }
}

/// The rules in the scenario's order (the single proxy's, then each named proxy's as
/// `proxy/rule`), then any other rule the outcomes name.
fn rule_names(scenario: Option<&Scenario>, timeline: Option<&Timeline>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if let Some(s) = scenario {
        names.extend(s.faults.iter().map(|r| r.name.clone()));
        for p in s.topology.iter().flat_map(|t| &t.proxies) {
            names.extend(p.faults.iter().map(|r| format!("{}/{}", p.name, r.name)));
        }
    }
    for rule in timeline.iter().flat_map(|t| t.rules().keys()) {
        if !names.contains(rule) {
            names.push(rule.clone());
        }
    }
    names
}

fn rule_docs(
    names: &[String],
    scenario: Option<&Scenario>,
    timeline: Option<&Timeline>,
    summary: &Summary,
) -> Vec<RuleDoc> {
    let declared_kind = |name: &str| -> Option<&'static str> {
        let s = scenario?;
        if let Some(r) = s.faults.iter().find(|r| r.name == name) {
            return Some(r.action.kind());
        }
        let (proxy, rule) = name.split_once('/')?;
        let p = s.topology.as_ref()?.proxy(proxy)?;
        p.faults
            .iter()
            .find(|r| r.name == rule)
            .map(|r| r.action.kind())
    };
    names
        .iter()
        .map(|name| {
            let stats = timeline.and_then(|t| t.rules().get(name));
            let fired = stats
                .map(|s| s.fired)
                .or_else(|| summary.faults.get(name).copied())
                .unwrap_or(0);
            RuleDoc {
                name: name.clone(),
                kind: declared_kind(name)
                    .map(str::to_string)
                    .or_else(|| stats.map(|s| s.kind.clone()))
                    .unwrap_or_default(),
                fired,
                results: stats
                    .map(|s| join(s.results.iter().map(|(k, v)| (k.clone(), *v))))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// The boxes and arrows of a topology: the load, the services, the named proxies and what each
/// proxy forwards to, with the requests and calls that went along each arrow.
fn topology_graph(t: &Topology, s: &Summary) -> (Vec<chart::Node>, Vec<chart::Edge>) {
    let mut nodes = vec![chart::Node {
        name: "load".into(),
        kind: "load",
        column: 0,
    }];
    let mut edges = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    // Columns: the entry at 1, then whatever it reaches one step further.
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    let entry = t.entry.name().to_string();
    depth.insert(entry.clone(), 1);
    // Who calls whom: a service calls the proxies and services its command and env name; a
    // proxy calls the service behind it.
    let mut calls: Vec<(String, String)> = Vec::new();
    for service in &t.services {
        let templates = service
            .command
            .iter()
            .chain(service.env.iter().map(|(_, v)| v));
        for target in templates.flat_map(referenced) {
            if !calls.contains(&(service.name.clone(), target.clone())) {
                calls.push((service.name.clone(), target));
            }
        }
    }
    for p in &t.proxies {
        if let ProxyUpstream::Service(name) = &p.upstream {
            calls.push((p.name.clone(), name.clone()));
        }
    }
    // Longest-path depths, bounded by the node count (services start in an order without cycles).
    let names = t.services.len() + t.proxies.len();
    for _ in 0..names {
        for (from, to) in &calls {
            if let Some(d) = depth.get(from).copied() {
                let next = (d + 1).min(names + 1);
                let e = depth.entry(to.clone()).or_insert(next);
                *e = (*e).max(next).min(names + 1);
            }
        }
    }
    let mut add = |name: &str, kind: &'static str, nodes: &mut Vec<chart::Node>| -> usize {
        if let Some(i) = index.get(name) {
            return *i;
        }
        let column = depth.get(name).copied().unwrap_or(1);
        nodes.push(chart::Node {
            name: name.to_string(),
            kind,
            column,
        });
        index.insert(name.to_string(), nodes.len() - 1);
        nodes.len() - 1
    };
    let kind_of = |name: &str| {
        if t.service(name).is_some() {
            "service"
        } else {
            "proxy"
        }
    };
    let first = add(&entry, kind_of(&entry), &mut nodes);
    let load_label = match &t.client {
        Some(_) => "load.command".to_string(),
        None => format!("{} requests", s.requests),
    };
    edges.push(chart::Edge {
        from: 0,
        to: first,
        label: load_label,
    });
    for (from, to) in &calls {
        let f = add(from, kind_of(from), &mut nodes);
        let to_index = add(to, kind_of(to), &mut nodes);
        let label = match s.proxies.get(to) {
            Some(p) if s.requests > 0 => format!(
                "{} calls ({:.2}/request)",
                p.calls,
                p.calls as f64 / s.requests as f64
            ),
            Some(p) => format!("{} calls", p.calls),
            None => String::new(),
        };
        edges.push(chart::Edge {
            from: f,
            to: to_index,
            label,
        });
    }
    for p in &t.proxies {
        let from = add(&p.name, "proxy", &mut nodes);
        let column = nodes[from].column + 1;
        let (name, kind) = match &p.upstream {
            ProxyUpstream::Service(_) => continue,
            ProxyUpstream::Mock(_) => (format!("{} (mock)", p.name), "mock"),
            ProxyUpstream::Url(url) => (text_of(url), "url"),
        };
        nodes.push(chart::Node { name, kind, column });
        // What the proxy forwarded is not counted (an injected error is answered without it).
        edges.push(chart::Edge {
            from,
            to: nodes.len() - 1,
            label: String::new(),
        });
    }
    (nodes, edges)
}

/// The services and proxies a template names.
fn referenced(template: &Template) -> Vec<String> {
    template
        .pieces
        .iter()
        .filter_map(|p| match p {
            Piece::ProxyUrl(n) | Piece::ServiceUrl(n) | Piece::ProxyCaFile(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// A template as written, placeholders in braces, shortened for a box.
fn text_of(template: &Template) -> String {
    let text: String = template
        .pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.clone(),
            Piece::Port => "{port}".into(),
            Piece::ServiceUrl(n) => format!("{{services.{n}.url}}"),
            Piece::ProxyUrl(n) => format!("{{proxies.{n}.url}}"),
            Piece::ProxyCaFile(n) => format!("{{proxies.{n}.ca_file}}"),
            Piece::ScenarioDir => "{scenario_dir}".into(),
        })
        .collect();
    let text = text
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    match text.char_indices().nth(22) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// `59m 58s`, `30s`, `250ms`: a span of run time, to the second past a minute.
fn span(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, _) if d.subsec_nanos() != 0 || secs == 0 => format_millis(d),
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, s) => format!("{h}h {m}m {s}s"),
    }
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_string(), |s| format!("{:.1}%", s * 100.0))
}

/// `200 × 1450, 503 × 350`.
fn join(items: impl Iterator<Item = (String, u64)>) -> String {
    items
        .map(|(k, v)| format!("{k} × {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{expectation, played, report};

    #[test]
    fn every_scenario_gets_a_section_and_text_is_escaped() {
        let mut failed = report(vec![expectation("success_rate", false)], None);
        failed.scenario = "<b>checkout</b>".into();
        let list = [
            played("<b>checkout</b>", Ok(failed)),
            played("down", Err("cannot start the proxy".into())),
        ];
        let html = html_string(&sections(&list, &[])).unwrap_or_default();
        assert!(html.contains("&lt;b&gt;checkout&lt;&#x2f;b&gt;"), "{html}");
        assert!(!html.contains("<b>checkout"), "{html}");
        assert!(html.contains("data-verdict=\"fail\""), "{html}");
        assert!(html.contains("data-verdict=\"error\""), "{html}");
        assert!(html.contains("cannot start the proxy"), "{html}");
        // Without a timeline, the distribution is still drawn; nothing refers to the network.
        assert!(html.contains("data-chart=\"percentiles\""), "{html}");
        assert!(!html.contains("data-chart=\"latency\""), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(
            !html.contains("src=") && !html.contains("href=\"http"),
            "{html}"
        );
    }
}
