//! A scenario's `[[phases]]` as each rule sees them: the [`Gate`] of a rule is the blocks of the
//! run (request indices or time since the start) in which phases switch it on, and those in which
//! they switch it off. [`crate::fault::Window`] checks it with the request's index and elapsed
//! time, like its other conditions. Validation (`scenario::validate::phases`) builds the gates.

use std::fmt;
use std::time::Duration;

use crate::spec::duration::format_duration;

/// One phase's block of the run: `from` included, `until` excluded (`None`: to the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Request indices (the load generator's): deterministic at any concurrency.
    Requests { from: u64, until: Option<u64> },
    /// Time since the start of the run: deterministic on the virtual clock.
    Time {
        from: Duration,
        until: Option<Duration>,
    },
}

impl Span {
    /// Whether the request at `index`, arriving `elapsed` after the start, is inside.
    pub fn contains(self, index: u64, elapsed: Duration) -> bool {
        match self {
            Span::Requests { from, until } => index >= from && until.is_none_or(|u| index < u),
            Span::Time { from, until } => elapsed >= from && until.is_none_or(|u| elapsed < u),
        }
    }

    /// Whether the span counts time (then on the real clock which request lands inside depends
    /// on timing).
    pub fn is_time(self) -> bool {
        matches!(self, Span::Time { .. })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Span::Requests { from, until } => {
                write!(f, "requests {from}..")?;
                if let Some(u) = until {
                    write!(f, "{u}")?;
                }
            }
            Span::Time { from, until } => {
                write!(f, "{}..", format_duration(from))?;
                if let Some(u) = until {
                    f.write_str(&format_duration(u))?;
                }
            }
        }
        Ok(())
    }
}

/// When the phases let one rule fire.
///
/// A rule that some phase enables fires only inside the spans of `on`; a rule that a phase
/// disables never fires inside the spans of `off`, even inside an `on` span (off wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gate {
    /// The spans of the phases that enable the rule. Empty: no phase enables it, so it is on
    /// wherever no phase disables it.
    pub on: Vec<Span>,
    /// The spans of the phases that disable the rule.
    pub off: Vec<Span>,
}

impl Gate {
    /// Whether the rule may fire for the request at `index`, `elapsed` after the start.
    pub fn admits(&self, index: u64, elapsed: Duration) -> bool {
        (self.on.is_empty() || self.on.iter().any(|s| s.contains(index, elapsed)))
            && !self.off.iter().any(|s| s.contains(index, elapsed))
    }

    /// Whether any of its spans counts time.
    pub fn on_time_axis(&self) -> bool {
        self.on.iter().chain(&self.off).any(|s| s.is_time())
    }
}

/// `on requests 10..20, off 30s..45s`: as rule descriptions in reports show it.
impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (word, spans) in [("on", &self.on), ("off", &self.off)] {
            for span in spans {
                if !first {
                    f.write_str(", ")?;
                }
                first = false;
                write!(f, "{word} {span}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(from: u64, until: Option<u64>) -> Span {
        Span::Requests { from, until }
    }

    #[test]
    fn an_enabled_rule_is_on_only_inside_its_phases_and_off_wins() {
        let gate = Gate {
            on: vec![requests(10, Some(20)), requests(30, None)],
            off: vec![requests(15, Some(17))],
        };
        let on: Vec<u64> = (0..40)
            .filter(|i| gate.admits(*i, Duration::ZERO))
            .collect();
        let want: Vec<u64> = (10..15).chain(17..20).chain(30..40).collect();
        assert_eq!(on, want);
        assert_eq!(
            gate.to_string(),
            "on requests 10..20, on requests 30.., off requests 15..17"
        );
    }

    #[test]
    fn a_disabled_rule_is_on_everywhere_else_and_time_spans_count_elapsed_time() {
        let gate = Gate {
            on: Vec::new(),
            off: vec![Span::Time {
                from: Duration::from_secs(2),
                until: Some(Duration::from_secs(5)),
            }],
        };
        assert!(gate.on_time_axis());
        assert!(gate.admits(3, Duration::from_millis(1999)));
        assert!(!gate.admits(3, Duration::from_secs(2)));
        assert!(!gate.admits(3, Duration::from_millis(4999)));
        assert!(gate.admits(3, Duration::from_secs(5)));
        assert_eq!(gate.to_string(), "off 2s..5s");
    }
}
