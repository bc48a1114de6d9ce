//! Fault rules compiled into a [`FaultPlan`], and the decision function the proxy calls for every
//! request. A decision depends only on the scenario seed, the rules and the request's facts (id,
//! index, attempt, method, path, query, headers, elapsed time), never on arrival order, so the same
//! request gets the same faults at any concurrency. The exceptions are `max_active`, which counts
//! requests in flight, and a `quota` over a window of time or with `per_header`, which counts
//! arrivals ([`quota`]); both are documented as order-dependent. Ramps and bursts ([`schedule`])
//! are pure functions of the seed, the rule and the request's index or time.
//!
//! Modules: [`matcher`] (which requests a rule applies to), `rank` (request ranks for
//! `first`/`after`/`every`), [`decision`] (what the proxy must do),
//! [`compact`](crate::spec::compact) (the `delay:100ms` grammar).

pub mod compile;
pub mod decision;
pub mod live;
pub mod matcher;
pub mod phase;
pub mod quota;
mod rank;
mod response;
pub mod schedule;
pub mod stream;

use std::fmt;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use hyper::Method;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng;
use rand_distr::Distribution as _;
use rand_pcg::Pcg64;

pub use decision::{
    Action, Decision, Effect, ErrorReply, GrpcStatus, HeaderOp, HeaderSide, RuleRef, Step,
};
pub use matcher::{Matcher, PathGlob, StatusMatch, ValueMatch};
pub use phase::{Gate, Span};

use crate::load::Target;
use crate::spec::duration::{DelaySpec, MAX_DURATION};
use crate::{seed, wire};
use decision::ActiveSlot;
use rank::RankTable;

/// The name of the rule a header-controlled fault ([`wire::FAULT`]) runs as.
pub const HEADER_RULE: &str = "header";

/// How a `delay` fault picks each request's base delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DelayModel {
    Fixed(Duration),
    /// Uniform in `[lo, hi]`, both included.
    Uniform(Duration, Duration),
    /// Normal with this mean and standard deviation, clamped at zero.
    Normal {
        mean: Duration,
        stddev: Duration,
    },
    /// Log-normal whose own mean and standard deviation are these.
    LogNormal {
        mean: Duration,
        stddev: Duration,
    },
    /// A straight line from `from` to `to` over requests or time, then `to` (see
    /// [`schedule::Ramp`]).
    Ramp(schedule::Ramp<Duration>),
}

impl From<DelaySpec> for DelayModel {
    fn from(spec: DelaySpec) -> Self {
        match spec {
            DelaySpec::Fixed(d) => DelayModel::Fixed(d),
            DelaySpec::Range(lo, hi) => DelayModel::Uniform(lo, hi),
        }
    }
}

/// What a rule does when it fires: an [`Action`] whose delay is still to be drawn.
pub type FaultAction = Action<RandomDelay>;

/// A `delay` fault before the draw: a base delay from `model`, plus a uniform jitter in
/// `[-jitter, +jitter]` (never below zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomDelay {
    pub model: DelayModel,
    pub jitter: Option<Duration>,
}

impl FaultAction {
    /// A plain delay, fixed or a uniform range, without jitter.
    pub fn delay(spec: DelaySpec) -> Self {
        Action::Delay(RandomDelay {
            model: spec.into(),
            jitter: None,
        })
    }

    /// An error with only a status.
    pub fn error(status: u16) -> Self {
        Action::Error(Arc::new(ErrorReply::status(status)))
    }
}

/// When a matching request is eligible, besides its probability: deterministic patterns by
/// request index and attempt, time windows, and the `max_active` limit. All given conditions must
/// hold; the default is always eligible.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Rank below this (`first = N`).
    pub first: Option<u64>,
    /// Rank at least this (`after = N`).
    pub after: Option<u64>,
    /// Rank a multiple of this (`every = N`); never 0.
    pub every: Option<u64>,
    /// Attempt below this (`attempts = K`).
    pub attempts: Option<u32>,
    /// Request index at least this.
    pub from_request: u64,
    /// Request index below this.
    pub until_request: Option<u64>,
    /// Elapsed time since the start at least this.
    pub from: Duration,
    /// Elapsed time since the start below this.
    pub until: Option<Duration>,
    /// At most this many requests under the rule at once.
    pub max_active: Option<u32>,
    /// The probability as a ramp over requests or time; replaces [`FaultRule::probability`].
    pub probability_ramp: Option<schedule::Ramp<f64>>,
    /// Fire only while the burst schedule is on.
    pub bursts: Option<schedule::Bursts>,
    /// A `quota` rule: fire only for requests over the quota.
    pub quota: Option<quota::Quota>,
    /// The scenario's `[[phases]]` that switch this rule on or off; `None`: no phase names it.
    pub gates: Option<Arc<Gate>>,
}

impl Window {
    /// Whether the rule counts matching requests (`first`, `after`, `every`).
    pub fn needs_rank(&self) -> bool {
        self.first.is_some()
            || self.after.is_some()
            || self.every.is_some()
            || self
                .quota
                .as_ref()
                .is_some_and(quota::Quota::counts_by_rank)
    }

    /// The index, attempt and time conditions (everything but the rank and `max_active`).
    fn admits(&self, facts: &RequestFacts<'_>) -> bool {
        self.attempts.is_none_or(|k| facts.attempt < k)
            && facts.index >= self.from_request
            && self.until_request.is_none_or(|u| facts.index < u)
            && facts.elapsed >= self.from
            && self.until.is_none_or(|u| facts.elapsed < u)
            && self
                .gates
                .as_ref()
                .is_none_or(|g| g.admits(facts.index, facts.elapsed))
    }

    fn admits_rank(&self, rank: u64) -> bool {
        self.first.is_none_or(|n| rank < n)
            && self.after.is_none_or(|n| rank >= n)
            && self.every.is_none_or(|n| n > 0 && rank % n == 0)
    }
}

/// One validated fault rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Unique within the scenario; used in metrics labels, outcomes and golden files.
    pub name: String,
    pub action: FaultAction,
    /// In `[0, 1]`.
    pub probability: f64,
    pub matcher: Matcher,
    pub window: Window,
}

impl FaultRule {
    /// A rule that fires for every request, with probability 1.
    pub fn new(name: &str, action: FaultAction) -> Self {
        FaultRule {
            name: name.to_string(),
            action,
            probability: 1.0,
            matcher: Matcher::default(),
            window: Window::default(),
        }
    }
}

impl fmt::Display for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::spec::duration::format_duration as fd;
        write!(f, "{} ({}", self.name, self.action.kind())?;
        match &self.action {
            FaultAction::Delay(RandomDelay { model, jitter }) => {
                match model {
                    DelayModel::Fixed(d) => write!(f, " {}", fd(*d))?,
                    DelayModel::Uniform(lo, hi) => write!(f, " {}..{}", fd(*lo), fd(*hi))?,
                    DelayModel::Normal { mean, stddev } => {
                        write!(f, " normal {}±{}", fd(*mean), fd(*stddev))?
                    }
                    DelayModel::LogNormal { mean, stddev } => {
                        write!(f, " lognormal {}±{}", fd(*mean), fd(*stddev))?
                    }
                    DelayModel::Ramp(r) => {
                        write!(f, " {}→{} over {}", fd(r.from), fd(r.to), r.over)?
                    }
                }
                if let Some(j) = jitter {
                    write!(f, " jitter {}", fd(*j))?;
                }
            }
            FaultAction::Error(reply) => match &reply.grpc {
                Some(grpc) => write!(f, " grpc-status {}", grpc.code)?,
                None => write!(f, " {}", reply.status)?,
            },
            FaultAction::Hang { cap: Some(cap) } => write!(f, " cap {}", fd(*cap))?,
            FaultAction::Truncate { after_bytes } => write!(f, " after {after_bytes} bytes")?,
            FaultAction::Throttle { bytes_per_second } => write!(f, " {bytes_per_second} B/s")?,
            FaultAction::Stream {
                after_events,
                event_delay,
            } => {
                if let Some(n) = after_events {
                    write!(f, " after {n} events")?;
                }
                if let Some(d) = event_delay {
                    write!(f, " {} per event", fd(*d))?;
                }
            }
            FaultAction::Headers { target, .. } => {
                write!(f, " {}", target.as_str())?;
            }
            FaultAction::Status(status) => write!(f, " {status}")?,
            FaultAction::WsClose {
                after_messages,
                after_time,
                code,
            } => {
                if let Some(n) = after_messages {
                    write!(f, " after {n} messages")?;
                }
                if let Some(t) = after_time {
                    write!(f, " after {}", fd(*t))?;
                }
                write!(f, " code {code}")?;
            }
            FaultAction::WsDelay(spec) => match spec {
                DelaySpec::Fixed(d) => write!(f, " {}", fd(*d))?,
                DelaySpec::Range(lo, hi) => write!(f, " {}..{}", fd(*lo), fd(*hi))?,
            },
            FaultAction::WsDrop { probability } => write!(f, " p={probability} per message")?,
            FaultAction::RstStream { code } => write!(f, " error code {code}")?,
            FaultAction::Quota(_) => {
                if let Some(q) = &self.window.quota {
                    write!(f, " {} per {}", q.limit, q.window)?;
                    if let Some(h) = &q.per_header {
                        write!(f, " per {h}")?;
                    }
                }
            }
            FaultAction::Corrupt { mode, rate } => match mode {
                crate::spec::CorruptMode::Bytes => write!(f, " bytes rate {rate}")?,
                crate::spec::CorruptMode::Json => write!(f, " json")?,
            },
            FaultAction::Garbage { size } => write!(f, " {size} bytes")?,
            FaultAction::SlowRead { bytes_per_second } => write!(f, " {bytes_per_second} B/s")?,
            FaultAction::SlowClose(RandomDelay { model, .. }) => match model {
                DelayModel::Fixed(d) => write!(f, " {}", fd(*d))?,
                DelayModel::Uniform(lo, hi) => write!(f, " {}..{}", fd(*lo), fd(*hi))?,
                _ => {}
            },
            FaultAction::Drop
            | FaultAction::Reset
            | FaultAction::Hang { cap: None }
            | FaultAction::GoAway
            | FaultAction::Empty => {}
        }
        if let Some(r) = &self.window.probability_ramp {
            write!(f, ", p={}→{} over {}", r.from, r.to, r.over)?;
        } else if self.probability < 1.0 {
            write!(f, ", p={}", self.probability)?;
        }
        match &self.window.bursts {
            Some(schedule::Bursts::Fixed { on, off }) => write!(f, ", bursts {on} on/{off} off")?,
            Some(schedule::Bursts::Markov { mean_on, mean_off }) => {
                write!(f, ", bursts ~{mean_on} on/~{mean_off} off")?
            }
            None => {}
        }
        if let Some(path) = &self.matcher.path {
            write!(f, ", path {}", path.as_str())?;
        }
        if let Some(grpc) = &self.matcher.grpc {
            write!(f, ", grpc {}", grpc.as_str().trim_start_matches('/'))?;
        }
        if !self.matcher.methods.is_empty() {
            let ms: Vec<&str> = self.matcher.methods.iter().map(Method::as_str).collect();
            write!(f, ", {}", ms.join("|"))?;
        }
        if !self.matcher.response_status.is_empty() {
            let ss: Vec<String> = self
                .matcher
                .response_status
                .iter()
                .map(ToString::to_string)
                .collect();
            write!(f, ", response {}", ss.join("|"))?;
        }
        for (name, value) in &self.matcher.response_headers {
            match value {
                ValueMatch::Any => write!(f, ", response header {name}")?,
                ValueMatch::Exact(v) => write!(f, ", response header {name}={v}")?,
            }
        }
        if let Some(gate) = &self.window.gates {
            write!(f, ", {gate}")?;
        }
        f.write_str(")")
    }
}

static NO_HEADERS: LazyLock<HeaderMap> = LazyLock::new(HeaderMap::new);

/// Everything [`FaultPlan::decide`] may look at for one request. The caller owns the clock and the
/// counters: the plan never reads either.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    /// The path, without the query.
    pub path: &'a str,
    /// The query string without `?`, if any.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The [`wire::FAULT`] request header, when the proxy honours it (`[proxy] header_faults`,
    /// which only the proxy's configuration holds); `None` otherwise.
    pub fault_header: Option<&'a HeaderValue>,
    /// Keys the per-rule random streams, `fault/<rule>/<request-id>`.
    pub request_id: &'a str,
    /// The logical request index: the `x-traceforge-index` header the load generator sends, or,
    /// for clients that do not send it, the proxy's arrival counter (then order-dependent).
    pub index: u64,
    /// The 0-based attempt: the `x-traceforge-attempt` header, or 0.
    pub attempt: u32,
    /// Time since the proxy started (the start of the run). Only time windows look at it.
    pub elapsed: Duration,
}

impl<'a> RequestFacts<'a> {
    /// Facts with no headers, index 0, attempt 0 and elapsed 0; set the other fields as needed.
    pub fn new(method: &'a Method, path: &'a str, request_id: &'a str) -> Self {
        RequestFacts {
            method,
            path,
            query: None,
            headers: &NO_HEADERS,
            fault_header: None,
            request_id,
            index: 0,
            attempt: 0,
            elapsed: Duration::ZERO,
        }
    }
}

/// The compiled fault rules of a scenario, under its seed.
///
/// Cloning shares the `max_active` counters, so every clone serving the same run enforces the
/// same limits.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    seed: u64,
    rules: Vec<FaultRule>,
    names: Vec<Arc<str>>,
    active: Vec<Arc<AtomicU32>>,
    ranks: Option<Arc<RankTable>>,
    /// Each rule's Markov burst cycles, remembered (pure: a cache).
    chains: Vec<Arc<schedule::Chain>>,
    /// Each rule's quota counts in arrival order (order-dependent, like `active`).
    counters: Vec<Arc<quota::Counters>>,
}

impl FaultPlan {
    /// A plan without a load profile (ranks are request indices).
    pub fn new(seed: u64, rules: Vec<FaultRule>) -> Self {
        FaultPlan {
            seed,
            names: rules.iter().map(|r| Arc::from(r.name.as_str())).collect(),
            active: rules.iter().map(|_| Arc::default()).collect(),
            chains: rules.iter().map(|_| Arc::default()).collect(),
            counters: rules.iter().map(|_| Arc::default()).collect(),
            rules,
            ranks: None,
        }
    }

    /// Gives the plan the load profile, so `first`/`after`/`every` count only the requests that
    /// meet a rule's `match` conditions: request `i` sends [`crate::load::pick_target`]`(seed, i, targets)`, and
    /// whether it matches is decided from the target's method, path and query. Header conditions
    /// cannot be known in advance, so for ranks they count as met: a rule with header conditions
    /// counts every index whose target passes its method, path and query conditions.
    ///
    /// Without a profile (a standalone proxy) the rank is the request index itself. Building scans
    /// `requests` target choices once; memory is one `u64` per 64 requests per counting rule.
    pub fn with_targets(mut self, targets: Vec<Target>, requests: u64) -> Self {
        let matchers: Vec<(&Matcher, bool)> = self
            .rules
            .iter()
            .map(|r| (&r.matcher, r.window.needs_rank()))
            .collect();
        let table = RankTable::build(self.seed, targets, requests, &matchers);
        self.ranks = Some(Arc::new(table));
        self
    }

    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many requests `first`/`after`/`every` of rule `rule` count before request `index`.
    pub fn rank(&self, rule: usize, index: u64) -> u64 {
        self.ranks.as_ref().map_or(index, |t| t.rank(rule, index))
    }

    /// Decides the faults for one request.
    ///
    /// Pure given `(seed, rules, load profile, facts)`, except for `max_active`, which counts the
    /// decisions still alive. Rules are evaluated in order. A rule fires when its `match`
    /// conditions hold, its window admits the request (attempt, index window, time window, bursts,
    /// rank, and for a `quota` being over quota), its probability roll (against the ramp's value at
    /// the request, if the probability ramps) succeeds, and a `max_active` slot is free. A quota
    /// counts a request once it is past the other conditions, before the roll. Each rule draws from
    /// its own stream, keyed `fault/<rule-name>/<request-id>`: first the probability roll (always,
    /// even at probability 1), then any value it needs (a delay, then its jitter).
    ///
    /// Combination: delays add up; the first terminal fault (error, drop, reset, hang) ends
    /// evaluation and discards the body, header and status steps before it; truncate, throttle,
    /// headers and status steps compose (see [`Decision`]). With [`RequestFacts::fault_header`] set, a valid
    /// `x-traceforge-fault` header is evaluated last as a rule named `header`, unless a terminal
    /// fault already fired; a malformed one is ignored and explained in
    /// [`Decision::header_error`].
    ///
    /// Rules with a condition on the upstream's response are left out: the proxy decides them
    /// with [`FaultPlan::decide_response`] once the upstream has answered.
    pub fn decide(&self, facts: &RequestFacts<'_>) -> Decision {
        let mut decision = Decision::default();
        for (index, rule) in self.rules.iter().enumerate() {
            // Response rules wait for the upstream's answer: `decide_response`.
            if rule.matcher.is_response() {
                continue;
            }
            let fired = self.evaluate(RuleRef::Index(index), rule, &self.names[index], facts);
            if let Some(step) = fired {
                let terminal = step.effect.is_terminal();
                decision.push(step);
                if terminal {
                    return decision;
                }
            }
        }
        if let Some(value) = facts.fault_header {
            match header_rule(value) {
                Ok(rule) => {
                    let name: Arc<str> = Arc::from(HEADER_RULE);
                    if let Some(step) = self.evaluate(RuleRef::Header, &rule, &name, facts) {
                        decision.push(step);
                    }
                }
                Err(e) => decision.header_error = Some(e),
            }
        }
        decision
    }

    /// One rule against one request: the step it fires, if it does.
    fn evaluate(
        &self,
        which: RuleRef,
        rule: &FaultRule,
        name: &Arc<str>,
        facts: &RequestFacts<'_>,
    ) -> Option<Step> {
        if !rule.matcher.matches(facts) || !rule.window.admits(facts) {
            return None;
        }
        // Stream faults act on an upgraded WebSocket's messages: a plain request has none.
        if rule.action.is_stream() && !crate::websocket::is_upgrade(facts.method, facts.headers) {
            return None;
        }
        let at = schedule::Point::of(facts);
        if let Some(bursts) = &rule.window.bursts {
            let on = match which {
                RuleRef::Index(i) => bursts.is_on(self.seed, &rule.name, at, &self.chains[i]),
                RuleRef::Header => {
                    bursts.is_on(self.seed, &rule.name, at, &schedule::Chain::default())
                }
            };
            if !on {
                return None;
            }
        }
        if let RuleRef::Index(i) = which {
            if rule.window.needs_rank() && !rule.window.admits_rank(self.rank(i, facts.index)) {
                return None;
            }
        }
        let over = match (&rule.window.quota, which) {
            (Some(q), RuleRef::Index(i)) => {
                Some(q.check(at, facts.headers, |x| self.rank(i, x), &self.counters[i])?)
            }
            _ => None,
        };
        // The key is `fault/<rule>/<request-id>`, hashed piece by piece: no string per rule.
        let mut rng = seed::rng_parts(self.seed, &["fault", &rule.name, facts.request_id]);
        // Always draw, even at probability 1, so a rule's later draws do not depend on its probability.
        let roll: f64 = rng.random();
        let probability = rule
            .window
            .probability_ramp
            .map_or(rule.probability, |r| r.at(at));
        if roll >= probability {
            return None;
        }
        let mut effect = effect_of(&rule.action, &mut rng, at);
        if let (Effect::Quota(template), Some(over)) = (&effect, over) {
            effect = Effect::Quota(Arc::new(quota::Quota::reply(template, over)));
        }
        let slot = match (which, rule.window.max_active) {
            (RuleRef::Index(i), Some(limit)) => {
                Some(Arc::new(ActiveSlot::acquire(&self.active[i], limit)?))
            }
            _ => None,
        };
        Some(Step {
            rule: which,
            name: name.clone(),
            effect,
            slot,
        })
    }
}

/// The effect of a firing rule, drawing any random value from the rule's stream.
fn effect_of(action: &FaultAction, rng: &mut Pcg64, at: schedule::Point) -> Effect {
    action.map_delay(|d| draw_delay(&d.model, d.jitter, rng, at))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds from a float draw, clamped to `[0, MAX_DURATION]` (NaN is 0).
fn clamped(ns: f64) -> u64 {
    if ns.is_nan() {
        return 0;
    }
    ns.clamp(0.0, nanos(MAX_DURATION) as f64) as u64
}

/// A delay drawn from `model`, plus jitter, in `[0, MAX_DURATION]`. The draw order is part of the
/// golden-file contract: the base value, then the jitter.
fn draw_delay(
    model: &DelayModel,
    jitter: Option<Duration>,
    rng: &mut Pcg64,
    at: schedule::Point,
) -> Duration {
    let base = match *model {
        DelayModel::Fixed(d) => nanos(d),
        DelayModel::Ramp(r) => nanos(r.at(at)),
        DelayModel::Uniform(lo, hi) => {
            let lo_ns = nanos(lo);
            let hi_ns = nanos(hi).max(lo_ns);
            rng.random_range(lo_ns..=hi_ns)
        }
        DelayModel::Normal { mean, stddev } => {
            match rand_distr::Normal::new(nanos(mean) as f64, nanos(stddev) as f64) {
                Ok(normal) => clamped(normal.sample(rng)),
                Err(_) => nanos(mean),
            }
        }
        DelayModel::LogNormal { mean, stddev } => {
            let (m, s) = (nanos(mean) as f64, nanos(stddev) as f64);
            if m <= 0.0 {
                0
            } else {
                match rand_distr::LogNormal::from_mean_cv(m, s / m) {
                    Ok(lognormal) => clamped(lognormal.sample(rng)),
                    Err(_) => nanos(mean),
                }
            }
        }
    };
    let total = match jitter.map(nanos) {
        Some(j) if j > 0 => {
            let offset = rng.random_range(0..=j.saturating_mul(2));
            base.saturating_add(offset).saturating_sub(j)
        }
        _ => base,
    };
    Duration::from_nanos(total.min(nanos(MAX_DURATION)))
}

/// The rule a `x-traceforge-fault` header value asks for, validated like a compact fault in a
/// scenario file, or why it cannot be used.
fn header_rule(value: &HeaderValue) -> Result<FaultRule, String> {
    let text = value
        .to_str()
        .map_err(|_| format!("{}: the value is not visible ASCII text", wire::FAULT))?;
    let spec = crate::spec::compact::parse(text).map_err(|e| format!("{}: {e}", wire::FAULT))?;
    compile::compile_rule(&spec, HEADER_RULE).map_err(|e| format!("{}: {e}", wire::FAULT))
}

/// Builds request-header and response-header operations: `remove`, then `set`, then `add`.
pub fn header_ops(
    remove: &[HeaderName],
    set: &[(HeaderName, HeaderValue)],
    add: &[(HeaderName, HeaderValue)],
) -> Arc<[HeaderOp]> {
    remove
        .iter()
        .map(|n| HeaderOp::Remove(n.clone()))
        .chain(set.iter().map(|(n, v)| HeaderOp::Set(n.clone(), v.clone())))
        .chain(add.iter().map(|(n, v)| HeaderOp::Add(n.clone(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests;
