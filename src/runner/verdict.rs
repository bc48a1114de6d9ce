//! The verdict on one played scenario, decided here and only here: [`RunReport::verdict`] and
//! [`RunReport::passed`] apply this rule, every report (text, JSON, JUnit) renders it and the
//! CLI derives its exit code from it, instead of re-deciding.

use std::fmt;

use super::RunReport;
use crate::expect;
use crate::golden;
use crate::record::ErrorKind;

/// How one scenario ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunVerdict {
    /// Its golden snapshot and every expectation matched.
    Passed,
    /// It ran to the end and something did not hold; never empty.
    Failed(Vec<Reason>),
    /// A signal stopped it before the end; a partial run is neither compared nor passed.
    Stopped(Stop),
    /// It could not run (could not bind, upstream unreachable, I/O), or a forced exit came first.
    Error(String),
}

/// Why a scenario that ran to the end failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// An expectation did not hold.
    Expectation(expect::Verdict),
    /// The run differs from its golden snapshot.
    GoldenDiffers,
    /// There is no golden snapshot yet.
    GoldenMissing,
}

/// How far an interrupted run got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// Requests that completed before the signal.
    pub completed: u64,
    /// Requests the signal cut short (recorded with the `cancelled` error).
    pub cut_short: u64,
}

impl RunReport {
    /// How the run ended: stopped when it was interrupted (whatever it measured), else passed
    /// when every expectation held and the golden snapshot matched or was accepted, else failed
    /// with every reason, expectations first. This is the pass rule; [`RunReport::passed`] and
    /// every report read it.
    pub fn verdict(&self) -> RunVerdict {
        if self.interrupted {
            let cut_short = self
                .summary
                .errors
                .get(ErrorKind::Cancelled.as_str())
                .copied()
                .unwrap_or(0);
            return RunVerdict::Stopped(Stop {
                completed: self.summary.requests.saturating_sub(cut_short),
                cut_short,
            });
        }
        let mut reasons: Vec<Reason> = self
            .expectations
            .iter()
            .filter(|v| !v.passed)
            .cloned()
            .map(Reason::Expectation)
            .collect();
        match &self.golden {
            Some(golden::Comparison::Mismatch { .. }) => reasons.push(Reason::GoldenDiffers),
            Some(golden::Comparison::Missing { .. }) => reasons.push(Reason::GoldenMissing),
            // `None`: not compared, which only an interrupted run is (stopped above).
            Some(golden::Comparison::Matched { .. } | golden::Comparison::Accepted { .. })
            | None => {}
        }
        if reasons.is_empty() {
            RunVerdict::Passed
        } else {
            RunVerdict::Failed(reasons)
        }
    }

    /// True when the run completed and matched its expectations and its golden file.
    pub fn passed(&self) -> bool {
        self.verdict().passed()
    }
}

impl RunVerdict {
    /// The verdict on a scenario as played: `Err` is a runtime failure.
    pub fn of_result(result: &Result<RunReport, String>) -> RunVerdict {
        match result {
            Ok(report) => report.verdict(),
            Err(e) => RunVerdict::Error(e.clone()),
        }
    }

    pub fn passed(&self) -> bool {
        matches!(self, RunVerdict::Passed)
    }

    /// `pass`, `fail`, `stopped` or `error`: the `result` of the JSON summary; upper-cased in the
    /// text report.
    pub fn label(&self) -> &'static str {
        match self {
            RunVerdict::Passed => "pass",
            RunVerdict::Failed(_) => "fail",
            RunVerdict::Stopped(_) => "stopped",
            RunVerdict::Error(_) => "error",
        }
    }

    /// Why it did not pass, in one line (empty when it passed).
    pub fn reason(&self) -> String {
        match self {
            RunVerdict::Passed => String::new(),
            RunVerdict::Failed(reasons) => reasons
                .iter()
                .map(Reason::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            RunVerdict::Stopped(stop) => stop.to_string(),
            RunVerdict::Error(e) => e.clone(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Expectation(v) => {
                write!(f, "{} {} (measured {})", v.name, v.threshold, v.measured)
            }
            Reason::GoldenDiffers => f.write_str("golden snapshot differs"),
            Reason::GoldenMissing => f.write_str("no golden snapshot yet"),
        }
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted after {} requests", self.completed)?;
        if self.cut_short > 0 {
            write!(f, " ({} more cut short)", self.cut_short)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::tests::{expectation, report};

    #[test]
    fn a_run_that_matched_everything_passes() {
        let r = report(
            vec![expectation("success_rate", true)],
            Some(golden::Comparison::Matched {
                path: "golden/a.snap".into(),
            }),
        );
        assert_eq!(r.verdict(), RunVerdict::Passed);
        assert!(r.passed());
    }

    #[test]
    fn failed_expectations_come_before_the_golden_reason() {
        let r = report(
            vec![
                expectation("success_rate", true),
                expectation("status.200", false),
            ],
            Some(golden::Comparison::Missing {
                path: "golden/a.snap".into(),
                new: None,
            }),
        );
        let verdict = r.verdict();
        assert_eq!(verdict.label(), "fail");
        assert_eq!(
            verdict.reason(),
            "status.200 <= 0 (measured 10 (100.0%)); no golden snapshot yet"
        );
        assert!(!r.passed());
    }

    #[test]
    fn an_interrupted_run_is_stopped_whatever_it_measured() {
        let mut r = report(vec![expectation("status.200", false)], None);
        r.interrupted = true;
        r.summary.requests = 12;
        r.summary.errors.insert("cancelled".to_string(), 2);
        let verdict = r.verdict();
        assert_eq!(
            verdict,
            RunVerdict::Stopped(Stop {
                completed: 10,
                cut_short: 2
            })
        );
        assert_eq!(
            verdict.reason(),
            "interrupted after 10 requests (2 more cut short)"
        );
        assert_eq!(verdict.label(), "stopped");
    }

    #[test]
    fn a_runtime_failure_is_an_error() {
        let verdict = RunVerdict::of_result(&Err("upstream unreachable".to_string()));
        assert_eq!(verdict.label(), "error");
        assert_eq!(verdict.reason(), "upstream unreachable");
    }
}
