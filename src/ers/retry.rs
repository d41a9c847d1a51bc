//! Retry policy: jittered exponential backoff with a cap, `Retry-After` parsing, and a
//! shared retry budget so a failing e-RS cannot multiply the load by the attempt count.
//!
//! Which errors are retried at all is decided in the client from the status and
//! [`super::Operation::is_safe_to_repeat`]; this module only says *when* and *whether
//! there is budget left*.

use std::{sync::Mutex, time::Duration};

use crate::config::raw::RetryConfig;

/// When to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// The first backoff delay, and the lower bound of every delay.
    pub base_delay: Duration,
    /// The upper bound of every backoff delay.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails instead.
    pub max_retry_after: Duration,
}

impl From<&RetryConfig> for RetryPolicy {
    fn from(c: &RetryConfig) -> Self {
        Self {
            max_attempts: c.max_attempts.max(1),
            base_delay: Duration::from_millis(c.base_delay_ms),
            max_delay: Duration::from_millis(c.max_delay_ms.max(c.base_delay_ms)),
            max_retry_after: Duration::from_secs(c.max_retry_after_secs),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (0 = first retry): `base * 2^attempt`
    /// capped at `max_delay`, then jittered into its upper half by `jitter` in `[0, 1]`,
    /// and never below `base_delay`. Saturates instead of overflowing.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let half = exp / 2;
        let jittered = half + half.mul_f64(jitter.clamp(0.0, 1.0));
        jittered.clamp(self.base_delay.min(self.max_delay), self.max_delay)
    }

    /// [`Self::backoff`] with a random jitter.
    pub fn backoff_random(&self, attempt: u32) -> Duration {
        self.backoff(attempt, rand::random::<f64>())
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

/// A token bucket of retries shared by all calls: each retry spends one token and each
/// first-attempt success earns back a fraction, so during an outage retries stop once the
/// budget is spent while normal traffic continues.
#[derive(Debug)]
pub struct RetryBudget {
    max: f64,
    earn_per_success: f64,
    tokens: Mutex<f64>,
}

impl RetryBudget {
    /// A full budget of `max` retries, earning `earn_per_success` per success.
    pub fn new(max: u32, earn_per_success: f64) -> Self {
        Self {
            max: f64::from(max),
            earn_per_success,
            tokens: Mutex::new(f64::from(max)),
        }
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_spend(&self) -> bool {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }

    /// Records a success.
    pub fn earn(&self) {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        *t = (*t + self.earn_per_success).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(base_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(base_ms),
            max_delay: Duration::from_millis(max_ms),
            max_retry_after: Duration::from_secs(300),
        }
    }

    proptest! {
        #[test]
        fn backoff_stays_within_bounds(
            base in 0u64..100_000, extra in 0u64..10_000_000, attempt in 0u32..=u32::MAX, jitter in -1.0f64..2.0
        ) {
            let p = policy(base, base + extra);
            let d = p.backoff(attempt, jitter);
            prop_assert!(d >= p.base_delay, "{d:?} < {:?}", p.base_delay);
            prop_assert!(d <= p.max_delay, "{d:?} > {:?}", p.max_delay);
        }
    }

    #[test]
    fn backoff_grows_until_the_cap() {
        let p = policy(1000, 8000);
        assert_eq!(p.backoff(0, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(2));
        assert_eq!(p.backoff(2, 1.0), Duration::from_secs(4));
        assert_eq!(p.backoff(10, 1.0), Duration::from_secs(8));
        assert_eq!(p.backoff(10, 0.0), Duration::from_secs(4));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn budget_runs_out_and_refills() {
        let b = RetryBudget::new(2, 0.5);
        assert!(b.try_spend());
        assert!(b.try_spend());
        assert!(!b.try_spend());
        b.earn();
        b.earn();
        assert!(b.try_spend());
    }
}
