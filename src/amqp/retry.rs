//! The backoff schedule of [`Publisher::publish_with_retry`](super::Publisher::publish_with_retry):
//! jittered exponential delays with a cap, and an optional deadline after which the caller
//! gives up. The schedule is a pure function of the attempt number and a random source, so
//! it is unit-tested without time passing.

use std::time::Duration;

use rand::Rng;

/// How long to wait between publish attempts while the broker is unavailable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay before the second attempt (before jitter).
    pub initial: Duration,
    /// The longest delay between two attempts (before jitter), so that a broker coming back
    /// after a long outage is noticed within this time.
    pub max: Duration,
    /// Give up when the next attempt would start after this much time since the first one;
    /// `None` retries until shutdown.
    pub give_up_after: Option<Duration>,
}

impl Default for RetryPolicy {
    /// 200 ms doubling up to 10 s, until shutdown.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
            give_up_after: None,
        }
    }
}

impl RetryPolicy {
    /// The un-jittered delay after the `failures`-th failed attempt (1-based):
    /// `initial * 2^(failures-1)`, capped at `max`.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The delay after the `failures`-th failed attempt, with "equal jitter": uniformly
    /// between half and all of [`base_delay`](Self::base_delay). The lower half keeps the
    /// schedule growing; the random upper half spreads the publishers that all lost the same
    /// connection at the same instant, so they do not retry in lockstep.
    pub fn delay(&self, failures: u32, rng: &mut impl Rng) -> Duration {
        let base = self.base_delay(failures);
        let half = base / 2;
        let spread = (base - half).as_micros() as u64;
        half + Duration::from_micros(rng.random_range(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            give_up_after: None,
        }
    }

    #[test]
    fn base_delay_doubles_then_caps() {
        let p = policy();
        let got: Vec<_> = (1..=8).map(|n| p.base_delay(n).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(p.base_delay(1_000), Duration::from_secs(5), "no overflow");
        assert_eq!(p.base_delay(0), Duration::from_millis(100));
    }

    #[test]
    fn jittered_delay_stays_between_half_and_full_base_and_varies() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(7);
        for failures in 1..=10 {
            let base = p.base_delay(failures);
            let delays: Vec<_> = (0..200).map(|_| p.delay(failures, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d >= base / 2 && *d <= base));
            let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
            assert!(distinct.len() > 50, "jitter spreads retries: {distinct:?}");
        }
    }

    #[test]
    fn a_zero_initial_delay_never_waits() {
        let p = RetryPolicy {
            initial: Duration::ZERO,
            ..policy()
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(p.delay(3, &mut rng), Duration::ZERO);
    }
}
