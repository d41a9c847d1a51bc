//! What operators and the alert engine keep in the store: the dead letters (with their
//! bodies in `payloads`, for the dashboard's list and a re-drive), the alerts (one row per
//! opening, so an alert opens once and resolves once even with several bridges on one
//! store) and the operators' actions (replays and re-drives, by whom).

use sqlx::{AssertSqlSafe, Row};

use super::{AlertRow, DeadLetter, OpContext, Store, StoreError};

impl Store {
    /// Keeps a message sent to the dead-letter exchange.
    pub async fn record_dead_letter(&self, d: &DeadLetter) -> Result<(), StoreError> {
        const OP: &str = "record_dead_letter";
        let mut tx = self.pool.begin().await.op(OP)?;
        sqlx::query(
            "INSERT INTO dead_letters (id, at_ms, reason, detail, message_id) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(d.id.as_str())
        .bind(d.at_ms)
        .bind(d.reason.as_str())
        .bind(d.detail.as_str())
        .bind(d.message_id.as_deref())
        .execute(&mut *tx)
        .await
        .op(OP)?;
        if let Some(body) = &d.body_b64 {
            super::insert_payload("dead", &d.id, d.at_ms, body)
                .execute(&mut *tx)
                .await
                .op(OP)?;
        }
        tx.commit().await.op(OP)?;
        Ok(())
    }

    /// The newest dead letters first.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead_letters_where("ORDER BY at_ms DESC, id DESC LIMIT $1", |q| {
            q.bind(i64::from(limit))
        })
        .await
    }

    /// One dead letter by id.
    pub async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self
            .dead_letters_where("WHERE id = $1", |q| q.bind(id.to_string()))
            .await?
            .pop())
    }

    async fn dead_letters_where(
        &self,
        tail: &'static str,
        bind: impl FnOnce(super::AnyQuery<'_>) -> super::AnyQuery<'_>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        const OP: &str = "dead_letters";
        let sql = format!(
            "SELECT id, at_ms, reason, detail, message_id, p.body AS body_b64, redriven_at_ms \
             FROM dead_letters LEFT JOIN payloads p ON p.kind = 'dead' AND p.ref_id = id {tail}"
        );
        bind(sqlx::query(AssertSqlSafe(sql)))
            .fetch_all(&self.pool)
            .await
            .op(OP)?
            .iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get("id").op(OP)?,
                    at_ms: r.try_get("at_ms").op(OP)?,
                    reason: r.try_get("reason").op(OP)?,
                    detail: r.try_get("detail").op(OP)?,
                    message_id: r.try_get("message_id").op(OP)?,
                    body_b64: r.try_get("body_b64").op(OP)?,
                    redriven_at_ms: r.try_get("redriven_at_ms").op(OP)?,
                })
            })
            .collect()
    }

    /// Marks a dead letter re-driven; false when it was already (two operators at once).
    pub async fn mark_redriven(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE dead_letters SET redriven_at_ms = $2 WHERE id = $1 AND redriven_at_ms IS NULL",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .op("mark_redriven")?;
        Ok(r.rows_affected() == 1)
    }

    /// Takes a re-drive mark back (the message could not be sent), so it can be tried again.
    pub async fn unmark_redriven(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE dead_letters SET redriven_at_ms = NULL WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .op("unmark_redriven")?;
        Ok(())
    }

    /// Opens alert `name` unless it is open; true when this call opened it.
    pub async fn open_alert(
        &self,
        name: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        // One statement: the unique index on open alerts (migration 9) decides, so two
        // bridges evaluating the same condition open it once.
        let r = sqlx::query(
            "INSERT INTO alerts (id, name, detail, opened_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) WHERE resolved_at_ms IS NULL DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(name)
        .bind(detail)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .op("open_alert")?;
        Ok(r.rows_affected() == 1)
    }

    /// Resolves alert `name` when open; true when this call resolved it.
    pub async fn resolve_alert(&self, name: &str, now_ms: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE alerts SET resolved_at_ms = $2 WHERE name = $1 AND resolved_at_ms IS NULL",
        )
        .bind(name)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .op("resolve_alert")?;
        Ok(r.rows_affected() > 0)
    }

    /// The alerts open now, oldest first.
    pub async fn open_alerts(&self) -> Result<Vec<AlertRow>, StoreError> {
        const OP: &str = "open_alerts";
        sqlx::query(
            "SELECT name, detail, opened_at_ms, resolved_at_ms FROM alerts \
             WHERE resolved_at_ms IS NULL ORDER BY opened_at_ms",
        )
        .fetch_all(&self.pool)
        .await
        .op(OP)?
        .iter()
        .map(|r| {
            Ok(AlertRow {
                name: r.try_get("name").op(OP)?,
                detail: r.try_get("detail").op(OP)?,
                opened_at_ms: r.try_get("opened_at_ms").op(OP)?,
                resolved_at_ms: r.try_get("resolved_at_ms").op(OP)?,
            })
        })
        .collect()
    }

    /// Records what an operator did (a replay, a re-drive), by the token's name.
    pub async fn record_operator_action(
        &self,
        who: &str,
        action: &str,
        target: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO operator_actions (id, at_ms, who, action, target, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(now_ms)
        .bind(who)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(&self.pool)
        .await
        .op("record_operator_action")?;
        Ok(())
    }

    /// Operator actions on `target`, oldest first.
    pub async fn operator_actions(
        &self,
        target: &str,
    ) -> Result<Vec<(i64, String, String, String)>, StoreError> {
        const OP: &str = "operator_actions";
        sqlx::query(
            "SELECT at_ms, who, action, detail FROM operator_actions WHERE target = $1 ORDER BY at_ms",
        )
        .bind(target)
        .fetch_all(&self.pool)
        .await
        .op(OP)?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("at_ms").op(OP)?,
                r.try_get("who").op(OP)?,
                r.try_get("action").op(OP)?,
                r.try_get("detail").op(OP)?,
            ))
        })
        .collect()
    }
}
