//! Validation: a parsed [`ScenarioSpec`] becomes a checked [`Scenario`], or a list of every problem
//! found, each with the path of the offending value so the caller can point at it in the file.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Uri};

use super::duration::{DelaySpec, format_duration};
use super::error::did_you_mean;
use super::spec::{FaultEntry, FaultKind, FaultSpec, Methods, ScenarioSpec};
use super::{Expectations, LoadConfig, ProxyConfig, Route, Scenario, Seg, Target, UpstreamConfig};
use crate::fault::{FaultAction, FaultRule, Matcher, PathGlob, compact};

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
        let probability = fault.probability.unwrap_or(1.0);
        c.probability(field("probability"), probability);
        let action = check_action(c, &fault, &field);
        let matcher = check_matcher(c, &fault, &at, compact_form);
        if let Some(action) = action {
            rules.push(FaultRule {
                name,
                action,
                probability,
                matcher,
            });
        }
    }
    rules
}

fn check_action(
    c: &mut Checker,
    fault: &FaultSpec,
    field: &dyn Fn(&str) -> Vec<Seg>,
) -> Option<FaultAction> {
    let kind = fault.kind;
    let not_for = |c: &mut Checker, present: bool, name: &str, for_kind: &str| {
        if present {
            c.report(
                field(name),
                format!("`{name}` does not apply to a `{kind}` fault"),
                "not used by this kind",
                Some(format!(
                    "`{name}` belongs to `{for_kind}` faults; remove it or change `kind`"
                )),
            );
        }
    };
    match kind {
        FaultKind::Delay => {
            not_for(c, fault.status.is_some(), "status", "error");
            let Some(delay) = fault.delay else {
                c.report(
                    field("kind"),
                    "a `delay` fault needs `delay`",
                    "missing `delay`",
                    Some("add `delay = \"100ms\"` or a range `delay = \"100ms..500ms\"`".into()),
                );
                return None;
            };
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
            Some(FaultAction::Delay(delay))
        }
        FaultKind::Error => {
            not_for(c, fault.delay.is_some(), "delay", "delay");
            let Some(status) = fault.status else {
                c.report(
                    field("kind"),
                    "an `error` fault needs `status`",
                    "missing `status`",
                    Some("add `status = 503` (any status from 100 to 599)".into()),
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
            Some(FaultAction::Error { status })
        }
        FaultKind::Drop => {
            not_for(c, fault.delay.is_some(), "delay", "delay");
            not_for(c, fault.status.is_some(), "status", "error");
            Some(FaultAction::Drop)
        }
    }
}

fn check_matcher(c: &mut Checker, fault: &FaultSpec, at: &[Seg], compact_form: bool) -> Matcher {
    let mut matcher = Matcher::default();
    let Some(spec) = &fault.matcher else {
        return matcher;
    };
    let at_match = if compact_form {
        at.to_vec()
    } else {
        with(at, Seg::Key("match".into()))
    };
    if let Some(path) = &spec.path {
        let p = if compact_form {
            at_match.clone()
        } else {
            with(&at_match, Seg::Key("path".into()))
        };
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
        matcher.methods = c.methods(with(&at_match, Seg::Key("method".into())), methods);
    }
    matcher
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
