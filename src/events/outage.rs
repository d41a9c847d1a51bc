//! Outage logging: when a dependency fails for every message (the broker unreachable, e-RS
//! answering 5xx or not at all), the log says so once when the outage starts (with how
//! many messages are waiting), at most once a minute while it lasts, and once when it
//! ends, instead of a warning per message per retry. The per-attempt lines stay at debug.
//!
//! **Not flapping.** Intermittent errors (a 5% error rate) are not an outage: one starts
//! only after [`START_AFTER`] failures with no success between them, or failures with no
//! success for [`START_WINDOW`]; once started it ends after [`END_AFTER`] successes in
//! a row, or at a success [`SETTLE`] after the last failure, so a dependency that comes
//! back and fails again at once stays one outage (an independent run logged 394 start/end pairs in 7
//! minutes under a fault mix before this).
//!
//! [`Outage`] is the state machine; it reads `tokio::time`, so tests drive it on a paused
//! clock.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The longest quiet time of the log while an outage lasts.
pub const REMIND_EVERY: Duration = Duration::from_secs(60);

/// Failures in a row (no success between) that start an outage.
pub const START_AFTER: u64 = 3;
/// Failures with no success for this long start an outage, however few.
pub const START_WINDOW: Duration = Duration::from_secs(10);
/// An outage ends at a success this long after its last failure.
pub const SETTLE: Duration = Duration::from_secs(5);
/// Or after this many successes in a row.
pub const END_AFTER: u64 = 10;

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
    last_failure: Instant,
    failures: u64,
    /// Failures since the last success.
    in_a_row: u64,
    /// Successes since the last failure.
    successes: u64,
    /// Whether the start was logged (before that, a success forgets the failures).
    started: bool,
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
        let s = st.get_or_insert_with(|| State {
            since: now,
            last_logged: now,
            last_failure: now,
            failures: 0,
            in_a_row: 0,
            successes: 0,
            started: false,
            waiting: HashSet::new(),
        });
        s.failures += 1;
        s.in_a_row += 1;
        s.successes = 0;
        s.last_failure = now;
        s.waiting.insert(item.to_string());
        if !s.started {
            if s.in_a_row < START_AFTER && now - s.since < START_WINDOW {
                return None;
            }
            s.started = true;
            s.last_logged = now;
            return Some(OutageLog::Started {
                waiting: s.waiting.len(),
                error: error.to_string(),
            });
        }
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

    /// A success: forgets failures that did not make an outage; ends one that did after
    /// [`END_AFTER`] successes in a row or once the last failure is [`SETTLE`] old.
    pub fn success(&self) -> Option<OutageLog> {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let s = st.as_mut()?;
        s.in_a_row = 0;
        s.successes += 1;
        if s.started && s.successes < END_AFTER && now - s.last_failure < SETTLE {
            return None;
        }
        let s = st.take()?;
        s.started.then(|| OutageLog::Ended {
            failures: s.failures,
            delayed: s.waiting.len(),
            lasted_secs: (now - s.since).as_secs(),
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
        assert!(
            o.success().is_none(),
            "not before the dependency has settled"
        );
        tokio::time::advance(SETTLE).await;
        lines.extend(o.success());
        assert!(o.success().is_none(), "ended once");
        assert!(matches!(lines[0], OutageLog::Started { waiting: 3, .. }));
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
                lasted_secs: 305
            })
        );
        assert_eq!(lines.len(), 6);
    }

    /// Seven minutes of calls, one in twenty failing (never three in a row): no outage.
    /// And the same calls with a ten-second stretch of failures in the middle: one.
    #[tokio::test(start_paused = true)]
    async fn intermittent_errors_do_not_flap() {
        let o = Outage::new("e-rs");
        let mut lines = Vec::new();
        for i in 0..4200_u32 {
            let fails = i % 20 == 7 || (2000..2100).contains(&i);
            lines.extend(if fails {
                o.failure(&format!("call-{i}"), "500")
            } else {
                o.success()
            });
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(matches!(lines[0], OutageLog::Started { .. }));
        assert!(matches!(lines[1], OutageLog::Ended { .. }));
    }

    /// A lone call failing for good (one item, retried slowly) is an outage after
    /// [`START_WINDOW`] with no success.
    #[tokio::test(start_paused = true)]
    async fn slow_failures_with_no_success_start_an_outage() {
        let o = Outage::new("broker");
        assert!(o.failure("one", "refused").is_none());
        tokio::time::advance(START_WINDOW).await;
        assert!(matches!(
            o.failure("one", "refused"),
            Some(OutageLog::Started { waiting: 1, .. })
        ));
    }
}
