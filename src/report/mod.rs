//! Reports of played scenarios: the typed [`RunVerdict`], the text report printed after each
//! scenario ([`text`]), the `--summary-json` document ([`json`]) and the JUnit file ([`junit`]).
//!
//! Library code over `W: Write`: it renders what [`crate::runner`] returned and never prints;
//! the CLI chooses where each report goes. It may use the runner, the recorder, expectations and
//! golden; nothing below it uses it.

use std::path::PathBuf;

use crate::runner::RunReport;

pub mod json;
pub mod junit;
pub mod text;
mod verdict;

pub use verdict::{Reason, RunVerdict, Stop};

/// One scenario as `traceforge run` played it: the input of every report.
#[derive(Debug)]
pub struct Played {
    pub file: PathBuf,
    pub name: String,
    /// `Err`: a runtime failure (could not bind, upstream unreachable, I/O).
    pub result: Result<RunReport, String>,
    /// What was printed for it (its text report, or the error); JUnit carries it as output.
    pub text: String,
}

impl Played {
    pub fn verdict(&self) -> RunVerdict {
        RunVerdict::of_result(&self.result)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Reports built by hand, for the unit tests of every report.

    use std::time::Duration;

    use super::*;
    use crate::expect;
    use crate::golden;
    use crate::record::Summary;

    pub(crate) fn expectation(name: &str, passed: bool) -> expect::Verdict {
        let (threshold, measured) = match name {
            "success_rate" => (">= 50.0%", "100.0%"),
            _ => ("<= 0", "10 (100.0%)"),
        };
        expect::Verdict {
            name: name.to_string(),
            threshold: threshold.to_string(),
            measured: measured.to_string(),
            passed,
        }
    }

    /// Ten requests, all answered 200 in 1ms.
    pub(crate) fn summary() -> Summary {
        let mut s = Summary {
            requests: 10,
            succeeded: 10,
            attempts: 10,
            elapsed: Duration::from_millis(1500),
            ..Summary::default()
        };
        s.statuses.insert(200, 10);
        for _ in 0..10 {
            s.latency.record(Duration::from_millis(1));
            s.service.record(Duration::from_millis(1));
        }
        s
    }

    pub(crate) fn report(
        expectations: Vec<expect::Verdict>,
        golden: Option<golden::Comparison>,
    ) -> RunReport {
        RunReport {
            scenario: "checkout".to_string(),
            summary: summary(),
            expectations,
            golden,
            body: None,
            output: None,
            interrupted: false,
            outcomes: Vec::new(),
        }
    }

    pub(crate) fn played(name: &str, result: Result<RunReport, String>) -> Played {
        Played {
            file: PathBuf::from(format!("scenarios/{name}.toml")),
            name: name.to_string(),
            text: match &result {
                Ok(_) => format!("    report of {name} <&>\n"),
                Err(e) => format!("error: {e}\n"),
            },
            result,
        }
    }
}
