//! The load plan: the validated load profile (closed loop, open-loop schedule, stages), the retry
//! policy, the request mix ([`Target`]) and the choice of target per request ([`pick_target`]).
//! [`super::compile`] builds it from `[load]`; the load generator plays it, the fault plan ranks
//! requests over it, the golden writer asks whether its request count is fixed.

use std::fmt;
use std::time::Duration;

use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};
use rand::{Rng, RngCore};

use crate::record::{Attempt, ErrorKind};
use crate::seed;
use crate::spec::duration::{MAX_DURATION, format_duration};

/// The load plan: how requests start, how they retry, and what they send.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub profile: Profile,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub client_trace: bool,
    pub targets: Vec<Target>,
    /// HTTP/2: with prior knowledge in clear text, offered first in ALPN over TLS.
    pub http2: bool,
    /// Play only this shard's share of the request indices (`traceforge run --shard K/N`).
    pub shard: Option<Shard>,
}

/// One share of a scenario's requests: shard `index` of `count` plays the request indices `i`
/// with `i % count == index`, each with the ids, faults and (in an open loop) the send time it has
/// in a single-machine run. Every request is a pure function of `(seed, index)`, so the shards
/// together play exactly the single-machine run, with no coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    /// 0-based: `0..count`.
    pub index: u32,
    pub count: u32,
}

/// The most shards a run may be split into.
pub const MAX_SHARDS: u32 = 10_000;

impl Shard {
    /// Whether request `i` is this shard's.
    pub fn plays(&self, i: u64) -> bool {
        i % u64::from(self.count) == u64::from(self.index)
    }

    /// The `j`-th request index this shard plays.
    pub fn nth(&self, j: u64) -> u64 {
        u64::from(self.index).saturating_add(j.saturating_mul(u64::from(self.count)))
    }

    /// How many of the indices `0..total` this shard plays.
    pub fn planned(&self, total: u64) -> u64 {
        let (k, n) = (u64::from(self.index), u64::from(self.count));
        if total <= k {
            0
        } else {
            (total - k).div_ceil(n)
        }
    }
}

impl fmt::Display for Shard {
    /// `K/N`, as `--shard` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `K/N` with `0 <= K < N <= MAX_SHARDS`.
    fn from_str(text: &str) -> Result<Shard, String> {
        let usage = || {
            format!(
                "`{text}` is not a shard: write K/N, shard K (counted from 0) of N, such as 0/4 or 3/4"
            )
        };
        let (k, n) = text.split_once('/').ok_or_else(usage)?;
        let index: u32 = k.trim().parse().map_err(|_| usage())?;
        let count: u32 = n.trim().parse().map_err(|_| usage())?;
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "`{text}`: the number of shards must be 1 to {MAX_SHARDS}"
            ));
        }
        if index >= count {
            return Err(format!(
                "`{text}`: shards are counted from 0, so the last of {count} is {}/{count}",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

/// One entry of the request mix.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: String,
    pub weight: u32,
    /// Sent on every attempt (a JSON body adds `content-type: application/json`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: bytes::Bytes,
    /// A WebSocket target: each attempt is one connection that echoes these messages.
    pub websocket: Option<WsTarget>,
}

/// What a WebSocket target sends on each connection.
#[derive(Debug, Clone, PartialEq)]
pub struct WsTarget {
    pub messages: u64,
    /// Bytes per message, at least [`WsTarget::MIN_SIZE`].
    pub size: usize,
    pub binary: bool,
    /// How long a message waits for its echo before the next one is sent.
    pub echo_timeout: Duration,
}

impl WsTarget {
    /// The most messages one connection sends.
    pub const MAX_MESSAGES: u64 = 100_000;
    /// Each message begins with its number in 8 hexadecimal digits, so no two are alike.
    pub const MIN_SIZE: u64 = 8;
    /// tungstenite's default frame limit, which the proxy and the demo upstream keep.
    pub const MAX_SIZE: u64 = 16 << 20;

    /// Message `number` of request `index`: its number in 8 hexadecimal digits, then bytes from
    /// the stream `load/ws/<index>/<number>` (letters and digits in a text message), `size` in
    /// all. The same on every attempt, at any concurrency.
    pub fn message(&self, seed: u64, index: u64, number: u64) -> Vec<u8> {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut out = format!("{:08x}", number & 0xffff_ffff).into_bytes();
        out.truncate(self.size);
        let mut rng = seed::rng_parts(
            seed,
            &[
                "load",
                "ws",
                seed::Digits::new(index).as_str(),
                seed::Digits::new(number).as_str(),
            ],
        );
        let mut rest = vec![0u8; self.size - out.len()];
        rng.fill_bytes(&mut rest);
        if !self.binary {
            for byte in &mut rest {
                *byte = ALPHABET[usize::from(*byte) % ALPHABET.len()];
            }
        }
        out.extend_from_slice(&rest);
        out
    }
}

impl Target {
    /// A bodiless target with no extra headers.
    pub fn new(method: Method, path: impl Into<String>, weight: u32) -> Target {
        Target {
            method,
            path: path.into(),
            weight,
            headers: Vec::new(),
            body: bytes::Bytes::new(),
            websocket: None,
        }
    }
}

/// The target request `index` sends, chosen by weight from the stream `load/target/<index>`. The
/// load generator and the fault plan must agree on it bit for bit: both call this function.
pub fn pick_target(seed: u64, index: u64, targets: &[Target]) -> Option<&Target> {
    pick_index(seed, index, targets).map(|i| &targets[i])
}

/// The position in `targets` of [`pick_target`]'s choice.
pub(crate) fn pick_index(seed: u64, index: u64, targets: &[Target]) -> Option<usize> {
    if targets.is_empty() {
        return None;
    }
    let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
    if total == 0 {
        return Some(0);
    }
    // The key is `load/target/<index>`, hashed in pieces: this runs for every request, and up to
    // 63 times more per counting rule when ranking.
    let mut roll = seed::rng_parts(seed, &["load", "target", seed::Digits::new(index).as_str()])
        .random_range(0..total);
    for (i, t) in targets.iter().enumerate() {
        let w = u64::from(t.weight);
        if roll < w {
            return Some(i);
        }
        roll -= w;
    }
    Some(targets.len() - 1)
}

/// The default open-loop in-flight cap. In `traceforge run` every request in flight holds four
/// sockets (client, proxy in and out, upstream) and tens of kilobytes of buffers: at 10000 a
/// server that falls behind drove a run into the usual 20000 file-descriptor limit (connect
/// errors) and 300 MB of memory. 1000 covers a one-second stall at 1000 requests/s; requests
/// beyond it wait, start late and are counted late, their latency still measured from schedule.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1_000;

// The caps of a load profile. Scenario files and `traceforge load`'s flags are both held to them,
// so a value that one refuses the other refuses too.

/// The most logical requests a profile may send.
pub const MAX_REQUESTS: u64 = 100_000_000;
/// The most closed-loop workers.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// The highest open-loop rate, in requests per second.
pub const MAX_RATE: f64 = 1_000_000.0;
/// The highest open-loop in-flight cap.
pub const MAX_IN_FLIGHT: u32 = 1_000_000;
/// The most retries after a request's first attempt.
pub const MAX_RETRIES: u32 = 20;

/// How requests are started.
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    /// `concurrency` workers, each starting its next request when the previous one finished.
    Closed { concurrency: u32, until: Until },
    /// Closed-loop workers whose number ramps through the stages.
    ClosedStages { stages: Vec<Stage> },
    /// Requests start on a schedule whatever the server does; at most `max_in_flight` at once.
    Open {
        schedule: Schedule,
        max_in_flight: u32,
    },
}

/// When a closed loop stops starting requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Until {
    Requests(u64),
    Duration(Duration),
}

/// One step of a ramp: the value (rate or concurrency) reached at its end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: f64,
}

impl Profile {
    /// The number of requests, when it does not depend on the server's speed.
    pub fn fixed_count(&self) -> Option<u64> {
        match self {
            Profile::Closed {
                until: Until::Requests(n),
                ..
            } => Some(*n),
            Profile::Open { schedule, .. } => Some(schedule.count()),
            _ => None,
        }
    }

    /// The most requests that can be in flight at once (sizes the connection pool).
    pub fn max_in_flight(&self) -> u32 {
        match self {
            Profile::Closed { concurrency, .. } => *concurrency,
            Profile::ClosedStages { stages } => stages
                .iter()
                .map(|s| s.target.ceil() as u32)
                .max()
                .unwrap_or(1),
            Profile::Open { max_in_flight, .. } => *max_in_flight,
        }
    }

    /// True for profiles that start requests on a schedule.
    pub fn is_open(&self) -> bool {
        matches!(self, Profile::Open { .. })
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stages = |f: &mut fmt::Formatter<'_>, stages: &[Stage], unit: &str| {
            let parts: Vec<String> = stages
                .iter()
                .map(|s| format!("{}{unit} over {}", s.target, format_duration(s.duration)))
                .collect();
            f.write_str(&parts.join(", "))
        };
        match self {
            Profile::Closed {
                concurrency,
                until: Until::Requests(n),
            } => write!(f, "{n} requests at concurrency {concurrency}"),
            Profile::Closed {
                concurrency,
                until: Until::Duration(d),
            } => write!(
                f,
                "closed loop at concurrency {concurrency} for {}",
                format_duration(*d)
            ),
            Profile::ClosedStages { stages: s } => {
                f.write_str("closed loop, concurrency stages: ")?;
                stages(f, s, " workers")
            }
            Profile::Open { schedule, .. } => match &schedule.shape {
                Shape::Constant { rate } => write!(
                    f,
                    "{} requests at {}/s (open loop)",
                    schedule.count,
                    format_number(*rate)
                ),
                Shape::Ramp(s) => {
                    write!(f, "{} requests, open loop, rate stages: ", schedule.count)?;
                    stages(f, s, "/s")
                }
            },
        }
    }
}

/// An open-loop schedule: when request `i` is meant to start. Computed from the profile alone, so
/// which index exists (and so its target and ids) never depends on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    shape: Shape,
    count: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Constant { rate: f64 },
    Ramp(Vec<Stage>),
}

impl Schedule {
    /// `count` requests at `rate` per second: request `i` at `i / rate`.
    pub fn constant(rate: f64, count: u64) -> Schedule {
        Schedule {
            shape: Shape::Constant { rate },
            count,
        }
    }

    /// `floor(rate x duration)` requests at `rate` per second.
    pub fn constant_for(rate: f64, duration: Duration) -> Schedule {
        Schedule::constant(rate, floor_count(rate * duration.as_secs_f64()))
    }

    /// Rate stages ramping linearly from the previous stage's rate (the first from 0): as many
    /// requests as the integral of the rate over the whole ramp, rounded down.
    pub fn stages(stages: Vec<Stage>) -> Schedule {
        let mut from = 0.0;
        let mut total = 0.0;
        for s in &stages {
            total += (from + s.target) / 2.0 * s.duration.as_secs_f64();
            from = s.target;
        }
        Schedule {
            shape: Shape::Ramp(stages),
            count: floor_count(total),
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The intended send time of request `index`, from the start of the run. Never later than
    /// [`MAX_DURATION`]: validation refuses schedules that do not fit (see [`Schedule::fits`]), and
    /// a time that cannot be represented must not panic the load generator either.
    pub fn at(&self, index: u64) -> Duration {
        self.secs_at(index)
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .map_or(MAX_DURATION, |d| d.min(MAX_DURATION))
    }

    /// True when the last request is due within [`MAX_DURATION`] of the start.
    pub fn fits(&self) -> bool {
        let last = self.count.saturating_sub(1);
        self.secs_at(last)
            .is_some_and(|secs| secs <= MAX_DURATION.as_secs_f64())
    }

    /// Seconds from the start to request `index`, when that is a finite, non-negative number.
    fn secs_at(&self, index: u64) -> Option<f64> {
        let n = index as f64;
        let secs = match &self.shape {
            Shape::Constant { rate } => n / rate,
            Shape::Ramp(stages) => ramp_time(stages, n),
        };
        (secs.is_finite() && secs >= 0.0).then_some(secs)
    }
}

/// A number as people write it: `50`, `0.25`, and `1e-300` rather than three hundred zeros.
pub fn format_number(x: f64) -> String {
    let plain = x.to_string();
    if plain.len() <= 20 {
        plain
    } else {
        format!("{x:e}")
    }
}

/// The counts are computed in f64; a hair of tolerance keeps `10/s x 2s` at 20, not 19.
fn floor_count(x: f64) -> u64 {
    (x + 1e-9).floor().max(0.0) as u64
}

/// The time at which the ramp's cumulative request count reaches `n`.
fn ramp_time(stages: &[Stage], n: f64) -> f64 {
    let mut from = 0.0;
    let mut start = 0.0;
    let mut before = 0.0;
    for s in stages {
        let d = s.duration.as_secs_f64();
        let in_stage = (from + s.target) / 2.0 * d;
        if n < before + in_stage + 1e-9 && d > 0.0 {
            // Count within the stage: N(t) = from*t + (to-from)/(2d) * t^2; solve N(t) = k.
            let k = (n - before).max(0.0);
            let a = (s.target - from) / (2.0 * d);
            let disc = (from * from + 4.0 * a * k).max(0.0);
            let denom = from + disc.sqrt();
            let t = if denom > 0.0 { 2.0 * k / denom } else { 0.0 };
            return start + t.min(d);
        }
        before += in_stage;
        start += d;
        from = s.target;
    }
    start
}

/// The concurrency a closed-loop ramp asks for `elapsed` into the run; `None` once it is over.
pub fn ramp_value(stages: &[Stage], elapsed: Duration) -> Option<f64> {
    let t = elapsed.as_secs_f64();
    let mut from = 0.0;
    let mut start = 0.0;
    for s in stages {
        let d = s.duration.as_secs_f64();
        if t < start + d {
            return Some(from + (s.target - from) * (t - start) / d);
        }
        start += d;
        from = s.target;
    }
    None
}

/// What is retried and how long to wait.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max: u32,
    /// The wait before the first retry; doubles per further retry.
    pub backoff: Duration,
    /// Caps every wait, `Retry-After` included.
    pub max_backoff: Option<Duration>,
    /// A seeded extra wait in `[0, jitter]`.
    pub jitter: Duration,
    pub on: RetryOn,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max: 0,
            backoff: Duration::from_millis(100),
            max_backoff: None,
            jitter: Duration::ZERO,
            on: RetryOn::default(),
        }
    }
}

/// The results that are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryOn {
    pub statuses: Vec<u16>,
    /// Status classes by their first digit: `5` for `5xx`.
    pub classes: Vec<u16>,
    pub errors: Vec<ErrorKind>,
}

impl Default for RetryOn {
    /// Every 5xx and every transport error: what TraceForge has always retried.
    fn default() -> Self {
        RetryOn {
            statuses: Vec::new(),
            classes: vec![5],
            errors: vec![
                ErrorKind::Connect,
                ErrorKind::Timeout,
                ErrorKind::Reset,
                ErrorKind::Protocol,
                ErrorKind::Empty,
            ],
        }
    }
}

impl RetryOn {
    pub fn matches(&self, attempt: &Attempt) -> bool {
        // An error first: a WebSocket that got its `101` and then lost its echoes has both.
        match (attempt.status, attempt.error) {
            (_, Some(e)) => self.errors.contains(&e),
            (Some(s), None) => self.statuses.contains(&s) || self.classes.contains(&(s / 100)),
            (None, None) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_constant_rate_spaces_requests_evenly() {
        let s = Schedule::constant_for(50.0, secs(2.0));
        assert_eq!(s.count(), 100);
        assert_eq!(s.at(0), Duration::ZERO);
        assert_eq!(s.at(50), secs(1.0));
        assert_eq!(Schedule::constant_for(10.0, secs(0.25)).count(), 2);
    }

    #[test]
    fn ramps_integrate_the_rate() {
        // 0 -> 100/s over 2s (100 requests), then 100/s for 1s (100 more).
        let s = Schedule::stages(vec![
            Stage {
                duration: secs(2.0),
                target: 100.0,
            },
            Stage {
                duration: secs(1.0),
                target: 100.0,
            },
        ]);
        assert_eq!(s.count(), 200);
        // On the ramp N(t) = 25 t^2, so request 25 is due at 1s.
        let t = s.at(25).as_secs_f64();
        assert!((t - 1.0).abs() < 1e-6, "{t}");
        let t = s.at(100).as_secs_f64();
        assert!((t - 2.0).abs() < 1e-6, "{t}");
        let t = s.at(150).as_secs_f64();
        assert!((t - 2.5).abs() < 1e-6, "{t}");
        // A zero-length stage jumps.
        let jump = Schedule::stages(vec![
            Stage {
                duration: Duration::ZERO,
                target: 10.0,
            },
            Stage {
                duration: secs(1.0),
                target: 10.0,
            },
        ]);
        assert_eq!(jump.count(), 10);
        assert!((jump.at(5).as_secs_f64() - 0.5).abs() < 1e-6);
        let mut last = Duration::ZERO;
        for i in 0..s.count() {
            assert!(s.at(i) >= last, "the schedule never runs backwards");
            last = s.at(i);
        }
    }

    #[test]
    fn a_timetable_past_the_cap_does_not_fit_and_never_panics() {
        let slow = Schedule::constant(1e-300, 5);
        assert!(!slow.fits());
        assert_eq!(slow.at(0), Duration::ZERO);
        assert_eq!(slow.at(4), MAX_DURATION, "saturates instead of panicking");
        // One request a day: 8 requests end on day 7, 9 on day 8.
        let daily = 1.0 / 86_400.0;
        assert!(Schedule::constant(daily, 8).fits());
        assert!(!Schedule::constant(daily, 9).fits());
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::MIN_POSITIVE] {
            let s = Schedule::constant(rate, u64::MAX);
            let _ = (s.at(u64::MAX), s.at(1), s.fits());
        }
        let ramp = Schedule::stages(vec![Stage {
            duration: MAX_DURATION,
            target: f64::MAX,
        }]);
        let _ = (ramp.at(u64::MAX), ramp.fits());
        assert_eq!(format_number(1e-300), "1e-300");
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_number(1_000_000.0), "1000000");
    }

    #[test]
    fn websocket_messages_are_a_function_of_seed_index_and_number() {
        let text = WsTarget {
            messages: 3,
            size: 32,
            binary: false,
            echo_timeout: Duration::from_secs(1),
        };
        let m = text.message(7, 3, 2);
        assert_eq!(m.len(), 32);
        assert!(m.starts_with(b"00000002"), "{m:?}");
        assert!(m.iter().all(u8::is_ascii_alphanumeric));
        assert_eq!(m, text.message(7, 3, 2));
        assert_ne!(m[8..], text.message(8, 3, 2)[8..]);
        assert_ne!(m[8..], text.message(7, 4, 2)[8..]);
        let binary = WsTarget {
            binary: true,
            size: 8,
            ..text
        };
        assert_eq!(binary.message(7, 3, 255), b"000000ff");
    }

    #[test]
    fn closed_ramps_interpolate() {
        let stages = [
            Stage {
                duration: secs(1.0),
                target: 10.0,
            },
            Stage {
                duration: secs(1.0),
                target: 0.0,
            },
        ];
        assert_eq!(ramp_value(&stages, secs(0.5)), Some(5.0));
        assert_eq!(ramp_value(&stages, secs(1.5)), Some(5.0));
        assert_eq!(ramp_value(&stages, secs(2.0)), None);
    }
}
