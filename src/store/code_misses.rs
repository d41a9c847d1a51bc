//! Code-table misses: each (table, code) a mapping looked up and did not find, with when it
//! was first and last seen and how often, kept for the people who fix the tables (the
//! dashboard, `status`, docs/mappings.md "Code tables"). Codes are e-RS reference codes
//! (specialty, priority ...), never patient data.

use serde::Serialize;
use sqlx::Row;

use super::{OpContext, Store, StoreError};

/// One code a table has no entry for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeMiss {
    pub table: String,
    pub code: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub count: i64,
}

impl Store {
    /// Adds `n` misses of `code` in `table`, seen first at `first_ms` and last at
    /// `last_ms` (a process's misses since its last flush, in one statement).
    pub async fn add_code_misses(
        &self,
        table: &str,
        code: &str,
        n: i64,
        first_ms: i64,
        last_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO code_misses (table_name, code, first_ms, last_ms, count) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (table_name, code) DO UPDATE SET \
             last_ms = excluded.last_ms, count = code_misses.count + excluded.count",
        )
        .bind(table)
        .bind(code)
        .bind(first_ms)
        .bind(last_ms)
        .bind(n)
        .execute(&self.pool)
        .await
        .op("add_code_misses")?;
        Ok(())
    }

    /// Counts one miss of `code` in `table` at `now_ms`.
    pub async fn record_code_miss(
        &self,
        table: &str,
        code: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.add_code_misses(table, code, 1, now_ms, now_ms).await
    }

    /// The codes missed, most recently seen first, at most `limit`, and how many in all.
    pub async fn code_misses(&self, limit: i64) -> Result<(Vec<CodeMiss>, i64), StoreError> {
        const OP: &str = "code_misses";
        let rows = sqlx::query(
            "SELECT table_name, code, first_ms, last_ms, count FROM code_misses \
             ORDER BY last_ms DESC, table_name, code LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .op(OP)?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(CodeMiss {
                    table: r.try_get("table_name").op(OP)?,
                    code: r.try_get("code").op(OP)?,
                    first_ms: r.try_get("first_ms").op(OP)?,
                    last_ms: r.try_get("last_ms").op(OP)?,
                    count: r.try_get("count").op(OP)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM code_misses")
            .fetch_one(&self.pool)
            .await
            .op(OP)?
            .try_get("n")
            .op(OP)?;
        Ok((items, total))
    }
}
