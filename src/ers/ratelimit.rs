//! One client-side rate limiter shared by every e-RS call of the process.
//!
//! A small GCRA (virtual scheduling) on `tokio::time`, so tests with a paused clock see it
//! advance with the runtime: each permit is scheduled one interval after the previous one,
//! and `defer_until` pushes the schedule back when e-RS answers 429/503 with `Retry-After`,
//! so every task backs off together rather than only the one that was refused.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

/// A shared limiter: at most `per_sec` permits in any one-second window.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The earliest instant the next permit may be granted.
    next: Option<Instant>,
    /// No permit before this instant, even for slots handed out earlier.
    paused_until: Option<Instant>,
}

impl RateLimiter {
    /// A limiter granting `per_sec` permits per second (at least 1).
    pub fn new(per_sec: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / per_sec.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// Waits for a permit. A task whose slot comes up while the limiter is paused (a
    /// `Retry-After` arrived meanwhile) takes a new slot after the pause.
    pub async fn acquire(&self) {
        loop {
            let at = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let mut at = st.next.map_or(now, |n| n.max(now));
                if let Some(p) = st.paused_until {
                    at = at.max(p);
                }
                st.next = Some(at + self.interval);
                at
            };
            tokio::time::sleep_until(at).await;
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.paused_until.is_none_or(|p| p <= Instant::now()) {
                return;
            }
        }
    }

    /// No permit is granted before `until` (e-RS asked everybody to wait).
    pub fn defer_until(&self, until: Instant) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.paused_until.is_none_or(|p| p < until) {
            st.paused_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn permits_are_spaced_and_deferral_applies_to_all() {
        let l = Arc::new(RateLimiter::new(10));
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..20 {
            let l = l.clone();
            handles.push(tokio::spawn(async move {
                l.acquire().await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for h in handles {
            times.push(h.await.unwrap() - start);
        }
        times.sort();
        for w in times.windows(11) {
            assert!(w[10] - w[0] >= Duration::from_secs(1), "{w:?}");
        }
        l.defer_until(Instant::now() + Duration::from_secs(5));
        let before = Instant::now();
        l.acquire().await;
        assert!(Instant::now() - before >= Duration::from_secs(5));
    }
}
