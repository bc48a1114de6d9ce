//! The retry policy in time: how long a request waits before each retry (the doubling backoff,
//! its cap, seeded jitter) and what a server's `Retry-After` says instead. The load generator's
//! attempt loop calls it between attempts, and `longest_latency` sizes histograms with it.

use std::time::Duration;

use rand::Rng;

use super::plan::RetryPolicy;
use crate::seed;

/// The wait before retry number `retry` (1-based): the backoff doubled for each earlier retry.
pub fn backoff(base: Duration, retry: u32) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor)
}

/// The longest a server's `Retry-After` can make a retry wait when `max_backoff` does not say.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The wait before retry number `retry` (1-based) under `policy`: the doubling backoff capped by
/// `max_backoff`, plus seeded jitter; a `Retry-After` from the server replaces both (still capped).
pub fn retry_wait(
    policy: &RetryPolicy,
    seed: u64,
    index: u64,
    retry: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let cap = |d: Duration| policy.max_backoff.map_or(d, |m| d.min(m));
    if let Some(after) = retry_after {
        // A server's wait is capped by `max_backoff`, or by a ceiling of our own: one answer of
        // `Retry-After: 99999999` must not park a run for years.
        return cap(after).min(MAX_RETRY_AFTER);
    }
    let mut wait = cap(backoff(policy.backoff, retry));
    if !policy.jitter.is_zero() {
        let max = u64::try_from(policy.jitter.as_nanos()).unwrap_or(u64::MAX);
        let nanos = seed::rng(seed, &format!("load/jitter/{index}/{retry}")).random_range(0..=max);
        wait += Duration::from_nanos(nanos);
    }
    wait
}

/// `Retry-After` as delay-seconds (`120`) or an HTTP date, relative to `now`; a date in the past
/// means no wait. Anything else is ignored (the policy's own backoff applies).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_retry() {
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 1), Duration::from_millis(100));
        assert_eq!(backoff(b, 2), Duration::from_millis(200));
        assert_eq!(backoff(b, 3), Duration::from_millis(400));
        assert_eq!(backoff(b, 64), b.saturating_mul(u32::MAX));
    }

    #[test]
    fn retry_waits_cap_jitter_by_seed_and_follow_retry_after() {
        let policy = RetryPolicy {
            max: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Some(Duration::from_millis(300)),
            jitter: Duration::from_millis(20),
            ..RetryPolicy::default()
        };
        let first = retry_wait(&policy, 7, 3, 1, None);
        assert_eq!(first, retry_wait(&policy, 7, 3, 1, None), "seeded");
        assert!((100..=120).contains(&first.as_millis()), "{first:?}");
        let capped = retry_wait(&policy, 7, 3, 4, None);
        assert!((300..=320).contains(&capped.as_millis()), "{capped:?}");
        let waits: Vec<Duration> = (0..20)
            .map(|i| retry_wait(&policy, 7, i, 1, None))
            .collect();
        assert!(
            waits.iter().any(|w| *w != waits[0]),
            "jitter varies by index"
        );
        assert_eq!(
            retry_wait(&policy, 7, 3, 1, Some(Duration::from_secs(1))),
            Duration::from_millis(300),
            "Retry-After is capped by max_backoff"
        );
        let uncapped = RetryPolicy::default();
        assert_eq!(
            retry_wait(&uncapped, 7, 3, 1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_wait(&uncapped, 7, 3, 1, Some(Duration::from_secs(99_999_999))),
            MAX_RETRY_AFTER,
            "a server cannot park a run for years"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        // 2015-10-21 07:28:00 UTC is `now`; 07:28:05 is five seconds later.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
