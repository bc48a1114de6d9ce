//! Which requests a rule applies to: path glob, methods, header and query conditions, and the
//! conditions on the upstream's response (status, headers). Pure functions of the request's facts
//! and of the response head; `FaultPlan::decide` and `FaultPlan::decide_response` call them.

use globset::{GlobBuilder, GlobMatcher};
use hyper::Method;
use hyper::header::{HeaderMap, HeaderName};

use super::RequestFacts;

/// A compiled path glob, kept with its source text for display.
#[derive(Debug, Clone)]
pub struct PathGlob {
    pattern: String,
    matcher: GlobMatcher,
}

impl PathGlob {
    /// `*` stays within a path segment, `**` crosses segments.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| e.kind().to_string())?;
        Ok(PathGlob {
            pattern: pattern.to_string(),
            matcher: glob.compile_matcher(),
        })
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.matcher.is_match(path)
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

impl PartialEq for PathGlob {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

/// The value a header or query condition asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueMatch {
    /// `"*"`: present, with any value (also an empty one).
    Any,
    /// Exactly this value.
    Exact(String),
}

impl ValueMatch {
    /// `"*"` is [`ValueMatch::Any`]; anything else must match exactly.
    pub fn parse(text: &str) -> Self {
        if text == "*" {
            ValueMatch::Any
        } else {
            ValueMatch::Exact(text.to_string())
        }
    }

    fn accepts(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Any => true,
            ValueMatch::Exact(want) => want.as_bytes() == value,
        }
    }
}

/// Which requests a rule applies to. Every given condition must hold; empty conditions match
/// everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matcher {
    pub path: Option<PathGlob>,
    /// Empty: any method.
    pub methods: Vec<Method>,
    /// Header names are case-insensitive ([`HeaderName`] is lowercase); a header with several
    /// values matches when any of them does.
    pub headers: Vec<(HeaderName, ValueMatch)>,
    /// Query parameter names are case-sensitive and compared after percent-decoding; a parameter
    /// given several times matches when any of its values does.
    pub query: Vec<(String, ValueMatch)>,
    /// gRPC calls: the path `/package.Service/Method` matches this glob and the `content-type`
    /// is `application/grpc` (or one of its `+proto`, `+json` forms).
    pub grpc: Option<PathGlob>,
    /// The upstream's response status is one of these (a status or a class); empty: any. With
    /// this or `response_headers`, the rule is a response rule (see [`Matcher::is_response`]).
    pub response_status: Vec<StatusMatch>,
    /// The upstream's response headers, as `headers` for the request's.
    pub response_headers: Vec<(HeaderName, ValueMatch)>,
}

/// One item of a `response_status` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// Exactly this status.
    Code(u16),
    /// Every status of this hundred: `Class(5)` is `5xx`.
    Class(u8),
}

impl StatusMatch {
    pub fn accepts(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(code) => code == status,
            StatusMatch::Class(class) => status / 100 == u16::from(class),
        }
    }
}

impl std::fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusMatch::Code(code) => write!(f, "{code}"),
            StatusMatch::Class(class) => write!(f, "{class}xx"),
        }
    }
}

/// True for a gRPC request: `content-type: application/grpc`, `application/grpc+proto`, ...
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/grpc"
                || v.starts_with("application/grpc+")
                || v.starts_with("application/grpc;")
        })
}

impl Matcher {
    /// True when the request meets every condition.
    pub fn matches(&self, facts: &RequestFacts<'_>) -> bool {
        self.matches_target(facts.method, facts.path, facts.query)
            && self.headers_match(facts.headers)
            && self
                .grpc
                .as_ref()
                .is_none_or(|g| g.is_match(facts.path) && is_grpc(facts.headers))
    }

    /// The conditions a load-profile target can be checked against before it is sent: method, path
    /// and query. Header conditions are taken as met (a target carries no headers of its own).
    pub fn matches_target(&self, method: &Method, path: &str, query: Option<&str>) -> bool {
        self.path.as_ref().is_none_or(|g| g.is_match(path))
            && (self.methods.is_empty() || self.methods.contains(method))
            && self.query_matches(query)
    }

    fn query_matches(&self, query: Option<&str>) -> bool {
        if self.query.is_empty() {
            return true;
        }
        let pairs: Vec<(String, String)> = query_pairs(query.unwrap_or("")).collect();
        self.query.iter().all(|(name, want)| {
            pairs
                .iter()
                .any(|(n, v)| n == name && want.accepts(v.as_bytes()))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.path.is_none()
            && self.methods.is_empty()
            && self.headers.is_empty()
            && self.query.is_empty()
            && self.grpc.is_none()
            && !self.is_response()
    }

    /// Whether the rule has conditions on the upstream's response: then it is decided after the
    /// upstream answers ([`crate::fault::FaultPlan::decide_response`]), never before.
    pub fn is_response(&self) -> bool {
        !self.response_status.is_empty() || !self.response_headers.is_empty()
    }

    /// True when the upstream's response meets the response conditions (the request's are
    /// checked by [`Matcher::matches`]).
    pub fn matches_response(&self, status: u16, headers: &HeaderMap) -> bool {
        (self.response_status.is_empty() || self.response_status.iter().any(|s| s.accepts(status)))
            && header_conditions_hold(&self.response_headers, headers)
    }

    fn headers_match(&self, headers: &HeaderMap) -> bool {
        header_conditions_hold(&self.headers, headers)
    }
}

/// Every `(name, value)` condition holds: a header with several values matches when any does.
fn header_conditions_hold(conditions: &[(HeaderName, ValueMatch)], headers: &HeaderMap) -> bool {
    conditions.iter().all(|(name, want)| {
        headers
            .get_all(name)
            .iter()
            .any(|v| want.accepts(v.as_bytes()))
    })
}

/// The `name=value` pairs of a query string, percent-decoded, `+` read as a space. A parameter
/// without `=` has an empty value.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(name), percent_decode(value))
    })
}

/// Decodes `%XX` escapes and `+`; malformed escapes are kept as written.
fn percent_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_keep_single_star_within_a_segment() {
        let g = PathGlob::new("/api/*").unwrap_or_else(|e| panic!("{e}"));
        assert!(g.is_match("/api/resource"));
        assert!(!g.is_match("/api/a/b"));
        assert!(!g.is_match("/apix"));
        let prefix = PathGlob::new("{/api,/api/**}").unwrap_or_else(|e| panic!("{e}"));
        assert!(prefix.is_match("/api"));
        assert!(prefix.is_match("/api/a/b"));
        assert!(!prefix.is_match("/apiary"));
    }

    #[test]
    fn query_strings_are_split_and_decoded() {
        let pairs: Vec<_> = query_pairs("a=1&b=x%20y&c&d=p+q&&e=%zz").collect();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a", "1"),
                ("b", "x y"),
                ("c", ""),
                ("d", "p q"),
                ("e", "%zz")
            ]
        );
    }
}
