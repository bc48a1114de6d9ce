//! Validation: a parsed [`ScenarioSpec`] becomes a checked [`Scenario`], or a list of every problem
//! found, each with the path of the offending value so the caller can point at it in the file.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Uri};

use std::sync::Arc;

use super::duration::{DelaySpec, DurationSpec, format_duration};
use super::error::did_you_mean;
use super::spec::{Distribution, FaultEntry, FaultKind, FaultSpec, Methods, ScenarioSpec};
use super::{Expectations, LoadConfig, ProxyConfig, Route, Scenario, Seg, Target, UpstreamConfig};
use crate::fault::{
    DelayModel, ErrorReply, FaultAction, FaultRule, Matcher, PathGlob, Schedule, ValueMatch,
    compact, header_ops,
};

/// One validation problem, at a path into the document.
pub(crate) struct Problem {
    pub path: Vec<Seg>,
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
            message: message.into(),
            label: label.to_string(),
            help,
        });
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
                self.report(
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
        add_response_headers: c.headers(
            keys(&["proxy", "add_response_headers"]),
            &spec.proxy.add_response_headers,
        ),
        upstream_timeout: spec
            .proxy
            .upstream_timeout
            .map_or(Duration::from_secs(30), |d| d.get()),
        header_faults: spec.proxy.header_faults,
    };
    c.positive(
        keys(&["proxy", "upstream_timeout"]),
        proxy.upstream_timeout,
        "the upstream timeout",
    );
    let load = check_load(&mut c, spec);
    if let Some(rate) = spec.expect.success_rate {
        c.probability(keys(&["expect", "success_rate"]), rate);
    }

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
        expect: Expectations {
            success_rate: spec.expect.success_rate,
        },
        spec: spec.clone(),
    })
}

fn check_upstream(c: &mut Checker, spec: &ScenarioSpec) -> UpstreamConfig {
    let mut upstream = UpstreamConfig::default();
    if let Some(url) = &spec.upstream.url {
        let path = keys(&["upstream", "url"]);
        match url.parse::<Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => {
                upstream.url = Some(uri)
            }
            Ok(uri) if uri.scheme_str() == Some("https") => c.report(
                path,
                "https upstreams are not supported",
                "https",
                Some(
                    "point TraceForge at a plain-HTTP address of the service (http://host:port)"
                        .into(),
                ),
            ),
            _ => c.report(
                path,
                format!("`{url}` is not an http:// URL with a host"),
                "not a URL",
                Some("write it like \"http://127.0.0.1:8081\"".into()),
            ),
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
        c.range(with(&at, Seg::Key("status".into())), route.status, 100, 599);
        let methods = route
            .method
            .as_ref()
            .map(|m| c.methods(with(&at, Seg::Key("method".into())), m))
            .unwrap_or_default();
        let headers = c.headers(with(&at, Seg::Key("headers".into())), &route.headers);
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
                    c.report(at, e, "invalid fault", None);
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
    let schedule = check_schedule(c, fault, field);
    Some(FaultRule {
        name,
        action: action?,
        probability,
        matcher,
        schedule,
    })
}

/// Compiles a fault outside a scenario file (the `x-traceforge-fault` header) with the same
/// checks, or says what is wrong in one line.
pub(crate) fn compile_rule(fault: &FaultSpec, name: &str) -> Result<FaultRule, String> {
    let mut c = Checker::default();
    let rule = check_rule(&mut c, fault, name.to_string(), &|_| Vec::new());
    if !c.problems.is_empty() {
        let messages: Vec<String> = c.problems.into_iter().map(|p| p.message).collect();
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
                "add `status = 503` (any status from 100 to 599)",
            )?;
            let headers = fault
                .headers
                .as_ref()
                .map(|h| c.headers(field("headers"), h))
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
    if !(100..=599).contains(&status) {
        c.report(
            field("status"),
            format!("{status} is not an HTTP status"),
            "not a status",
            Some("statuses run from 100 to 599".into()),
        );
    }
    Some(status)
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
    Some(FaultAction::Delay { model, jitter })
}

/// Headers the proxy must manage itself: changing them would break the message framing.
const FRAMING_HEADERS: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

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
        let lower = name.to_ascii_lowercase();
        if FRAMING_HEADERS.contains(&lower.as_str()) {
            c.report(
                path,
                format!("`{lower}` is managed by the proxy and cannot be changed"),
                "framing header",
                Some("to cut a body short use `kind = \"truncate\"`".into()),
            );
        }
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

fn check_schedule(
    c: &mut Checker,
    fault: &FaultSpec,
    field: &dyn Fn(&str) -> Vec<Seg>,
) -> Schedule {
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
    Schedule {
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
    let l = &spec.load;
    let at = key("load");
    let f = |name: &str| with(&at, Seg::Key(name.into()));
    c.range(f("requests"), l.requests, 1, 100_000_000);
    c.range(f("concurrency"), l.concurrency, 1, 10_000);
    c.range(f("retries"), l.retries, 0, 20);
    c.positive(f("timeout"), l.timeout.get(), "the request timeout");
    if l.targets.is_empty() {
        c.report(
            f("targets"),
            "at least one target is needed",
            "empty",
            Some("for example targets = [{ path = \"/api/resource\" }]".into()),
        );
    }
    let mut targets = Vec::new();
    for (i, t) in l.targets.iter().enumerate() {
        let at_t = with(&f("targets"), Seg::Index(i));
        let field = |name: &str| with(&at_t, Seg::Key(name.into()));
        let path_ok = t.path.starts_with('/')
            && !t.path.contains('#')
            && t.path.parse::<hyper::http::uri::PathAndQuery>().is_ok();
        if !path_ok {
            c.report(field("path"), format!("`{}` is not a request path", t.path), "not a path",
                Some("a target path starts with `/` and may carry a query, like \"/api/resource?id=1\"".into()));
        }
        c.range(field("weight"), t.weight, 1, 1_000_000);
        if let Some(method) = c.method(field("method"), &t.method) {
            targets.push(Target {
                method,
                path: t.path.clone(),
                weight: t.weight,
            });
        }
    }
    LoadConfig {
        requests: l.requests,
        concurrency: l.concurrency,
        retries: l.retries,
        retry_backoff: l.retry_backoff.get(),
        timeout: l.timeout.get(),
        client_trace: l.client_trace,
        targets,
    }
}
