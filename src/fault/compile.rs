//! The fault rule compiler: a [`FaultSpec`] (a `[[faults]]` table, a compact string, a
//! `--fault` flag or an `x-traceforge-fault` header) becomes a [`FaultRule`], or problems at paths
//! into the document. Scenario validation compiles a file's faults with [`compile`]; the proxy's
//! flags and header-controlled faults use [`compile_rule`]. Every source gets the same checks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderName;

use super::quota::Quota;
use super::schedule::{Bursts, Ramp};
use super::{
    DelayModel, ErrorReply, FaultAction, FaultRule, GrpcStatus, HeaderSide, Matcher, PathGlob,
    RandomDelay, StatusMatch, ValueMatch, Window, header_ops,
};
use crate::spec::check::{Checker, Seg, final_status, is_file_name, no_body_allowed, with};
use crate::spec::duration::{DelaySpec, DurationSpec, format_duration};
use crate::spec::extent::Extent;
use crate::spec::schedule::{BurstsSpec, DelayField, ProbabilitySpec};
use crate::spec::{
    Distribution, FaultEntry, FaultKind, FaultSpec, HeaderTarget, MatchSpec, StatusItemSpec,
    StatusMatchSpec,
};

/// How a fault was written. Problems point at a table's fields; a compact string has no fields of
/// its own, so they point at the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Table,
    Compact,
}

/// Where the fault being compiled sits in the document, and how it was written.
pub struct At<'a> {
    pub path: &'a [Seg],
    pub form: Form,
}

impl At<'_> {
    /// The path of one of the fault's fields.
    pub(crate) fn field(&self, name: &str) -> Vec<Seg> {
        match self.form {
            Form::Table => with(self.path, Seg::Key(name.into())),
            Form::Compact => self.path.to_vec(),
        }
    }

    /// The path of a field inside one of the fault's tables (`match.path`).
    pub(crate) fn sub_field(&self, table: &str, name: &str) -> Vec<Seg> {
        match self.form {
            Form::Table => with(&self.field(table), Seg::Key(name.into())),
            Form::Compact => self.path.to_vec(),
        }
    }
}

/// Compiles a scenario's fault list, at `path` in the document: names each rule (given, or
/// `<kind>-<position>`), refuses unusable and duplicate names, and compiles every rule.
pub fn compile(c: &mut Checker, path: &[Seg], entries: &[FaultEntry]) -> Vec<FaultRule> {
    let mut rules = Vec::new();
    let mut names = BTreeSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let here = with(path, Seg::Index(i));
        let (fault, form) = match entry {
            FaultEntry::Table(t) => (t, Form::Table),
            FaultEntry::Compact { spec, .. } => (spec, Form::Compact),
        };
        let at = At { path: &here, form };
        let name = fault
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", fault.kind, i + 1));
        if !is_file_name(&name) || name.len() > 64 {
            c.report(at.field("name"), format!("`{name}` is not a usable rule name"), "invalid name",
                Some("use letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most 64 characters".into()));
        }
        if !names.insert(name.clone()) {
            c.report(
                at.field("name"),
                format!("two rules are named `{name}`"),
                "duplicate name",
                Some(
                    "rule names must be unique: they label metrics, outcomes and expectations"
                        .into(),
                ),
            );
        }
        if let Some(rule) = check_rule(c, fault, name, &at) {
            rules.push(rule);
        }
    }
    rules
}

/// Compiles one fault outside a scenario file (a `--fault` flag, the `x-traceforge-fault` header)
/// with the same checks, or says what is wrong in one line.
pub fn compile_rule(fault: &FaultSpec, name: &str) -> Result<FaultRule, String> {
    let mut c = Checker::default();
    let at = At {
        path: &[],
        form: Form::Compact,
    };
    let rule = check_rule(&mut c, fault, name.to_string(), &at);
    if !c.problems.is_empty() {
        return Err(crate::spec::check::one_line(c.problems));
    }
    rule.ok_or_else(|| "not a usable fault".to_string())
}

/// Checks one fault, table or compact, and compiles it.
fn check_rule(c: &mut Checker, fault: &FaultSpec, name: String, at: &At<'_>) -> Option<FaultRule> {
    let (mut probability, probability_ramp) = check_probability(c, fault, at);
    let action = check_action(c, fault, at);
    // A `ws_drop`'s probability is per message, drawn by the stream (see `fault::stream`): the
    // rule itself applies to every matching upgrade.
    if fault.kind == FaultKind::WsDrop {
        probability = 1.0;
    }
    let matcher = check_matcher(c, fault, at);
    if matcher.is_response() {
        check_response_kind(c, fault, at);
    }
    let window = Window {
        probability_ramp,
        bursts: check_bursts(c, fault, at),
        quota: quota_of(fault),
        ..check_window(c, fault, at)
    };
    Some(FaultRule {
        name,
        action: action?,
        probability,
        matcher,
        window,
    })
}

/// Every kind-specific field, whether it is given, and the kinds it applies to.
fn kind_fields(f: &FaultSpec) -> [(&'static str, bool, &'static [FaultKind]); 30] {
    use FaultKind as K;
    [
        (
            "delay",
            f.delay.is_some(),
            &[K::Delay, K::WsDelay, K::SlowClose],
        ),
        ("distribution", f.distribution.is_some(), &[K::Delay]),
        ("mean", f.mean.is_some(), &[K::Delay]),
        ("stddev", f.stddev.is_some(), &[K::Delay]),
        ("jitter", f.jitter.is_some(), &[K::Delay]),
        ("status", f.status.is_some(), &[K::Error, K::Status]),
        ("body", f.body.is_some(), &[K::Error]),
        ("headers", f.headers.is_some(), &[K::Error]),
        (
            "retry_after",
            f.retry_after.is_some(),
            &[K::Error, K::Quota],
        ),
        ("grpc_status", f.grpc_status.is_some(), &[K::Error]),
        ("grpc_message", f.grpc_message.is_some(), &[K::Error]),
        ("error_code", f.error_code.is_some(), &[K::RstStream]),
        ("cap", f.cap.is_some(), &[K::Hang]),
        ("after_bytes", f.after_bytes.is_some(), &[K::Truncate]),
        ("after_messages", f.after_messages.is_some(), &[K::WsClose]),
        ("after_time", f.after_time.is_some(), &[K::WsClose]),
        ("code", f.code.is_some(), &[K::WsClose]),
        (
            "bytes_per_second",
            f.bytes_per_second.is_some(),
            &[K::Throttle, K::SlowRead],
        ),
        ("after_events", f.after_events.is_some(), &[K::Stream]),
        ("event_delay", f.event_delay.is_some(), &[K::Stream]),
        ("target", f.target.is_some(), &[K::Headers]),
        ("add", f.add.is_some(), &[K::Headers]),
        ("set", f.set.is_some(), &[K::Headers]),
        ("remove", f.remove.is_some(), &[K::Headers]),
        ("limit", f.limit.is_some(), &[K::Quota]),
        ("window", f.window.is_some(), &[K::Quota]),
        ("per_header", f.per_header.is_some(), &[K::Quota]),
        ("mode", f.mode.is_some(), &[K::Corrupt]),
        ("rate", f.rate.is_some(), &[K::Corrupt]),
        ("size", f.size.is_some(), &[K::Garbage]),
    ]
}

/// An `error` fault that answers as a gRPC server: `grpc_status`, an optional `grpc_message`.
fn check_grpc_error(c: &mut Checker, fault: &FaultSpec, at: &At<'_>) -> Option<FaultAction> {
    let Some(code) = fault.grpc_status else {
        c.report(
            at.field("grpc_message"),
            "`grpc_message` needs `grpc_status`",
            "no status to go with",
            Some("add `grpc_status = 14` (UNAVAILABLE)".into()),
        );
        return None;
    };
    if code > 16 {
        c.report(
            at.field("grpc_status"),
            format!("{code} is not a gRPC status: they go from 0 to 16"),
            "not a gRPC status",
            Some(
                "14 is UNAVAILABLE, 4 DEADLINE_EXCEEDED, 8 RESOURCE_EXHAUSTED, 13 INTERNAL".into(),
            ),
        );
    }
    for (field, given) in [
        ("status", fault.status.is_some()),
        ("body", fault.body.is_some()),
    ] {
        if given {
            c.report(
                at.field(field),
                format!("a gRPC error has no `{field}`: it answers HTTP 200 with `grpc-status`"),
                "not with `grpc_status`",
                Some(format!("remove `{field}`")),
            );
        }
    }
    if let Some(message) = &fault.grpc_message {
        if message.chars().any(char::is_control) {
            c.report(
                at.field("grpc_message"),
                "a gRPC message cannot hold control characters",
                "control character",
                None,
            );
        }
    }
    let headers = fault
        .headers
        .as_ref()
        .map(|h| c.headers_to_send(at.field("headers"), h))
        .unwrap_or_default();
    Some(FaultAction::Error(Arc::new(ErrorReply {
        status: 200,
        body: None,
        headers,
        retry_after: fault.retry_after.map(DurationSpec::get),
        grpc: Some(GrpcStatus {
            code,
            message: fault.grpc_message.clone(),
        }),
    })))
}

/// "a" or "an", for "an `error` fault".
fn article(kind: FaultKind) -> &'static str {
    if matches!(kind, FaultKind::Error | FaultKind::Empty) {
        "an"
    } else {
        "a"
    }
}

/// "`a`", "`a` and `b`", "`a`, `b` and `c`".
fn kind_list(kinds: &[FaultKind]) -> String {
    let names: Vec<String> = kinds.iter().map(|k| format!("`{k}`")).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

fn check_action(c: &mut Checker, fault: &FaultSpec, at: &At<'_>) -> Option<FaultAction> {
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
            at.field(name),
            format!(
                "`{name}` does not apply to {} `{kind}` fault",
                article(kind)
            ),
            "not used by this kind",
            Some(help),
        );
    }
    let action = match kind {
        FaultKind::Delay => check_delay(c, fault, at),
        FaultKind::Error if fault.grpc_status.is_some() || fault.grpc_message.is_some() => {
            check_grpc_error(c, fault, at)
        }
        FaultKind::WsClose => check_ws_close(c, fault, at),
        FaultKind::WsDelay => {
            let delay = plain_delay(
                c,
                fault,
                at,
                ("100ms", "50ms..200ms"),
                "how long each message is held",
            )?;
            Some(FaultAction::WsDelay(delay))
        }
        FaultKind::WsDrop => {
            if let Some(ProbabilitySpec::Ramp(_)) = fault.probability {
                c.report(
                    at.field("probability"),
                    "a `ws_drop` fault's probability is per message and cannot ramp",
                    "a ramp",
                    Some("write a number such as `probability = 0.1`".into()),
                );
                return None;
            }
            Some(FaultAction::WsDrop {
                probability: fault
                    .probability
                    .and_then(ProbabilitySpec::fixed)
                    .unwrap_or(1.0),
            })
        }
        FaultKind::Quota => check_quota(c, fault, at),
        FaultKind::Error => {
            let status = required_status(
                c,
                fault,
                at,
                "an `error` fault",
                "add `status = 503` (any status from 200 to 599)",
            )?;
            if let Some(body) = &fault.body {
                no_body_allowed(c, at.field("body"), status, body);
            }
            let headers = fault
                .headers
                .as_ref()
                .map(|h| c.headers_to_send(at.field("headers"), h))
                .unwrap_or_default();
            Some(FaultAction::Error(Arc::new(ErrorReply {
                status,
                body: fault.body.clone(),
                headers,
                retry_after: fault.retry_after.map(DurationSpec::get),
                grpc: None,
            })))
        }
        FaultKind::Drop => Some(FaultAction::Drop),
        FaultKind::RstStream => {
            let code = fault.error_code.unwrap_or(2);
            if code > 13 {
                c.report(
                    at.field("error_code"),
                    format!("{code} is not an HTTP/2 error code: they go from 0 to 13"),
                    "not an HTTP/2 error code",
                    Some(
                        "2 is INTERNAL_ERROR, 7 REFUSED_STREAM, 8 CANCEL, 11 ENHANCE_YOUR_CALM"
                            .into(),
                    ),
                );
            }
            Some(FaultAction::RstStream { code })
        }
        FaultKind::Reset => Some(FaultAction::Reset),
        FaultKind::GoAway => Some(FaultAction::GoAway),
        FaultKind::Hang => {
            let cap = fault.cap.map(DurationSpec::get);
            if let Some(cap) = cap {
                c.positive(at.field("cap"), cap, "the hang's cap");
            }
            Some(FaultAction::Hang { cap })
        }
        FaultKind::Truncate => {
            let Some(after_bytes) = fault.after_bytes else {
                c.report(
                    at.field("kind"),
                    "a `truncate` fault needs `after_bytes`",
                    "missing `after_bytes`",
                    Some("add `after_bytes = 1024`: how much of the body the client gets (0 for none)".into()),
                );
                return None;
            };
            Some(FaultAction::Truncate { after_bytes })
        }
        FaultKind::Throttle => {
            let bytes_per_second = required_rate(
                c,
                fault,
                at,
                "add `bytes_per_second = 20480` (20 KB/s)",
                (
                    "a throttle of 0 bytes per second would never send the body",
                    "use at least 1; to test a response that never comes, use `kind = \"hang\"`",
                ),
            )?;
            Some(FaultAction::Throttle { bytes_per_second })
        }
        FaultKind::Stream => {
            let event_delay = fault.event_delay.map(DurationSpec::get);
            if fault.after_events.is_none() && event_delay.is_none() {
                c.report(
                    at.field("kind"),
                    "a `stream` fault needs `after_events`, `event_delay` or both",
                    "missing `after_events` or `event_delay`",
                    Some("add `after_events = 3` (cut the stream after 3 events) or `event_delay = \"200ms\"` (hold each event)".into()),
                );
                return None;
            }
            Some(FaultAction::Stream {
                after_events: fault.after_events,
                event_delay,
            })
        }
        FaultKind::Headers => check_header_fault(c, fault, at),
        FaultKind::Corrupt => check_corrupt(c, fault, at),
        FaultKind::Garbage => {
            let size = fault.size.unwrap_or(DEFAULT_GARBAGE_SIZE);
            if !(1..=MAX_GARBAGE_SIZE).contains(&size) {
                c.report(
                    at.field("size"),
                    format!("`size` must be from 1 to {MAX_GARBAGE_SIZE} (1 MiB), found {size}"),
                    "out of range",
                    Some("the client gets this many random bytes; for no bytes at all, use `kind = \"empty\"`".into()),
                );
            }
            Some(FaultAction::Garbage { size })
        }
        FaultKind::Empty => Some(FaultAction::Empty),
        FaultKind::SlowRead => {
            let bytes_per_second = required_rate(
                c,
                fault,
                at,
                "add `bytes_per_second = 10240`: how fast the proxy reads the request body",
                (
                    "a `slow_read` of 0 bytes per second would never read the body",
                    "use at least 1",
                ),
            )?;
            Some(FaultAction::SlowRead { bytes_per_second })
        }
        FaultKind::SlowClose => {
            let delay = plain_delay(
                c,
                fault,
                at,
                ("2s", "1s..3s"),
                "how long the connection stays open after the response",
            )?;
            Some(FaultAction::SlowClose(RandomDelay {
                model: DelayModel::from(delay),
                jitter: None,
            }))
        }
        FaultKind::Status => {
            let status = required_status(
                c,
                fault,
                at,
                "a `status` fault",
                "add `status = 500`: the status that replaces the upstream's",
            )?;
            Some(FaultAction::Status(status))
        }
    };
    // A misplaced field is reported once; the action is not used when the fault has problems.
    if misplaced { None } else { action }
}

/// The `bytes_per_second` a `throttle` or `slow_read` needs: `missing` is the help when it is
/// left out; a rate of 0 is reported with `zero` (message, help) and kept, so the other fields
/// are still checked.
fn required_rate(
    c: &mut Checker,
    fault: &FaultSpec,
    at: &At<'_>,
    missing: &str,
    zero: (&str, &str),
) -> Option<u64> {
    let Some(bytes_per_second) = fault.bytes_per_second else {
        c.report(
            at.field("kind"),
            format!("a `{}` fault needs `bytes_per_second`", fault.kind),
            "missing `bytes_per_second`",
            Some(missing.into()),
        );
        return None;
    };
    if bytes_per_second == 0 {
        let (message, help) = zero;
        c.report(
            at.field("bytes_per_second"),
            message,
            "zero",
            Some(help.into()),
        );
    }
    Some(bytes_per_second)
}

/// The `delay` of a kind that takes a fixed value or a range but no ramp (`ws_delay`,
/// `slow_close`): `examples` are a value and a range for the help text, `what` says what it holds.
fn plain_delay(
    c: &mut Checker,
    fault: &FaultSpec,
    at: &At<'_>,
    examples: (&str, &str),
    what: &str,
) -> Option<DelaySpec> {
    let kind = fault.kind;
    let (one, range) = examples;
    if let Some(DelayField::Ramp(_)) = fault.delay {
        c.report(
            at.field("delay"),
            format!("a `{kind}` fault takes a delay or a range, not a ramp"),
            "a ramp",
            Some(format!(
                "write `delay = \"{one}\"` or `delay = \"{range}\"`; ramps are for `delay` faults"
            )),
        );
        return None;
    }
    let Some(delay) = fault.delay.and_then(DelayField::plain) else {
        c.report(
            at.field("kind"),
            format!("a `{kind}` fault needs `delay`"),
            "missing `delay`",
            Some(format!(
                "add `delay = \"{one}\"` or a range `delay = \"{range}\"`: {what}"
            )),
        );
        return None;
    };
    backwards_range(c, at, delay);
    Some(delay)
}

fn required_status(
    c: &mut Checker,
    fault: &FaultSpec,
    at: &At<'_>,
    what: &str,
    help: &str,
) -> Option<u16> {
    let Some(status) = fault.status else {
        c.report(
            at.field("kind"),
            format!("{what} needs `status`"),
            "missing `status`",
            Some(help.into()),
        );
        return None;
    };
    final_status(c, at.field("status"), status);
    Some(status)
}

fn check_delay(c: &mut Checker, fault: &FaultSpec, at: &At<'_>) -> Option<FaultAction> {
    let jitter = fault.jitter.map(DurationSpec::get);
    let model = match (fault.delay, fault.distribution) {
        (Some(_), Some(_)) => {
            c.report(
                at.field("distribution"),
                "a `delay` fault takes `delay` or `distribution`, not both",
                "conflicts with `delay`",
                Some("keep `delay` for a fixed value or a range, or `distribution` with `mean` and `stddev`".into()),
            );
            return None;
        }
        (None, None) => {
            c.report(
                at.field("kind"),
                "a `delay` fault needs `delay` or `distribution`",
                "missing `delay`",
                Some("add `delay = \"100ms\"`, a range `delay = \"100ms..500ms\"`, or `distribution = \"normal\"` with `mean` and `stddev`".into()),
            );
            return None;
        }
        (Some(DelayField::Ramp(ramp)), None) => {
            for name in ["mean", "stddev"] {
                let given = if name == "mean" {
                    fault.mean
                } else {
                    fault.stddev
                };
                if given.is_some() {
                    c.report(
                        at.field(name),
                        format!("`{name}` needs `distribution`"),
                        "without `distribution`",
                        Some("remove it: a ramped `delay` goes from `from` to `to`".into()),
                    );
                }
            }
            positive_extent(
                c,
                at.sub_field("delay", "over"),
                ramp.over,
                "a ramp's `over`",
            );
            DelayModel::Ramp(Ramp {
                from: ramp.from.get(),
                to: ramp.to.get(),
                over: ramp.over,
            })
        }
        (Some(DelayField::Plain(delay)), None) => {
            for name in ["mean", "stddev"] {
                let given = if name == "mean" {
                    fault.mean
                } else {
                    fault.stddev
                };
                if given.is_some() {
                    c.report(
                        at.field(name),
                        format!("`{name}` needs `distribution`"),
                        "without `distribution`",
                        Some("add `distribution = \"normal\"` or `\"lognormal\"` instead of `delay`, or remove `mean` and `stddev`".into()),
                    );
                }
            }
            backwards_range(c, at, delay);
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
                    at.field("distribution"),
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
                            at.field("mean"),
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

/// A range such as `500ms..100ms`, reported at `delay`.
fn backwards_range(c: &mut Checker, at: &At<'_>, delay: DelaySpec) {
    if let DelaySpec::Range(lo, hi) = delay {
        if lo > hi {
            c.report(
                at.field("delay"),
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
}

/// The bytes a `garbage` fault sends when it gives no `size`.
pub const DEFAULT_GARBAGE_SIZE: u64 = 1024;

/// The most a `garbage` fault may send: 1 MiB.
pub const MAX_GARBAGE_SIZE: u64 = 1024 * 1024;

/// The share of bytes a `corrupt` fault replaces when it gives no `rate`.
pub const DEFAULT_CORRUPT_RATE: f64 = 0.01;

fn check_corrupt(c: &mut Checker, fault: &FaultSpec, at: &At<'_>) -> Option<FaultAction> {
    let mode = fault.mode.unwrap_or_default();
    let rate = fault.rate.unwrap_or(DEFAULT_CORRUPT_RATE);
    if !(rate > 0.0 && rate <= 1.0) {
        c.report(
            at.field("rate"),
            format!("`rate` must be above 0 and at most 1, found {rate}"),
            "out of range",
            Some("the chance that each body byte is replaced: 0.01 is one byte in a hundred, 1 every byte".into()),
        );
    }
    Some(FaultAction::Corrupt { mode, rate })
}

/// The close code a `ws_close` sends when it gives none: 1011, "internal error".
pub const DEFAULT_CLOSE_CODE: u16 = 1011;

fn check_ws_close(c: &mut Checker, fault: &FaultSpec, at: &At<'_>) -> Option<FaultAction> {
    let after_time = fault.after_time.map(DurationSpec::get);
    if fault.after_messages.is_none() && after_time.is_none() {
        c.report(
            at.field("kind"),
            "a `ws_close` fault needs `after_messages` or `after_time`",
            "missing `after_messages`",
            Some("add `after_messages = 10` (messages in both directions) or `after_time = \"2s\"` (after the upgrade)".into()),
        );
        return None;
    }
    if fault.after_messages == Some(0) {
        c.report(
            at.field("after_messages"),
            "`after_messages` must be at least 1, found 0",
            "zero",
            Some("to refuse the upgrade itself, use `kind = \"error\"` with `match = { path = ... }`".into()),
        );
    }
    if let Some(t) = after_time {
        c.positive(at.field("after_time"), t, "`after_time`");
    }
    let code = fault.code.unwrap_or(DEFAULT_CLOSE_CODE);
    // RFC 6455 section 7.4: 1004 is reserved, 1005, 1006 and 1015 must never be sent, and below
    // 1000 or from 1016 to 2999 nothing is defined or registrable by an application.
    let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !sendable {
        c.report(
            at.field("code"),
            format!("{code} is not a close code a Close frame may carry"),
            "not sendable",
            Some("use 1000 to 1003, 1007 to 1014 (1011 is \"internal error\"), or an application code from 3000 to 4999".into()),
        );
    }
    Some(FaultAction::WsClose {
        after_messages: fault.after_messages,
        after_time,
        code,
    })
}

fn check_header_fault(c: &mut Checker, fault: &FaultSpec, at: &At<'_>) -> Option<FaultAction> {
    let empty = BTreeMap::new();
    let set = c.headers(at.field("set"), fault.set.as_ref().unwrap_or(&empty));
    let add = c.headers(at.field("add"), fault.add.as_ref().unwrap_or(&empty));
    let mut remove = Vec::new();
    for (i, name) in fault.remove.iter().flatten().enumerate() {
        let p = with(&at.field("remove"), Seg::Index(i));
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
            framing(c, name, with(&at.field(key), Seg::Key(name.clone())));
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
            at.field("kind"),
            "this `headers` fault has nothing to add, set or remove",
            "does nothing",
            Some(
                "add `set = { \"x-chaos\" = \"1\" }`, `add = { ... }` or `remove = [\"etag\"]`"
                    .into(),
            ),
        );
        return None;
    }
    let Some(target) = fault.target.map(|t| match t {
        HeaderTarget::Request => HeaderSide::Request,
        HeaderTarget::Response => HeaderSide::Response,
    }) else {
        c.report(
            at.field("kind"),
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

fn check_matcher(c: &mut Checker, fault: &FaultSpec, at: &At<'_>) -> Matcher {
    let mut matcher = Matcher::default();
    let Some(spec) = &fault.matcher else {
        return matcher;
    };
    let sub = |name: &str| at.sub_field("match", name);
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
    if let Some(grpc) = &spec.grpc {
        let g = sub("grpc");
        let pattern = format!("/{}", grpc.trim_start_matches('/'));
        if !grpc.contains('/') {
            c.report(
                g.clone(),
                format!("`{grpc}` names no method: write `package.Service/Method`"),
                "no `/Method`",
                Some(format!(
                    "write \"{grpc}/*\" for every method of the service"
                )),
            );
        }
        match PathGlob::new(&pattern) {
            Ok(glob) => matcher.grpc = Some(glob),
            Err(e) => c.report(
                g,
                format!("`{grpc}` is not a valid glob: {e}"),
                "invalid glob",
                Some(
                    "such as \"payments.v1.Payments/Charge\" or \"payments.v1.Payments/*\"".into(),
                ),
            ),
        }
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
    check_response_conditions(c, spec, at, &mut matcher);
    matcher
}

fn check_window(c: &mut Checker, fault: &FaultSpec, at: &At<'_>) -> Window {
    let at_least_one = |c: &mut Checker, name: &str, value: Option<u64>, help: &str| {
        if value == Some(0) {
            c.report(
                at.field(name),
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
                at.field("until_request"),
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
                at.field("until"),
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
        // Phases are the scenario's, not the rule's: validation adds them (`validate::phases`).
        ..Window::default()
    }
}

/// The kinds a rule with a response condition may have: what can still be done once the
/// upstream has answered.
pub const RESPONSE_KINDS: [FaultKind; 11] = [
    FaultKind::Delay,
    FaultKind::Status,
    FaultKind::Truncate,
    FaultKind::Throttle,
    FaultKind::Headers,
    FaultKind::Corrupt,
    FaultKind::Error,
    FaultKind::Reset,
    FaultKind::Drop,
    FaultKind::Empty,
    FaultKind::Garbage,
];

/// `match.response_status` and `match.response_header`: statuses 100 to 599, classes `1xx` to
/// `5xx`, valid header names and values.
fn check_response_conditions(
    c: &mut Checker,
    spec: &MatchSpec,
    at: &At<'_>,
    matcher: &mut Matcher,
) {
    let sub = |name: &str| at.sub_field("match", name);
    if let Some(statuses) = &spec.response_status {
        let p = sub("response_status");
        if statuses.items().is_empty() {
            c.report(
                p.clone(),
                "an empty `response_status` list matches no response",
                "empty list",
                Some("list statuses or classes, such as `[500, 503]` or `\"5xx\"`, or remove `response_status`".into()),
            );
        }
        for (i, item) in statuses.items().iter().enumerate() {
            let here = match statuses {
                StatusMatchSpec::One(_) => p.clone(),
                StatusMatchSpec::Many(_) => with(&p, Seg::Index(i)),
            };
            if let Some(status) = status_item(c, here, item) {
                matcher.response_status.push(status);
            }
        }
    }
    if let Some(headers) = &spec.response_header {
        matcher.response_headers = c
            .headers(sub("response_header"), headers)
            .into_iter()
            .map(|(n, v)| (n, ValueMatch::parse(v.to_str().unwrap_or_default())))
            .collect();
    }
}

/// One `response_status` item: a status from 100 to 599, or a class `1xx` to `5xx`.
fn status_item(c: &mut Checker, path: Vec<Seg>, item: &StatusItemSpec) -> Option<StatusMatch> {
    const CLASSES: &str =
        "a status from 100 to 599 (503), or a class: \"1xx\", \"2xx\", \"3xx\", \"4xx\" or \"5xx\"";
    match item {
        StatusItemSpec::Code(code) => match u16::try_from(*code) {
            Ok(status @ 100..=599) => Some(StatusMatch::Code(status)),
            _ => {
                c.report(
                    path,
                    format!("{code} is not an HTTP status: they go from 100 to 599"),
                    "not a status",
                    Some(format!("write {CLASSES}")),
                );
                None
            }
        },
        StatusItemSpec::Class(text) => {
            let lower = text.trim().to_ascii_lowercase();
            match lower.as_bytes() {
                [d @ b'1'..=b'5', b'x', b'x'] => Some(StatusMatch::Class(d - b'0')),
                _ => {
                    let help = if lower.parse::<u16>().is_ok() {
                        format!("write the status as a number, without quotes: {lower}")
                    } else {
                        format!("write {CLASSES}")
                    };
                    c.report(
                        path,
                        format!("`{text}` is not a status class"),
                        "not a status or class",
                        Some(help),
                    );
                    None
                }
            }
        }
    }
}

/// A rule with a response condition acts once the upstream has answered: only the kinds of
/// [`RESPONSE_KINDS`] can, and a `headers` rule only on the response.
fn check_response_kind(c: &mut Checker, fault: &FaultSpec, at: &At<'_>) {
    let kind = fault.kind;
    if !RESPONSE_KINDS.contains(&kind) {
        c.report(
            at.field("kind"),
            format!(
                "{} `{kind}` fault cannot have a condition on the upstream's response",
                article(kind)
            ),
            "not a response kind",
            Some(format!(
                "a rule with `match.response_status` or `match.response_header` acts after the upstream answers: its kind must be {} (`headers` with `target = \"response\"`)",
                kind_list(&RESPONSE_KINDS).replacen(" and ", " or ", 1)
            )),
        );
    } else if kind == FaultKind::Headers && fault.target == Some(HeaderTarget::Request) {
        c.report(
            at.field("target"),
            "the request has gone upstream by the time its response is known",
            "not with a response condition",
            Some("write `target = \"response\"`, or drop `match.response_status` and `match.response_header`".into()),
        );
    }
}

/// A rule's `probability`: the fixed value (1 when a ramp decides), and the ramp, if it is one.
fn check_probability(c: &mut Checker, fault: &FaultSpec, at: &At<'_>) -> (f64, Option<Ramp<f64>>) {
    match fault.probability {
        None => (1.0, None),
        Some(ProbabilitySpec::Fixed(p)) => {
            c.probability(at.field("probability"), p);
            (p, None)
        }
        Some(ProbabilitySpec::Ramp(r)) => {
            c.probability(at.sub_field("probability", "from"), r.from);
            c.probability(at.sub_field("probability", "to"), r.to);
            positive_extent(
                c,
                at.sub_field("probability", "over"),
                r.over,
                "a ramp's `over`",
            );
            (
                1.0,
                Some(Ramp {
                    from: r.from,
                    to: r.to,
                    over: r.over,
                }),
            )
        }
    }
}

/// A length that must be above zero: `over`, burst periods, a quota's `window`.
fn positive_extent(c: &mut Checker, path: Vec<Seg>, e: Extent, what: &str) {
    if e.is_zero() {
        c.report(
            path,
            format!("{what} must be above zero"),
            "zero",
            Some("write a number of requests such as 100, or a time such as \"30s\"".into()),
        );
    }
}

/// The shortest mean period of a Markov burst schedule in time: each period is remembered, so a
/// mean far below a request's spacing would only cost memory.
const MIN_MEAN_PERIOD: Duration = Duration::from_millis(1);

/// `bursts`: both `on` and `off` (fixed), or both `mean_on` and `mean_off` (Markov), above zero
/// and on one axis.
fn check_bursts(c: &mut Checker, fault: &FaultSpec, at: &At<'_>) -> Option<Bursts> {
    let spec: BurstsSpec = fault.bursts?;
    let field = |name: &str| at.sub_field("bursts", name);
    let fixed = spec.on.is_some() || spec.off.is_some();
    let markov = spec.mean_on.is_some() || spec.mean_off.is_some();
    let help = "write `bursts = { on = \"30s\", off = \"2m\" }` (fixed) or `bursts = { mean_on = 20, mean_off = 80 }` (a seeded Markov chain)";
    if fixed && markov {
        c.report(
            at.field("bursts"),
            "`bursts` takes `on` and `off` (fixed) or `mean_on` and `mean_off` (Markov), not both",
            "mixed",
            Some(help.into()),
        );
        return None;
    }
    let (names, first, second) = if markov {
        (("mean_on", "mean_off"), spec.mean_on, spec.mean_off)
    } else {
        (("on", "off"), spec.on, spec.off)
    };
    let (Some(a), Some(b)) = (first, second) else {
        let missing = if first.is_none() { names.0 } else { names.1 };
        c.report(
            at.field("bursts"),
            format!("`bursts` needs `{}` and `{}`", names.0, names.1),
            &format!("missing `{missing}`"),
            Some(help.into()),
        );
        return None;
    };
    let mut ok = true;
    for (name, e) in [(names.0, a), (names.1, b)] {
        if e.is_zero() {
            ok = false;
        }
        positive_extent(c, field(name), e, &format!("`bursts.{name}`"));
    }
    if a.axis() != b.axis() {
        c.report(
            field(names.1),
            format!(
                "`{}` counts {} but `{}` counts {}: both must be requests (integers) or both times (strings)",
                names.0,
                a.axis().as_str(),
                names.1,
                b.axis().as_str()
            ),
            "another axis",
            Some(format!("write `{}` as a {}", names.1, if a.axis() == crate::spec::extent::Axis::Requests { "whole number of requests" } else { "time such as \"30s\"" })),
        );
        return None;
    }
    if markov {
        for (name, e) in [(names.0, a), (names.1, b)] {
            if let Extent::Time(d) = e {
                if !d.is_zero() && d < MIN_MEAN_PERIOD {
                    ok = false;
                    c.report(
                        field(name),
                        format!(
                            "`bursts.{name}` must be at least 1ms, found {}",
                            format_duration(d)
                        ),
                        "too short",
                        Some("use a longer mean, or count requests with an integer".into()),
                    );
                }
            }
        }
    }
    if !ok {
        return None;
    }
    Some(if markov {
        Bursts::Markov {
            mean_on: a,
            mean_off: b,
        }
    } else {
        Bursts::Fixed { on: a, off: b }
    })
}

/// A `quota` rule's quota (checked by [`check_quota`]).
fn quota_of(fault: &FaultSpec) -> Option<Quota> {
    if fault.kind != FaultKind::Quota {
        return None;
    }
    Some(Quota {
        limit: fault.limit?,
        window: fault.window?,
        per_header: fault
            .per_header
            .as_deref()
            .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        retry_after: fault.retry_after.map(DurationSpec::get),
    })
}

fn check_quota(c: &mut Checker, fault: &FaultSpec, at: &At<'_>) -> Option<FaultAction> {
    let (Some(limit), Some(window)) = (fault.limit, fault.window) else {
        let missing = if fault.limit.is_none() {
            "limit"
        } else {
            "window"
        };
        c.report(
            at.field("kind"),
            "a `quota` fault needs `limit` and `window`",
            &format!("missing `{missing}`"),
            Some("add `limit = 10` and `window = 100` (requests, by index) or `window = \"1s\"` (time)".into()),
        );
        return None;
    };
    if limit == 0 {
        c.report(
            at.field("limit"),
            "`limit` must be at least 1, found 0",
            "zero",
            Some("to refuse every request, use `kind = \"error\"` with `status = 429`".into()),
        );
    }
    positive_extent(c, at.field("window"), window, "a quota's `window`");
    if let Some(name) = &fault.per_header {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.report(
                at.field("per_header"),
                format!("`{name}` is not a valid header name"),
                "invalid header name",
                Some("header names are letters, digits and `-`, such as \"x-api-key\"".into()),
            );
        }
    }
    let quota = quota_of(fault)?;
    Some(FaultAction::Quota(Arc::new(quota.template())))
}
