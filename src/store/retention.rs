//! Retention: payloads (outbound HL7, inbound HL7, replies to the PAS, dead-letter bodies)
//! older than the configured age are deleted from the `payloads` table in small batches
//! with rests between them, so the pipelines' writes never wait behind a long statement,
//! and the metadata rows stay as the audit trail. On SQLite the freed pages then go back to
//! the file system in short incremental-vacuum steps (BENCHMARKS.md, "Retention beside the
//! running pipeline"); PostgreSQL's autovacuum makes the space reusable itself.

use sqlx::Row;

use super::{OpContext, Store, StoreError};

/// How [`Store::vacuum_step`] checkpoints SQLite's write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checkpoint {
    Passive,
    Truncate,
}

impl Store {
    /// Deletes every payload stored before `cutoff_ms` at once (tests and small stores;
    /// the retention job uses [`Store::prune_gently`]); returns how many. Metadata rows stay.
    pub async fn prune_payloads(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        self.prune_payloads_batch(cutoff_ms, u32::MAX).await
    }

    /// Gives pages freed by pruning back to the file system: SQLite's incremental vacuum
    /// (on files created with it), in steps of `pages`; PostgreSQL's autovacuum does this
    /// itself. Returns whether anything could be done.
    pub async fn reclaim_space(&self, pages: u32) -> Result<bool, StoreError> {
        Ok(self
            .vacuum_step(Some(pages), Checkpoint::Truncate)
            .await?
            .is_some())
    }

    /// `PRAGMA incremental_vacuum(pages)` (0: every free page; `None`: none), then a WAL
    /// checkpoint: in WAL mode the file shrinks when the log is checkpointed into it. A passive checkpoint
    /// never makes writers wait; a truncating one also empties the log file, but holds new
    /// writers back while it runs. Returns how long the vacuum held the store; `None` on
    /// PostgreSQL.
    async fn vacuum_step(
        &self,
        pages: Option<u32>,
        checkpoint: Checkpoint,
    ) -> Result<Option<std::time::Duration>, StoreError> {
        let sqlite = matches!(self.pool.connect_options().database_url.scheme(), "sqlite");
        if !sqlite {
            return Ok(None);
        }
        // Timed on a connection already in hand, so a wait for the pool does not count as
        // holding the store (reclaim_gently sizes its steps by this time).
        let mut conn = self.pool.acquire().await.op("reclaim_space")?;
        let started = std::time::Instant::now();
        if let Some(pages) = pages {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "PRAGMA incremental_vacuum({pages})"
            )))
            .execute(&mut *conn)
            .await
            .op("reclaim_space")?;
        }
        let vacuumed = started.elapsed();
        sqlx::query(match checkpoint {
            Checkpoint::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            Checkpoint::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
        })
        .execute(&mut *conn)
        .await
        .op("reclaim_space")?;
        tracing::debug!(
            ?pages,
            ?checkpoint,
            vacuum_ms = vacuumed.as_millis() as u64,
            checkpoint_ms = (started.elapsed() - vacuumed).as_millis() as u64,
            "sqlite space reclaimed"
        );
        Ok(Some(vacuumed))
    }

    /// Pages free inside an SQLite file (what [`Store::reclaim_space`] can give back); 0 on
    /// PostgreSQL.
    pub async fn free_pages(&self) -> Result<i64, StoreError> {
        if self.pool.connect_options().database_url.scheme() != "sqlite" {
            return Ok(0);
        }
        sqlx::query("PRAGMA freelist_count")
            .fetch_one(&self.pool)
            .await
            .op("free_pages")?
            .try_get(0)
            .op("free_pages")
    }

    /// Deletes at most `batch` expired payloads, oldest first: outbound HL7, replies to the
    /// PAS, dead-letter bodies, and the HL7 of inbound messages that are finished (one
    /// still being worked on keeps its text). Returns how many. Called in a loop by the
    /// retention job, so no statement holds the store for long; the metadata rows stay.
    pub async fn prune_payloads_batch(
        &self,
        cutoff_ms: i64,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM payloads WHERE (kind, ref_id) IN (SELECT kind, ref_id FROM payloads \
             WHERE stored_at_ms < $1 AND (kind NOT IN ('in', 'in64') OR EXISTS (SELECT 1 FROM inbound_messages \
             WHERE control_id = ref_id AND status IN \
             ('done', 'no-action', 'needs-action', 'dead-lettered', 'resolved'))) \
             ORDER BY stored_at_ms LIMIT $2)",
        )
        .bind(cutoff_ms)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await
        .op("prune_payloads_batch")?;
        Ok(r.rows_affected())
    }

    /// Prunes every payload older than `cutoff_ms` in batches of `batch`, resting between
    /// batches twice as long as the last one took (at least `min_pause`), so the pipelines'
    /// own writes get the store at least two thirds of the time. Stops early when `stop`
    /// says so. Returns how many payloads were deleted; [`Store::reclaim_gently`] then gives
    /// the space back.
    pub async fn prune_gently(
        &self,
        cutoff_ms: i64,
        batch: u32,
        min_pause: std::time::Duration,
        stop: impl Fn() -> bool,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let started = tokio::time::Instant::now();
            let n = self.prune_payloads_batch(cutoff_ms, batch).await?;
            total += n;
            if n < u64::from(batch) || stop() {
                return Ok(total);
            }
            tokio::time::sleep((started.elapsed() * 2).max(min_pause)).await;
        }
    }

    /// Gives every free page back to the file system (SQLite) in steps sized to hold the
    /// store about 4 ms each (at most `max_pages` pages), resting twice each step's time (at
    /// least `pause`) between steps, as [`Store::prune_gently`] does. The size adapts
    /// because a step's cost varies a thousandfold: moving a live page from the end of the
    /// file searches the free list for a lower slot, so right after a million pages were
    /// freed one page costs about a millisecond, and a fixed step of 1,000 pages held the
    /// store for 1.2 s; once the live pages are moved, a step only truncates. Each step
    /// checkpoints the log passively, and one truncating checkpoint at the end empties it.
    /// Stops early when `stop` says so, or when a step frees nothing (a file made before
    /// incremental vacuum was turned on). Returns how many pages were given back.
    pub async fn reclaim_gently(
        &self,
        max_pages: u32,
        pause: std::time::Duration,
        stop: impl Fn() -> bool,
    ) -> Result<i64, StoreError> {
        const TARGET: std::time::Duration = std::time::Duration::from_millis(4);
        let start = self.free_pages().await?;
        let mut free = start;
        let mut step = 8.min(max_pages.max(1));
        while free > 0 {
            let Some(took) = self.vacuum_step(Some(step), Checkpoint::Passive).await? else {
                break;
            };
            if took < TARGET / 2 {
                step = (step * 2).min(max_pages.max(1));
            } else if took > TARGET * 2 {
                step = (step / 2).max(1);
            }
            let left = self.free_pages().await?;
            if left >= free {
                break;
            }
            free = left;
            if free == 0 || stop() {
                break;
            }
            tokio::time::sleep((took * 2).max(pause)).await;
        }
        if start > 0 {
            self.vacuum_step(None, Checkpoint::Truncate).await?;
            free = self.free_pages().await?;
        }
        Ok(start - free)
    }
}
