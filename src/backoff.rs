//! The one backoff schedule every retry loop uses (e-RS calls, broker publishes): jittered
//! exponential delays with a cap. Retries are counted from 1 (the wait before the second
//! attempt is retry 1): the un-jittered delay is `initial * 2^(retry-1)` capped at `max`,
//! and "equal jitter" puts the real delay between half and all of it, never below `initial`
//! (so `initial` is the documented shortest wait) and never above `max`. The random upper
//! half spreads callers that failed at the same instant (every publisher losing one
//! connection) so they do not retry in lockstep.
//!
//! Pure: the jitter comes in as a number in `[0, 1]`, so the schedule is unit- and
//! property-tested without time passing. *Whether* to retry (attempt limits, deadlines,
//! `Retry-After`, which errors) is the caller's business.

use std::time::Duration;

/// A jittered exponential backoff schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The shortest wait, and the un-jittered wait before the first retry.
    pub initial: Duration,
    /// The longest wait, so a peer coming back after a long outage is noticed within it.
    pub max: Duration,
}

impl Backoff {
    /// The un-jittered delay before retry `retry` (1-based; 0 counts as 1). Saturates.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The delay before retry `retry` with `jitter` in `[0, 1]` (clamped): between half and
    /// all of [`Self::base_delay`], within `[initial, max]`.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let base = self.base_delay(retry);
        let half = base / 2;
        let jittered = half + (base - half).mul_f64(jitter.clamp(0.0, 1.0));
        jittered.clamp(self.initial.min(self.max), self.max)
    }

    /// [`Self::delay`] with a random jitter.
    pub fn delay_random(&self, retry: u32) -> Duration {
        self.delay(retry, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backoff(initial_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    #[test]
    fn base_delay_doubles_then_caps() {
        let b = backoff(100, 5000);
        let got: Vec<_> = (1..=8).map(|n| b.base_delay(n).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.base_delay(1_000), Duration::from_secs(5), "no overflow");
        assert_eq!(b.base_delay(0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_delays_between_half_and_full_base() {
        let b = backoff(1000, 8000);
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(
            b.delay(1, 0.0),
            Duration::from_secs(1),
            "never below initial"
        );
        assert_eq!(b.delay(2, 1.0), Duration::from_secs(2));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(11, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay(11, 0.0), Duration::from_secs(4));
        let distinct: std::collections::BTreeSet<_> = (0..200).map(|_| b.delay_random(4)).collect();
        assert!(distinct.len() > 50, "random jitter varies: {distinct:?}");
    }

    #[test]
    fn a_zero_initial_delay_never_waits() {
        assert_eq!(backoff(0, 5000).delay(3, 0.5), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn delay_stays_within_bounds(
            initial in 0u64..100_000, extra in 0u64..10_000_000, retry in 0u32..=u32::MAX, jitter in -1.0f64..2.0
        ) {
            let b = backoff(initial, initial + extra);
            let d = b.delay(retry, jitter);
            prop_assert!(d >= b.initial, "{d:?} < {:?}", b.initial);
            prop_assert!(d <= b.max, "{d:?} > {:?}", b.max);
            prop_assert!(d <= b.base_delay(retry), "{d:?} above the un-jittered delay");
        }
    }
}
