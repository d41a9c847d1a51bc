//! One client-side rate limiter shared by every e-RS call of the process.
//!
//! A small GCRA (virtual scheduling) on `tokio::time`, so tests with a paused clock see it
//! advance with the runtime: each permit is scheduled one interval after the previous one,
//! and `defer_until` pushes the schedule back when e-RS answers 429/503 with `Retry-After`,
//! so every task backs off together rather than only the one that was refused.
//!
//! **Writes first.** Reads queue at a FIFO gate and only the read at its head holds a slot,
//! so a backlog of reads never books the future; a write takes the next slot directly,
//! waiting at most for the one read already holding a slot. With 1,000 reads queued at
//! 10/s a PAS decision's write starts within two intervals (0.22 s), and the limit is never
//! exceeded because every slot is still handed out once.
//!
//! **Promotion.** The reads of a task that holds something a decision waits for (the
//! outbound fetch of the referral a PAS decision is about) run under a [`Promotion`]
//! ([`with_promotion`]): once the decision asks for it, those reads leave the queue and take
//! the next slot as writes do, so the decision is not held up behind the whole backlog by
//! the task it waits on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::{sync::Arc, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// The resolution of tokio's timer: a permit whose slot is less than this ahead is granted
/// at once, so a permit may come up to 1 ms before its slot (and a limit above 1,000/s
/// spaces permits no finer than the timer can).
const TIMER_TICK: Duration = Duration::from_millis(1);

/// The default of `[ers] rate_allowance_ms`: how much the network and the receiving end
/// may bunch calls together. e-RS counts calls as they arrive, and a receiver that stalls
/// for a moment (a busy host) stamps the calls queued meanwhile into the same second: the
/// bench saw 301 at 300/s with calls spaced exactly, and 302 with two bridges and a 50 ms
/// allowance on a host at load 6 (BENCHMARKS.md, "Several bridges on one store").
pub const DEFAULT_ARRIVAL_ALLOWANCE: Duration = Duration::from_millis(100);

/// A shared limiter: at most `per_sec` permits in any window of one second plus one
/// [`TIMER_TICK`] (a permit may come that much before its slot) plus the arrival allowance,
/// so calls bunched on their way by up to the allowance still arrive at most `per_sec` in
/// one second.
#[derive(Debug)]
pub struct RateLimiter {
    /// The window `per_sec` permits are spread over, in nanoseconds.
    window_ns: u64,
    /// Nanoseconds between permits; changed by [`RateLimiter::set_per_sec`] when the
    /// instances sharing the app's limit come and go.
    interval_ns: std::sync::atomic::AtomicU64,
    state: Mutex<State>,
    /// Reads wait here in arrival order; writes do not.
    read_gate: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    /// The earliest instant the next permit may be granted.
    next: Option<Instant>,
    /// No permit before this instant, even for slots handed out earlier.
    paused_until: Option<Instant>,
    /// When the last permits were actually granted (at most [`SLIDING_MAX`]): a task that
    /// wakes late for its slot (the process was descheduled, the runtime busy) is granted
    /// only if the window before it has room, so late slots never pile into one second.
    granted: std::collections::VecDeque<Instant>,
}

/// Above this many permits per second the grants are not remembered one by one (a limit
/// that high is not e-RS's, and the memory would grow with it).
const SLIDING_MAX: usize = 10_000;

impl RateLimiter {
    /// A limiter granting `per_sec` permits per second (at least 1), with
    /// [`DEFAULT_ARRIVAL_ALLOWANCE`].
    pub fn new(per_sec: u32) -> Self {
        Self::with_allowance(per_sec, DEFAULT_ARRIVAL_ALLOWANCE)
    }

    /// A limiter granting `per_sec` permits per second, spread so that calls bunched on
    /// their way by up to `allowance` still arrive at most `per_sec` in one second. The
    /// allowance costs its share of a second of throughput (100 ms: 9%).
    pub fn with_allowance(per_sec: u32, allowance: Duration) -> Self {
        let window_ns = (Duration::from_secs(1) + TIMER_TICK + allowance).as_nanos() as u64;
        Self {
            window_ns,
            interval_ns: std::sync::atomic::AtomicU64::new(window_ns / u64::from(per_sec.max(1))),
            state: Mutex::new(State::default()),
            read_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// The spacing of permits: the window over `per_sec`, so no second holds more than
    /// `per_sec` grants even with a grant up to [`TIMER_TICK`] early, nor more than
    /// `per_sec` arrivals at e-RS with calls bunched by up to the allowance (at 300/s a
    /// plain 1/300 s let 301 through).
    fn interval_for(&self, per_sec: u32) -> u64 {
        self.window_ns / u64::from(per_sec.max(1))
    }

    /// From now on grants `per_sec` permits per second (this instance's share of the
    /// app's limit, docs/ha.md). A slot already handed out keeps its time.
    pub fn set_per_sec(&self, per_sec: u32) {
        self.interval_ns
            .store(self.interval_for(per_sec), Ordering::Relaxed);
    }

    /// The permits per second granted now.
    pub fn per_sec(&self) -> u32 {
        let ns = self.interval_ns.load(Ordering::Relaxed).max(1);
        u32::try_from(self.window_ns / ns).unwrap_or(u32::MAX)
    }

    /// Waits for a permit for a read: behind earlier reads, and behind any write.
    pub async fn acquire(&self) {
        let _turn = self.read_gate.lock().await;
        self.acquire_slot().await;
    }

    /// Waits for a permit for a write (a PAS decision): ahead of every queued read.
    pub async fn acquire_write(&self) {
        self.acquire_slot().await;
    }

    /// A read that leaves the queue for the next slot once `p` is promoted.
    pub async fn acquire_promotable(&self, p: &Promotion) {
        if p.is_promoted() {
            return self.acquire_slot().await;
        }
        tokio::select! {
            turn = self.read_gate.lock() => {
                let _turn = turn;
                self.acquire_slot().await;
            }
            () = p.promoted() => self.acquire_slot().await,
        }
    }

    /// Takes the next free slot and sleeps until it. A task whose slot comes up while the
    /// limiter is paused (a `Retry-After` arrived meanwhile) takes a new slot after the
    /// pause; one that wakes late, when the last second already holds `per_sec` grants
    /// (late slots bunch: the bench saw 308 calls in one second at 300/s), takes a new one.
    async fn acquire_slot(&self) {
        loop {
            let at = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let mut at = st.next.map_or(now, |n| n.max(now));
                if let Some(p) = st.paused_until {
                    at = at.max(p);
                }
                if let Some(free) = self.window_free_at(&st) {
                    at = at.max(free);
                }
                let interval = Duration::from_nanos(self.interval_ns.load(Ordering::Relaxed));
                st.next = Some(at + interval);
                if at.saturating_duration_since(now) < TIMER_TICK {
                    // Within the timer's resolution: granted now, with no timer. A sleep
                    // rounds up to tokio's next millisecond tick (even for a deadline
                    // already passed), and the read at the head of the queue holds the gate
                    // meanwhile: with a generous limit every read of the process waited
                    // behind a 1 ms sleep (issue 20: the bridge at a third of its speed).
                    self.note_grant(&mut st, now);
                    return;
                }
                at
            };
            tokio::time::sleep_until(at).await;
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let paused = st.paused_until.is_some_and(|p| p > now);
            let full = self.window_free_at(&st).is_some_and(|free| free > now);
            if !paused && !full {
                self.note_grant(&mut st, now);
                return;
            }
        }
    }

    /// The permits per second to remember grants for; `None` above [`SLIDING_MAX`].
    fn sliding(&self) -> Option<usize> {
        let n = self.per_sec() as usize;
        (n <= SLIDING_MAX).then_some(n.max(1))
    }

    /// When the window before a grant has room again: the `per_sec`-th last grant plus the
    /// window; `None` when it has room now (or grants are not remembered).
    fn window_free_at(&self, st: &State) -> Option<Instant> {
        let n = self.sliding()?;
        let len = st.granted.len();
        (len >= n).then(|| st.granted[len - n] + Duration::from_nanos(self.window_ns))
    }

    fn note_grant(&self, st: &mut State, at: Instant) {
        let Some(n) = self.sliding() else {
            st.granted.clear();
            return;
        };
        st.granted.push_back(at);
        while st.granted.len() > n {
            st.granted.pop_front();
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

/// A flag a waiting decision raises so the reads of the task it waits on are served
/// first. Cheap to clone; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Promotion(Arc<PromotionInner>);

#[derive(Debug, Default)]
struct PromotionInner {
    promoted: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Promotion {
    /// Serves the holder's reads first from now on.
    pub fn promote(&self) {
        self.0.promoted.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    pub fn is_promoted(&self) -> bool {
        self.0.promoted.load(Ordering::Acquire)
    }

    async fn promoted(&self) {
        loop {
            let n = self.0.notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.is_promoted() {
                return;
            }
            n.await;
        }
    }
}

tokio::task_local! {
    static PROMOTION: Promotion;
}

/// Runs `fut` with its e-RS reads promotable through `p`.
pub async fn with_promotion<F: std::future::Future>(p: Promotion, fut: F) -> F::Output {
    PROMOTION.scope(p, fut).await
}

/// The promotion of the running task, if it runs under one.
pub(crate) fn current_promotion() -> Option<Promotion> {
    PROMOTION.try_with(Clone::clone).ok()
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

    /// A runtime that stalls (the process descheduled) wakes every task whose slot passed
    /// at once; they are granted only as the last second has room, so no window of one
    /// second holds more than the limit, stall or not.
    #[tokio::test(start_paused = true)]
    async fn tasks_woken_late_do_not_bunch_into_one_second() {
        let l = Arc::new(RateLimiter::new(10));
        let start = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..40 {
            let (l, tx) = (l.clone(), tx.clone());
            tokio::spawn(async move {
                l.acquire_write().await;
                let _ = tx.send(Instant::now());
            });
        }
        drop(tx);
        // Let the first grants happen, then stall: two seconds pass in one step.
        tokio::time::sleep(Duration::from_millis(450)).await;
        tokio::time::advance(Duration::from_secs(2)).await;
        let mut times = Vec::new();
        while let Some(t) = rx.recv().await {
            times.push(t - start);
        }
        assert_eq!(times.len(), 40);
        times.sort();
        for w in times.windows(11) {
            assert!(
                w[10] - w[0] >= Duration::from_secs(1),
                "11 grants within a second: {w:?}"
            );
        }
    }

    /// The 3x regression of issue 20: a slot free now must not wait for tokio's timer
    /// (whose millisecond tick, on a paused clock, shows up as elapsed time), since the read
    /// at the head of the queue holds the gate meanwhile and every read of the process
    /// waits behind it.
    #[tokio::test(start_paused = true)]
    async fn a_generous_limit_grants_reads_without_waiting_for_the_timer() {
        let l = Arc::new(RateLimiter::new(1_000_000));
        let start = Instant::now();
        let reads: Vec<_> = (0..1000)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move { l.acquire().await })
            })
            .collect();
        for r in reads {
            r.await.unwrap();
        }
        // 1,000 permits at 1,000,000/s span 1 ms; one timer tick per read would be 1 s.
        assert!(
            start.elapsed() <= Duration::from_millis(10),
            "1,000 reads took {:?} at a limit of 1,000,000/s",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_overtakes_a_backlog_of_reads_without_exceeding_the_rate() {
        let l = Arc::new(RateLimiter::new(10));
        let start = Instant::now();
        let mut reads = Vec::new();
        for _ in 0..1000 {
            let l = l.clone();
            reads.push(tokio::spawn(async move {
                l.acquire().await;
                Instant::now()
            }));
        }
        // Let the reads queue up and start flowing.
        tokio::time::sleep(Duration::from_millis(550)).await;
        let asked = Instant::now();
        let write = {
            let l = l.clone();
            tokio::spawn(async move {
                l.acquire_write().await;
                Instant::now()
            })
        };
        let granted = write.await.unwrap();
        // Two intervals: 2 × 1.101 s / 10.
        assert!(
            granted - asked <= Duration::from_millis(221),
            "the write waited {:?} behind 1,000 reads",
            granted - asked
        );
        let mut times = vec![granted - start];
        for r in reads.into_iter().take(40) {
            times.push(r.await.unwrap() - start);
        }
        times.sort();
        for w in times.windows(11) {
            assert!(
                w[10] - w[0] >= Duration::from_secs(1),
                "over the rate: {w:?}"
            );
        }
    }

    /// The most of `arrivals` within any one second.
    fn busiest_second(mut arrivals: Vec<Duration>) -> usize {
        arrivals.sort();
        (0..arrivals.len())
            .map(|i| {
                arrivals[i..]
                    .iter()
                    .take_while(|b| **b - arrivals[i] < Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// When 300 permits at 100/s arrive, the first 100 and the third late by `delay` and
    /// the second 100 on time (the worst bunching for that delay).
    async fn arrivals(allowance_ms: u64, delay_ms: u64) -> Vec<Duration> {
        let l = RateLimiter::with_allowance(100, Duration::from_millis(allowance_ms));
        let start = Instant::now();
        let mut out = Vec::new();
        for i in 0..300_u32 {
            l.acquire_write().await;
            let delay = if (i / 100) % 2 == 0 { delay_ms } else { 0 };
            out.push(Instant::now() - start + Duration::from_millis(delay));
        }
        out
    }

    /// Calls delayed on their way by anything up to the allowance still arrive at most
    /// `per_sec` in any one second; a delay past it does not (so the check can fail).
    #[tokio::test(start_paused = true)]
    async fn calls_bunched_by_the_allowance_still_arrive_within_the_limit() {
        for allowance_ms in [0_u64, 50, 100] {
            let busiest = busiest_second(arrivals(allowance_ms, allowance_ms).await);
            assert!(
                busiest <= 100,
                "allowance {allowance_ms} ms: {busiest} in one second"
            );
        }
        let busiest = busiest_second(arrivals(50, 102).await);
        assert!(busiest > 100, "a delay twice the allowance: {busiest}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_promoted_read_leaves_the_queue() {
        let l = Arc::new(RateLimiter::new(10));
        let mut reads = Vec::new();
        for _ in 0..200 {
            let l = l.clone();
            reads.push(tokio::spawn(async move { l.acquire().await }));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let p = Promotion::default();
        let held = {
            let (l, p) = (l.clone(), p.clone());
            tokio::spawn(async move {
                l.acquire_promotable(&p).await;
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!held.is_finished(), "queued like any read until promoted");
        let asked = Instant::now();
        p.promote();
        let got = held.await.unwrap();
        assert!(
            got - asked <= Duration::from_millis(221),
            "{:?}",
            got - asked
        );
        for r in reads {
            r.abort();
        }
    }
}
