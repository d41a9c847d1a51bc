//! Outage logging: when a dependency fails for every message (the broker unreachable, e-RS
//! answering 5xx or not at all), the log says so once when the outage starts (with how
//! many messages are waiting), at most once a minute while it lasts, and once when it
//! ends, instead of a warning per message per retry. The per-attempt lines stay at debug.
//!
//! [`Outage`] is the state machine; it reads `tokio::time`, so tests drive it on a paused
//! clock.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The longest quiet time of the log while an outage lasts.
pub const REMIND_EVERY: Duration = Duration::from_secs(60);

/// One dependency's outage state.
#[derive(Debug)]
pub struct Outage {
    what: &'static str,
    state: Mutex<Option<State>>,
}

#[derive(Debug)]
struct State {
    since: Instant,
    last_logged: Instant,
    failures: u64,
    /// Distinct items (control ids, operations) that failed during the outage.
    waiting: HashSet<String>,
}

/// What to log, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutageLog {
    Started {
        waiting: usize,
        error: String,
    },
    Continues {
        waiting: usize,
        failures: u64,
        for_secs: u64,
        error: String,
    },
    Ended {
        failures: u64,
        delayed: usize,
        lasted_secs: u64,
    },
}

impl Outage {
    pub const fn new(what: &'static str) -> Self {
        Self {
            what,
            state: Mutex::new(None),
        }
    }

    /// A failure of `item`; returns the line to log, at most one a minute.
    pub fn failure(&self, item: &str, error: &str) -> Option<OutageLog> {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match st.as_mut() {
            None => {
                *st = Some(State {
                    since: now,
                    last_logged: now,
                    failures: 1,
                    waiting: HashSet::from([item.to_string()]),
                });
                Some(OutageLog::Started {
                    waiting: 1,
                    error: error.to_string(),
                })
            }
            Some(s) => {
                s.failures += 1;
                s.waiting.insert(item.to_string());
                (now - s.last_logged >= REMIND_EVERY).then(|| {
                    s.last_logged = now;
                    OutageLog::Continues {
                        waiting: s.waiting.len(),
                        failures: s.failures,
                        for_secs: (now - s.since).as_secs(),
                        error: error.to_string(),
                    }
                })
            }
        }
    }

    /// A success: ends the outage if there was one.
    pub fn success(&self) -> Option<OutageLog> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.take().map(|s| OutageLog::Ended {
            failures: s.failures,
            delayed: s.waiting.len(),
            lasted_secs: (Instant::now() - s.since).as_secs(),
        })
    }

    /// Writes the line, if any.
    pub fn log(&self, line: Option<OutageLog>) {
        let what = self.what;
        match line {
            Some(OutageLog::Started { waiting, error }) => {
                tracing::warn!(dependency = what, waiting, error = %error, "outage started")
            }
            Some(OutageLog::Continues {
                waiting,
                failures,
                for_secs,
                error,
            }) => tracing::warn!(
                dependency = what,
                waiting,
                failures,
                for_secs,
                error = %error,
                "outage continues"
            ),
            Some(OutageLog::Ended {
                failures,
                delayed,
                lasted_secs,
            }) => tracing::info!(
                dependency = what,
                failures,
                delayed,
                lasted_secs,
                "outage ended"
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thousand failures over five minutes: one start, a reminder a minute, one end.
    #[tokio::test(start_paused = true)]
    async fn an_outage_is_logged_once_a_minute_not_once_a_failure() {
        let o = Outage::new("broker");
        let mut lines = Vec::new();
        for i in 0..1000 {
            lines.extend(o.failure(&format!("msg-{}", i % 40), "connection refused"));
            tokio::time::advance(Duration::from_millis(300)).await;
        }
        lines.extend(o.success());
        assert!(o.success().is_none(), "ended once");
        assert!(matches!(lines[0], OutageLog::Started { waiting: 1, .. }));
        let reminders = lines
            .iter()
            .filter(|l| matches!(l, OutageLog::Continues { .. }))
            .count();
        assert_eq!(
            reminders, 4,
            "300 s of outage: a reminder each minute after the first"
        );
        assert_eq!(
            lines.last(),
            Some(&OutageLog::Ended {
                failures: 1000,
                delayed: 40,
                lasted_secs: 300
            })
        );
        assert_eq!(lines.len(), 6);
    }
}
