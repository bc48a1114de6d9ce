//! Validation: a parsed [`ScenarioSpec`] becomes a checked [`Scenario`], or a list of every problem
//! found, each with the path of the offending value so the caller can point at it in the file.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode};

use std::sync::Arc;

use super::duration::{DelaySpec, DurationSpec, MAX_DURATION, format_duration};
use super::error::did_you_mean;
use super::spec::{Clock, Distribution, FaultEntry, FaultKind, FaultSpec, Methods, ScenarioSpec};
use super::{Expectations, LoadConfig, ProxyConfig, Route, Scenario, Seg, Target, UpstreamConfig};
use crate::fault::{
    DelayModel, ErrorReply, FaultAction, FaultRule, Matcher, PathGlob, RandomDelay, ValueMatch,
    Window, compact, header_ops,
};

/// One validation problem, at a path into the document.
pub(crate) struct Problem {
    pub path: Vec<Seg>,
    /// Point at the key the path ends with rather than at its value (a bad header name).
    pub at_key: bool,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

/// Collects problems while building the checked values.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn report(
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
    fn report_key(
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

    fn range<T: PartialOrd + std::fmt::Display + Copy>(
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

    fn probability(&mut self, path: Vec<Seg>, p: f64) {
        if !(0.0..=1.0).contains(&p) {
            self.report(
                path,
                format!("a probability must be between 0 and 1, found {p}"),
                "not a probability",
                Some("write 0.25 for 25%".into()),
            );
        }
    }

    fn method(&mut self, path: Vec<Seg>, text: &str) -> Option<Method> {
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

    fn methods(&mut self, path: Vec<Seg>, methods: &Methods) -> Vec<Method> {
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

    fn headers(
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
    fn headers_to_send(
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
    fn managed(&mut self, path: Vec<Seg>, name: &str, help: Option<&str>) {
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

    fn positive(&mut self, path: Vec<Seg>, d: Duration, what: &str) {
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

fn key(k: &str) -> Vec<Seg> {
    vec![Seg::Key(k.to_string())]
}

fn keys(ks: &[&str]) -> Vec<Seg> {
    ks.iter().map(|k| Seg::Key(k.to_string())).collect()
}

fn with(path: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

/// True when `name` is usable as a file name on every platform we run on.
pub(crate) fn is_file_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.contains("..")
        && !name.ends_with('.')
}

pub(crate) fn check(spec: &ScenarioSpec) -> Result<Scenario, Vec<Problem>> {
    let mut c = Checker::default();

    if !is_file_name(&spec.name) {
        c.report(
            key("name"),
            format!("`{}` cannot be used as a file name", spec.name),
            "not a usable name",
            Some("use letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 100 characters (for example \"flaky-api\")".into()),
        );
    }

    let upstream = check_upstream(&mut c, spec);
    let faults = check_faults(&mut c, spec);
    let proxy = ProxyConfig {
        add_response_headers: c.headers_to_send(
            keys(&["proxy", "add_response_headers"]),
            &spec.proxy.add_response_headers,
        ),
        upstream_timeout: spec
            .proxy
            .upstream_timeout
            .map_or(ProxyConfig::DEFAULT_UPSTREAM_TIMEOUT, |d| d.get()),
        upstream_read_timeout: spec
            .proxy
            .upstream_read_timeout
            .map_or(ProxyConfig::DEFAULT_UPSTREAM_READ_TIMEOUT, |d| d.get()),
        client_header_timeout: spec
            .proxy
            .client_header_timeout
            .map_or(ProxyConfig::DEFAULT_CLIENT_HEADER_TIMEOUT, |d| d.get()),
        client_body_timeout: spec
            .proxy
            .client_body_timeout
            .map_or(ProxyConfig::DEFAULT_CLIENT_BODY_TIMEOUT, |d| d.get()),
        header_faults: spec.proxy.header_faults,
        forward_traceforge_headers: spec.proxy.forward_traceforge_headers,
    };
    for (key, value, what) in [
        (
            "upstream_timeout",
            proxy.upstream_timeout,
            "the upstream timeout",
        ),
        (
            "upstream_read_timeout",
            proxy.upstream_read_timeout,
            "the upstream read timeout",
        ),
        (
            "client_header_timeout",
            proxy.client_header_timeout,
            "the client header timeout",
        ),
        (
            "client_body_timeout",
            proxy.client_body_timeout,
            "the client body timeout",
        ),
    ] {
        c.positive(keys(&["proxy", key]), value, what);
    }
    let load = check_load(&mut c, spec);
    let expect = check_expect(&mut c, spec, &faults, &load);

    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    Ok(Scenario {
        name: spec.name.clone(),
        description: spec.description.clone().unwrap_or_default(),
        seed: spec.seed,
        upstream,
        faults,
        proxy,
        load,
        expect,
        clock: spec.run.clock,
        spec: spec.clone(),
    })
}

fn check_upstream(c: &mut Checker, spec: &ScenarioSpec) -> UpstreamConfig {
    let mut upstream = UpstreamConfig::default();
    if spec.upstream.url.is_some() && spec.run.clock == Clock::Virtual {
        c.report(
            keys(&["run", "clock"]),
            "the virtual clock cannot reach an external upstream",
            "needs the demo upstream",
            Some("virtual time runs over in-memory pipes with the built-in demo upstream; remove `upstream.url`, or use clock = \"real\"".into()),
        );
    }
    if let Some(url) = &spec.upstream.url {
        match super::url::parse_http_url(url) {
            Ok(uri) => upstream.url = Some(uri),
            Err(e) => c.report(keys(&["upstream", "url"]), e.message, e.label, Some(e.help)),
        }
        if !spec.upstream.routes.is_empty() {
            c.report(
                keys(&["upstream", "routes"]),
                "routes are served by the built-in demo upstream, which is not used when `url` is set",
                "ignored with `url`",
                Some("remove `url` to use the demo upstream, or remove `routes`".into()),
            );
        }
    }
    for (i, route) in spec.upstream.routes.iter().enumerate() {
        let at = with(&keys(&["upstream", "routes"]), Seg::Index(i));
        if !route.path.starts_with('/') || route.path.contains(['?', '#', ' ']) {
            c.report(
                with(&at, Seg::Key("path".into())),
                format!("`{}` is not a request path", route.path),
                "not a path",
                Some("a route path starts with `/` and has no query, like \"/api/slow\"".into()),
            );
        }
        final_status(c, with(&at, Seg::Key("status".into())), route.status);
        no_body_allowed(
            c,
            with(&at, Seg::Key("body".into())),
            route.status,
            &route.body,
        );
        let methods = route
            .method
            .as_ref()
            .map(|m| c.methods(with(&at, Seg::Key("method".into())), m))
            .unwrap_or_default();
        let headers = c.headers_to_send(with(&at, Seg::Key("headers".into())), &route.headers);
        let latency = route.latency.map_or(Duration::ZERO, |d| d.get());
        upstream.routes.push(Route {
            path: route.path.clone(),
            methods,
            status: StatusCode::from_u16(route.status).unwrap_or(StatusCode::OK),
            body: route.body.clone(),
            headers,
            latency,
        });
    }
    upstream
}

fn check_faults(c: &mut Checker, spec: &ScenarioSpec) -> Vec<FaultRule> {
    let mut rules = Vec::new();
    let mut names = BTreeSet::new();
    for (i, entry) in spec.faults.iter().enumerate() {
        let at = vec![Seg::Key("faults".into()), Seg::Index(i)];
        let (fault, compact_form) = match entry {
            FaultEntry::Table(t) => (t.clone(), false),
            FaultEntry::Compact(s) => match compact::parse(s) {
                Ok(t) => (t, true),
                Err(e) => {
                    c.report(at, e.in_file(), "invalid fault", None);
                    continue;
                }
            },
        };
        // Compact faults have no fields of their own to point at: point at the string.
        let field = |name: &str| {
            if compact_form {
                at.clone()
            } else {
                with(&at, Seg::Key(name.into()))
            }
        };
        let name = fault
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", fault.kind, i + 1));
        if !is_file_name(&name) || name.len() > 64 {
            c.report(field("name"), format!("`{name}` is not a usable rule name"), "invalid name",
                Some("use letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 64 characters".into()));
        }
        if !names.insert(name.clone()) {
            c.report(
                field("name"),
                format!("two rules are named `{name}`"),
                "duplicate name",
                Some(
                    "rule names must be unique: they label metrics, outcomes and expectations"
                        .into(),
                ),
            );
        }
        if let Some(rule) = check_rule(c, &fault, name, &field) {
            rules.push(rule);
        }
    }
    rules
}

/// Checks one fault, table or compact, and compiles it. `field` gives the path of a field.
fn check_rule(
    c: &mut Checker,
    fault: &FaultSpec,
    name: String,
    field: &dyn Fn(&str) -> Vec<Seg>,
) -> Option<FaultRule> {
    let probability = fault.probability.unwrap_or(1.0);
    c.probability(field("probability"), probability);
    let action = check_action(c, fault, field);
    let matcher = check_matcher(c, fault, field);
    let window = check_window(c, fault, field);
    Some(FaultRule {
        name,
        action: action?,
        probability,
        matcher,
        window,
    })
}

/// Compiles a fault outside a scenario file (the `x-traceforge-fault` header) with the same
/// checks, or says what is wrong in one line.
pub(crate) fn compile_rule(fault: &FaultSpec, name: &str) -> Result<FaultRule, String> {
    let mut c = Checker::default();
    let rule = check_rule(&mut c, fault, name.to_string(), &|_| Vec::new());
    if !c.problems.is_empty() {
        let messages: Vec<String> = c
            .problems
            .into_iter()
            .map(|p| match p.help {
                Some(help) => format!("{} ({help})", p.message),
                None => p.message,
            })
            .collect();
        return Err(messages.join("; "));
    }
    rule.ok_or_else(|| "not a usable fault".to_string())
}

/// Every kind-specific field, whether it is given, and the kinds it applies to.
fn kind_fields(f: &FaultSpec) -> [(&'static str, bool, &'static [FaultKind]); 16] {
    use FaultKind as K;
    [
        ("delay", f.delay.is_some(), &[K::Delay]),
        ("distribution", f.distribution.is_some(), &[K::Delay]),
        ("mean", f.mean.is_some(), &[K::Delay]),
        ("stddev", f.stddev.is_some(), &[K::Delay]),
        ("jitter", f.jitter.is_some(), &[K::Delay]),
        ("status", f.status.is_some(), &[K::Error, K::Status]),
        ("body", f.body.is_some(), &[K::Error]),
        ("headers", f.headers.is_some(), &[K::Error]),
        ("retry_after", f.retry_after.is_some(), &[K::Error]),
        ("cap", f.cap.is_some(), &[K::Hang]),
        ("after_bytes", f.after_bytes.is_some(), &[K::Truncate]),
        (
            "bytes_per_second",
            f.bytes_per_second.is_some(),
            &[K::Throttle],
        ),
        ("target", f.target.is_some(), &[K::Headers]),
        ("add", f.add.is_some(), &[K::Headers]),
        ("set", f.set.is_some(), &[K::Headers]),
        ("remove", f.remove.is_some(), &[K::Headers]),
    ]
}

/// "a" or "an", for "an `error` fault".
fn article(kind: FaultKind) -> &'static str {
    if kind == FaultKind::Error { "an" } else { "a" }
}

/// "`a`", "`a` and `b`", "`a`, `b` and `c`".
fn kind_list(kinds: &[FaultKind]) -> String {
    let names: Vec<String> = kinds.iter().map(|k| format!("`{k}`")).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

fn check_action(
    c: &mut Checker,
    fault: &FaultSpec,
    field: &dyn Fn(&str) -> Vec<Seg>,
) -> Option<FaultAction> {
    let kind = fault.kind;
    let mut misplaced = false;
    for (name, present, kinds) in kind_fields(fault) {
        if !present || kinds.contains(&kind) {
            continue;
        }
        misplaced = true;
        let help = if kind == FaultKind::Headers && name == "headers" {
            "a `headers` fault changes headers with `add`, `set` and `remove`; `headers` is for the response of an `error` fault".to_string()
        } else {
            format!(
                "`{name}` belongs to {} faults; remove it or change `kind`",
                kind_list(kinds)
            )
        };
        c.report(
            field(name),
            format!(
                "`{name}` does not apply to {} `{kind}` fault",
                article(kind)
            ),
            "not used by this kind",
            Some(help),
        );
    }
    let action = match kind {
        FaultKind::Delay => check_delay(c, fault, field),
        FaultKind::Error => {
            let status = required_status(
                c,
                fault,
                field,
                "an `error` fault",
                "add `status = 503` (any status from 200 to 599)",
            )?;
            if let Some(body) = &fault.body {
                no_body_allowed(c, field("body"), status, body);
            }
            let headers = fault
                .headers
                .as_ref()
                .map(|h| c.headers_to_send(field("headers"), h))
                .unwrap_or_default();
            Some(FaultAction::Error(Arc::new(ErrorReply {
                status,
                body: fault.body.clone(),
                headers,
                retry_after: fault.retry_after.map(DurationSpec::get),
            })))
        }
        FaultKind::Drop => Some(FaultAction::Drop),
        FaultKind::Reset => Some(FaultAction::Reset),
        FaultKind::Hang => {
            let cap = fault.cap.map(DurationSpec::get);
            if let Some(cap) = cap {
                c.positive(field("cap"), cap, "the hang's cap");
            }
            Some(FaultAction::Hang { cap })
        }
        FaultKind::Truncate => {
            let Some(after_bytes) = fault.after_bytes else {
                c.report(
                    field("kind"),
                    "a `truncate` fault needs `after_bytes`",
                    "missing `after_bytes`",
                    Some("add `after_bytes = 1024`: how much of the body the client gets (0 for none)".into()),
                );
                return None;
            };
            Some(FaultAction::Truncate { after_bytes })
        }
        FaultKind::Throttle => {
            let Some(bytes_per_second) = fault.bytes_per_second else {
                c.report(
                    field("kind"),
                    "a `throttle` fault needs `bytes_per_second`",
                    "missing `bytes_per_second`",
                    Some("add `bytes_per_second = 20480` (20 KB/s)".into()),
                );
                return None;
            };
            if bytes_per_second == 0 {
                c.report(
                    field("bytes_per_second"),
                    "a throttle of 0 bytes per second would never send the body",
                    "zero",
                    Some("use at least 1; to test a response that never comes, use `kind = \"hang\"`".into()),
                );
            }
            Some(FaultAction::Throttle { bytes_per_second })
        }
        FaultKind::Headers => check_header_fault(c, fault, field),
        FaultKind::Status => {
            let status = required_status(
                c,
                fault,
                field,
                "a `status` fault",
                "add `status = 500`: the status that replaces the upstream's",
            )?;
            Some(FaultAction::Status(status))
        }
    };
    // A misplaced field is reported once; the action is not used when the fault has problems.
    if misplaced { None } else { action }
}

fn required_status(
    c: &mut Checker,
    fault: &FaultSpec,
    field: &dyn Fn(&str) -> Vec<Seg>,
    what: &str,
    help: &str,
) -> Option<u16> {
    let Some(status) = fault.status else {
        c.report(
            field("kind"),
            format!("{what} needs `status`"),
            "missing `status`",
            Some(help.into()),
        );
        return None;
    };
    final_status(c, field("status"), status);
    Some(status)
}

/// A status a server can answer with: 200 to 599. hyper answers a 1xx response with a 500 and
/// closes the connection, since an informational status cannot end an exchange.
fn final_status(c: &mut Checker, path: Vec<Seg>, status: u16) {
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
fn no_body_allowed(c: &mut Checker, path: Vec<Seg>, status: u16, body: &str) {
    if matches!(status, 204 | 304) && !body.is_empty() {
        c.report(
            path,
            format!("a {status} response has no body"),
            "never sent",
            Some("remove `body`, or use a status that carries one, such as 200 or 503".into()),
        );
    }
}

fn check_delay(
    c: &mut Checker,
    fault: &FaultSpec,
    field: &dyn Fn(&str) -> Vec<Seg>,
) -> Option<FaultAction> {
    let jitter = fault.jitter.map(DurationSpec::get);
    let model = match (fault.delay, fault.distribution) {
        (Some(_), Some(_)) => {
            c.report(
                field("distribution"),
                "a `delay` fault takes `delay` or `distribution`, not both",
                "conflicts with `delay`",
                Some("keep `delay` for a fixed value or a range, or `distribution` with `mean` and `stddev`".into()),
            );
            return None;
        }
        (None, None) => {
            c.report(
                field("kind"),
                "a `delay` fault needs `delay` or `distribution`",
                "missing `delay`",
                Some("add `delay = \"100ms\"`, a range `delay = \"100ms..500ms\"`, or `distribution = \"normal\"` with `mean` and `stddev`".into()),
            );
            return None;
        }
        (Some(delay), None) => {
            for name in ["mean", "stddev"] {
                let given = if name == "mean" {
                    fault.mean
                } else {
                    fault.stddev
                };
                if given.is_some() {
                    c.report(
                        field(name),
                        format!("`{name}` needs `distribution`"),
                        "without `distribution`",
                        Some("add `distribution = \"normal\"` or `\"lognormal\"` instead of `delay`, or remove `mean` and `stddev`".into()),
                    );
                }
            }
            if let DelaySpec::Range(lo, hi) = delay {
                if lo > hi {
                    c.report(
                        field("delay"),
                        format!(
                            "the range {}..{} runs backwards",
                            format_duration(lo),
                            format_duration(hi)
                        ),
                        "lower bound above upper bound",
                        Some(format!(
                            "write \"{}..{}\"",
                            format_duration(hi),
                            format_duration(lo)
                        )),
                    );
                }
            }
            DelayModel::from(delay)
        }
        (None, Some(distribution)) => {
            let (Some(mean), Some(stddev)) = (fault.mean, fault.stddev) else {
                let missing = if fault.mean.is_none() {
                    "mean"
                } else {
                    "stddev"
                };
                c.report(
                    field("distribution"),
                    format!("a `{distribution}` delay needs `mean` and `stddev`"),
                    &format!("missing `{missing}`"),
                    Some("add `mean = \"200ms\"` and `stddev = \"50ms\"`".into()),
                );
                return None;
            };
            let (mean, stddev) = (mean.get(), stddev.get());
            match distribution {
                Distribution::Normal => DelayModel::Normal { mean, stddev },
                Distribution::Lognormal => {
                    if mean.is_zero() {
                        c.report(
                            field("mean"),
                            "a `lognormal` delay needs a mean above zero",
                            "zero",
                            Some("use `distribution = \"normal\"` for delays around zero".into()),
                        );
                    }
                    DelayModel::LogNormal { mean, stddev }
                }
            }
        }
    };
    Some(FaultAction::Delay(RandomDelay { model, jitter }))
}

/// Headers that frame a message or describe one connection (RFC 9112 section 6, RFC 9110 section
/// 7.6.1). The servers set them from the body and the connection; set from configuration, they
/// cut bodies short or poison the next response on a keep-alive connection. Header faults, error
/// rules, routes, load targets, `[proxy] add_response_headers` and `PROXY_MOD_HEADER` all refuse
/// them.
pub(crate) const MANAGED_HEADERS: [&str; 8] = [
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
pub(crate) fn managed_header(name: &str) -> Option<(&'static str, &'static str)> {
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

fn check_header_fault(
    c: &mut Checker,
    fault: &FaultSpec,
    field: &dyn Fn(&str) -> Vec<Seg>,
) -> Option<FaultAction> {
    let empty = BTreeMap::new();
    let set = c.headers(field("set"), fault.set.as_ref().unwrap_or(&empty));
    let add = c.headers(field("add"), fault.add.as_ref().unwrap_or(&empty));
    let mut remove = Vec::new();
    for (i, name) in fault.remove.iter().flatten().enumerate() {
        let p = with(&field("remove"), Seg::Index(i));
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) => remove.push((n, p)),
            Err(_) => c.report(
                p,
                format!("`{name}` is not a valid header name"),
                "invalid header name",
                Some("header names are letters, digits and `-`".into()),
            ),
        }
    }
    let framing = |c: &mut Checker, name: &str, path: Vec<Seg>| {
        c.managed(
            path,
            name,
            Some("to cut a body short use `kind = \"truncate\"`; to break connections, `kind = \"reset\"` or `\"drop\"`"),
        );
    };
    for (map, key) in [(&fault.set, "set"), (&fault.add, "add")] {
        for name in map.iter().flat_map(BTreeMap::keys) {
            framing(c, name, with(&field(key), Seg::Key(name.clone())));
        }
    }
    for (n, p) in &remove {
        framing(c, n.as_str(), p.clone());
    }
    if set.is_empty()
        && add.is_empty()
        && remove.is_empty()
        && fault.set.iter().chain(&fault.add).all(BTreeMap::is_empty)
        && fault.remove.iter().all(Vec::is_empty)
    {
        c.report(
            field("kind"),
            "this `headers` fault has nothing to add, set or remove",
            "does nothing",
            Some(
                "add `set = { \"x-chaos\" = \"1\" }`, `add = { ... }` or `remove = [\"etag\"]`"
                    .into(),
            ),
        );
        return None;
    }
    let Some(target) = fault.target else {
        c.report(
            field("kind"),
            "a `headers` fault needs `target`",
            "missing `target`",
            Some("add `target = \"request\"` (sent upstream) or `target = \"response\"` (sent to the client)".into()),
        );
        return None;
    };
    let remove: Vec<HeaderName> = remove.into_iter().map(|(n, _)| n).collect();
    Some(FaultAction::Headers {
        target,
        ops: header_ops(&remove, &set, &add),
    })
}

fn check_matcher(c: &mut Checker, fault: &FaultSpec, field: &dyn Fn(&str) -> Vec<Seg>) -> Matcher {
    let mut matcher = Matcher::default();
    let Some(spec) = &fault.matcher else {
        return matcher;
    };
    let at_match = field("match");
    // Compact faults have no sub-fields: `field` gives the string itself for every name.
    let sub = |name: &str| {
        if at_match == field("name") {
            at_match.clone()
        } else {
            with(&at_match, Seg::Key(name.into()))
        }
    };
    if let Some(path) = &spec.path {
        let p = sub("path");
        if !path.starts_with(['/', '*', '{', '?', '[']) {
            c.report(
                p.clone(),
                format!("the path glob `{path}` can never match: request paths start with `/`"),
                "does not start with `/`",
                Some(format!("write \"/{path}\"")),
            );
        }
        match PathGlob::new(path) {
            Ok(glob) => matcher.path = Some(glob),
            Err(e) => c.report(
                p,
                format!("`{path}` is not a valid glob: {e}"),
                "invalid glob",
                Some("use `*` within a segment, `**` across segments, `{a,b}` for either".into()),
            ),
        }
    }
    if let Some(methods) = &spec.method {
        matcher.methods = c.methods(sub("method"), methods);
    }
    if let Some(headers) = &spec.headers {
        matcher.headers = c
            .headers(sub("headers"), headers)
            .into_iter()
            .map(|(n, v)| (n, ValueMatch::parse(v.to_str().unwrap_or_default())))
            .collect();
    }
    if let Some(query) = &spec.query {
        for (name, value) in query {
            if name.is_empty() {
                c.report(
                    with(&sub("query"), Seg::Key(name.clone())),
                    "a query parameter needs a name",
                    "empty name",
                    None,
                );
                continue;
            }
            matcher.query.push((name.clone(), ValueMatch::parse(value)));
        }
    }
    matcher
}

fn check_window(c: &mut Checker, fault: &FaultSpec, field: &dyn Fn(&str) -> Vec<Seg>) -> Window {
    let at_least_one = |c: &mut Checker, name: &str, value: Option<u64>, help: &str| {
        if value == Some(0) {
            c.report(
                field(name),
                format!("`{name}` must be at least 1, found 0"),
                "zero",
                Some(help.into()),
            );
        }
    };
    at_least_one(
        c,
        "first",
        fault.first,
        "`first = N` fires for the first N matching requests; leave it out to fire for all",
    );
    at_least_one(
        c,
        "every",
        fault.every,
        "`every = N` fires for every Nth matching request; `every = 1` is every one",
    );
    at_least_one(
        c,
        "attempts",
        fault.attempts.map(u64::from),
        "`attempts = K` fires on the first K attempts of a request; leave it out for all attempts",
    );
    at_least_one(
        c,
        "max_active",
        fault.max_active.map(u64::from),
        "`max_active = N` lets at most N requests be under this fault at once; leave it out for no limit",
    );
    let from_request = fault.from_request.unwrap_or(0);
    if let Some(until) = fault.until_request {
        if from_request >= until {
            c.report(
                field("until_request"),
                format!("the request window from {from_request} until {until} is empty"),
                "not after `from_request`",
                Some("`until_request` is the first index after the window: make it larger than `from_request`".into()),
            );
        }
    }
    let from = fault.from.map_or(Duration::ZERO, DurationSpec::get);
    let until = fault.until.map(DurationSpec::get);
    if let Some(until) = until {
        if from >= until {
            c.report(
                field("until"),
                format!(
                    "the time window from {} until {} is empty",
                    format_duration(from),
                    format_duration(until)
                ),
                "not after `from`",
                Some("`until` is when the window ends: make it later than `from`".into()),
            );
        }
    }
    Window {
        first: fault.first,
        after: fault.after,
        every: fault.every,
        attempts: fault.attempts,
        from_request,
        until_request: fault.until_request,
        from,
        until,
        max_active: fault.max_active,
    }
}

fn check_load(c: &mut Checker, spec: &ScenarioSpec) -> LoadConfig {
    use super::profile::{
        MAX_CONCURRENCY, MAX_IN_FLIGHT, MAX_RATE, MAX_REQUESTS, Profile, Schedule, Until,
        format_number,
    };

    let l = &spec.load;
    let at = key("load");
    let f = |name: &str| with(&at, Seg::Key(name.into()));
    if let Some(n) = l.requests {
        c.range(f("requests"), n, 1, MAX_REQUESTS);
    }
    if let Some(n) = l.concurrency {
        c.range(f("concurrency"), n, 1, MAX_CONCURRENCY);
    }
    if let Some(d) = l.duration {
        c.positive(f("duration"), d.get(), "the load duration");
    }
    if let Some(n) = l.max_in_flight {
        c.range(f("max_in_flight"), n, 1, MAX_IN_FLIGHT);
    }
    c.positive(f("timeout"), l.timeout.get(), "the request timeout");

    let conflict = |c: &mut Checker, name: &str, why: &str, help: &str| {
        c.report(
            f(name),
            format!("`{name}` {why}"),
            "conflicts",
            Some(help.into()),
        );
    };
    let profile = if let Some(stages) = &l.stages {
        for name in ["requests", "duration", "rate", "concurrency"] {
            let present = match name {
                "requests" => l.requests.is_some(),
                "duration" => l.duration.is_some(),
                "rate" => l.rate.is_some(),
                _ => l.concurrency.is_some(),
            };
            if present {
                conflict(
                    c,
                    name,
                    "cannot be used with `stages`: the stages say how long and how fast",
                    "remove it, or put the value in the stages",
                );
            }
        }
        check_stages(c, spec, stages)
    } else if let Some(rate) = l.rate {
        let rate_ok = rate > 0.0 && rate <= MAX_RATE;
        if !rate_ok {
            c.report(
                f("rate"),
                format!(
                    "must be more than 0 and at most {MAX_RATE} requests per second, found {}",
                    format_number(rate)
                ),
                "out of range",
                None,
            );
        }
        if l.concurrency.is_some() {
            conflict(
                c,
                "concurrency",
                "does not apply to an open loop (`rate`): requests start on schedule",
                "remove `concurrency`; `max_in_flight` caps requests in flight in an open loop",
            );
        }
        let schedule = match (l.requests, l.duration) {
            (Some(n), None) => {
                let schedule = Schedule::constant(rate, n);
                if rate_ok && !schedule.fits() {
                    // Request i starts at i / rate: the last must start within the 7-day cap.
                    let fit = (rate * MAX_DURATION.as_secs_f64()).floor() + 1.0;
                    c.report(
                        f("rate"),
                        format!(
                            "at {} requests per second, {n} requests take longer than the maximum of 7 days",
                            format_number(rate)
                        ),
                        "too slow",
                        Some(format!(
                            "raise `rate` or lower `requests`: at this rate 7 days hold at most {} request{}",
                            format_number(fit),
                            if fit == 1.0 { "" } else { "s" }
                        )),
                    );
                }
                schedule
            }
            (None, Some(d)) => Schedule::constant_for(rate, d.get()),
            (Some(_), Some(_)) => {
                conflict(
                    c,
                    "duration",
                    "and `requests` both say when an open loop ends",
                    "keep one of them",
                );
                Schedule::constant(rate, 1)
            }
            (None, None) => {
                c.report(
                    f("rate"),
                    "an open loop needs `duration` or `requests`",
                    "how long?",
                    Some("add `duration = \"10s\"` or `requests = 500`".into()),
                );
                Schedule::constant(rate, 1)
            }
        };
        open_loop(spec, schedule)
    } else {
        if l.max_in_flight.is_some() {
            conflict(
                c,
                "max_in_flight",
                "applies to open loops (`rate` or rate stages)",
                "in a closed loop `concurrency` is the cap",
            );
        }
        let until = match (l.requests, l.duration) {
            (Some(_), Some(_)) => {
                conflict(
                    c,
                    "duration",
                    "and `requests` both say when a closed loop ends",
                    "keep one of them",
                );
                Until::Requests(1)
            }
            (_, Some(d)) => Until::Duration(d.get()),
            (n, None) => Until::Requests(n.unwrap_or(100)),
        };
        Profile::Closed {
            concurrency: l.concurrency.unwrap_or(10),
            until,
        }
    };
    if let Some(n) = profile.fixed_count() {
        if n == 0 {
            c.report(
                at.clone(),
                "this load profile sends no request",
                "no requests",
                Some("raise `rate` or `duration`".into()),
            );
        } else if n > MAX_REQUESTS && l.requests.is_none() {
            c.report(
                at.clone(),
                format!("this load profile sends {n} requests; at most {MAX_REQUESTS} are allowed"),
                "too many requests",
                None,
            );
        }
    }
    let retry = check_retry(c, spec);
    let targets = check_targets(c, spec);
    LoadConfig {
        profile,
        retry,
        timeout: l.timeout.get(),
        client_trace: l.client_trace,
        targets,
    }
}

fn open_loop(spec: &ScenarioSpec, schedule: super::profile::Schedule) -> super::profile::Profile {
    super::profile::Profile::Open {
        schedule,
        max_in_flight: spec
            .load
            .max_in_flight
            .unwrap_or(super::profile::DEFAULT_MAX_IN_FLIGHT),
    }
}

fn check_stages(
    c: &mut Checker,
    spec: &ScenarioSpec,
    specs: &[super::spec::StageSpec],
) -> super::profile::Profile {
    use super::profile::{MAX_CONCURRENCY, MAX_RATE, Profile, Schedule, Stage, format_number};

    let at = keys(&["load", "stages"]);
    let Some(first) = specs.first() else {
        c.report(
            at,
            "the list of stages is empty",
            "no stages",
            Some("add a stage such as { duration = \"10s\", rate = 50 }, or remove `stages` for the default of 100 requests".into()),
        );
        return Profile::ClosedStages { stages: Vec::new() };
    };
    let first_is_rate = first.rate.is_some();
    let mut stages = Vec::new();
    let mut total = Duration::ZERO;
    for (i, s) in specs.iter().enumerate() {
        let at_s = with(&at, Seg::Index(i));
        let field = |name: &str| with(&at_s, Seg::Key(name.into()));
        total = total.saturating_add(s.duration.get());
        let target = match (s.rate, s.concurrency) {
            (Some(_), Some(_)) => {
                c.report(
                    field("concurrency"),
                    "a stage has a `rate` or a `concurrency`, not both",
                    "both",
                    Some("rate stages make an open loop, concurrency stages a closed loop".into()),
                );
                continue;
            }
            (None, None) => {
                c.report(
                    at_s.clone(),
                    "a stage needs `rate` or `concurrency`",
                    "missing a value",
                    Some("for example { duration = \"10s\", rate = 50 }".into()),
                );
                continue;
            }
            (Some(rate), None) => {
                if !(0.0..=MAX_RATE).contains(&rate) {
                    c.report(
                        field("rate"),
                        format!(
                            "must be between 0 and {MAX_RATE} requests per second, found {}",
                            format_number(rate)
                        ),
                        "out of range",
                        None,
                    );
                }
                if !first_is_rate {
                    c.report(
                        field("rate"),
                        "stages are all `rate` or all `concurrency`; the first stage has `concurrency`",
                        "mixed stages",
                        Some("use `concurrency` here too, or `rate` everywhere".into()),
                    );
                }
                rate
            }
            (None, Some(n)) => {
                c.range(field("concurrency"), n, 0, MAX_CONCURRENCY);
                if first_is_rate {
                    c.report(
                        field("concurrency"),
                        "stages are all `rate` or all `concurrency`; the first stage has `rate`",
                        "mixed stages",
                        Some("use `rate` here too, or `concurrency` everywhere".into()),
                    );
                }
                f64::from(n)
            }
        };
        stages.push(Stage {
            duration: s.duration.get(),
            target,
        });
    }
    if total.is_zero() {
        c.report(
            at.clone(),
            "the stages last no time at all",
            "zero duration",
            Some("give at least one stage a duration, like \"10s\"".into()),
        );
    } else if total > MAX_DURATION {
        c.report(
            at.clone(),
            format!(
                "the stages last {} in all, longer than the maximum of 7 days",
                format_duration(total)
            ),
            "too long",
            Some("shorten the stages; a load profile must end within 7 days".into()),
        );
    }
    if first_is_rate {
        open_loop(spec, Schedule::stages(stages))
    } else {
        if spec.load.max_in_flight.is_some() {
            c.report(
                keys(&["load", "max_in_flight"]),
                "`max_in_flight` applies to open loops (`rate` or rate stages)",
                "conflicts",
                Some("with concurrency stages the stage value is the cap".into()),
            );
        }
        if stages.iter().all(|s| s.target < 1.0) && !stages.is_empty() {
            c.report(
                at,
                "the stages never reach one worker",
                "no workers",
                Some("give a stage `concurrency = 1` or more".into()),
            );
        }
        Profile::ClosedStages { stages }
    }
}

fn check_retry(c: &mut Checker, spec: &ScenarioSpec) -> super::profile::RetryPolicy {
    use super::profile::{RetryOn, RetryPolicy};
    use super::spec::RetryOnSpec;
    use crate::record::ErrorKind;

    let l = &spec.load;
    let r = l.retry.clone().unwrap_or_default();
    let at = keys(&["load", "retry"]);
    let field = |name: &str| with(&at, Seg::Key(name.into()));
    let both = |c: &mut Checker, short: &str, long: &str| {
        c.report(
            field(long),
            format!("`load.{short}` and `load.retry.{long}` say the same thing"),
            "written twice",
            Some(format!(
                "keep one: `retry.{long}` is the long form of `{short}`"
            )),
        );
    };
    if l.retries.is_some() && r.max.is_some() {
        both(c, "retries", "max");
    }
    if l.retry_backoff.is_some() && r.backoff.is_some() {
        both(c, "retry_backoff", "backoff");
    }
    let max = l.retries.or(r.max).unwrap_or(0);
    let max_path = if r.max.is_some() {
        field("max")
    } else {
        keys(&["load", "retries"])
    };
    c.range(max_path, max, 0, super::profile::MAX_RETRIES);
    let mut policy = RetryPolicy {
        max,
        backoff: l
            .retry_backoff
            .or(r.backoff)
            .map_or(Duration::from_millis(100), |d| d.get()),
        max_backoff: r.max_backoff.map(|d| d.get()),
        jitter: r.jitter.map_or(Duration::ZERO, |d| d.get()),
        on: RetryOn::default(),
    };
    if let Some(m) = policy.max_backoff {
        c.positive(field("max_backoff"), m, "`max_backoff`");
    }
    if let Some(on) = &r.on {
        let mut set = RetryOn {
            statuses: Vec::new(),
            classes: Vec::new(),
            errors: Vec::new(),
        };
        const NAMES: [&str; 9] = [
            "1xx", "2xx", "3xx", "4xx", "5xx", "connect", "timeout", "reset", "protocol",
        ];
        for (i, item) in on.iter().enumerate() {
            let p = with(&field("on"), Seg::Index(i));
            match item {
                RetryOnSpec::Status(s) => {
                    if (100..=599).contains(s) {
                        set.statuses.push(*s);
                    } else {
                        c.report(
                            p,
                            format!("{s} is not an HTTP status"),
                            "not a status",
                            Some("statuses run from 100 to 599".into()),
                        );
                    }
                }
                RetryOnSpec::Name(name) => match name.as_str() {
                    "connect" => set.errors.push(ErrorKind::Connect),
                    "timeout" => set.errors.push(ErrorKind::Timeout),
                    "reset" => set.errors.push(ErrorKind::Reset),
                    "protocol" => set.errors.push(ErrorKind::Protocol),
                    class
                        if class.len() == 3 && class.ends_with("xx") && NAMES.contains(&class) =>
                    {
                        set.classes.push(u16::from(class.as_bytes()[0] - b'0'));
                    }
                    other => {
                        let help = match did_you_mean(other, &NAMES) {
                            Some(best) => format!(
                                "did you mean `{best}`? valid here: a status such as 503, or {}",
                                NAMES.join(", ")
                            ),
                            None => {
                                format!("valid here: a status such as 503, or {}", NAMES.join(", "))
                            }
                        };
                        c.report(
                            p,
                            format!("`{other}` is not something a retry can be on"),
                            "unknown",
                            Some(help),
                        );
                    }
                },
            }
        }
        policy.on = set;
    }
    policy
}

fn check_targets(c: &mut Checker, spec: &ScenarioSpec) -> Vec<Target> {
    use super::spec::BodySpec;

    let l = &spec.load;
    let at = keys(&["load", "targets"]);
    if l.targets.is_empty() {
        c.report(
            at.clone(),
            "at least one target is needed",
            "empty",
            Some("for example targets = [{ path = \"/api/resource\" }]".into()),
        );
    }
    let mut targets = Vec::new();
    for (i, t) in l.targets.iter().enumerate() {
        let at_t = with(&at, Seg::Index(i));
        let field = |name: &str| with(&at_t, Seg::Key(name.into()));
        let path_ok = t.path.starts_with('/')
            && !t.path.contains('#')
            && t.path.parse::<hyper::http::uri::PathAndQuery>().is_ok();
        if !path_ok {
            c.report(field("path"), format!("`{}` is not a request path", t.path), "not a path",
                Some("a target path starts with `/` and may carry a query, like \"/api/resource?id=1\"".into()));
        }
        c.range(field("weight"), t.weight, 1, 1_000_000);
        let mut headers = c.headers_to_send(field("headers"), &t.headers);
        if let Some(name) = t.headers.keys().find(|n| n.eq_ignore_ascii_case("host")) {
            c.report_key(
                with(&field("headers"), Seg::Key(name.clone())),
                "`host` cannot be set here: the proxy sends the upstream's own name in Host",
                "replaced by the proxy",
                Some("to send another Host upstream, use a `headers` fault with target = \"request\" and set = { host = \"...\" }".into()),
            );
        }
        let body = match &t.body {
            None => bytes::Bytes::new(),
            Some(BodySpec::Text(text)) => bytes::Bytes::from(text.clone()),
            Some(BodySpec::Json(value)) => {
                let has_type = headers
                    .iter()
                    .any(|(n, _)| n == hyper::header::CONTENT_TYPE);
                if !has_type {
                    headers.push((
                        hyper::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ));
                }
                bytes::Bytes::from(serde_json::to_vec(value).unwrap_or_default())
            }
        };
        if let Some(method) = c.method(field("method"), &t.method) {
            targets.push(Target {
                method,
                path: t.path.clone(),
                weight: t.weight,
                headers,
                body,
            });
        }
    }
    targets
}

fn check_expect(
    c: &mut Checker,
    spec: &ScenarioSpec,
    faults: &[FaultRule],
    load: &LoadConfig,
) -> Expectations {
    use super::expectation::{CountRange, TargetExpectations};

    let e = &spec.expect;
    let at = key("expect");
    let field = |name: &str| with(&at, Seg::Key(name.into()));
    if let Some(rate) = e.success_rate {
        c.probability(field("success_rate"), rate);
    }
    let range = |c: &mut Checker, path: Vec<Seg>, r: &super::spec::RangeSpec| {
        if r.min.is_none() && r.max.is_none() {
            c.report(
                path,
                "this bound says nothing",
                "empty",
                Some("write `{ min = 1 }`, `{ max = 40 }` or both".into()),
            );
        } else if let (Some(lo), Some(hi)) = (r.min, r.max) {
            if lo > hi {
                c.report(
                    path,
                    format!("`min` ({lo}) is above `max` ({hi})"),
                    "empty range",
                    None,
                );
            }
        }
        CountRange {
            min: r.min,
            max: r.max,
        }
    };
    let retries = e.retries.as_ref().map(|r| range(c, field("retries"), r));
    let late = e.late.as_ref().map(|r| range(c, field("late"), r));

    let names: Vec<&str> = faults.iter().map(|r| r.name.as_str()).collect();
    let unknown_rule = |c: &mut Checker, path: Vec<Seg>, name: &str| {
        let help = if names.is_empty() {
            "this scenario has no fault rules".to_string()
        } else {
            let list = names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            match did_you_mean(name, &names) {
                Some(best) => format!("did you mean `{best}`? rules in this scenario: {list}"),
                None => format!("rules in this scenario: {list}"),
            }
        };
        c.report(
            path,
            format!("there is no fault rule named `{name}`"),
            "unknown rule",
            Some(help),
        );
    };
    let mut fault_bounds = Vec::new();
    for (name, r) in &e.faults {
        let p = with(&field("faults"), Seg::Key(name.clone()));
        let bound = range(c, p.clone(), r);
        if names.contains(&name.as_str()) {
            fault_bounds.push((name.clone(), bound));
        } else {
            unknown_rule(c, p, name);
        }
    }
    let mut delays = Vec::new();
    for (i, name) in e.delays_honoured.iter().enumerate() {
        let p = with(&field("delays_honoured"), Seg::Index(i));
        match faults.iter().find(|r| r.name == *name) {
            None => unknown_rule(c, p, name),
            Some(rule) => match &rule.action {
                FaultAction::Delay(RandomDelay {
                    model: DelayModel::Fixed(d) | DelayModel::Uniform(d, _),
                    jitter,
                }) => delays.push((name.clone(), d.saturating_sub(jitter.unwrap_or_default()))),
                FaultAction::Delay(_) => c.report(
                    p,
                    format!(
                        "`{name}` draws its delay from a distribution, which has no lower bound"
                    ),
                    "no lower bound",
                    Some("`delays_honoured` checks fixed delays and ranges".into()),
                ),
                other => c.report(
                    p,
                    format!(
                        "`{name}` is not a delay rule (its kind is `{}`)",
                        other.kind()
                    ),
                    "not a delay",
                    Some("list only rules of kind `delay` here".into()),
                ),
            },
        }
    }

    let status = check_status_bounds(c, field("status"), &e.status);
    let latency = check_latency_bounds(c, field("latency"), &e.latency);
    let paths: Vec<&str> = load.targets.iter().map(|t| t.path.as_str()).collect();
    let mut targets = Vec::new();
    for (i, t) in e.targets.iter().enumerate() {
        let at_t = with(&field("targets"), Seg::Index(i));
        let tf = |name: &str| with(&at_t, Seg::Key(name.into()));
        if !paths.contains(&t.path.as_str()) {
            let list = paths
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let help = match did_you_mean(&t.path, &paths) {
                Some(best) => format!("did you mean `{best}`? target paths: {list}"),
                None => format!("target paths: {list}"),
            };
            c.report(
                tf("path"),
                format!("`{}` is not a path in `load.targets`", t.path),
                "unknown target",
                Some(help),
            );
        }
        if let Some(rate) = t.success_rate {
            c.probability(tf("success_rate"), rate);
        }
        let status = check_status_bounds(c, tf("status"), &t.status);
        let latency = check_latency_bounds(c, tf("latency"), &t.latency);
        if t.success_rate.is_none() && status.is_empty() && latency.is_empty() {
            c.report(
                at_t.clone(),
                format!("nothing is expected of `{}`", t.path),
                "empty",
                Some("add `latency`, `status` or `success_rate`".into()),
            );
        }
        targets.push(TargetExpectations {
            path: t.path.clone(),
            success_rate: t.success_rate,
            status,
            latency,
        });
    }
    Expectations {
        success_rate: e.success_rate,
        status,
        latency,
        retries,
        late,
        faults: fault_bounds,
        delays,
        targets,
    }
}

fn check_status_bounds(
    c: &mut Checker,
    at: Vec<Seg>,
    specs: &BTreeMap<String, super::spec::CountSpec>,
) -> Vec<super::expectation::StatusBound> {
    use super::expectation::{ResultKey, StatusBound};
    use crate::record::ErrorKind;

    const NAMES: [&str; 9] = [
        "1xx", "2xx", "3xx", "4xx", "5xx", "timeout", "connect", "reset", "protocol",
    ];
    let mut out = Vec::new();
    for (name, bound) in specs {
        let p = with(&at, Seg::Key(name.clone()));
        let key = match name.as_str() {
            "timeout" => Some(ResultKey::Error(ErrorKind::Timeout)),
            "connect" => Some(ResultKey::Error(ErrorKind::Connect)),
            "reset" => Some(ResultKey::Error(ErrorKind::Reset)),
            "protocol" => Some(ResultKey::Error(ErrorKind::Protocol)),
            n if n.len() == 3 && n.ends_with("xx") && NAMES.contains(&n) => {
                Some(ResultKey::Class(u16::from(n.as_bytes()[0] - b'0')))
            }
            n => n
                .parse::<u16>()
                .ok()
                .filter(|s| (100..=599).contains(s))
                .map(ResultKey::Status),
        };
        let Some(key) = key else {
            let help = match did_you_mean(name, &NAMES) {
                Some(best) => format!(
                    "did you mean `{best}`? keys are statuses (100 to 599) or {}",
                    NAMES.join(", ")
                ),
                None => format!("keys are statuses (100 to 599) or {}", NAMES.join(", ")),
            };
            c.report(
                p,
                format!("`{name}` is not a status, a status class or a transport error"),
                "unknown result",
                Some(help),
            );
            continue;
        };
        for (share, name) in [
            (bound.min_share, "min_share"),
            (bound.max_share, "max_share"),
        ] {
            if let Some(s) = share {
                c.probability(with(&p, Seg::Key(name.into())), s);
            }
        }
        if let (Some(lo), Some(hi)) = (bound.min_count, bound.max_count) {
            if lo > hi {
                c.report(
                    with(&p, Seg::Key("min_count".into())),
                    format!("`min_count` ({lo}) is above `max_count` ({hi})"),
                    "empty range",
                    Some(
                        "no count can meet both bounds: lower `min_count` or raise `max_count`"
                            .into(),
                    ),
                );
            }
        }
        if let (Some(lo), Some(hi)) = (bound.min_share, bound.max_share) {
            if lo > hi {
                c.report(
                    with(&p, Seg::Key("min_share".into())),
                    format!("`min_share` ({lo}) is above `max_share` ({hi})"),
                    "empty range",
                    Some(
                        "no share can meet both bounds: lower `min_share` or raise `max_share`"
                            .into(),
                    ),
                );
            }
        }
        if bound.min_count.is_none()
            && bound.max_count.is_none()
            && bound.min_share.is_none()
            && bound.max_share.is_none()
        {
            c.report(
                p,
                "this bound says nothing",
                "empty",
                Some("use `min_count`, `max_count`, `min_share` or `max_share`".into()),
            );
            continue;
        }
        out.push(StatusBound {
            key,
            min_count: bound.min_count,
            max_count: bound.max_count,
            min_share: bound.min_share,
            max_share: bound.max_share,
        });
    }
    out
}

fn check_latency_bounds(
    c: &mut Checker,
    at: Vec<Seg>,
    specs: &BTreeMap<String, super::spec::LatencyBoundSpec>,
) -> Vec<super::expectation::LatencyBound> {
    use super::expectation::{LatencyBound, Op};
    use super::spec::LatencyBoundSpec;

    let mut out = Vec::new();
    for (name, spec) in specs {
        let p = with(&at, Seg::Key(name.clone()));
        let Some(statistic) = parse_statistic(name) else {
            let known = ["p50", "p90", "p95", "p99", "p99.9", "mean", "max"];
            let help = match did_you_mean(name, &known) {
                Some(best) => format!(
                    "did you mean `{best}`? keys are `pN` (p50, p99, \"p99.9\"), `mean` or `max`"
                ),
                None => "keys are `pN` (p50, p99, \"p99.9\"), `mean` or `max`".to_string(),
            };
            c.report(
                p,
                format!("`{name}` is not a latency statistic"),
                "unknown statistic",
                Some(help),
            );
            continue;
        };
        let mut push = |op, bound| {
            out.push(LatencyBound {
                key: name.clone(),
                statistic,
                op,
                bound,
            })
        };
        match spec {
            LatencyBoundSpec::Text(text) => match parse_comparison(text) {
                Ok((op, d)) => push(op, d),
                Err(e) => c.report(
                    p,
                    e,
                    "not a bound",
                    Some("write it like \"< 800ms\", \"<= 1s\" or \"> 100ms\", or { max = \"800ms\" }".into()),
                ),
            },
            LatencyBoundSpec::Table { min, max } => {
                if min.is_none() && max.is_none() {
                    c.report(
                        p,
                        "this bound says nothing",
                        "empty",
                        Some("write { max = \"800ms\" } or { min = \"100ms\" }".into()),
                    );
                    continue;
                }
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        c.report(p.clone(), format!("`min` ({lo}) is above `max` ({hi})"), "empty range", None);
                    }
                }
                if let Some(lo) = min {
                    push(Op::Ge, lo.get());
                }
                if let Some(hi) = max {
                    push(Op::Le, hi.get());
                }
            }
        }
    }
    out
}

/// `p99` -> the 0.99 quantile, `p99.9` -> 0.999, `mean`, `max`.
fn parse_statistic(name: &str) -> Option<super::expectation::Statistic> {
    use super::expectation::Statistic;
    match name {
        "mean" => return Some(Statistic::Mean),
        "max" => return Some(Statistic::Max),
        _ => {}
    }
    let number = name.strip_prefix('p')?;
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    (value > 0.0 && value <= 100.0).then_some(Statistic::Quantile(value / 100.0))
}

/// `"< 800ms"` -> (Lt, 800ms).
fn parse_comparison(text: &str) -> Result<(super::expectation::Op, Duration), String> {
    use super::expectation::Op;
    let t = text.trim();
    let (op, rest) = if let Some(r) = t.strip_prefix("<=") {
        (Op::Le, r)
    } else if let Some(r) = t.strip_prefix(">=") {
        (Op::Ge, r)
    } else if let Some(r) = t.strip_prefix('<') {
        (Op::Lt, r)
    } else if let Some(r) = t.strip_prefix('>') {
        (Op::Gt, r)
    } else {
        return Err(format!(
            "`{t}` has no comparison; start it with <, <=, > or >="
        ));
    };
    let d = super::duration::parse_duration(rest)?;
    Ok((op, d))
}
