//! WebSocket stream faults: what happens to each message of one upgraded connection, decided
//! from `(seed, rule, request id, direction, message index)` and nothing else, so the same
//! connection loses and delays the same messages at any concurrency, run after run.
//!
//! Keys, one stream per rule and message: `ws/<rule>/<request-id>/<direction>/<index>`, where
//! `<direction>` is `client` for messages the client sends and `upstream` for messages the
//! upstream sends, and `<index>` counts the text and binary messages that arrived from that side,
//! from 0 (dropped ones included; pings, pongs and Close frames are not messages here). A
//! `ws_drop` rule draws its roll first; a `ws_delay` rule with a range draws the delay.
//!
//! The close of a `ws_close` rule is not random: after `after_messages` messages passed on
//! (both directions, dropped ones excluded) or `after_time` after the upgrade, whichever comes
//! first; of several rules, the earliest of each and the first rule's code.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::{Decision, Effect};
use crate::seed::{self, Digits};
use crate::spec::duration::DelaySpec;

/// Which side sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client, on its way to the upstream.
    Client,
    /// From the upstream, on its way to the client.
    Upstream,
}

impl Direction {
    /// As written in keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Client => "client",
            Direction::Upstream => "upstream",
        }
    }
}

/// When and how a `ws_close` fault closes the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Close {
    /// The rule that closes.
    pub rule: Arc<str>,
    pub after_messages: Option<u64>,
    pub after_time: Option<Duration>,
    /// The code of the Close frame the client gets.
    pub code: u16,
}

/// What happens to one message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fate {
    /// The `ws_drop` rule that drops it, if one does: it is never passed on.
    pub dropped_by: Option<Arc<str>>,
    /// How long it is held before it is passed on: the `ws_delay`s that fired, added up.
    pub delay: Duration,
}

/// The stream faults of one upgraded connection.
#[derive(Debug, Clone)]
pub struct StreamFaults {
    seed: u64,
    request_id: String,
    drops: Vec<(Arc<str>, f64)>,
    delays: Vec<(Arc<str>, DelaySpec)>,
    close: Option<Close>,
}

impl StreamFaults {
    /// The stream faults among a request's decision, keyed on its request id (the same key its
    /// other faults used); `None` when none fired.
    pub fn new(seed: u64, request_id: &str, decision: &Decision) -> Option<StreamFaults> {
        let mut faults = StreamFaults {
            seed,
            request_id: request_id.to_string(),
            drops: Vec::new(),
            delays: Vec::new(),
            close: None,
        };
        for step in &decision.steps {
            match &step.effect {
                Effect::WsDrop { probability } => {
                    faults.drops.push((step.name.clone(), *probability));
                }
                Effect::WsDelay(spec) => faults.delays.push((step.name.clone(), *spec)),
                Effect::WsClose {
                    after_messages,
                    after_time,
                    code,
                } => {
                    let close = faults.close.get_or_insert_with(|| Close {
                        rule: step.name.clone(),
                        after_messages: None,
                        after_time: None,
                        code: *code,
                    });
                    close.after_messages = min_some(close.after_messages, *after_messages);
                    close.after_time = min_some(close.after_time, *after_time);
                }
                _ => {}
            }
        }
        let any = !faults.drops.is_empty() || !faults.delays.is_empty() || faults.close.is_some();
        any.then_some(faults)
    }

    /// The `ws_close` fault, if one fired.
    pub fn close(&self) -> Option<&Close> {
        self.close.as_ref()
    }

    /// What happens to the `index`th message (from 0) that arrived from `direction`.
    pub fn fate(&self, direction: Direction, index: u64) -> Fate {
        let digits = Digits::new(index);
        let key = |rule: &str| {
            seed::rng_parts(
                self.seed,
                &[
                    "ws",
                    rule,
                    &self.request_id,
                    direction.as_str(),
                    digits.as_str(),
                ],
            )
        };
        let mut fate = Fate::default();
        for (rule, probability) in &self.drops {
            let roll: f64 = key(rule).random();
            if roll < *probability {
                fate.dropped_by = Some(rule.clone());
                // A dropped message is not held: nothing of it is passed on.
                return fate;
            }
        }
        for (rule, spec) in &self.delays {
            let delay = match *spec {
                DelaySpec::Fixed(d) => d,
                DelaySpec::Range(lo, hi) => {
                    let (lo, hi) = (nanos(lo), nanos(hi).max(nanos(lo)));
                    Duration::from_nanos(key(rule).random_range(lo..=hi))
                }
            };
            fate.delay = fate.delay.saturating_add(delay);
        }
        fate
    }
}

fn min_some<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{FaultPlan, FaultRule, RequestFacts};
    use hyper::Method;
    use hyper::header::{HeaderMap, HeaderValue};

    fn upgrade_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h
    }

    fn faults(plan: &FaultPlan, id: &str) -> Option<StreamFaults> {
        let headers = upgrade_headers();
        let mut facts = RequestFacts::new(&Method::GET, "/ws/echo", id);
        facts.headers = &headers;
        StreamFaults::new(plan.seed(), id, &plan.decide(&facts))
    }

    #[test]
    fn stream_rules_fire_only_for_upgrades() {
        let plan = FaultPlan::new(
            1,
            vec![FaultRule::new(
                "drop",
                crate::fault::FaultAction::WsDrop { probability: 0.5 },
            )],
        );
        let plain = RequestFacts::new(&Method::GET, "/ws/echo", "r1");
        assert!(plan.decide(&plain).is_empty());
        assert!(faults(&plan, "r1").is_some());
    }

    #[test]
    fn drops_are_a_function_of_seed_request_direction_and_index() {
        let plan = FaultPlan::new(
            7,
            vec![FaultRule::new(
                "drop",
                crate::fault::FaultAction::WsDrop { probability: 0.5 },
            )],
        );
        let a = faults(&plan, "req-a").unwrap_or_else(|| panic!("fired"));
        let dropped = |f: &StreamFaults, d| -> Vec<u64> {
            (0..64)
                .filter(|i| f.fate(d, *i).dropped_by.is_some())
                .collect()
        };
        let again = faults(&plan, "req-a").unwrap_or_else(|| panic!("fired"));
        assert_eq!(
            dropped(&a, Direction::Client),
            dropped(&again, Direction::Client)
        );
        let n = dropped(&a, Direction::Client).len();
        assert!((16..=48).contains(&n), "{n} of 64 dropped at p=0.5");
        assert_ne!(
            dropped(&a, Direction::Client),
            dropped(&a, Direction::Upstream)
        );
        let b = faults(&plan, "req-b").unwrap_or_else(|| panic!("fired"));
        assert_ne!(
            dropped(&a, Direction::Client),
            dropped(&b, Direction::Client)
        );
    }

    #[test]
    fn delays_add_up_and_ranges_stay_in_bounds() {
        let ms = Duration::from_millis;
        let plan = FaultPlan::new(
            3,
            vec![
                FaultRule::new(
                    "fixed",
                    crate::fault::FaultAction::WsDelay(DelaySpec::Fixed(ms(10))),
                ),
                FaultRule::new(
                    "range",
                    crate::fault::FaultAction::WsDelay(DelaySpec::Range(ms(5), ms(20))),
                ),
            ],
        );
        let f = faults(&plan, "r").unwrap_or_else(|| panic!("fired"));
        for i in 0..32 {
            let fate = f.fate(Direction::Upstream, i);
            assert!(fate.dropped_by.is_none());
            assert!(fate.delay >= ms(15) && fate.delay <= ms(30), "{fate:?}");
        }
    }

    #[test]
    fn the_earliest_close_wins_with_the_first_rules_code() {
        let close = |n, code| crate::fault::FaultAction::WsClose {
            after_messages: Some(n),
            after_time: None,
            code,
        };
        let plan = FaultPlan::new(
            0,
            vec![
                FaultRule::new("late", close(9, 4000)),
                FaultRule::new("early", close(2, 4001)),
            ],
        );
        let f = faults(&plan, "r").unwrap_or_else(|| panic!("fired"));
        let c = f.close().unwrap_or_else(|| panic!("a close"));
        assert_eq!(
            (c.after_messages, c.code, &*c.rule),
            (Some(2), 4000, "late")
        );
    }
}
