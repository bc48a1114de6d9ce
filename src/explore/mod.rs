//! Searching seeds for failures, and shrinking a failure to a minimal scenario
//! (`traceforge explore`). A run is a pure function of its scenario and seed, so a seed that
//! breaks an expectation breaks it every time: the search plays the scenario once per seed and
//! checks its expectations (never the golden file, which a new seed changes by design), and the
//! shrinker replays smaller variants of a failing one until nothing more can go.
//!
//! This module holds what both share: [`Base`], the scenario as written plus the `--set`
//! overrides, from which a variant is built for any seed or edited spec, and [`trial`], one play
//! judged by its expectations alone.

pub mod search;
pub mod shrink;

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::expect;
use crate::runner::{self, RunOptions};
use crate::scenario::{Override, Scenario, ScenarioError, ScenarioSpec};

/// A scenario as its file says, with the overrides given on the command line: the starting point
/// of every variant.
#[derive(Debug, Clone)]
pub struct Base {
    /// Names the scenario in errors: the file's path as given.
    pub origin: String,
    /// The file's text.
    pub text: String,
    /// The folder of the file (`{scenario_dir}`, static files, scripts).
    pub dir: PathBuf,
    /// `--set` overrides, applied to every variant.
    pub overrides: Vec<Override>,
}

impl Base {
    /// Reads a scenario file; it is validated as it is (with `overrides`) before anything plays.
    pub fn read(path: &Path, overrides: Vec<Override>) -> Result<(Base, Scenario), ScenarioError> {
        let scenario = crate::scenario::load(path, &overrides)?;
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = Base {
            origin: path.display().to_string(),
            text,
            dir: scenario.dir.clone(),
            overrides,
        };
        Ok((base, scenario))
    }

    /// The scenario with its seed replaced by `seed`.
    pub fn with_seed(&self, seed: u64) -> Result<Scenario, ScenarioError> {
        let mut overrides = self.overrides.clone();
        overrides.push(Override {
            key: "seed".into(),
            value: seed.to_string(),
        });
        self.parse(&self.text, &overrides)
    }

    /// The scenario an edited spec stands for (the shrinker's variants), validated like a file:
    /// the spec is written as TOML and read again, so what plays is exactly what a `.min.toml`
    /// written from it would play.
    pub fn from_spec(&self, spec: &ScenarioSpec) -> Result<Scenario, ScenarioError> {
        let text = to_toml(spec).map_err(|message| {
            ScenarioError::Invalid(vec![crate::spec::error::Diagnostic {
                origin: self.origin.clone(),
                span: None,
                source: std::sync::Arc::from(""),
                message,
                label: String::new(),
                help: None,
                note: None,
            }])
        })?;
        self.parse(&text, &[])
    }

    fn parse(&self, text: &str, overrides: &[Override]) -> Result<Scenario, ScenarioError> {
        crate::scenario::parse_str(&self.origin, text, overrides).map(|mut scenario| {
            scenario.dir = self.dir.clone();
            scenario
        })
    }
}

/// A spec as scenario-file TOML.
pub fn to_toml(spec: &ScenarioSpec) -> Result<String, String> {
    toml::to_string(spec).map_err(|e| format!("cannot write the scenario as TOML: {e}"))
}

/// How one play of a variant ended, judged by its expectations alone.
#[derive(Debug, Clone, PartialEq)]
pub enum Trial {
    /// Every expectation held.
    Held,
    /// These expectations did not hold (never empty), in the scenario's order.
    Broke(Vec<expect::Verdict>),
    /// It could not run, or it did not run to its end: neither a pass nor a failure of an
    /// expectation, and never taken for one.
    Error(String),
}

impl Trial {
    /// The names of the expectations that broke (`success_rate`, `status.503`, ...).
    pub fn broken(&self) -> Vec<&str> {
        match self {
            Trial::Broke(verdicts) => verdicts.iter().map(|v| v.name.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Plays `scenario` once and judges it by its expectations: no output file, no golden
/// comparison that counts (a missing or different golden body is not a failure here), nothing
/// written. `scratch` is a folder the run may use as its golden folder; nothing is written there.
/// Blocking: call it from a thread that is not running a tokio runtime.
pub fn trial(scenario: &Scenario, scratch: &Path) -> Trial {
    trial_until(scenario, scratch, &CancellationToken::new())
}

/// [`trial`] that `stop` cuts short: a stopped play is a [`Trial::Error`] ("interrupted"), never
/// a verdict.
pub fn trial_until(scenario: &Scenario, scratch: &Path, stop: &CancellationToken) -> Trial {
    let mut options = RunOptions::new(scratch.to_path_buf());
    options.logs = scratch.join("logs");
    options.stop = stop.clone();
    // The virtual clock needs no runtime of ours (it builds its own single thread); the real
    // clock gets a fresh one per play.
    let played = match scenario.clock {
        crate::scenario::Clock::Virtual => runner::run_virtual(scenario, &options),
        crate::scenario::Clock::Real => runner::play(scenario, &options),
    };
    match played {
        Ok(report) if report.interrupted => Trial::Error("the run was interrupted".into()),
        Ok(report) => {
            let broke: Vec<expect::Verdict> = report
                .expectations
                .into_iter()
                .filter(|v| !v.passed)
                .collect();
            if broke.is_empty() {
                Trial::Held
            } else {
                Trial::Broke(broke)
            }
        }
        Err(e) => Trial::Error(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios")
            .join(name)
    }

    #[test]
    fn a_seed_replays_the_same_trial_and_a_spec_round_trips() {
        let _no_planted_panic = crate::panic_watch::TEST_PLANTS
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let scratch = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (base, scenario) = Base::read(&shipped("outage-recovery-virtual.toml"), Vec::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let first = trial(&scenario, scratch.path());
        assert_eq!(first, Trial::Held);
        let other = base.with_seed(7).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other.seed, 7);
        assert_eq!(trial(&other, scratch.path()), trial(&other, scratch.path()));
        // The spec written as TOML and read again is the same scenario.
        let again = base
            .from_spec(&scenario.spec)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.digest(), scenario.digest());
        assert!(std::fs::read_dir(scratch.path()).is_ok_and(|mut d| d.next().is_none()));
    }
}
