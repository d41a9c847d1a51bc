//! Trends: what the bridge did minute by minute, kept in the store for a week so the
//! dashboard can show "it stopped at 02:14" at a glance. Each process takes the deltas of
//! its own counters ([`Metrics`]) every [`FLUSH_EVERY`] and adds them to the current
//! minute's rows (`minute_counts`), so a cluster's rows are its sum and nothing is added to
//! the pipelines' hot path (the code-table misses counted meanwhile go to the store with
//! them); a process that dies loses at most its last unflushed seconds of
//! counts, which are figures for people, not delivery state. `GET /api/trends` sums the
//! minutes into the buckets of the last hour, day or week.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::MonitorState;
use crate::events::{Events, Metrics};
use crate::runtime::Shutdown;
use crate::store::{Store, StoreError, TREND_KEEP_MS};

/// The series kept, in the order of [`snapshot`].
pub const SERIES: [&str; 10] = [
    "to_pas",
    "from_pas",
    "ers_2xx",
    "ers_3xx",
    "ers_4xx",
    "ers_5xx",
    "ers_error",
    "ers_429",
    "dead_letters",
    "needs_action",
];

/// How often a process adds its counts to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(15);

const MINUTE_MS: i64 = 60_000;

/// The counters behind [`SERIES`] now.
fn snapshot(m: &Metrics) -> [u64; 10] {
    let c = &m.ers_calls_by_class;
    [
        m.trend_to_pas.get(),
        m.trend_from_pas.get(),
        c[0].get(),
        c[1].get(),
        c[2].get(),
        c[3].get(),
        c[4].get(),
        m.ers_rate_limited.get(),
        m.dead_lettered.get(),
        m.trend_needs_action.get(),
    ]
}

/// Adds a process's counts to the store, from where it last left off.
#[derive(Debug)]
pub struct TrendRecorder {
    store: Store,
    events: Events,
    last: [u64; 10],
}

impl TrendRecorder {
    /// Counts from now on (a new process's counters start at zero anyway).
    pub fn new(store: Store, events: Events) -> Self {
        let last = snapshot(events.metrics());
        Self {
            store,
            events,
            last,
        }
    }

    /// Adds what was counted since the last flush to the minute of `now_ms`, and moves the
    /// code-table misses counted meanwhile into the store. When the counts' write fails
    /// nothing is taken, so the next flush adds them; misses a write refused stay pending.
    /// Returns the counts added, in [`SERIES`] order.
    pub async fn flush(&mut self, now_ms: i64) -> Result<[u64; 10], StoreError> {
        let now = snapshot(self.events.metrics());
        let mut added = [0u64; 10];
        for (a, (n, l)) in added.iter_mut().zip(now.iter().zip(self.last.iter())) {
            *a = n.saturating_sub(*l);
        }
        let counts: Vec<(&str, i64)> = SERIES
            .iter()
            .zip(added)
            .map(|(s, n)| (*s, n as i64))
            .collect();
        let minute = now_ms - now_ms.rem_euclid(MINUTE_MS);
        self.store.add_minute_counts(minute, &counts).await?;
        // Taken: a later failure must not add these counts a second time.
        self.last = now;
        if let Err(e) = self.flush_code_misses().await {
            tracing::debug!(error = %e, "code-table misses not stored yet, kept for the next flush");
        }
        Ok(added)
    }
}

/// The log's progress line: what this process did in the last minute, at info, only
/// when it did something (a quiet bridge logs nothing; the per-message lines are at debug).
fn log_minute(done: &[u64; 10]) {
    if done.iter().all(|n| *n == 0) {
        return;
    }
    let ers: u64 = done[2..7].iter().sum();
    tracing::info!(
        to_pas = done[0],
        from_pas = done[1],
        ers_calls = ers,
        ers_4xx = done[4],
        ers_5xx = done[5] + done[6],
        ers_429 = done[7],
        dead_letters = done[8],
        needs_action = done[9],
        "the last minute"
    );
}

impl TrendRecorder {
    /// Moves the code-table misses counted since the last flush into the store; those a
    /// failed write did not take go back, to be added next time.
    async fn flush_code_misses(&mut self) -> Result<(), StoreError> {
        let pending = &self.events.metrics().lookup_misses_pending;
        let taken: Vec<_> = std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect();
        for (i, ((table, code), (n, first, last))) in taken.iter().enumerate() {
            if let Err(e) = self
                .store
                .add_code_misses(table, code, *n, *first, *last)
                .await
            {
                // What was not written goes back, merged with what was counted meanwhile.
                let mut back = pending.lock().unwrap_or_else(|e| e.into_inner());
                for (k, (n, first, last)) in taken.into_iter().skip(i) {
                    let e = back.entry(k).or_insert((0, first, last));
                    e.0 += n;
                    e.1 = e.1.min(first);
                    e.2 = e.2.max(last);
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Flushes every [`FLUSH_EVERY`] until shutdown (and once more then), logs each minute's
/// counts ([`log_minute`]) and drops minutes older than [`TREND_KEEP_MS`] once an hour.
pub async fn run(store: Store, events: Events, shutdown: Shutdown) {
    let mut recorder = TrendRecorder::new(store.clone(), events);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned_at = 0i64;
    let mut minute = [0u64; 10];
    let mut minute_started = chrono::Utc::now().timestamp_millis();
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            () = shutdown.wait() => true,
        };
        let now = chrono::Utc::now().timestamp_millis();
        match recorder.flush(now).await {
            Ok(added) => minute.iter_mut().zip(added).for_each(|(m, a)| *m += a),
            Err(e) => tracing::debug!(error = %e, "trend counts not stored yet"),
        }
        if stopping || now - minute_started >= MINUTE_MS {
            log_minute(&minute);
            minute = [0; 10];
            minute_started = now;
        }
        if stopping {
            return;
        }
        if now - pruned_at >= 3_600_000 {
            match store.prune_minute_counts(now - TREND_KEEP_MS).await {
                Ok(_) => pruned_at = now,
                Err(e) => tracing::debug!(error = %e, "old trend counts not pruned yet"),
            }
        }
    }
}

/// `?range=hour|day|week` (default hour).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct TrendQuery {
    pub range: Option<String>,
}

/// `GET /api/trends`: the series of the range in equal buckets (zeros where nothing
/// happened: a gap is a fact), each bucket's start time, and when each series last counted
/// anything.
pub async fn trends(State(s): State<MonitorState>, Query(q): Query<TrendQuery>) -> Response {
    let (bucket_ms, buckets) = match q.range.as_deref().unwrap_or("hour") {
        "hour" => (MINUTE_MS, 60),
        "day" => (10 * MINUTE_MS, 144),
        "week" => (60 * MINUTE_MS, 168),
        other => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("range {other:?}: use hour, day or week")})),
            )
                .into_response()
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    match view(&s.store, now, bucket_ms, buckets).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => super::api::failed(e),
    }
}

/// The trends of `buckets` buckets of `bucket_ms` ending with the one holding `now_ms`.
pub async fn view(
    store: &Store,
    now_ms: i64,
    bucket_ms: i64,
    buckets: usize,
) -> Result<serde_json::Value, StoreError> {
    let last_start = now_ms - now_ms.rem_euclid(bucket_ms);
    let first = last_start - bucket_ms * (buckets as i64 - 1);
    let t: Vec<i64> = (0..buckets as i64).map(|i| first + i * bucket_ms).collect();
    let mut series: std::collections::BTreeMap<&str, Vec<i64>> =
        SERIES.iter().map(|s| (*s, vec![0; buckets])).collect();
    for (bucket, name, n) in store.trend_counts(first, bucket_ms).await? {
        let i = ((bucket - first) / bucket_ms) as usize;
        if let (Some(values), true) = (series.get_mut(name.as_str()), i < buckets) {
            values[i] += n;
        }
    }
    let last = store.trend_last_seen().await?;
    Ok(json!({
        "now_ms": now_ms,
        "bucket_ms": bucket_ms,
        "t": t,
        "series": series,
        "last_ms": last,
    }))
}
