//! How long publishing and consuming keep trying: the shared [`Backoff`] schedule (see
//! [`crate::backoff`]) plus an optional deadline after which a publish gives up.

use std::time::Duration;

use crate::backoff::Backoff;

/// The broker retry policy of [`Publisher::publish_with_retry`](super::Publisher::publish_with_retry)
/// and [`Consumer::next`](super::Consumer::next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait between attempts while the broker is unavailable.
    pub backoff: Backoff,
    /// Give up when the next attempt would start after this much time since the first one;
    /// `None` retries until shutdown.
    pub give_up_after: Option<Duration>,
}

impl Default for RetryPolicy {
    /// 200 ms doubling up to 10 s, until shutdown.
    fn default() -> Self {
        Self {
            backoff: Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(10),
            },
            give_up_after: None,
        }
    }
}
