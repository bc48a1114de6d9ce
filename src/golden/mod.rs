//! Golden snapshots: the reviewable body of a run, stored as `golden/<scenario>.snap` in insta's
//! file format (a YAML header between `---` lines, then the body), so `cargo insta review` and
//! `cargo insta accept` work on what `traceforge run` writes. In real time the body holds no
//! wall-clock values: counts, statuses, faults and ids only. On the virtual clock every latency is
//! exact, so the body also holds each attempt's latency and the latency percentiles (but not start
//! times, which depend on the concurrency of a closed loop).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::record::{Outcome, Summary};
use crate::scenario::{Clock, Scenario};

/// One request's golden line, in columns: target, final result, trace id, then every attempt with
/// its result and the faults that fired:
/// `#0007 GET /api/resource  200  trace 3f2a...  attempts: 503 [api-503] -> 200`; a WebSocket
/// attempt adds what became of its messages: `101 [ws-cut] ws 3/5 echoed, closed 1011`.
#[derive(Debug, Clone)]
struct Line {
    index: u64,
    target: String,
    attempts: String,
    result: String,
    trace: String,
    /// With services in the loop: one line per named proxy, its calls in order.
    calls: Vec<String>,
}

impl Line {
    /// With `exact`, each attempt's latency follows its result: on the virtual clock it is exact,
    /// and the same at any concurrency.
    fn of(o: &Outcome, exact: bool) -> Line {
        let attempts: Vec<String> = o
            .attempts
            .iter()
            .map(|a| {
                let mut result = match (a.status, a.error) {
                    (Some(s), _) => s.to_string(),
                    (None, Some(e)) => e.to_string(),
                    (None, None) => "none".to_string(),
                };
                if !a.faults.is_empty() {
                    result = format!("{result} [{}]", a.faults.join(", "));
                }
                // A WebSocket's messages follow its handshake: `101 [rules] ws 3/5 echoed, ...`.
                if let Some(ws) = &a.websocket {
                    result = format!("{result} {}", ws.label());
                }
                if exact {
                    result = format!("{result} {}", exact_ms(a.latency));
                }
                result
            })
            .collect();
        Line {
            index: o.index,
            target: format!("{} {}", o.method, o.path),
            attempts: attempts.join(" -> "),
            result: o.final_label(),
            trace: if o.trace_id.is_empty() {
                "-".to_string()
            } else {
                o.trace_id.clone()
            },
            calls: o
                .calls
                .iter()
                .map(|(proxy, calls)| {
                    let calls: Vec<String> = calls
                        .iter()
                        .map(|c| {
                            if exact {
                                format!("{} {}", c.label(), exact_ms(c.latency))
                            } else {
                                c.label()
                            }
                        })
                        .collect();
                    format!("{proxy}: {}", calls.join(" -> "))
                })
                .collect(),
        }
    }
}

/// Renders one request as a golden line, without column padding.
pub fn request_line(o: &Outcome) -> String {
    let l = Line::of(o, false);
    format!(
        "#{:04} {}  {}  trace {}  attempts: {}",
        l.index, l.target, l.result, l.trace, l.attempts
    )
}

/// Runs of more requests than this keep their counts in the golden body but not one line per
/// request: a million-line snapshot is not reviewable, and the lines would be held in memory.
pub const MAX_REQUEST_LINES: u64 = 10_000;

/// What the golden body of a scenario can hold.
#[derive(Debug, Clone, PartialEq, Default)]
enum Keep {
    /// Counts and one line per request.
    #[default]
    All,
    /// Counts only; the reason is written in the body.
    Counts(String),
    /// Neither: the request count depends on the server's speed. The reason is written in the body.
    Nothing(String),
}

/// A latency as the virtual clock measures it: whole milliseconds when it is one, else microseconds.
fn exact_ms(d: Duration) -> String {
    if d.subsec_nanos() % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}ms", d.as_secs_f64() * 1e3)
    }
}

/// A call no load request claimed, as its golden line shows it, and where it sorts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Stray {
    proxy: String,
    /// Calls with a trace context first, by context and ordinal; then arrival-ordered ones.
    arrival: Option<u64>,
    context: String,
    ordinal: u32,
    label: String,
}

/// Builds the golden body incrementally: requests may finish in any order.
#[derive(Debug, Default)]
pub struct BodyBuilder {
    lines: Vec<Line>,
    strays: Vec<Stray>,
    keep: Keep,
    /// The virtual clock: timing is exact and goes into the body.
    exact: bool,
}

impl BodyBuilder {
    /// What the scenario's golden body holds depends on its load profile: a closed loop with a
    /// duration or concurrency stages sends as many requests as the server allows, so its body
    /// keeps only what the scenario says (no counts, no per-request lines); a run of more than
    /// [`MAX_REQUEST_LINES`] requests keeps its counts but not its lines.
    ///
    /// On the virtual clock the request count never depends on speed (servers take no time), so
    /// every profile keeps its lines, up to the same cap.
    pub fn for_scenario(scenario: &Scenario) -> BodyBuilder {
        let exact = scenario.clock == Clock::Virtual;
        let keep = match scenario.load.profile.fixed_count() {
            None if exact => Keep::All,
            None => Keep::Nothing(format!(
                "per-request lines and counts omitted: {} sends as many requests as the server allows; check [expect] instead",
                scenario.load.profile
            )),
            Some(n) if n > MAX_REQUEST_LINES => Keep::Counts(format!(
                "per-request lines omitted: {n} requests, more than the {MAX_REQUEST_LINES} a golden file lists"
            )),
            Some(_) => Keep::All,
        };
        BodyBuilder {
            lines: Vec::new(),
            strays: Vec::new(),
            keep,
            exact,
        }
    }

    /// A call no load request claimed: listed after the requests, marked by how it was decided.
    pub fn push_unattributed(&mut self, u: &crate::record::calls::Unattributed) {
        if self.keep != Keep::All || self.strays.len() as u64 >= MAX_REQUEST_LINES {
            return;
        }
        self.strays.push(Stray {
            proxy: u.proxy.clone(),
            arrival: u.context.is_none().then_some(u.arrival),
            context: u.context.clone().unwrap_or_default(),
            ordinal: u.call.ordinal,
            label: u.call.label(),
        });
    }

    pub fn push(&mut self, outcome: &Outcome) {
        if self.keep != Keep::All {
            return;
        }
        if self.lines.len() as u64 >= MAX_REQUEST_LINES {
            // A count known only at the end (a virtual closed loop with a duration) crossed the cap.
            self.lines = Vec::new();
            self.keep = Keep::Counts(format!(
                "per-request lines omitted: more than the {MAX_REQUEST_LINES} requests a golden file lists"
            ));
            return;
        }
        self.lines.push(Line::of(outcome, self.exact));
    }

    /// The body: scenario, seed, rules, counts, then one line per request in index order, in
    /// aligned columns.
    pub fn finish(mut self, scenario: &Scenario, summary: &Summary) -> String {
        self.lines.sort_by_key(|l| l.index);
        let mut out = String::new();
        let _ = writeln!(out, "scenario:     {}", scenario.name);
        let _ = writeln!(out, "seed:         {}", scenario.seed);
        for rule in &scenario.faults {
            let _ = writeln!(out, "rule:         {rule}");
        }
        if let Some(topology) = &scenario.topology {
            for service in &topology.services {
                let _ = writeln!(out, "service:      {}", service.name);
            }
            for proxy in &topology.proxies {
                let _ = writeln!(
                    out,
                    "proxy:        {} -> {}",
                    proxy.name,
                    upstream_label(&proxy.upstream)
                );
                for rule in &proxy.faults {
                    let _ = writeln!(out, "rule:         {}: {rule}", proxy.name);
                }
            }
            match &topology.client {
                Some(_) => {
                    let _ = writeln!(out, "load:         the client command");
                }
                None => {
                    let _ = writeln!(out, "load:         to {}", topology.entry.name());
                }
            }
        }
        if self.exact {
            let _ = writeln!(out, "clock:        virtual (latencies are exact)");
        }
        let client = scenario
            .topology
            .as_ref()
            .is_some_and(|t| t.client.is_some());
        let mut counts = if client {
            // The user's client is the load: there are no load requests to count, only calls.
            summary.render_calls()
        } else {
            summary.render_counts()
        };
        if self.exact {
            counts.push_str(&summary.render_latency());
        }
        match &self.keep {
            Keep::All => {}
            Keep::Counts(why) => {
                out.push_str(&counts);
                let _ = writeln!(out, "\n{why}");
                return out;
            }
            Keep::Nothing(why) => {
                let _ = writeln!(out, "load:         {}", scenario.load.profile);
                let _ = writeln!(out, "\n{why}");
                return out;
            }
        }
        out.push_str(&counts);
        out.push('\n');
        let target = self.lines.iter().map(|l| l.target.len()).max().unwrap_or(0);
        let result = self.lines.iter().map(|l| l.result.len()).max().unwrap_or(0);
        for l in &self.lines {
            let _ = writeln!(
                out,
                "#{:04} {:<target$}  {:<result$}  trace {}  attempts: {}",
                l.index, l.target, l.result, l.trace, l.attempts
            );
            for calls in &l.calls {
                let _ = writeln!(out, "      {calls}");
            }
        }
        if !self.strays.is_empty() {
            self.strays.sort();
            let _ = writeln!(
                out,
                "\ncalls outside any load request, by trace context, then by arrival:"
            );
            for s in &self.strays {
                match s.arrival {
                    None => {
                        let _ = writeln!(
                            out,
                            "{}: trace {} call {}: {}",
                            s.proxy, s.context, s.ordinal, s.label
                        );
                    }
                    Some(n) => {
                        let _ = writeln!(
                            out,
                            "{}: arrival #{n}: {}  (decided by arrival order: not deterministic)",
                            s.proxy, s.label
                        );
                    }
                }
            }
        }
        out
    }
}

/// What a named proxy forwards to, as the golden header shows it (no ports: they change).
fn upstream_label(upstream: &crate::scenario::topology::ProxyUpstream) -> String {
    use crate::scenario::topology::ProxyUpstream;
    match upstream {
        ProxyUpstream::Mock(routes) if routes.is_empty() => "demo upstream".to_string(),
        ProxyUpstream::Mock(routes) if routes.len() == 1 => "mock (1 route)".to_string(),
        ProxyUpstream::Mock(routes) => format!("mock ({} routes)", routes.len()),
        ProxyUpstream::Url(_) => "url".to_string(),
        ProxyUpstream::Service(name) => format!("service {name}"),
    }
}

/// The golden file of a scenario: `<dir>/<name>.snap`.
pub fn snap_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.snap"))
}

/// Where a rejected result is written for review: `<dir>/<name>.snap.new`.
pub fn new_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.snap.new"))
}

/// The file text: insta's header, then the body.
pub fn to_file(scenario: &Scenario, body: &str) -> String {
    let mut out = String::from("---\n");
    out.push_str("source: traceforge run\n");
    let _ = writeln!(out, "description: {}", yaml_string(&scenario.description));
    let _ = writeln!(out, "expression: {}", yaml_string(&scenario.name));
    out.push_str("---\n");
    out.push_str(body.trim_end());
    out.push('\n');
    out
}

/// The body of a snapshot file: everything after the header. A file without a header is all body.
pub fn body_of(file: &str) -> &str {
    let Some(rest) = file.strip_prefix("---\n") else {
        return file;
    };
    match rest.find("\n---\n") {
        Some(i) => &rest[i + 5..],
        None => file,
    }
}

fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// The result of comparing a run with its golden file.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// The body matched the golden file.
    Matched { path: PathBuf },
    /// `--accept`: the golden file was (re)written.
    Accepted { path: PathBuf },
    /// There is no golden file yet.
    Missing { path: PathBuf, new: Option<PathBuf> },
    /// The body differs; `diff` is readable, `new` is where the result was written for review.
    Mismatch {
        path: PathBuf,
        new: Option<PathBuf>,
        diff: String,
    },
}

impl Comparison {
    pub fn passed(&self) -> bool {
        matches!(
            self,
            Comparison::Matched { .. } | Comparison::Accepted { .. }
        )
    }
}

/// What to do with a result that does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Write the result as the golden file.
    pub accept: bool,
    /// Write `<name>.snap.new` on a mismatch.
    pub write_new: bool,
}

impl Policy {
    /// Locally a mismatch always leaves a `.snap.new` for review; with `CI` set only when asked.
    pub fn from_env(accept: bool, write_new: bool) -> Self {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
        Policy {
            accept,
            write_new: write_new || !ci,
        }
    }
}

/// Compares `body` with the golden file in `dir` and applies `policy`.
pub fn check(
    dir: &Path,
    scenario: &Scenario,
    body: &str,
    policy: Policy,
) -> io::Result<Comparison> {
    let path = snap_path(dir, &scenario.name);
    let new = new_path(dir, &scenario.name);
    if policy.accept {
        std::fs::create_dir_all(dir)?;
        std::fs::write(&path, to_file(scenario, body))?;
        remove_if_present(&new)?;
        return Ok(Comparison::Accepted { path });
    }
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(text) = &existing {
        if normalize(body_of(text)) == normalize(body) {
            remove_if_present(&new)?;
            return Ok(Comparison::Matched { path });
        }
    }
    let written = if policy.write_new {
        std::fs::create_dir_all(dir)?;
        std::fs::write(&new, to_file(scenario, body))?;
        Some(new)
    } else {
        None
    };
    Ok(match existing {
        None => Comparison::Missing { path, new: written },
        Some(text) => Comparison::Mismatch {
            diff: diff(body_of(&text), body),
            path,
            new: written,
        },
    })
}

/// Compares `body` with the golden file in `dir`, writing and removing nothing: for reports made
/// again from saved outcomes (`traceforge report`).
pub fn compare(dir: &Path, scenario: &Scenario, body: &str) -> io::Result<Comparison> {
    let path = snap_path(dir, &scenario.name);
    match std::fs::read_to_string(&path) {
        Ok(text) if normalize(body_of(&text)) == normalize(body) => {
            Ok(Comparison::Matched { path })
        }
        Ok(text) => Ok(Comparison::Mismatch {
            diff: diff(body_of(&text), body),
            path,
            new: None,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Ok(Comparison::Missing { path, new: None })
        }
        Err(e) => Err(e),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Line endings and trailing whitespace are not differences (editors and insta may touch them).
fn normalize(body: &str) -> String {
    body.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

/// A unified diff of the golden body (`-`) against the new one (`+`), with three lines of context.
pub fn diff(old: &str, new: &str) -> String {
    let old = normalize(old) + "\n";
    let new = normalize(new) + "\n";
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header("golden", "this run")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_survives_the_file_format() {
        let file = "---\nsource: traceforge run\nexpression: \"x\"\n---\nline 1\nline 2\n";
        assert_eq!(body_of(file), "line 1\nline 2\n");
        assert_eq!(body_of("no header\n"), "no header\n");
    }

    fn scenario(load: &str) -> Scenario {
        crate::scenario::parse_str("t.toml", &format!("name = \"t\"\n[load]\n{load}\n"), &[])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn large_and_open_ended_runs_keep_no_per_request_lines() {
        let big = scenario("requests = 20000");
        let mut body = BodyBuilder::for_scenario(&big);
        let outcome = crate::record::Outcome {
            index: 0,
            method: "GET".into(),
            path: "/".into(),
            status: Some(200),
            error: None,
            trace_id: String::new(),
            attempts: Vec::new(),
            start: std::time::Duration::ZERO,
            scheduled: std::time::Duration::ZERO,
            latency: std::time::Duration::ZERO,
            service: std::time::Duration::ZERO,
            protocol: Default::default(),
            calls: Default::default(),
        };
        body.push(&outcome);
        assert!(body.lines.is_empty(), "nothing is held per request");
        let mut summary = Summary::default();
        summary.push(&outcome);
        let text = body.finish(&big, &summary);
        assert!(text.contains("requests:     1\n"), "{text}");
        assert!(
            text.ends_with("\nper-request lines omitted: 20000 requests, more than the 10000 a golden file lists\n"),
            "{text}"
        );

        let timed = scenario("duration = \"1s\"\nconcurrency = 4");
        let mut body = BodyBuilder::for_scenario(&timed);
        body.push(&outcome);
        let text = body.finish(&timed, &summary);
        assert_eq!(
            text,
            "scenario:     t\nseed:         0\nload:         closed loop at concurrency 4 for 1s\n\n\
             per-request lines and counts omitted: closed loop at concurrency 4 for 1s sends as many requests as the server allows; check [expect] instead\n"
        );

        let small = scenario("rate = 10\nrequests = 3");
        let mut body = BodyBuilder::for_scenario(&small);
        body.push(&outcome);
        assert!(body.finish(&small, &summary).contains("#0000 GET /"));
    }

    #[test]
    fn diffs_are_unified_and_readable() {
        let d = diff("a\nb\nc\n", "a\nB\nc\n");
        assert!(d.contains("-b\n"), "{d}");
        assert!(d.contains("+B\n"), "{d}");
        assert!(d.contains("--- golden"), "{d}");
    }
}
