//! The inbound messages as a queue of work: store-scheduled retries of transient e-RS
//! failures, the needs-action list and what an operator does with it (resolve, retry),
//! the counts the monitor shows, and the look-up of the message of ours an ACK names.
//!
//! Retries are rows in `retry` with a due time; any instance claims a due row with a
//! lease ([`Store::inbound_claim_due`]), so two bridges never run the same retry at once
//! and nothing lives only in memory.

use sqlx::Row;

use super::inbound::{columns, select};
use super::inbound_record::inbound_from_row;
use super::{InboundRecord, InboundStatus, OpContext, PublishedMessage, Store, StoreError};
use crate::ids::ControlId;

impl Store {
    /// Schedules another try at `due_ms` after a transient failure. A failure before any
    /// e-RS write (reading the referral) counts as an attempt too, so every retry is bounded.
    pub async fn inbound_schedule_retry(
        &self,
        control_id: &ControlId,
        due_ms: i64,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE inbound_messages SET attempts = CASE WHEN status = 'intent' THEN attempts \
             ELSE attempts + 1 END, status = $2, next_attempt_ms = $3, detail = $4 \
             WHERE control_id = $1",
        )
        .bind(control_id.as_str())
        .bind(InboundStatus::Retry.as_str())
        .bind(due_ms)
        .bind(detail)
        .execute(&self.pool)
        .await
        .op("inbound_schedule_retry")?;
        Ok(())
    }

    /// Claims up to `limit` retries due at `now_ms` for `lease_ms`: their due time moves to
    /// the end of the lease, so another instance (or a later pass) takes one only if this
    /// one did not finish it in time. Returns the claimed messages.
    pub async fn inbound_claim_due(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<InboundRecord>, StoreError> {
        const OP: &str = "inbound_claim_due";
        // `retry` rows, finished rows whose reply is still to be sent (a publish that
        // failed after the outcome was recorded: `next_attempt_ms` set on a final row),
        // and a retry interrupted mid-way (`intent` with `next_attempt_ms` set: a retry's
        // intent keeps its claim's due time, see `inbound_intent`; its PAS message was
        // acked when the retry was scheduled, so nothing else would ever finish it: the
        // chaos run found one left unanswered after a kill during its retry).
        sqlx::query(concat!(
            "UPDATE inbound_messages SET next_attempt_ms = $2 WHERE control_id IN ",
            "(SELECT control_id FROM inbound_messages WHERE status IN ($3, $5, $6, $7, $8, $9) ",
            "AND next_attempt_ms <= $1 ORDER BY next_attempt_ms LIMIT $4) ",
            "AND next_attempt_ms <= $1 RETURNING ",
            columns!()
        ))
        .bind(now_ms)
        .bind(now_ms + lease_ms)
        .bind(InboundStatus::Retry.as_str())
        .bind(limit)
        .bind(InboundStatus::Done.as_str())
        .bind(InboundStatus::NoAction.as_str())
        .bind(InboundStatus::NeedsAction.as_str())
        .bind(InboundStatus::Intent.as_str())
        .bind(InboundStatus::Received.as_str())
        .fetch_all(&self.pool)
        .await
        .op(OP)?
        .iter()
        .map(|r| inbound_from_row(r, OP))
        .collect()
    }

    /// Marks a finished message's reply as not sent yet (its publish failed), for the
    /// retry loop to send the stored bytes from `due_ms` ([`Store::inbound_claim_due`]);
    /// `None` clears the mark once the reply is sent. Only a finished message carries it
    /// (on a `retry` row `next_attempt_ms` is the retry's own due time).
    pub async fn inbound_reply_pending(
        &self,
        control_id: &ControlId,
        due_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE inbound_messages SET next_attempt_ms = $2 WHERE control_id = $1 \
             AND status <> 'retry'",
        )
        .bind(control_id.as_str())
        .bind(due_ms)
        .execute(&self.pool)
        .await
        .op("inbound_reply_pending")?;
        Ok(())
    }

    /// The open needs-action records, oldest first.
    pub async fn inbound_needing_action(&self) -> Result<Vec<InboundRecord>, StoreError> {
        const OP: &str = "inbound_needing_action";
        sqlx::query(select!(
            "WHERE status = 'needs-action' ORDER BY received_at_ms, control_id"
        ))
        .fetch_all(&self.pool)
        .await
        .op(OP)?
        .iter()
        .map(|r| inbound_from_row(r, OP))
        .collect()
    }

    /// Closes a needs-action record with a person's note; `false` when there is no open
    /// record with that MSH-10.
    pub async fn inbound_resolve(
        &self,
        control_id: &ControlId,
        note: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE inbound_messages SET status = 'resolved', detail = detail || ' | resolved: ' || $2 \
             WHERE control_id = $1 AND status = 'needs-action'",
        )
        .bind(control_id.as_str())
        .bind(note)
        .execute(&self.pool)
        .await
        .op("inbound_resolve")?;
        Ok(r.rows_affected() == 1)
    }

    /// Puts a needs-action record back to be tried now (after the cause was fixed, or under
    /// a user-restricted session); `false` when there is no open record with that MSH-10.
    pub async fn inbound_requeue(
        &self,
        control_id: &ControlId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE inbound_messages SET status = 'retry', next_attempt_ms = $2, attempts = 0 \
             WHERE control_id = $1 AND status = 'needs-action'",
        )
        .bind(control_id.as_str())
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .op("inbound_requeue")?;
        Ok(r.rows_affected() == 1)
    }

    /// Finished inbound messages whose reply is still owed to the PAS (its publish failed
    /// and the retry loop has not sent it yet).
    pub async fn inbound_replies_owed(&self) -> Result<i64, StoreError> {
        const OP: &str = "inbound_replies_owed";
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM inbound_messages              WHERE next_attempt_ms IS NOT NULL AND status NOT IN ('received', 'intent', 'retry')",
        )
        .fetch_one(&self.pool)
        .await
        .op(OP)?;
        row.try_get("n").op(OP)
    }

    /// Inbound messages counted by (status, action, reply code), for summaries.
    pub async fn inbound_counts(
        &self,
    ) -> Result<Vec<(InboundStatus, Option<String>, Option<String>, i64)>, StoreError> {
        const OP: &str = "inbound_counts";
        let rows = sqlx::query(
            "SELECT status, action, reply_code, COUNT(*) AS n FROM inbound_messages \
             GROUP BY status, action, reply_code ORDER BY status, action, reply_code",
        )
        .fetch_all(&self.pool)
        .await
        .op(OP)?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status").op(OP)?;
                Ok((
                    InboundStatus::parse(&status).ok_or_else(|| {
                        StoreError::decode(OP, format!("unknown inbound status {status:?}"))
                    })?,
                    r.try_get("action").op(OP)?,
                    r.try_get("reply_code").op(OP)?,
                    r.try_get("n").op(OP)?,
                ))
            })
            .collect()
    }

    /// The confirmed outbound message with this MSH-10 (an ACK's MSA-2 names it).
    pub async fn published_by_control_id(
        &self,
        control_id: &ControlId,
    ) -> Result<Option<PublishedMessage>, StoreError> {
        sqlx::query(super::select_published!("WHERE control_id = $1"))
            .bind(control_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .op("published_by_control_id")?
            .as_ref()
            .map(super::versions::published_from_row)
            .transpose()
    }
}
