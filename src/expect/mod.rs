//! Expectations: the thresholds of a scenario's `[expect]` table, evaluated on the run's summary.

use serde::Serialize;

use crate::record::Summary;
use crate::scenario::Expectations;

/// One expectation's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The expectation, as written in the scenario (`success_rate`).
    pub name: String,
    /// The threshold, readable (`>= 95.0%`).
    pub threshold: String,
    /// What the run measured, readable (`97.5%`).
    pub measured: String,
    pub passed: bool,
}

/// Evaluates every expectation on the summary, in a stable order.
pub fn check(expect: &Expectations, summary: &Summary) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    if let Some(min) = expect.success_rate {
        let rate = summary.success_rate();
        verdicts.push(Verdict {
            name: "success_rate".into(),
            threshold: format!(">= {:.1}%", min * 100.0),
            measured: format!("{:.1}%", rate * 100.0),
            // A tiny tolerance: 0.95 written in a file must accept 190 of 200.
            passed: rate + 1e-12 >= min,
        });
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_rate_passes_at_and_above_the_threshold() {
        let mut s = Summary {
            requests: 200,
            succeeded: 190,
            ..Summary::default()
        };
        let at = check(
            &Expectations {
                success_rate: Some(0.95),
            },
            &s,
        );
        assert!(at[0].passed);
        s.succeeded = 189;
        let below = check(
            &Expectations {
                success_rate: Some(0.95),
            },
            &s,
        );
        assert!(!below[0].passed);
        assert_eq!(below[0].measured, "94.5%");
    }
}
