//! Checks shared by every compiler of the file format: a [`Checker`] collects [`Problem`]s, each
//! at a path into the document ([`Seg`]s), so the caller can point at the offending value. The
//! fault compiler (`fault::compile`), the load plan (`load::compile`) and scenario validation all
//! report through it; `scenario` turns problems into located diagnostics.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};

use super::Methods;
use super::error::did_you_mean;

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path as the user reads it: `faults[2].match.path`.
pub fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// One validation problem, at a path into the document.
pub struct Problem {
    pub path: Vec<Seg>,
    /// Point at the key the path ends with rather than at its value (a bad header name).
    pub at_key: bool,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

/// Collects problems while building the checked values.
#[derive(Default)]
pub struct Checker {
    pub problems: Vec<Problem>,
}

impl Checker {
    pub fn report(
        &mut self,
        path: Vec<Seg>,
        message: impl Into<String>,
        label: &str,
        help: Option<String>,
    ) {
        self.problems.push(Problem {
            path,
            at_key: false,
            message: message.into(),
            label: label.to_string(),
            help,
        });
    }

    /// Like [`Checker::report`], with the caret on the key the path ends with.
    pub fn report_key(
        &mut self,
        path: Vec<Seg>,
        message: impl Into<String>,
        label: &str,
        help: Option<String>,
    ) {
        self.report(path, message, label, help);
        if let Some(p) = self.problems.last_mut() {
            p.at_key = true;
        }
    }

    pub fn range<T: PartialOrd + std::fmt::Display + Copy>(
        &mut self,
        path: Vec<Seg>,
        value: T,
        min: T,
        max: T,
    ) {
        if !(min..=max).contains(&value) {
            self.report(
                path,
                format!("must be between {min} and {max}, found {value}"),
                "out of range",
                None,
            );
        }
    }

    pub fn probability(&mut self, path: Vec<Seg>, p: f64) {
        if !(0.0..=1.0).contains(&p) {
            self.report(
                path,
                format!("a probability must be between 0 and 1, found {p}"),
                "not a probability",
                Some("write 0.25 for 25%".into()),
            );
        }
    }

    pub fn method(&mut self, path: Vec<Seg>, text: &str) -> Option<Method> {
        const STANDARD: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
        ];
        let upper = text.to_ascii_uppercase();
        if STANDARD.contains(&upper.as_str()) {
            return Method::from_bytes(upper.as_bytes()).ok();
        }
        let help = match did_you_mean(&upper, &STANDARD) {
            Some(m) => format!("did you mean `{m}`? valid methods: {}", STANDARD.join(", ")),
            None => format!("valid methods: {}", STANDARD.join(", ")),
        };
        self.report(
            path,
            format!("`{text}` is not an HTTP method"),
            "unknown method",
            Some(help),
        );
        None
    }

    pub fn methods(&mut self, path: Vec<Seg>, methods: &Methods) -> Vec<Method> {
        let list = methods.to_vec();
        if list.is_empty() {
            self.report(
                path.clone(),
                "the method list is empty",
                "empty",
                Some("leave `method` out to match every method".into()),
            );
        }
        let many = matches!(methods, Methods::Many(_));
        list.iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let p = if many {
                    with(&path, Seg::Index(i))
                } else {
                    path.clone()
                };
                self.method(p, m)
            })
            .collect()
    }

    pub fn headers(
        &mut self,
        path: Vec<Seg>,
        headers: &BTreeMap<String, String>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (name, value) in headers {
            let p = with(&path, Seg::Key(name.clone()));
            let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
                self.report_key(
                    p,
                    format!("`{name}` is not a valid header name"),
                    "invalid header name",
                    Some("header names are letters, digits and `-`".into()),
                );
                continue;
            };
            let Ok(v) = HeaderValue::from_str(value) else {
                self.report(
                    p,
                    format!("the value of `{name}` is not a valid header value"),
                    "invalid header value",
                    Some("header values are visible ASCII without line breaks".into()),
                );
                continue;
            };
            out.push((n, v));
        }
        out
    }

    /// Headers TraceForge sends (responses, requests): [`Checker::headers`], and none of the
    /// names the servers manage themselves.
    pub fn headers_to_send(
        &mut self,
        path: Vec<Seg>,
        headers: &BTreeMap<String, String>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let checked = self.headers(path.clone(), headers);
        for name in headers.keys() {
            self.managed(with(&path, Seg::Key(name.clone())), name, None);
        }
        checked
    }

    /// Reports `name` when it is one of [`MANAGED_HEADERS`], pointing at it.
    pub fn managed(&mut self, path: Vec<Seg>, name: &str, help: Option<&str>) {
        let lower = name.to_ascii_lowercase();
        let Some((label, reason)) = managed_header(&lower) else {
            return;
        };
        let help = help.unwrap_or(
            "remove it: TraceForge's servers and load generator set these headers themselves",
        );
        let at_key = matches!(path.last(), Some(Seg::Key(k)) if k == name);
        let message = format!("`{lower}` cannot be set: {reason}");
        if at_key {
            self.report_key(path, message, label, Some(help.into()));
        } else {
            self.report(path, message, label, Some(help.into()));
        }
    }

    pub fn positive(&mut self, path: Vec<Seg>, d: Duration, what: &str) {
        if d.is_zero() {
            self.report(
                path,
                format!("{what} must be longer than zero"),
                "zero",
                None,
            );
        }
    }
}

pub fn key(k: &str) -> Vec<Seg> {
    vec![Seg::Key(k.to_string())]
}

pub fn keys(ks: &[&str]) -> Vec<Seg> {
    ks.iter().map(|k| Seg::Key(k.to_string())).collect()
}

pub fn with(path: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

/// True when `name` is usable as a file name on every platform we run on.
pub fn is_file_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.contains("..")
        && !name.ends_with('.')
}

/// A status a server can answer with: 200 to 599. hyper answers a 1xx response with a 500 and
/// closes the connection, since an informational status cannot end an exchange.
pub fn final_status(c: &mut Checker, path: Vec<Seg>, status: u16) {
    if (100..=199).contains(&status) {
        c.report(
            path,
            format!("{status} is an informational status, which cannot end a response"),
            "not a final status",
            Some("use a status from 200 to 599".into()),
        );
    } else if !(200..=599).contains(&status) {
        c.report(
            path,
            format!("{status} is not an HTTP status"),
            "not a status",
            Some("use a status from 200 to 599".into()),
        );
    }
}

/// 204 and 304 responses have no body (RFC 9110 sections 15.3.5 and 15.4.5): the server would
/// drop it without a word, so a body given for one is a mistake worth pointing at.
pub fn no_body_allowed(c: &mut Checker, path: Vec<Seg>, status: u16, body: &str) {
    if matches!(status, 204 | 304) && !body.is_empty() {
        c.report(
            path,
            format!("a {status} response has no body"),
            "never sent",
            Some("remove `body`, or use a status that carries one, such as 200 or 503".into()),
        );
    }
}

/// Headers that frame a message or describe one connection (RFC 9112 section 6, RFC 9110 section
/// 7.6.1). The servers set them from the body and the connection; set from configuration, they
/// cut bodies short or poison the next response on a keep-alive connection. Header faults, error
/// rules, routes, load targets, `[proxy] add_response_headers` and `PROXY_MOD_HEADER` all refuse
/// them.
pub const MANAGED_HEADERS: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// The label and the reason why `name` (lowercase) cannot be set, when it is a managed header.
pub fn managed_header(name: &str) -> Option<(&'static str, &'static str)> {
    if !MANAGED_HEADERS.contains(&name) {
        return None;
    }
    Some(match name {
        "content-length" | "transfer-encoding" => (
            "framing header",
            "it frames the message, which the server does from the body; another value would cut the body short or corrupt the connection",
        ),
        _ => (
            "hop-by-hop header",
            "it is a hop-by-hop header, which describes one connection and is managed by the server",
        ),
    })
}

/// The problems in one line, each with its help in parentheses: for flags and headers, where
/// there is no file to point into.
pub fn one_line(problems: Vec<Problem>) -> String {
    let messages: Vec<String> = problems
        .into_iter()
        .map(|p| match p.help {
            Some(help) => format!("{} ({help})", p.message),
            None => p.message,
        })
        .collect();
    messages.join("; ")
}
