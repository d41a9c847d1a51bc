//! SQLite connections opened read-only, kept out of the pool once the file is writable
//! again: SQLite opens a file it may not write read-only without a word, and such a
//! connection would stay read-only for its whole lifetime (see [`ReadOnlyOpens`]).

/// When the pool last opened a SQLite connection that cannot write (the file or its
/// directory read-only at that moment). Such a connection is let in, so that its writes fail
/// with SQLite's own error and the fix rather than the pool's timeout; but every connection
/// opened at or before that moment is closed instead of reused, so once the file is
/// writable again the next statements run on fresh, writable connections (without this, a
/// read-only connection would stay in the pool until its lifetime ends).
#[derive(Debug, Clone)]
pub(super) struct ReadOnlyOpens {
    base: std::time::Instant,
    /// Nanoseconds after `base` of the last read-only open; 0 for never.
    last: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for ReadOnlyOpens {
    fn default() -> Self {
        Self {
            base: std::time::Instant::now(),
            last: std::sync::Arc::default(),
        }
    }
}

impl ReadOnlyOpens {
    fn since_base(&self, at: std::time::Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    pub(super) fn opened_now(&self) {
        let now = self.since_base(std::time::Instant::now());
        self.last.store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a connection of this age was opened at or before the last read-only open.
    pub(super) fn may_be_read_only(&self, age: std::time::Duration) -> bool {
        let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
        last != 0
            && std::time::Instant::now()
                .checked_sub(age)
                .is_none_or(|opened| self.since_base(opened) <= last)
    }
}
