//! Machine-readable reports of `traceforge run` for CI: a JUnit XML file (`--junit`) and a JSON
//! summary (`--summary-json`). Both are built from the same list of played scenarios.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::golden::Verdict as Golden;
use crate::record::Summary;
use crate::record::summary::Latency;
use crate::runner::RunReport;

/// The version of the `--summary-json` shape; bumped when a field changes meaning or goes away.
pub const SUMMARY_VERSION: u64 = 1;

/// One scenario as `traceforge run` played it.
#[derive(Debug)]
pub struct Played {
    pub file: PathBuf,
    pub name: String,
    /// `Err`: a runtime failure (could not bind, upstream unreachable, I/O).
    pub result: Result<RunReport, String>,
}

impl Played {
    /// `pass`, `fail`, `stopped` or `error`, and why when not `pass`.
    pub fn verdict(&self) -> (&'static str, String) {
        match &self.result {
            Err(e) => ("error", e.clone()),
            Ok(r) => {
                let (_, label, why) = super::run::verdict(r);
                let label = match label {
                    "PASS" => "pass",
                    "STOPPED" => "stopped",
                    _ => "fail",
                };
                (label, why)
            }
        }
    }
}

/// Escapes text for XML attribute values and element content.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot hold at all (control characters from a server's body).
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The JUnit file: one `<testsuite name="traceforge">`; per scenario one `<testcase>` named after
/// it carrying its overall verdict (golden snapshot and expectations; a `<failure>` lists every
/// reason, an `<error>` a runtime failure or an interrupted run), then one `<testcase>` per
/// expectation named `<scenario>: <expectation> <threshold>` with a `<failure>` when it failed.
pub fn write_junit<W: Write>(mut w: W, played: &[Played], reports: &[String]) -> io::Result<()> {
    let mut cases = String::new();
    let (mut tests, mut failures, mut errors) = (0u64, 0u64, 0u64);
    let mut total_time = 0.0;
    for (p, text) in played.iter().zip(reports) {
        let classname = format!("traceforge.{}", p.name);
        let time = match &p.result {
            Ok(r) => r.summary.elapsed.as_secs_f64(),
            Err(_) => 0.0,
        };
        total_time += time;
        tests += 1;
        let (label, why) = p.verdict();
        let _ = writeln!(
            cases,
            "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" time=\"{time:.3}\">",
            xml(&classname),
            xml(&p.name),
            xml(&p.file.display().to_string())
        );
        match label {
            "pass" => {}
            "fail" => {
                failures += 1;
                let _ = writeln!(
                    cases,
                    "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                    xml(&why),
                    failure_type(p),
                    xml(text)
                );
            }
            _ => {
                errors += 1;
                let _ = writeln!(
                    cases,
                    "      <error message=\"{}\" type=\"{label}\">{}</error>",
                    xml(&why),
                    xml(text)
                );
            }
        }
        let _ = writeln!(cases, "      <system-out>{}</system-out>", xml(text));
        cases.push_str("    </testcase>\n");
        let Ok(report) = &p.result else { continue };
        for v in &report.expectations {
            tests += 1;
            let name = format!("{}: {} {}", p.name, v.name, v.threshold);
            if v.passed {
                let _ = writeln!(
                    cases,
                    "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"/>",
                    xml(&classname),
                    xml(&name)
                );
            } else {
                failures += 1;
                let message = format!("{} {}: measured {}", v.name, v.threshold, v.measured);
                let _ = write!(
                    cases,
                    "    <testcase classname=\"{}\" name=\"{}\" time=\"0\">\n      <failure message=\"{}\" type=\"expectation\">{}</failure>\n    </testcase>\n",
                    xml(&classname),
                    xml(&name),
                    xml(&message),
                    xml(&message)
                );
            }
        }
    }
    write!(
        w,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"traceforge\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{total_time:.3}\">\n  <testsuite name=\"traceforge\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{total_time:.3}\">\n{cases}  </testsuite>\n</testsuites>\n"
    )
}

fn failure_type(p: &Played) -> &'static str {
    let Ok(r) = &p.result else { return "error" };
    let golden_failed = !r.golden.as_ref().is_some_and(Golden::passed);
    let expect_failed = r.expectations.iter().any(|v| !v.passed);
    match (golden_failed, expect_failed) {
        (true, true) => "golden+expectation",
        (true, false) => "golden",
        _ => "expectation",
    }
}

/// The `--summary-json` document (shape documented in the README, versioned by `version`).
pub fn summary_json(played: &[Played]) -> Value {
    let scenarios: Vec<Value> = played.iter().map(scenario_json).collect();
    let passed = played.iter().all(|p| p.verdict().0 == "pass");
    json!({
        "version": SUMMARY_VERSION,
        "passed": passed,
        "scenarios": scenarios,
    })
}

fn scenario_json(p: &Played) -> Value {
    let (result, reason) = p.verdict();
    let mut out = json!({
        "name": p.name,
        "file": p.file.display().to_string(),
        "result": result,
        "reason": reason,
    });
    let Ok(r) = &p.result else { return out };
    out["summary"] = summary(&r.summary);
    out["expectations"] = json!(r.expectations);
    out["golden"] = match &r.golden {
        None => json!({ "result": "not_compared", "path": null, "new": null }),
        Some(Golden::Matched { path }) => {
            json!({ "result": "matched", "path": path.display().to_string(), "new": null })
        }
        Some(Golden::Accepted { path }) => {
            json!({ "result": "accepted", "path": path.display().to_string(), "new": null })
        }
        Some(Golden::Missing { path, new }) => json!({
            "result": "missing",
            "path": path.display().to_string(),
            "new": new.as_ref().map(|n| n.display().to_string()),
        }),
        Some(Golden::Mismatch { path, new, .. }) => json!({
            "result": "mismatch",
            "path": path.display().to_string(),
            "new": new.as_ref().map(|n| n.display().to_string()),
        }),
    };
    out["interrupted"] = json!(r.interrupted);
    out
}

fn latency(l: &Latency) -> Value {
    use crate::record::summary::ms;
    json!({
        "p50": ms(l.quantile(0.5)),
        "p90": ms(l.quantile(0.9)),
        "p99": ms(l.quantile(0.99)),
        "max": ms(l.max()),
        "mean": ms(l.mean()),
    })
}

fn counts<K: ToString>(map: &std::collections::BTreeMap<K, u64>) -> Value {
    Value::Object(map.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
}

/// The summary of one run: counts, latencies in milliseconds, per-target breakdown.
pub fn summary(s: &Summary) -> Value {
    let targets: serde_json::Map<String, Value> = s
        .targets
        .iter()
        .map(|(path, t)| {
            (
                path.clone(),
                json!({
                    "requests": t.requests,
                    "succeeded": t.succeeded,
                    "statuses": counts(&t.statuses),
                    "errors": counts(&t.errors),
                    "latency_ms": latency(&t.latency),
                }),
            )
        })
        .collect();
    json!({
        "requests": s.requests,
        "succeeded": s.succeeded,
        "success_rate": s.success_rate(),
        "attempts": s.attempts,
        "retries": s.retries,
        "late": s.late,
        "statuses": counts(&s.statuses),
        "errors": counts(&s.errors),
        "faults": counts(&s.faults),
        "latency_ms": latency(&s.latency),
        "service_ms": latency(&s.service),
        "elapsed_ms": (s.elapsed.as_secs_f64() * 1e6).round() / 1e3,
        "targets": targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_drops_control_characters() {
        assert_eq!(
            xml("p99 < 800ms & \"x\" 'y' >\u{1}"),
            "p99 &lt; 800ms &amp; &quot;x&quot; &apos;y&apos; &gt;?"
        );
    }
}
