//! Per-minute counts for the dashboard's trends (messages to and from the PAS, e-RS calls
//! by class, 429s, dead letters, needs-action): each bridge adds what it counted in a
//! minute, so the rows of a cluster are its sum, and the dashboard draws the last hour, day
//! or week from them. Kept for [`TREND_KEEP_MS`].

use sqlx::Row;

use super::{OpContext, Store, StoreError};

/// How long per-minute counts are kept: a week for the charts, and a day to spare.
pub const TREND_KEEP_MS: i64 = 8 * 24 * 3_600_000;

impl Store {
    /// Adds `counts` (series, n) to the minute starting at `minute_ms`; zeros are skipped.
    pub async fn add_minute_counts(
        &self,
        minute_ms: i64,
        counts: &[(&str, i64)],
    ) -> Result<(), StoreError> {
        let counts: Vec<_> = counts.iter().filter(|(_, n)| *n != 0).collect();
        if counts.is_empty() {
            return Ok(());
        }
        let mut sql = String::from("INSERT INTO minute_counts (minute_ms, series, n) VALUES ");
        for i in 0..counts.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3));
        }
        sql.push_str(
            " ON CONFLICT (minute_ms, series) DO UPDATE SET n = minute_counts.n + excluded.n",
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(minute_ms);
        for (series, n) in counts {
            q = q.bind(*series).bind(*n);
        }
        q.execute(&self.pool).await.op("add_minute_counts")?;
        Ok(())
    }

    /// The counts since `from_ms`, summed into buckets of `bucket_ms` (each bucket named by
    /// its start): `(bucket_start_ms, series, n)`, oldest first. Buckets with nothing are
    /// absent (the caller fills them with zeros).
    pub async fn trend_counts(
        &self,
        from_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        const OP: &str = "trend_counts";
        let rows = sqlx::query(
            "SELECT bucket, series, CAST(SUM(n) AS BIGINT) AS n FROM \
             (SELECT (minute_ms / $2) * $2 AS bucket, series, n FROM minute_counts \
             WHERE minute_ms >= $1) b GROUP BY bucket, series ORDER BY bucket, series",
        )
        .bind(from_ms)
        .bind(bucket_ms)
        .fetch_all(&self.pool)
        .await
        .op(OP)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("bucket").op(OP)?,
                    r.try_get("series").op(OP)?,
                    r.try_get("n").op(OP)?,
                ))
            })
            .collect()
    }

    /// Deletes the counts of minutes before `before_ms`; returns how many rows went.
    pub async fn prune_minute_counts(&self, before_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM minute_counts WHERE minute_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .op("prune_minute_counts")?;
        Ok(r.rows_affected())
    }

    /// For each series, the start of the last minute it counted anything (over the days
    /// kept): "the last message to the PAS was at 02:14".
    pub async fn trend_last_seen(
        &self,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        const OP: &str = "trend_last_seen";
        let rows = sqlx::query(
            "SELECT series, MAX(minute_ms) AS last FROM minute_counts WHERE n > 0 GROUP BY series",
        )
        .fetch_all(&self.pool)
        .await
        .op(OP)?;
        rows.iter()
            .map(|r| Ok((r.try_get("series").op(OP)?, r.try_get("last").op(OP)?)))
            .collect()
    }
}
