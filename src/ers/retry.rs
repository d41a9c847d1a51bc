//! Retry policy: attempts and the shared [`Backoff`] schedule, `Retry-After` parsing, and a
//! shared retry budget so a failing e-RS cannot multiply the load by the attempt count.
//!
//! Which errors are retried at all is decided in the client from the status and
//! [`super::Operation::is_safe_to_repeat`]; this module only says *when* and *whether
//! there is budget left*.

use std::{sync::Mutex, time::Duration};

use crate::backoff::Backoff;
use crate::config::RetryConfig;

/// When to retry an e-RS call: how many attempts, the shared [`Backoff`] schedule, and the
/// longest `Retry-After` worth waiting for.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// The wait between attempts (unless e-RS says `Retry-After`).
    pub backoff: Backoff,
    /// A `Retry-After` longer than this is not waited for: the call fails instead.
    pub max_retry_after: Duration,
}

impl From<&RetryConfig> for RetryPolicy {
    fn from(c: &RetryConfig) -> Self {
        Self {
            max_attempts: c.max_attempts.max(1),
            backoff: Backoff {
                initial: Duration::from_millis(c.base_delay_ms),
                max: Duration::from_millis(c.max_delay_ms.max(c.base_delay_ms)),
            },
            max_retry_after: Duration::from_secs(c.max_retry_after_secs),
        }
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
