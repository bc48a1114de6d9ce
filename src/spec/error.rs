//! Scenario errors a person can act on: each names the file, line and column, shows the line with a
//! caret, and says what would be valid. Rendering is plain text so tests can pin what users read.
//!
//! Like any error, a [`ScenarioError`] displays without a leading `error: `: the printer writes
//! that, so `eprintln!("error: {e}")` shows what a compiler would.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use annotate_snippets::{Level, Renderer, Snippet};

/// One problem in a scenario, located in its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Where the text came from: the file path, or `--set KEY=VALUE` for an override.
    pub origin: String,
    /// The whole source text the span points into.
    pub source: Arc<str>,
    /// Byte range of the offending text; `None` when the problem has no single place.
    pub span: Option<Range<usize>>,
    /// What is wrong, in one line.
    pub message: String,
    /// A short label under the caret.
    pub label: String,
    /// What would be valid, or the closest valid spelling.
    pub help: Option<String>,
    /// Context that is not in the snippet, such as the file a `--set` override was applied to.
    pub note: Option<String>,
}

impl Diagnostic {
    /// 1-based line and column (in characters) of the span's start.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        let span = self.span.as_ref()?;
        let start = span.start.min(self.source.len());
        let before = self.source.get(..start)?;
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.source.get(line_start..start)?.chars().count() + 1;
        Some((line, col))
    }

    /// Renders the diagnostic as it is shown on the terminal after `error: `: the headline's
    /// message, the `file:line:col` and source line with a caret under the problem, and a help
    /// line. This is its `Display`.
    fn render(&self) -> String {
        let span = self.display_span();
        // The snippet's `-->` line carries `file:line:col`; without one, the headline names the file.
        let title = match span {
            Some(_) => self.message.clone(),
            None => format!("{}: {}", self.origin, self.message),
        };
        let mut message = Level::Error.title(&title);
        let snippet;
        if let Some(span) = span {
            snippet = Snippet::source(&self.source)
                .line_start(1)
                .origin(&self.origin)
                .fold(true)
                .annotation(Level::Error.span(span).label(&self.label));
            message = message.snippet(snippet);
        }
        if let Some(note) = &self.note {
            message = message.footer(Level::Note.title(note));
        }
        if let Some(help) = &self.help {
            message = message.footer(Level::Help.title(help));
        }
        let rendered = Renderer::plain().render(message).to_string();
        // The renderer always heads an error with its level; writing that is the printer's job.
        match rendered.strip_prefix(LEVEL) {
            Some(rest) => rest.to_string(),
            None => rendered,
        }
    }

    /// The span trimmed to its first line (a table's span covers its whole body, but the caret
    /// belongs on its header) and widened to one character when empty, on a char boundary.
    fn display_span(&self) -> Option<Range<usize>> {
        let span = self.span.clone()?;
        let src = &*self.source;
        if src.is_empty() {
            return None;
        }
        let mut start = span.start.min(src.len());
        while !src.is_char_boundary(start) {
            start -= 1;
        }
        let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
        let mut end = span.end.clamp(start, line_end);
        // A span ending inside a character (a replaced invalid byte, say) would make the
        // renderer slice through it: take the whole character.
        while !src.is_char_boundary(end) {
            end += 1;
        }
        if end == start {
            // Point at one character; at the end of a line or the file, point at the last one.
            if start < line_end {
                end = start + src[start..].chars().next().map_or(1, char::len_utf8);
            } else if start > 0 {
                let prev = src[..start].chars().next_back().map_or(1, char::len_utf8);
                start -= prev;
                end = start + prev;
                if src[start..end].contains('\n') {
                    return None;
                }
            } else {
                return None;
            }
        }
        Some(start..end)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// What the renderer writes before an error's headline, and the printer before an error.
const LEVEL: &str = "error: ";

/// Why a scenario could not be loaded. `Display` lists every problem; the first headline carries no
/// `error: ` (the printer adds it, as for any error) and each further problem starts its own
/// `error:` headline, so `error: {e}` reads as a compiler's list of errors.
#[derive(Debug)]
pub enum ScenarioError {
    /// The file could not be read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was read but is not a valid scenario; every problem found is listed.
    Invalid(Vec<Diagnostic>),
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ScenarioError::Invalid(diagnostics) => {
                for (i, d) in diagnostics.iter().enumerate() {
                    if i > 0 {
                        write!(f, "\n{LEVEL}")?;
                    }
                    f.write_str(&d.render())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ScenarioError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ScenarioError::Io { source, .. } => Some(source),
            ScenarioError::Invalid(_) => None,
        }
    }
}

/// The closest candidate to `input`, if one is close enough to be a plausible typo.
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let input_lower = input.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&input_lower, &c.to_ascii_lowercase()),
                *c,
            )
        })
        .filter(|(distance, c)| *distance <= (c.len().max(input.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Understands serde's standard wording for unknown fields and variants, so the message can say
/// "did you mean" and list the valid names in a readable way.
pub(crate) struct Unknown {
    pub what: &'static str,
    pub name: String,
    pub expected: Vec<String>,
}

impl Unknown {
    /// "did you mean `x`? valid keys here: `a`, `b`", or the list alone; `None` when serde named
    /// no valid ones.
    pub fn help(&self) -> Option<String> {
        let expected: Vec<&str> = self.expected.iter().map(String::as_str).collect();
        let list = expected
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ");
        match did_you_mean(&self.name, &expected) {
            Some(best) => Some(format!(
                "did you mean `{best}`? valid {}s here: {list}",
                self.what
            )),
            None if expected.is_empty() => None,
            None => Some(format!("valid {}s here: {list}", self.what)),
        }
    }
}

pub(crate) fn parse_unknown(message: &str) -> Option<Unknown> {
    let (what, rest) = if let Some(rest) = message.strip_prefix("unknown field `") {
        ("key", rest)
    } else if let Some(rest) = message.strip_prefix("unknown variant `") {
        ("value", rest)
    } else {
        return None;
    };
    let (name, rest) = rest.split_once('`')?;
    let expected = if let Some(list) = rest.strip_prefix(", expected one of ") {
        list.split(", ")
            .map(|s| s.trim_matches('`').to_string())
            .collect()
    } else if let Some(few) = rest.strip_prefix(", expected ") {
        // serde writes two candidates as "`a` or `b`".
        few.split(" or ")
            .map(|s| s.trim_matches('`').to_string())
            .collect()
    } else {
        Vec::new()
    };
    Some(Unknown {
        what,
        name: name.to_string(),
        expected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_failure_keeps_its_cause() {
        let e = ScenarioError::Io {
            path: PathBuf::from("f.toml"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("gone"));
        assert!(std::error::Error::source(&ScenarioError::Invalid(Vec::new())).is_none());
    }

    fn diagnostic(message: &str, span: Option<Range<usize>>) -> Diagnostic {
        Diagnostic {
            origin: "f.toml".into(),
            source: "name = 1\n".into(),
            span,
            message: message.into(),
            label: "here".into(),
            help: Some("write a string".into()),
            note: None,
        }
    }

    #[test]
    fn the_printer_writes_the_error_prefix() {
        let located = diagnostic("name: expected a string", Some(7..8));
        let whole = diagnostic("no name", None);
        let e = ScenarioError::Invalid(vec![located, whole]);
        assert_eq!(
            format!("error: {e}"),
            "error: name: expected a string\n \
             --> f.toml:1:8\n  \
             |\n\
             1 | name = 1\n  \
             |        ^ here\n  \
             |\n  \
             = help: write a string\n\
             error: f.toml: no name\n \
             = help: write a string"
        );
        let io = ScenarioError::Io {
            path: PathBuf::from("f.toml"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(io.to_string(), "cannot read f.toml: gone");
    }

    #[test]
    fn suggests_close_names_only() {
        let keys = ["requests", "concurrency", "retries", "retry_backoff"];
        assert_eq!(did_you_mean("concurency", &keys), Some("concurrency"));
        assert_eq!(did_you_mean("retires", &keys), Some("retries"));
        assert_eq!(did_you_mean("banana", &keys), None);
    }

    #[test]
    fn reads_serde_unknown_messages() {
        let u = parse_unknown("unknown field `latncy`, expected one of `path`, `status`")
            .unwrap_or_else(|| panic!("not parsed"));
        assert_eq!((u.what, u.name.as_str()), ("key", "latncy"));
        assert_eq!(u.expected, vec!["path", "status"]);
        let u = parse_unknown("unknown variant `dealy`, expected `delay`")
            .unwrap_or_else(|| panic!("not parsed"));
        assert_eq!((u.what, u.expected.len()), ("value", 1));
        let u = parse_unknown("unknown variant `reponse`, expected `request` or `response`")
            .unwrap_or_else(|| panic!("not parsed"));
        assert_eq!(u.expected, vec!["request", "response"]);
    }

    #[test]
    fn line_and_column_count_characters() {
        let d = Diagnostic {
            origin: "f.toml".into(),
            source: "a = 1\nnäme = 2\n".into(),
            span: Some(13..14),
            message: "m".into(),
            label: "l".into(),
            help: None,
            note: None,
        };
        assert_eq!(d.line_col(), Some((2, 7)));
    }
}
