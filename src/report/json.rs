//! The `--summary-json` document: every played scenario with its summary, expectations and
//! golden result, versioned by [`VERSION`]. Its shape is documented in the README ("In CI");
//! the structs below are that shape, field for field.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use super::Played;
use crate::expect;
use crate::golden;
use crate::record::Summary;
use crate::record::summary::{Latency, TargetSummary, ms};

/// The version of the shape; bumped when a field changes meaning or goes away.
pub const VERSION: u64 = 1;

/// The whole document.
#[derive(Debug, Serialize)]
pub struct SummaryDoc<'a> {
    pub version: u64,
    /// Every scenario passed.
    pub passed: bool,
    pub scenarios: Vec<ScenarioDoc<'a>>,
}

/// One played scenario. A scenario that could not run has only its name, file, result and reason.
#[derive(Debug, Serialize)]
pub struct ScenarioDoc<'a> {
    pub name: &'a str,
    pub file: String,
    /// `pass`, `fail`, `stopped` or `error`.
    pub result: &'static str,
    /// Why it did not pass; empty when it did.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<SummaryJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expectations: Option<&'a [expect::Verdict]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub golden: Option<GoldenJson>,
    /// Where each service's output went (services in the loop only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub logs: BTreeMap<String, String>,
    /// What the run noticed that may make it less deterministic than it looks.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub warnings: &'a [String],
}

/// The counts and latencies of one run (milliseconds, rounded to the microsecond).
#[derive(Debug, Serialize)]
pub struct SummaryJson {
    pub requests: u64,
    pub succeeded: u64,
    /// `null` when there were no requests.
    pub success_rate: Option<f64>,
    pub attempts: u64,
    pub retries: u64,
    pub late: u64,
    pub statuses: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub faults: BTreeMap<String, u64>,
    pub latency_ms: LatencyJson,
    pub service_ms: LatencyJson,
    pub elapsed_ms: f64,
    pub targets: BTreeMap<String, TargetJson>,
    /// With services in the loop: the calls each named proxy served. Absent otherwise.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub proxies: BTreeMap<String, ProxyJson>,
}

/// The calls one named proxy served.
#[derive(Debug, Serialize)]
pub struct ProxyJson {
    pub calls: u64,
    /// The most calls one load request caused (retry amplification).
    pub max_calls_per_request: u64,
    pub statuses: BTreeMap<String, u64>,
    /// `reset`, `hang`, `cancelled`.
    pub errors: BTreeMap<String, u64>,
    pub faults: BTreeMap<String, u64>,
    /// Calls tied to no load request: with a trace context of their own, and with none (their
    /// faults were decided by arrival order).
    pub unclaimed_traced: u64,
    pub unclaimed_untraced: u64,
    pub latency_ms: LatencyJson,
}

/// The requests sent to one target path.
#[derive(Debug, Serialize)]
pub struct TargetJson {
    pub requests: u64,
    pub succeeded: u64,
    pub statuses: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub latency_ms: LatencyJson,
}

/// A latency distribution in milliseconds.
#[derive(Debug, Serialize)]
pub struct LatencyJson {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// The golden comparison: `matched`, `accepted`, `missing`, `mismatch` or `not_compared` (an
/// interrupted run), the golden file and the `.snap.new` written for review.
#[derive(Debug, Serialize)]
pub struct GoldenJson {
    pub result: &'static str,
    pub path: Option<String>,
    pub new: Option<String>,
}

/// Writes the document, pretty-printed, with a final newline.
pub fn write_summary<W: Write>(w: &mut W, played: &[Played]) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, &summary_doc(played))?;
    writeln!(w)
}

/// The document of a run.
pub fn summary_doc(played: &[Played]) -> SummaryDoc<'_> {
    SummaryDoc {
        version: VERSION,
        passed: played.iter().all(|p| p.verdict().passed()),
        scenarios: played.iter().map(scenario).collect(),
    }
}

fn scenario(p: &Played) -> ScenarioDoc<'_> {
    let verdict = p.verdict();
    let mut doc = ScenarioDoc {
        name: &p.name,
        file: p.file.display().to_string(),
        result: verdict.label(),
        reason: verdict.reason(),
        interrupted: None,
        summary: None,
        expectations: None,
        golden: None,
        logs: BTreeMap::new(),
        warnings: &[],
    };
    if let Ok(r) = &p.result {
        doc.logs = r
            .logs
            .iter()
            .map(|(name, path)| (name.clone(), path.display().to_string()))
            .collect();
        doc.warnings = &r.warnings;
        doc.interrupted = Some(r.interrupted);
        doc.summary = Some(summary(&r.summary));
        doc.expectations = Some(&r.expectations);
        doc.golden = Some(golden(r.golden.as_ref()));
    }
    doc
}

fn golden(verdict: Option<&golden::Comparison>) -> GoldenJson {
    let shown = |p: &std::path::Path| Some(p.display().to_string());
    let (result, path, new) = match verdict {
        None => ("not_compared", None, None),
        Some(golden::Comparison::Matched { path }) => ("matched", shown(path), None),
        Some(golden::Comparison::Accepted { path }) => ("accepted", shown(path), None),
        Some(golden::Comparison::Missing { path, new }) => {
            ("missing", shown(path), new.as_deref().and_then(shown))
        }
        Some(golden::Comparison::Mismatch { path, new, .. }) => {
            ("mismatch", shown(path), new.as_deref().and_then(shown))
        }
    };
    GoldenJson { result, path, new }
}

fn latency(l: &Latency) -> LatencyJson {
    LatencyJson {
        p50: ms(l.quantile(0.5)),
        p90: ms(l.quantile(0.9)),
        p99: ms(l.quantile(0.99)),
        max: ms(l.max()),
        mean: ms(l.mean()),
    }
}

/// Counts keyed by their text, as JSON object keys are.
fn counts<K: ToString>(map: &BTreeMap<K, u64>) -> BTreeMap<String, u64> {
    map.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn target(t: &TargetSummary) -> TargetJson {
    TargetJson {
        requests: t.requests,
        succeeded: t.succeeded,
        statuses: counts(&t.statuses),
        errors: counts(&t.errors),
        latency_ms: latency(&t.latency),
    }
}

/// The summary of one run: counts, latencies in milliseconds, per-target breakdown.
pub fn summary(s: &Summary) -> SummaryJson {
    SummaryJson {
        requests: s.requests,
        succeeded: s.succeeded,
        success_rate: s.success_rate(),
        attempts: s.attempts,
        retries: s.retries,
        late: s.late,
        statuses: counts(&s.statuses),
        errors: counts(&s.errors),
        faults: counts(&s.faults),
        latency_ms: latency(&s.latency),
        service_ms: latency(&s.service),
        elapsed_ms: ms(s.elapsed),
        targets: s
            .targets
            .iter()
            .map(|(path, t)| (path.clone(), target(t)))
            .collect(),
        proxies: s
            .proxies
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    ProxyJson {
                        calls: p.calls,
                        max_calls_per_request: p.max_per_request,
                        statuses: counts(&p.statuses),
                        errors: counts(&p.errors),
                        faults: counts(&p.faults),
                        unclaimed_traced: p.unattributed_traced,
                        unclaimed_untraced: p.unattributed_untraced,
                        latency_ms: latency(&p.latency),
                    },
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::report::tests::{expectation, played, report};

    fn document(played: &[Played]) -> Value {
        let mut out = Vec::new();
        write_summary(&mut out, played).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.ends_with(b"}\n"));
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_document_holds_every_scenario_in_the_documented_shape() {
        let golden = Some(golden::Comparison::Missing {
            path: "golden/b.snap".into(),
            new: Some("golden/b.snap.new".into()),
        });
        let played = [
            played(
                "b",
                Ok(report(vec![expectation("status.200", false)], golden)),
            ),
            played("c", Err("the upstream is unreachable".to_string())),
        ];
        let latency = json!({"p50": 1.0, "p90": 1.0, "p99": 1.0, "max": 1.0, "mean": 1.0});
        assert_eq!(
            document(&played),
            json!({
                "version": 1,
                "passed": false,
                "scenarios": [
                    {
                        "name": "b",
                        "file": "scenarios/b.toml",
                        "result": "fail",
                        "reason": "status.200 <= 0 (measured 10 (100.0%)); no golden snapshot yet",
                        "interrupted": false,
                        "summary": {
                            "requests": 10,
                            "succeeded": 10,
                            "success_rate": 1.0,
                            "attempts": 10,
                            "retries": 0,
                            "late": 0,
                            "statuses": {"200": 10},
                            "errors": {},
                            "faults": {},
                            "latency_ms": latency,
                            "service_ms": latency,
                            "elapsed_ms": 1500.0,
                            "targets": {},
                        },
                        "expectations": [
                            {"name": "status.200", "threshold": "<= 0", "measured": "10 (100.0%)", "passed": false}
                        ],
                        "golden": {"result": "missing", "path": "golden/b.snap", "new": "golden/b.snap.new"},
                    },
                    {
                        "name": "c",
                        "file": "scenarios/c.toml",
                        "result": "error",
                        "reason": "the upstream is unreachable",
                    }
                ]
            })
        );
    }

    #[test]
    fn an_interrupted_run_is_not_compared_and_no_run_passes_with_nothing_measured() {
        let mut r = report(Vec::new(), None);
        r.interrupted = true;
        r.summary = Summary::default();
        let doc = document(&[played("a", Ok(r))]);
        let a = &doc["scenarios"][0];
        assert_eq!(a["result"], "stopped");
        assert_eq!(a["interrupted"], true);
        assert_eq!(
            a["golden"],
            json!({"result": "not_compared", "path": null, "new": null})
        );
        assert_eq!(a["summary"]["success_rate"], Value::Null);
        assert_eq!(doc["passed"], false);
    }
}
