//! Rules that change over a run: ramps (a `probability` or a `delay` that goes in a straight line
//! from `from` to `to` over `over`) and bursts (a rule that fires only while "on"). Both are
//! evaluated at a [`Point`]: a request's index and its time since the start of the run. Which of
//! the two counts is the rule's axis, chosen by how its lengths are written
//! ([`Extent`]): requests (deterministic at any concurrency) or time (deterministic on the virtual
//! clock).
//!
//! A fixed burst schedule is a pure function of the point. A Markov schedule draws the length of
//! each on and off period from the seed: cycle `k` (one on period, then one off period) draws its
//! on length, then its off length, from `seed::rng_parts(seed, ["bursts", <rule>, k])`, and the
//! chain starts "on" at 0. Its state at a point is found by walking the cycles from 0; a [`Chain`]
//! remembers where every 16th cycle starts, so the state is a pure function of
//! `(seed, rule name, point)`, the same at any concurrency and in any query order, and each query
//! draws at most 16 cycles.

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use rand::Rng;

use super::RequestFacts;
use crate::seed;
use crate::spec::extent::{Axis, Extent};

/// Where a request is on a run's two axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Point {
    /// The load generator's request index.
    pub index: u64,
    /// Time since the start of the run (the proxy's start).
    pub elapsed: Duration,
}

impl Point {
    pub fn of(facts: &RequestFacts<'_>) -> Self {
        Point {
            index: facts.index,
            elapsed: facts.elapsed,
        }
    }

    /// The point on `axis`: a request index, or nanoseconds since the start.
    pub fn on(self, axis: Axis) -> u64 {
        match axis {
            Axis::Requests => self.index,
            Axis::Time => nanos(self.elapsed),
        }
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// An extent as a count on its axis: requests, or nanoseconds.
pub(crate) fn units(e: Extent) -> u64 {
    match e {
        Extent::Requests(n) => n,
        Extent::Time(d) => nanos(d),
    }
}

/// A value that goes in a straight line from `from` (at 0) to `to` (at `over`), then stays at `to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp<T> {
    pub from: T,
    pub to: T,
    /// Above zero.
    pub over: Extent,
}

impl<T> Ramp<T> {
    /// How far along the ramp `at` is, from 0 to 1.
    fn fraction(&self, at: Point) -> f64 {
        let over = units(self.over);
        if over == 0 {
            return 1.0;
        }
        (at.on(self.over.axis()) as f64 / over as f64).min(1.0)
    }
}

impl Ramp<f64> {
    /// The value at `at`: exactly `from` at 0 and exactly `to` from `over` on.
    pub fn at(&self, at: Point) -> f64 {
        let f = self.fraction(at);
        if f >= 1.0 {
            self.to
        } else {
            self.from + (self.to - self.from) * f
        }
    }
}

impl Ramp<Duration> {
    /// The value at `at`, to the nanosecond.
    pub fn at(&self, at: Point) -> Duration {
        let f = self.fraction(at);
        if f >= 1.0 {
            return self.to;
        }
        let (a, b) = (nanos(self.from) as f64, nanos(self.to) as f64);
        Duration::from_nanos((a + (b - a) * f).round().max(0.0) as u64)
    }
}

/// When a rule may fire: only while "on". Every length is above zero, and all are on one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bursts {
    /// On for `on`, then off for `off`, repeating from 0.
    Fixed { on: Extent, off: Extent },
    /// A two-state Markov chain starting on: each on period is drawn with mean `mean_on` and each
    /// off period with mean `mean_off` (exponential in time, geometric in requests).
    Markov { mean_on: Extent, mean_off: Extent },
}

impl Bursts {
    pub fn axis(&self) -> Axis {
        match self {
            Bursts::Fixed { on, .. } => on.axis(),
            Bursts::Markov { mean_on, .. } => mean_on.axis(),
        }
    }

    /// Whether the schedule is on at `at`. `chain` remembers a Markov schedule's cycles for this
    /// seed and rule (give each rule of a plan its own); a fixed schedule ignores it.
    pub fn is_on(&self, seed: u64, rule: &str, at: Point, chain: &Chain) -> bool {
        let x = at.on(self.axis());
        match *self {
            Bursts::Fixed { on, off } => {
                let (on, off) = (units(on), units(off));
                match on.checked_add(off) {
                    Some(period) if period > 0 => x % period < on,
                    _ => x < on,
                }
            }
            Bursts::Markov { mean_on, mean_off } => chain.is_on(
                seed,
                rule,
                self.axis(),
                units(mean_on) as f64,
                units(mean_off) as f64,
                x,
            ),
        }
    }
}

/// Cycles between two remembered starts: a query draws at most this many.
const BLOCK: usize = 16;

/// The remembered cycles of one Markov schedule: where cycle `j * 16` starts, for every `j` reached
/// so far. Memory is 8 bytes per 16 cycles; the first query past the end extends it.
#[derive(Debug, Default)]
pub struct Chain {
    starts: RwLock<Vec<u64>>,
}

/// One cycle's on and off lengths, drawn from `bursts/<rule>/<k>`: the on length, then the off.
fn cycle(seed: u64, rule: &str, k: u64, axis: Axis, mean_on: f64, mean_off: f64) -> (u64, u64) {
    let mut rng = seed::rng_parts(seed, &["bursts", rule, seed::Digits::new(k).as_str()]);
    let mut draw = |mean: f64| -> u64 {
        let u: f64 = rng.random();
        match axis {
            // Exponential: -mean * ln(1 - u), at least 1ns.
            Axis::Time => ((-mean * (1.0 - u).ln()).round() as u64).max(1),
            // Geometric on 1, 2, ...: P(n) = (1 - p)^(n - 1) p with p = 1 / mean.
            Axis::Requests => {
                if mean <= 1.0 {
                    1
                } else {
                    let q = 1.0 - 1.0 / mean;
                    ((1.0 - u).ln() / q.ln()).floor() as u64 + 1
                }
            }
        }
    };
    let on = draw(mean_on);
    let off = draw(mean_off);
    (on, off)
}

impl Chain {
    fn is_on(
        &self,
        seed: u64,
        rule: &str,
        axis: Axis,
        mean_on: f64,
        mean_off: f64,
        x: u64,
    ) -> bool {
        // Walks block `j` (cycles `16j..16j + 16`) from its start: whether `x` is on, if it falls
        // inside the block, and where the next block starts.
        let walk = |j: usize, start: u64| -> (Option<bool>, u64) {
            let mut at = start;
            let mut found = None;
            for k in j * BLOCK..(j + 1) * BLOCK {
                let (on, off) = cycle(seed, rule, k as u64, axis, mean_on, mean_off);
                let on_end = at.saturating_add(on);
                let end = on_end.saturating_add(off);
                if found.is_none() && x < end {
                    found = Some(x < on_end);
                }
                at = end;
            }
            (found, at)
        };
        {
            let starts = self.starts.read().unwrap_or_else(PoisonError::into_inner);
            // `x` is inside a known block when a later block is known to start after it.
            let j = starts.partition_point(|&s| s <= x);
            if j > 0 && j < starts.len() {
                return walk(j - 1, starts[j - 1]).0 == Some(true);
            }
        }
        let mut starts = self.starts.write().unwrap_or_else(PoisonError::into_inner);
        if starts.is_empty() {
            starts.push(0);
        }
        loop {
            let j = starts.partition_point(|&s| s <= x);
            if j < starts.len() {
                return walk(j - 1, starts[j - 1]).0 == Some(true);
            }
            let last = starts.len() - 1;
            let (found, next) = walk(last, starts[last]);
            if next <= starts[last] || next == u64::MAX {
                // The axis ran out: nothing later can be remembered.
                return found == Some(true);
            }
            starts.push(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(index: u64) -> Point {
        Point {
            index,
            elapsed: Duration::ZERO,
        }
    }

    fn time(ms: u64) -> Point {
        Point {
            index: 0,
            elapsed: Duration::from_millis(ms),
        }
    }

    #[test]
    fn probability_ramps_are_straight_lines_then_flat() {
        let r = Ramp {
            from: 0.0,
            to: 0.8,
            over: Extent::Requests(100),
        };
        assert_eq!(r.at(req(0)), 0.0);
        assert!((r.at(req(50)) - 0.4).abs() < 1e-12);
        assert_eq!(r.at(req(100)), 0.8);
        assert_eq!(r.at(req(1_000_000)), 0.8);
        let down = Ramp {
            from: 0.5,
            to: 0.1,
            over: Extent::Time(Duration::from_secs(10)),
        };
        assert_eq!(down.at(time(0)), 0.5);
        assert!((down.at(time(2500)) - 0.4).abs() < 1e-12);
        assert_eq!(down.at(time(10_000)), 0.1);
        // A time ramp ignores the index, and the other way round.
        assert_eq!(down.at(req(99)), 0.5);
        assert_eq!(r.at(time(99_000)), 0.0);
    }

    #[test]
    fn delay_ramps_are_exact_at_the_ends() {
        let ms = Duration::from_millis;
        let r = Ramp {
            from: ms(10),
            to: ms(500),
            over: Extent::Requests(1000),
        };
        assert_eq!(r.at(req(0)), ms(10));
        assert_eq!(r.at(req(500)), ms(255));
        assert_eq!(r.at(req(1000)), ms(500));
        assert_eq!(r.at(req(5000)), ms(500));
    }

    #[test]
    fn fixed_bursts_start_on_and_repeat() {
        let b = Bursts::Fixed {
            on: Extent::Requests(3),
            off: Extent::Requests(2),
        };
        let chain = Chain::default();
        let pattern: String = (0..12)
            .map(|i| {
                if b.is_on(1, "r", req(i), &chain) {
                    '1'
                } else {
                    '0'
                }
            })
            .collect();
        assert_eq!(pattern, "111001110011");
        let t = Bursts::Fixed {
            on: Extent::Time(Duration::from_secs(30)),
            off: Extent::Time(Duration::from_secs(120)),
        };
        assert!(t.is_on(1, "r", time(29_999), &chain));
        assert!(!t.is_on(1, "r", time(30_000), &chain));
        assert!(!t.is_on(1, "r", time(149_999), &chain));
        assert!(t.is_on(1, "r", time(150_000), &chain));
    }

    fn markov(axis_requests: bool) -> Bursts {
        if axis_requests {
            Bursts::Markov {
                mean_on: Extent::Requests(20),
                mean_off: Extent::Requests(80),
            }
        } else {
            Bursts::Markov {
                mean_on: Extent::Time(Duration::from_secs(2)),
                mean_off: Extent::Time(Duration::from_secs(8)),
            }
        }
    }

    #[test]
    fn markov_state_is_the_same_in_any_query_order_and_on_any_thread() {
        let b = markov(true);
        let n = 5000;
        let forward = Chain::default();
        let expected: Vec<bool> = (0..n)
            .map(|i| b.is_on(9, "bursty", req(i), &forward))
            .collect();
        assert!(expected[0], "the chain starts on");
        // Backwards, with a fresh chain: the far end first.
        let backward = Chain::default();
        let mut got: Vec<bool> = (0..n)
            .rev()
            .map(|i| b.is_on(9, "bursty", req(i), &backward))
            .collect();
        got.reverse();
        assert_eq!(got, expected);
        // Eight threads sharing one chain, each querying a strided slice.
        let shared = std::sync::Arc::new(Chain::default());
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    (0..n)
                        .filter(|i| i % 8 == t)
                        .map(|i| (i, b.is_on(9, "bursty", req(i), &shared)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (i, on) in h.join().unwrap_or_else(|_| panic!("thread panicked")) {
                assert_eq!(on, expected[i as usize], "index {i}");
            }
        }
        // Another seed or rule name is another chain.
        let other = Chain::default();
        let changed: Vec<bool> = (0..n)
            .map(|i| b.is_on(10, "bursty", req(i), &other))
            .collect();
        assert_ne!(changed, expected);
    }

    #[test]
    fn markov_means_come_out_roughly_right() {
        for requests in [true, false] {
            let b = markov(requests);
            let (mean_on, mean_off) = match b {
                Bursts::Markov { mean_on, mean_off } => (units(mean_on), units(mean_off)),
                Bursts::Fixed { .. } => unreachable!(),
            };
            let axis = b.axis();
            let cycles = 4000;
            let (mut on_sum, mut off_sum) = (0u64, 0u64);
            for k in 0..cycles {
                let (on, off) = cycle(3, "r", k, axis, mean_on as f64, mean_off as f64);
                assert!(on >= 1 && off >= 1);
                on_sum += on;
                off_sum += off;
            }
            let on_mean = on_sum as f64 / cycles as f64;
            let off_mean = off_sum as f64 / cycles as f64;
            assert!(
                (on_mean / mean_on as f64 - 1.0).abs() < 0.08,
                "{on_mean} vs {mean_on}"
            );
            assert!(
                (off_mean / mean_off as f64 - 1.0).abs() < 0.08,
                "{off_mean} vs {mean_off}"
            );
            // The share of time "on" over a long stretch is about mean_on / (mean_on + mean_off).
            let chain = Chain::default();
            let step = (mean_on + mean_off) / 10;
            let samples = 20_000u64;
            let on = (0..samples)
                .filter(|&i| {
                    let at = match axis {
                        Axis::Requests => req(i * step),
                        Axis::Time => Point {
                            index: 0,
                            elapsed: Duration::from_nanos(i * step),
                        },
                    };
                    b.is_on(3, "r", at, &chain)
                })
                .count();
            let share = on as f64 / samples as f64;
            assert!((share - 0.2).abs() < 0.05, "{share}");
        }
    }
}
