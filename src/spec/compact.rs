//! The compact fault grammar, accepted wherever a fault is (scenario files, `traceforge proxy --fault`):
//!
//! ```text
//! delay:DURATION[-DURATION][:PROBABILITY][:PATH]    delay:100ms  delay:100ms-500ms  delay:200ms:/api
//! error:STATUS[:PROBABILITY][:PATH]                 error:503    error:503:0.5      error:500:0.1:/api
//! drop[:PROBABILITY][:PATH]                         drop:0.1     drop:1:/api
//! ```
//!
//! PATH is a prefix: `/api` covers `/api` itself and everything under `/api/`. A token that starts
//! with `/` is the path (it takes the rest of the string, colons included); a number is the probability.

use std::fmt;

use super::duration::DelaySpec;
use super::{FaultKind, FaultSpec, MatchSpec};

/// Why a string is not a compact fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompactError {
    /// A kind that exists only as a table (`reset`, `hang`, ...). What to write instead depends on
    /// where the string came from, so the caller says it.
    TableOnly(FaultKind),
    /// Anything else, in words.
    Invalid(String),
}

impl CompactError {
    /// The message for a scenario file, where the table form can be written instead.
    pub fn in_file(&self) -> String {
        match self {
            CompactError::TableOnly(kind) => {
                format!("{self}; write a table such as `{{ kind = \"{kind}\" }}`")
            }
            CompactError::Invalid(message) => message.clone(),
        }
    }
}

impl fmt::Display for CompactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompactError::TableOnly(kind) => write!(
                f,
                "`{kind}` faults have no compact form (compact faults are `delay`, `error` and `drop`)"
            ),
            CompactError::Invalid(message) => f.write_str(message),
        }
    }
}

impl From<String> for CompactError {
    fn from(message: String) -> Self {
        CompactError::Invalid(message)
    }
}

/// Parses one compact fault string into the same [`FaultSpec`] a `[[faults]]` table would give.
/// Range checks (probability, status) happen in validation, like for tables.
pub fn parse(text: &str) -> Result<FaultSpec, CompactError> {
    let text = text.trim();
    let (kind_text, rest) = match text.split_once(':') {
        Some((k, r)) => (k, Some(r)),
        None => (text, None),
    };
    let kind = match kind_text {
        "delay" => FaultKind::Delay,
        "error" => FaultKind::Error,
        "drop" => FaultKind::Drop,
        other => {
            if let Some(kind) = FaultKind::ALL.iter().find(|k| k.as_str() == other) {
                return Err(CompactError::TableOnly(*kind));
            }
            let names = ["delay", "error", "drop"];
            let hint = super::error::did_you_mean(other, &names)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(CompactError::Invalid(format!(
                "unknown fault kind `{other}` in \"{text}\"{hint}; compact faults are `delay:100ms[-500ms][:P][:/path]`, `error:503[:P][:/path]` or `drop[:P][:/path]`"
            )));
        }
    };
    let mut spec = FaultSpec::new(kind);
    let mut tokens = Tokens::new(rest.unwrap_or(""));
    match kind {
        FaultKind::Delay => {
            let arg = tokens.next_arg().ok_or_else(|| {
                format!("\"{text}\" needs a duration: `delay:100ms` or `delay:100ms-500ms`")
            })?;
            spec.delay = Some(
                DelaySpec::parse(arg)
                    .map_err(|e| format!("in \"{text}\": {e}"))?
                    .into(),
            );
        }
        FaultKind::Error => {
            let arg = tokens
                .next_arg()
                .ok_or_else(|| format!("\"{text}\" needs a status: `error:503`"))?;
            let status = arg.parse::<u16>().map_err(|_| {
                format!("in \"{text}\": `{arg}` is not an HTTP status (100 to 599)")
            })?;
            spec.status = Some(status);
        }
        // Only delay, error and drop reach here (see above).
        _ => {}
    }
    for token in tokens {
        match token {
            Token::Path(path) => {
                let glob = if path.contains(['*', '?', '[', '{']) {
                    path.to_string()
                } else {
                    let base = path.trim_end_matches('/');
                    if base.is_empty() {
                        "/**".to_string()
                    } else {
                        format!("{{{base},{base}/**}}")
                    }
                };
                spec.matcher = Some(MatchSpec {
                    path: Some(glob),
                    ..MatchSpec::default()
                });
            }
            Token::Arg(arg) => {
                if spec.probability.is_some() {
                    return Err(CompactError::Invalid(format!(
                        "in \"{text}\": unexpected `{arg}`; after the probability only a path starting with `/` may follow"
                    )));
                }
                let p = arg.parse::<f64>().map_err(|_| {
                    format!("in \"{text}\": `{arg}` is neither a probability (0 to 1) nor a path starting with `/`")
                })?;
                spec.probability = Some(p.into());
            }
        }
    }
    Ok(spec)
}

enum Token<'a> {
    Arg(&'a str),
    Path(&'a str),
}

struct Tokens<'a> {
    rest: Option<&'a str>,
}

impl<'a> Tokens<'a> {
    fn new(rest: &'a str) -> Self {
        Tokens {
            rest: (!rest.is_empty()).then_some(rest),
        }
    }

    /// The next token, only if it is a plain argument (not a path).
    fn next_arg(&mut self) -> Option<&'a str> {
        match self.rest {
            Some(r) if !r.starts_with('/') => match self.next() {
                Some(Token::Arg(a)) => Some(a),
                _ => None,
            },
            _ => None,
        }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;
    fn next(&mut self) -> Option<Token<'a>> {
        let rest = self.rest.take()?;
        if rest.starts_with('/') {
            return Some(Token::Path(rest));
        }
        match rest.split_once(':') {
            Some((tok, more)) => {
                self.rest = Some(more);
                Some(Token::Arg(tok))
            }
            None => Some(Token::Arg(rest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ok(text: &str) -> FaultSpec {
        match parse(text) {
            Ok(spec) => spec,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn every_documented_form_parses() {
        let ms = Duration::from_millis;
        let d = ok("delay:100ms");
        assert_eq!(
            (d.kind, d.delay),
            (FaultKind::Delay, Some(DelaySpec::Fixed(ms(100)).into()))
        );
        let d = ok("delay:100ms-500ms");
        assert_eq!(d.delay, Some(DelaySpec::Range(ms(100), ms(500)).into()));
        let d = ok("delay:200ms:/api");
        assert_eq!(
            d.matcher.and_then(|m| m.path).as_deref(),
            Some("{/api,/api/**}")
        );
        let e = ok("error:503");
        assert_eq!(
            (e.kind, e.status, e.probability),
            (FaultKind::Error, Some(503), None)
        );
        let e = ok("error:503:0.5");
        assert_eq!(e.probability, Some(0.5.into()));
        let e = ok("error:500:0.1:/api");
        assert_eq!((e.status, e.probability), (Some(500), Some(0.1.into())));
        assert!(e.matcher.is_some());
        let d = ok("drop:0.1");
        assert_eq!((d.kind, d.probability), (FaultKind::Drop, Some(0.1.into())));
        let d = ok("drop");
        assert_eq!(d.probability, None);
        let d = ok("delay:1s:0.3:/api/*");
        assert_eq!(d.probability, Some(0.3.into()));
        assert_eq!(d.matcher.and_then(|m| m.path).as_deref(), Some("/api/*"));
    }

    #[test]
    fn malformed_strings_say_what_is_valid() {
        assert!(
            parse("dealy:100ms")
                .unwrap_err()
                .to_string()
                .contains("did you mean `delay`")
        );
        assert!(
            parse("delay")
                .unwrap_err()
                .to_string()
                .contains("needs a duration")
        );
        assert!(
            parse("delay:/api")
                .unwrap_err()
                .to_string()
                .contains("needs a duration")
        );
        assert!(
            parse("error")
                .unwrap_err()
                .to_string()
                .contains("needs a status")
        );
        assert!(
            parse("error:abc")
                .unwrap_err()
                .to_string()
                .contains("not an HTTP status")
        );
        assert!(
            parse("error:503:x")
                .unwrap_err()
                .to_string()
                .contains("neither a probability")
        );
        assert!(
            parse("drop:0.1:0.2")
                .unwrap_err()
                .to_string()
                .contains("unexpected `0.2`")
        );
        assert!(
            parse("delay:100")
                .unwrap_err()
                .to_string()
                .contains("no unit")
        );
        assert_eq!(
            parse("reset:0.1").err(),
            Some(CompactError::TableOnly(FaultKind::Reset))
        );
        assert_eq!(
            CompactError::TableOnly(FaultKind::Hang).in_file(),
            "`hang` faults have no compact form (compact faults are `delay`, `error` and `drop`); write a table such as `{ kind = \"hang\" }`"
        );
    }
}
