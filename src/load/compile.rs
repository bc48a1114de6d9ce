//! The load plan compiler: `[load]` (a [`LoadSpec`]) becomes a [`LoadConfig`], or problems at
//! paths into the document: the profile (closed loop, open loop, stages), the retry policy and
//! the request mix, each held to the caps in [`super::plan`].

use std::time::Duration;

use hyper::header::HeaderValue;

use super::plan::{LoadConfig, Target};
use crate::record::ResultName;
use crate::spec::LoadSpec;
use crate::spec::check::{Checker, Seg, key, keys, with};
use crate::spec::duration::{MAX_DURATION, format_duration};
use crate::spec::error::did_you_mean;

/// Compiles `[load]` into a [`LoadConfig`], reporting every problem at its path under `load`.
/// Scenario files and `traceforge load`'s flags both go through it.
pub fn compile(c: &mut Checker, l: &LoadSpec) -> LoadConfig {
    use super::plan::{
        MAX_CONCURRENCY, MAX_IN_FLIGHT, MAX_RATE, MAX_REQUESTS, Profile, Schedule, Until,
        format_number,
    };

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
        check_stages(c, l, stages)
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
        open_loop(l, schedule)
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
    let retry = check_retry(c, l);
    let targets = check_targets(c, l);
    LoadConfig {
        profile,
        retry,
        timeout: l.timeout.get(),
        client_trace: l.client_trace,
        targets,
        http2: l.http2,
        shard: None,
    }
}

fn open_loop(l: &LoadSpec, schedule: super::plan::Schedule) -> super::plan::Profile {
    super::plan::Profile::Open {
        schedule,
        max_in_flight: l
            .max_in_flight
            .unwrap_or(super::plan::DEFAULT_MAX_IN_FLIGHT),
    }
}

fn check_stages(
    c: &mut Checker,
    l: &LoadSpec,
    specs: &[crate::spec::StageSpec],
) -> super::plan::Profile {
    use super::plan::{MAX_CONCURRENCY, MAX_RATE, Profile, Schedule, Stage, format_number};

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
        open_loop(l, Schedule::stages(stages))
    } else {
        if l.max_in_flight.is_some() {
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

fn check_retry(c: &mut Checker, l: &LoadSpec) -> super::plan::RetryPolicy {
    use super::plan::{RetryOn, RetryPolicy};
    use crate::spec::RetryOnSpec;

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
    c.range(max_path, max, 0, super::plan::MAX_RETRIES);
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
        const NAMES: [&str; 13] = ResultName::NAMES;
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
                RetryOnSpec::Name(name) => match ResultName::parse(name) {
                    Some(ResultName::Error(kind)) => set.errors.push(kind),
                    Some(ResultName::Class(class)) => set.classes.push(class),
                    None => {
                        let other = name.as_str();
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

fn check_targets(c: &mut Checker, l: &LoadSpec) -> Vec<Target> {
    use crate::spec::BodySpec;

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
        let method = c.method(field("method"), &t.method);
        let websocket = t
            .websocket
            .as_ref()
            .map(|ws| check_websocket(c, &at_t, t, ws, method.as_ref()));
        if let Some(method) = method {
            targets.push(Target {
                method,
                path: t.path.clone(),
                weight: t.weight,
                headers,
                body,
                websocket,
            });
        }
    }
    targets
}

/// Headers the WebSocket handshake writes itself (besides `connection` and `upgrade`, which no
/// target may set).
const HANDSHAKE_HEADERS: [&str; 4] = [
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
];

/// A target's `websocket` table: the handshake is a bodiless `GET` whose upgrade headers are the
/// load generator's own.
fn check_websocket(
    c: &mut Checker,
    at_t: &[Seg],
    t: &crate::spec::TargetSpec,
    ws: &crate::spec::WebSocketSpec,
    method: Option<&hyper::Method>,
) -> super::plan::WsTarget {
    use super::plan::WsTarget;

    let field = |name: &str| with(at_t, Seg::Key(name.into()));
    let at_ws = field("websocket");
    let ws_field = |name: &str| with(&at_ws, Seg::Key(name.into()));
    if method.is_some_and(|m| m != hyper::Method::GET) {
        c.report(
            field("method"),
            format!("a WebSocket target opens with a GET, not {}", t.method),
            "not GET",
            Some("remove `method`: the upgrade request is always a GET".into()),
        );
    }
    if t.body.is_some() {
        c.report_key(
            field("body"),
            "a WebSocket target sends no request body",
            "no body here",
            Some("remove `body`; `websocket.size` sets the size of each message".into()),
        );
    }
    for name in t.headers.keys() {
        let lower = name.to_ascii_lowercase();
        if HANDSHAKE_HEADERS.contains(&lower.as_str()) {
            c.report_key(
                with(&field("headers"), Seg::Key(name.clone())),
                format!("`{lower}` cannot be set on a WebSocket target: the handshake writes it"),
                "set by the handshake",
                Some("remove it; other headers are sent with the upgrade request".into()),
            );
        }
    }
    c.range(ws_field("messages"), ws.messages, 0, WsTarget::MAX_MESSAGES);
    if !(WsTarget::MIN_SIZE..=WsTarget::MAX_SIZE).contains(&ws.size) {
        c.report(
            ws_field("size"),
            format!(
                "must be between {} and {} bytes, found {}",
                WsTarget::MIN_SIZE,
                WsTarget::MAX_SIZE,
                ws.size
            ),
            "out of range",
            Some(
                "each message begins with its number in 8 characters; 16 MiB is the frame limit"
                    .into(),
            ),
        );
    }
    c.positive(
        ws_field("echo_timeout"),
        ws.echo_timeout.get(),
        "`echo_timeout`",
    );
    WsTarget {
        messages: ws.messages,
        size: usize::try_from(ws.size.clamp(WsTarget::MIN_SIZE, WsTarget::MAX_SIZE)).unwrap_or(32),
        binary: ws.binary,
        echo_timeout: ws.echo_timeout.get(),
    }
}
