//! The `quota` fault: a fixed-window rate limit that answers 429 to the requests over `limit` in
//! each `window`.
//!
//! - A window of requests (`window = 100`) is the indices `0..100`, `100..200`, ... Without
//!   `per_header`, a request is over quota when the number of requests with a smaller index in its
//!   window that meet the rule's `match` (its rank in the window, counted over the load profile
//!   like `first`; without a load profile, a standalone proxy, every index counts) is at least
//!   `limit`: a pure function of `(seed, load profile, index)`, the same at any concurrency. Retries of a request keep its index, so a request over quota stays
//!   over quota on every attempt; `Retry-After` is the rule's `retry_after`, or 1 second.
//! - A window of time (`window = "1s"`) is `0..1s`, `1s..2s`, ... since the start of the run.
//!   Every request that reaches the rule (attempts included) is counted in arrival order, so which
//!   requests get the 429 depends on timing (deterministic on the virtual clock, where arrival
//!   order is). `Retry-After` is the time until the window ends, rounded up to whole seconds, unless
//!   `retry_after` says otherwise.
//! - With `per_header`, requests are counted separately for each value of that header (absent is
//!   a value of its own), in arrival order, whatever the window.
//!
//! Counted state ([`Counters`]) keeps only the 16 latest windows; a request for an older window (a
//! very late retry) counts as if its window were new.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use super::ErrorReply;
use super::schedule::{Point, nanos, units};
use crate::spec::extent::Extent;

/// How many windows [`Counters`] remembers.
const KEEP: usize = 16;

/// `Retry-After` for a window of requests, when the rule gives none: there is no time to wait for.
pub const REQUEST_WINDOW_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A compiled quota.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    /// At least 1.
    pub limit: u64,
    /// Above zero.
    pub window: Extent,
    /// Count separately per value of this header.
    pub per_header: Option<HeaderName>,
    /// Sent as `Retry-After` instead of the computed wait.
    pub retry_after: Option<Duration>,
}

/// A request over quota: what its 429 says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Over {
    /// `Retry-After`.
    pub retry_after: Duration,
    /// `RateLimit-Reset`: until the window ends (for a window of requests, `retry_after`).
    pub reset: Duration,
}

impl Quota {
    /// Whether requests are counted by rank over the load profile (a window of requests without
    /// `per_header`), which needs the plan's rank table.
    pub fn counts_by_rank(&self) -> bool {
        matches!(self.window, Extent::Requests(_)) && self.per_header.is_none()
    }

    /// Whether the request at `at` is over quota. `rank(i)` counts the matching requests with an
    /// index below `i` (used by windows of requests without `per_header`); `counters` counts
    /// arrivals (every other window). Counts the request when it counts arrivals.
    pub fn check(
        &self,
        at: Point,
        headers: &HeaderMap,
        rank: impl Fn(u64) -> u64,
        counters: &Counters,
    ) -> Option<Over> {
        let size = units(self.window).max(1);
        let (window, reset) = match self.window {
            Extent::Requests(_) => {
                let wait = self.retry_after.unwrap_or(REQUEST_WINDOW_RETRY_AFTER);
                (at.index / size, wait)
            }
            Extent::Time(_) => {
                let elapsed = nanos(at.elapsed);
                let window = elapsed / size;
                let end = window.saturating_add(1).saturating_mul(size);
                (window, Duration::from_nanos(end.saturating_sub(elapsed)))
            }
        };
        let used = if self.counts_by_rank() {
            let start = window * size;
            rank(at.index).saturating_sub(rank(start))
        } else {
            let key = self
                .per_header
                .as_ref()
                .and_then(|h| headers.get(h))
                .map(HeaderValue::as_bytes);
            counters.take(window, key)
        };
        (used >= self.limit).then(|| Over {
            retry_after: self.retry_after.unwrap_or(reset),
            reset,
        })
    }

    /// The 429 of a request over quota: `template` (the rule's reply) with `Retry-After`,
    /// `RateLimit-Remaining: 0` and `RateLimit-Reset`.
    pub fn reply(template: &ErrorReply, over: Over) -> ErrorReply {
        let mut reply = template.clone();
        reply.retry_after = Some(over.retry_after);
        let secs = over.reset.as_secs() + u64::from(over.reset.subsec_nanos() > 0);
        reply.headers.push((
            HeaderName::from_static("ratelimit-remaining"),
            HeaderValue::from_static("0"),
        ));
        reply.headers.push((
            HeaderName::from_static("ratelimit-reset"),
            HeaderValue::from(secs),
        ));
        reply
    }

    /// The reply every 429 of this quota starts from.
    pub fn template(&self) -> ErrorReply {
        let mut reply = ErrorReply::status(429);
        reply.headers.push((
            HeaderName::from_static("ratelimit-limit"),
            HeaderValue::from(self.limit),
        ));
        reply
    }
}

/// One window's counts, by bucket: a header value, or `None` (no `per_header`, or no such header).
type Buckets = BTreeMap<Option<Vec<u8>>, u64>;

/// Requests counted per window and bucket (a header value, or none), in arrival order. Shared by
/// every clone of a plan.
#[derive(Debug, Default)]
pub struct Counters {
    windows: Mutex<BTreeMap<u64, Buckets>>,
}

impl Counters {
    /// Counts one request in `window` and `bucket`; returns how many came before it.
    pub fn take(&self, window: u64, bucket: Option<&[u8]>) -> u64 {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let counts = windows.entry(window).or_default();
        let used = match counts.get_mut(&bucket.map(<[u8]>::to_vec)) {
            Some(n) => {
                let used = *n;
                *n += 1;
                used
            }
            None => {
                counts.insert(bucket.map(<[u8]>::to_vec), 1);
                0
            }
        };
        while windows.len() > KEEP {
            windows.pop_first();
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: u64, ms: u64) -> Point {
        Point {
            index,
            elapsed: Duration::from_millis(ms),
        }
    }

    #[test]
    fn request_windows_count_by_rank() {
        let q = Quota {
            limit: 3,
            window: Extent::Requests(10),
            per_header: None,
            retry_after: None,
        };
        let counters = Counters::default();
        let none = HeaderMap::new();
        // Without a load profile the rank is the index: indices 3..10, 13..20 are over.
        let over: Vec<u64> = (0..20)
            .filter(|&i| q.check(at(i, 0), &none, |i| i, &counters).is_some())
            .collect();
        assert_eq!(over, [3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 18, 19]);
        // Asked again, in any order: the same answer (nothing is counted).
        assert!(q.check(at(5, 0), &none, |i| i, &counters).is_some());
        assert!(q.check(at(0, 0), &none, |i| i, &counters).is_none());
        assert_eq!(
            q.check(at(9, 0), &none, |i| i, &counters),
            Some(Over {
                retry_after: REQUEST_WINDOW_RETRY_AFTER,
                reset: REQUEST_WINDOW_RETRY_AFTER
            })
        );
        // Only every other index matches: 3 pass per window of 10, at even indices 0, 2, 4.
        let even_rank = |i: u64| i.div_ceil(2);
        let over: Vec<u64> = (0..10)
            .filter(|&i| i % 2 == 0)
            .filter(|&i| q.check(at(i, 0), &none, even_rank, &counters).is_some())
            .collect();
        assert_eq!(over, [6, 8]);
    }

    #[test]
    fn time_windows_count_arrivals_per_bucket_and_say_when_they_reset() {
        let q = Quota {
            limit: 2,
            window: Extent::Time(Duration::from_secs(1)),
            per_header: Some(HeaderName::from_static("x-api-key")),
            retry_after: None,
        };
        let counters = Counters::default();
        let key = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("x-api-key", HeaderValue::from_static(v));
            h
        };
        let (a, b, none) = (key("a"), key("b"), HeaderMap::new());
        let check = |h: &HeaderMap, ms| q.check(at(0, ms), h, |i| i, &counters);
        assert!(check(&a, 100).is_none());
        assert!(check(&a, 200).is_none());
        let over = check(&a, 300);
        assert_eq!(
            over,
            Some(Over {
                retry_after: Duration::from_millis(700),
                reset: Duration::from_millis(700)
            })
        );
        assert!(check(&b, 400).is_none(), "another key has its own bucket");
        assert!(check(&none, 400).is_none());
        assert!(check(&none, 500).is_none());
        assert!(check(&none, 600).is_some(), "no header is a bucket too");
        assert!(check(&a, 1000).is_none(), "a new window");
        let reply = Quota::reply(
            &q.template(),
            over.unwrap_or(Over {
                retry_after: Duration::ZERO,
                reset: Duration::ZERO,
            }),
        );
        assert_eq!(reply.status, 429);
        assert_eq!(
            reply.retry_after_value(),
            Some(HeaderValue::from_static("1"))
        );
        let names: Vec<&str> = reply.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"]
        );
    }

    #[test]
    fn counters_forget_old_windows() {
        let counters = Counters::default();
        for w in 0..100 {
            assert_eq!(counters.take(w, None), 0);
            assert_eq!(counters.take(w, None), 1);
        }
        let kept = counters.windows.lock().map(|w| w.len()).unwrap_or_default();
        assert_eq!(kept, KEEP);
    }
}
