//! Reports of played scenarios: the text report printed after each scenario ([`text`]), the
//! `--summary-json` document ([`json`]), the JUnit file ([`junit`]) and the HTML report with its
//! charts ([`html`]). Each renders the
//! [`RunVerdict`] the runner decided; none decides whether a run passed.
//!
//! Library code over `W: Write`: it renders what [`crate::runner`] returned and never prints;
//! the CLI chooses where each report goes. It may use the runner, the recorder, expectations and
//! golden; nothing below it uses it.

use std::path::PathBuf;

use crate::runner::{RunReport, RunVerdict};

pub mod html;
pub mod json;
pub mod junit;
pub mod text;

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

    use super::*;
    pub(crate) use crate::runner::tests::{expectation, report};

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
