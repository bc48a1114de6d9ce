//! `traceforge merge`: the shards' result bundles of one run judged together, as the run on one
//! machine would have been. The bundles must belong together (one scenario digest and seed, every
//! shard of `N` exactly once); their summaries are added (counts summed, HDR histograms added
//! bucket by bucket), their outcomes rebuild the golden body and the output file, and the
//! expectations and the golden comparison are made on the merged data only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{RunError, RunOptions, RunReport};
use crate::expect;
use crate::golden::{self, BodyBuilder};
use crate::record::Summary;
use crate::record::bundle::{self, BundleError, Trailer};
use crate::scenario::{self, Override, Scenario, ScenarioError};

/// Why bundles cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The bundles do not make one complete run: missing, duplicated or foreign shards, a bundle
    /// that is not one, or a scenario that changed. Nothing was judged.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// Writing the outputs or the golden file failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// The bundles' scenario, loaded again: from `scenario` when given, else from the file the shards
/// named (relative to the working directory), with the shards' `--set` overrides.
pub(super) fn load_scenario(
    first: &Trailer,
    scenario: Option<&Path>,
) -> Result<Scenario, MergeError> {
    let overrides = first
        .overrides
        .iter()
        .map(|o| o.parse::<Override>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MergeError::Invalid(format!("a bundle's --set override: {e}")))?;
    let file = scenario.map_or_else(|| PathBuf::from(&first.file), Path::to_path_buf);
    if !file.is_file() {
        return Err(MergeError::Invalid(format!(
            "the shards played {}, which is not here; give the scenario file with --scenario FILE",
            file.display()
        )));
    }
    Ok(scenario::load(&file, &overrides)?)
}

/// Checks that the trailers make one complete run: one digest, one seed, one shard count, every
/// shard exactly once. Returns the shard count.
pub(super) fn check_set(trailers: &[(PathBuf, Trailer)]) -> Result<u32, MergeError> {
    let Some((first_path, first)) = trailers.first() else {
        return Err(MergeError::Invalid("no bundle to merge".into()));
    };
    let mut seen: BTreeMap<u32, &Path> = BTreeMap::new();
    for (path, t) in trailers {
        let differs = |what: &str, mine: String, theirs: String| {
            MergeError::Invalid(format!(
                "{} and {} are not shards of one run: {what} {mine} and {theirs}",
                first_path.display(),
                path.display()
            ))
        };
        if t.digest != first.digest {
            return Err(differs(
                "their scenarios differ: digests",
                first.digest.clone(),
                t.digest.clone(),
            ));
        }
        if t.seed != first.seed {
            return Err(differs("seeds", first.seed.to_string(), t.seed.to_string()));
        }
        if t.shards != first.shards {
            return Err(differs(
                "shard counts",
                first.shards.to_string(),
                t.shards.to_string(),
            ));
        }
        if let Some(other) = seen.insert(t.shard, path) {
            return Err(MergeError::Invalid(format!(
                "shard {}/{} is given twice: {} and {}",
                t.shard,
                t.shards,
                other.display(),
                path.display()
            )));
        }
    }
    let missing: Vec<String> = (0..first.shards)
        .filter(|k| !seen.contains_key(k))
        .map(|k| format!("{k}/{}", first.shards))
        .collect();
    if !missing.is_empty() {
        let (noun, verb) = if missing.len() == 1 {
            ("shard", "is")
        } else {
            ("shards", "are")
        };
        return Err(MergeError::Invalid(format!(
            "{noun} {} {verb} missing: a merge needs every shard of the run exactly once",
            missing.join(", ")
        )));
    }
    Ok(first.shards)
}

/// The bundles' scenario and their summaries added up (counts summed, histograms added bucket by
/// bucket), once [`check_set`] says they make one run and the scenario is the one they played.
/// Sorts `trailers` by shard.
pub(super) fn from_bundles(
    trailers: &mut [(PathBuf, Trailer)],
    scenario: Option<&Path>,
) -> Result<(Scenario, Summary), MergeError> {
    check_set(trailers)?;
    trailers.sort_by_key(|(_, t)| t.shard);
    let first = &trailers[0].1;
    let scenario = load_scenario(first, scenario)?;
    if scenario.digest() != first.digest {
        return Err(MergeError::Invalid(format!(
            "{} is not the scenario the shards played: it changed since (its digest is {}, the bundles' {})",
            first.file,
            scenario.digest(),
            first.digest
        )));
    }
    let mut summary: Summary = first.summary.clone();
    for (_, t) in &trailers[1..] {
        summary.merge(&t.summary);
    }
    Ok((scenario, summary))
}

/// The expectations of a run judged from its merged data, a declared proxy that saw no call
/// included.
pub(super) fn judge(scenario: &Scenario, summary: &Summary) -> Vec<expect::Verdict> {
    let mut expectations = expect::check(&scenario.expect, summary);
    if let Some(topology) = &scenario.topology {
        expectations.extend(expect::unseen_proxies(
            topology.proxies.iter().map(|p| (p.name.as_str(), None)),
            &scenario.expect,
            summary,
        ));
    }
    expectations
}

/// The shards' warnings, each once, in shard order.
pub(super) fn warnings(trailers: &[(PathBuf, Trailer)]) -> Vec<String> {
    let mut warnings: Vec<String> = Vec::new();
    for w in trailers.iter().flat_map(|(_, t)| &t.warnings) {
        if !warnings.contains(w) {
            warnings.push(w.clone());
        }
    }
    warnings
}

/// Merges `bundles` into the report a single-machine run of their scenario would have made:
/// summary, expectations, golden comparison (per `options.golden`, in `options.golden_dir`), and
/// the outcomes to `options.output` (grouped by shard, each in the order its requests finished).
pub fn merge(
    bundles: &[PathBuf],
    scenario: Option<&Path>,
    options: &RunOptions,
) -> Result<(Scenario, RunReport), MergeError> {
    let trailers = bundles
        .iter()
        .map(|path| Ok((path.clone(), bundle::read_trailer(path)?)))
        .collect::<Result<Vec<_>, MergeError>>()?;
    let mut trailers = trailers;
    let (scenario, summary) = from_bundles(&mut trailers, scenario)?;
    if let Some(total) = scenario.load.profile.fixed_count() {
        if summary.requests < total {
            return Err(RunError::Incomplete {
                played: summary.requests,
                planned: total,
            }
            .into());
        }
    }

    // The golden body and the output file, from the outcomes.
    let writer = options
        .output
        .as_ref()
        .map(|path| super::open_output(path, options.format, &options.open_files))
        .transpose()?;
    let mut body = BodyBuilder::for_scenario(&scenario);
    let mut timeline = options.timeline.then(|| super::timeline_for(&scenario));
    let mut kept = Vec::new();
    let mut write_error = None;
    for (path, trailer) in &trailers {
        bundle::read_outcomes(path, |outcome| {
            if let (Some((_, w)), None) = (writer.as_ref(), write_error.as_ref()) {
                if let Err(e) = w.write(&outcome) {
                    write_error = Some(e);
                }
            }
            body.push(&outcome);
            if let Some(timeline) = timeline.as_mut() {
                timeline.push(&outcome);
            }
            if options.keep_outcomes {
                kept.push(outcome);
            }
        })?;
        for u in &trailer.unattributed {
            body.push_unattributed(u);
        }
    }
    let output = match writer {
        Some((path, w)) => {
            let closed = options.open_files.close(&w);
            if let Some(source) = write_error.or(closed.err()) {
                return Err(RunError::Output { path, source }.into());
            }
            Some((path, w.written()))
        }
        None => None,
    };

    let expectations = judge(&scenario, &summary);
    let text = body.finish(&scenario, &summary);
    let comparison =
        golden::check(&options.golden_dir, &scenario, &text, options.golden).map_err(|source| {
            RunError::Golden {
                dir: options.golden_dir.clone(),
                source,
            }
        })?;
    let warnings = warnings(&trailers);
    kept.sort_by_key(|o| o.index);
    let report = RunReport {
        scenario: scenario.name.clone(),
        summary,
        expectations,
        golden: Some(comparison),
        body: Some(text),
        output,
        interrupted: false,
        outcomes: kept,
        logs: Vec::new(),
        warnings,
        shard: None,
        timeline,
    };
    Ok((scenario, report))
}
