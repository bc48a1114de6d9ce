//! `traceforge report`: a run's report made again from what it saved, the outcomes file of a run
//! (`--output x.jsonl --format jsonl`, or `--format json`) or the result bundles of a sharded run,
//! plus its scenario. The outcomes are folded as the run folded them (summary, timeline, golden
//! body), so on the virtual clock the report is the one `run --report` wrote. Nothing is written:
//! the golden file is compared, never accepted, and no `.snap.new` is left behind.

use std::path::{Path, PathBuf};

use super::merge::{from_bundles, judge, warnings};
use super::{MergeError, RunReport, load_options, timeline_for};
use crate::golden::{self, BodyBuilder};
use crate::load;
use crate::record::bundle::{self, BundleError};
use crate::record::{ErrorKind, Outcome, Summary};
use crate::scenario::{self, Override, Scenario};

/// Makes the report of the run whose outcomes are in `inputs` (outcome files, or every bundle of a
/// sharded run): its summary, timeline, expectations and golden comparison (against the golden
/// file in `golden_dir`). `scenario` is required for outcome files; bundles name theirs.
/// A run that stopped early (a request cut short, or fewer outcomes than planned) is reported as
/// interrupted, its golden file not compared.
pub fn rebuild(
    inputs: &[PathBuf],
    scenario: Option<&Path>,
    overrides: &[Override],
    golden_dir: &Path,
) -> Result<(Scenario, RunReport), MergeError> {
    let mut trailers = Vec::new();
    let mut files = Vec::new();
    for path in inputs {
        match bundle::read_trailer(path) {
            Ok(t) => trailers.push((path.clone(), t)),
            // No trailer line: an outcomes file (or a shard that did not finish, which reads as
            // the outcomes it has).
            Err(BundleError::Incomplete { .. }) => files.push(path.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    if !trailers.is_empty() && !files.is_empty() {
        return Err(MergeError::Invalid(format!(
            "{} is a bundle and {} is not: give the bundles of a sharded run, or the outcome files of a run, not both",
            trailers[0].0.display(),
            files[0].display()
        )));
    }
    let (scenario, summary) = if trailers.is_empty() {
        let Some(file) = scenario else {
            return Err(MergeError::Invalid(
                "an outcomes file does not name its scenario: give it with --scenario FILE".into(),
            ));
        };
        let scenario = scenario::load(file, overrides)?;
        let highest = load::longest_latency(&load_options(
            &scenario,
            hyper::Uri::from_static("http://proxy.traceforge"),
        ));
        (scenario, Summary::for_latencies_up_to(highest))
    } else {
        from_bundles(&mut trailers, scenario)?
    };
    let mut summary = summary;
    let from_files = trailers.is_empty();
    let mut timeline = timeline_for(&scenario);
    let mut body = BodyBuilder::for_scenario(&scenario);
    let mut cut_short = false;
    let mut each = |o: Outcome| {
        if from_files {
            summary.push(&o);
        }
        cut_short |= o.error == Some(ErrorKind::Cancelled);
        timeline.push(&o);
        body.push(&o);
    };
    if from_files {
        for path in &files {
            read_outcomes(path, &mut each)?;
        }
    } else {
        for (path, _) in &trailers {
            bundle::read_outcomes(path, &mut each)?;
        }
    }
    // The calls no request claimed follow every outcome in the golden body, as `merge` adds them.
    for u in trailers.iter().flat_map(|(_, t)| &t.unattributed) {
        body.push_unattributed(u);
    }
    if let Some(topology) = &scenario.topology {
        for proxy in &topology.proxies {
            summary.declare_proxy(&proxy.name);
        }
    }
    let planned = scenario.load.profile.fixed_count();
    let interrupted = cut_short || planned.is_some_and(|n| summary.requests < n);
    let expectations = judge(&scenario, &summary);
    let (golden, body) = if interrupted {
        (None, None)
    } else {
        let text = body.finish(&scenario, &summary);
        let comparison = golden::compare(golden_dir, &scenario, &text).map_err(|source| {
            super::RunError::Golden {
                dir: golden_dir.to_path_buf(),
                source,
            }
        })?;
        (Some(comparison), Some(text))
    };
    let warnings = warnings(&trailers);
    let report = RunReport {
        scenario: scenario.name.clone(),
        summary,
        expectations,
        golden,
        body,
        output: None,
        interrupted,
        outcomes: Vec::new(),
        logs: Vec::new(),
        warnings,
        shard: None,
        timeline: Some(timeline),
    };
    Ok((scenario, report))
}

/// Streams the outcomes of a `--format json` or `--format jsonl` file to `each`, in file order.
fn read_outcomes(path: &Path, mut each: impl FnMut(Outcome)) -> Result<(), MergeError> {
    bundle::for_each_line(path, |n, line| {
        // A JSON array as `run --format json` writes it: one outcome per line between `[` and `]`.
        let text = line.trim().trim_end_matches(',');
        if text.is_empty() || text == "[" || text == "]" {
            return Ok(());
        }
        if n == 1 && text.starts_with("index,") {
            return Err(
                "CSV outcomes cannot be read back: record the run with --format jsonl or json"
                    .into(),
            );
        }
        let outcome: Outcome = serde_json::from_str(text)
            .map_err(|e| format!("not an outcome of `--format jsonl` or `json`: {e}"))?;
        each(outcome);
        Ok(())
    })?;
    Ok(())
}
