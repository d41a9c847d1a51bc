//! The inbound side of the store: each PAS message by its MSH-10 (the idempotency key),
//! with its raw HL7 (the PAS's bytes, base64, payload kind `in64`), the decision, the e-RS
//! action's intent and result, every attempt of the e-RS call, the reply sent to the PAS,
//! and store-scheduled retries.
//!
//! Exactly once in effect: [`Store::inbound_begin_hashed`] inserts the message with a hash
//! of its bytes or finds it (a redelivery or a resend with the same MSH-10; the hash tells
//! a copy from another message reusing the id); the intent (action, UBRN, version sent, and
//! the [`Decision`] behind it) is written **before** the e-RS call
//! ([`Store::inbound_intent`]) and the result after it ([`Store::inbound_end`], a typed [`Ending`]); the
//! delivery is acked only after that. A message found in `intent` was interrupted between
//! the call and the record: the pipeline acts on the stored decision, re-reading the
//! referral to find whether the write was applied, instead of deciding or writing again.
//! The exact bytes of the reply sent to the PAS are kept ([`Store::inbound_store_reply`],
//! a `reply` payload) so a resend of the message gets the same reply again.
//!
//! Retries, the needs-action list and the operator's actions on it are in
//! `inbound_queue.rs`.

use sqlx::Row;

use super::inbound_record::{from_base64, inbound_from_row, to_base64};
pub use super::inbound_record::{Attempt, Begin, Decision, Ending, InboundRecord, InboundStatus};
use super::{AnyQuery, OpContext, Store, StoreError};
use crate::ids::{ControlId, Ubrn, Version};

/// Every column of `inbound_messages`, as [`inbound_from_row`] reads them.
macro_rules! columns {
    () => {
        "control_id, received_at_ms, message_type, ubrn, status, action, version_sent, \
         detail, reply_code, attempts, next_attempt_ms, body_hash, decided_state, \
         decision_hash, (SELECT body FROM payloads WHERE kind = 'in' \
         AND ref_id = inbound_messages.control_id) AS hl7, (SELECT body FROM payloads \
         WHERE kind = 'in64' AND ref_id = inbound_messages.control_id) AS hl7_b64"
    };
}

/// `SELECT <every column> FROM inbound_messages <tail>`, as one literal.
macro_rules! select {
    ($tail:literal) => {
        concat!("SELECT ", columns!(), " FROM inbound_messages ", $tail)
    };
}
pub(super) use {columns, select};

impl Store {
    /// Stores a new inbound message as received, or returns the stored one when its MSH-10
    /// was seen before ([`Store::inbound_begin_hashed`] without a hash of the body).
    pub async fn inbound_begin(
        &self,
        control_id: &ControlId,
        message_type: &str,
        hl7: impl AsRef<[u8]>,
        now_ms: i64,
    ) -> Result<Begin, StoreError> {
        self.inbound_begin_hashed(control_id, message_type, hl7.as_ref(), None, now_ms)
            .await
    }

    /// Stores a new inbound message as received with `body_hash` (a hash of its bytes), or
    /// returns the stored one when its MSH-10 was seen before: the caller compares the
    /// hashes to tell a copy from another message reusing the MSH-10.
    pub async fn inbound_begin_hashed(
        &self,
        control_id: &ControlId,
        message_type: &str,
        hl7: impl AsRef<[u8]>,
        body_hash: Option<&str>,
        now_ms: i64,
    ) -> Result<Begin, StoreError> {
        const OP: &str = "inbound_begin";
        // The PAS's bytes as they came (any MSH-18 charset), base64 like a `reply`.
        let body = to_base64(hl7.as_ref());
        // The row and its payload in one transaction (one commit on this hot path); a
        // message seen before keeps what it has, so a resend after retention does not
        // bring a pruned payload back.
        let mut tx = self.pool.begin().await.op(OP)?;
        let inserted = sqlx::query(
            "INSERT INTO inbound_messages (control_id, received_at_ms, message_type, status, \
             attempts, body_hash) VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (control_id) DO NOTHING",
        )
        .bind(control_id.as_str())
        .bind(now_ms)
        .bind(message_type)
        .bind(InboundStatus::Received.as_str())
        .bind(body_hash)
        .execute(&mut *tx)
        .await
        .op(OP)?;
        if inserted.rows_affected() == 1 {
            super::insert_payload("in64", control_id.as_str(), now_ms, &body)
                .execute(&mut *tx)
                .await
                .op(OP)?;
            tx.commit().await.op(OP)?;
            return Ok(Begin::New);
        }
        tx.rollback().await.op(OP)?;
        match self.inbound(control_id).await? {
            Some(r) => Ok(Begin::Seen(Box::new(r))),
            None => Err(StoreError::decode(
                OP,
                "inbound row vanished after a conflict",
            )),
        }
    }

    /// The stored inbound message with this MSH-10.
    pub async fn inbound(
        &self,
        control_id: &ControlId,
    ) -> Result<Option<InboundRecord>, StoreError> {
        const OP: &str = "inbound";
        sqlx::query(select!("WHERE control_id = $1"))
            .bind(control_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .op(OP)?
            .as_ref()
            .map(|r| inbound_from_row(r, OP))
            .transpose()
    }

    /// Inbound messages for one referral, oldest first (its timeline): those about it, and
    /// those refused for naming it beside another (`other_ubrn`).
    pub async fn inbound_for(&self, ubrn: &Ubrn) -> Result<Vec<InboundRecord>, StoreError> {
        const OP: &str = "inbound_for";
        sqlx::query(select!(
            "WHERE ubrn = $1 OR other_ubrn = $1 ORDER BY received_at_ms, control_id"
        ))
        .bind(ubrn.as_str())
        .fetch_all(&self.pool)
        .await
        .op(OP)?
        .iter()
        .map(|r| inbound_from_row(r, OP))
        .collect()
    }

    /// Records the intent before the e-RS call: the action, the referral, the version
    /// sent in `If-Match` and the decision behind them. Under `fence` (the referral's
    /// lease, when instances share the store) the intent is written only while the lease
    /// is still this process's, in the same statement: a process that paused past its
    /// lease gets [`StoreError::Fenced`] and makes no e-RS call.
    #[allow(clippy::too_many_arguments)]
    pub async fn inbound_intent(
        &self,
        control_id: &ControlId,
        ubrn: &Ubrn,
        action: &str,
        version: Version,
        decision: &Decision,
        new_attempt: bool,
        fence: Option<&super::Fence>,
    ) -> Result<(), StoreError> {
        // A retry keeps its claim's due time through the intent: its PAS message was acked
        // when the retry was scheduled, so if this process stops before the result is
        // recorded, only the retry loop finishes it ([`Store::inbound_claim_due`] takes an
        // `intent` row whose due time has passed). A first handling has none: the broker
        // redelivers its unacked message.
        const SET: &str = "UPDATE inbound_messages SET status = $2, ubrn = $3, action = $4, \
             version_sent = $5, decided_state = $6, decision_hash = $7, \
             attempts = attempts + $8, \
             next_attempt_ms = CASE WHEN status = 'retry' THEN next_attempt_ms ELSE NULL END \
             WHERE control_id = $1";
        let sql = match fence {
            Some(_) => format!(
                "{SET} AND EXISTS (SELECT 1 FROM leases WHERE {})",
                super::leases::fence_sql(self, 9)
            ),
            None => SET.to_string(),
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(control_id.as_str())
            .bind(InboundStatus::Intent.as_str())
            .bind(ubrn.as_str())
            .bind(action)
            .bind(version.as_i64())
            .bind(decision.state.as_deref())
            .bind(decision.hash.as_str())
            .bind(i64::from(new_attempt));
        if let Some(f) = fence {
            q = q.bind(&f.name).bind(&*f.holder).bind(f.term);
        }
        let done = q.execute(&self.pool).await.op("inbound_intent")?;
        match fence {
            Some(f) if done.rows_affected() == 0 => Err(StoreError::Fenced {
                op: "inbound_intent",
                lease: f.name.clone(),
                term: f.term,
            }),
            _ => Ok(()),
        }
    }

    /// Records the second referral a message names (MSA-2's, when it differs from RF1's):
    /// the message shows on both referrals' timelines.
    pub async fn inbound_other_ubrn(
        &self,
        control_id: &ControlId,
        other: &Ubrn,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE inbound_messages SET other_ubrn = $2 WHERE control_id = $1")
            .bind(control_id.as_str())
            .bind(other.as_str())
            .execute(&self.pool)
            .await
            .op("inbound_other_ubrn")?;
        Ok(())
    }

    /// Records one e-RS call made for the message.
    pub async fn inbound_attempt(
        &self,
        control_id: &ControlId,
        attempt: &Attempt,
    ) -> Result<(), StoreError> {
        insert_attempt(control_id, attempt)
            .execute(&self.pool)
            .await
            .op("inbound_attempt")?;
        Ok(())
    }

    /// Records a write e-RS applied: the call, and the version it produced as the bridge's
    /// own (so no REF^I13 echoes it), in one transaction.
    pub async fn inbound_attempt_applied(
        &self,
        control_id: &ControlId,
        attempt: &Attempt,
        produced: Option<(&Ubrn, Version)>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "inbound_attempt_applied";
        let Some((ubrn, version)) = produced else {
            return self.inbound_attempt(control_id, attempt).await;
        };
        let mut tx = self.pool.begin().await.op(OP)?;
        insert_attempt(control_id, attempt)
            .execute(&mut *tx)
            .await
            .op(OP)?;
        super::upsert_seen(ubrn, version, super::Seen::OwnWrite, now_ms)
            .execute(&mut *tx)
            .await
            .op(OP)?;
        tx.commit().await.op(OP)?;
        Ok(())
    }

    /// The e-RS calls made for a message, in order.
    pub async fn inbound_attempts(
        &self,
        control_id: &ControlId,
    ) -> Result<Vec<Attempt>, StoreError> {
        const OP: &str = "inbound_attempts";
        let rows = sqlx::query(
            "SELECT operation, version, http_status, ers_code, correlation_id, request_id, at_ms \
             FROM inbound_attempts WHERE control_id = $1 ORDER BY attempt",
        )
        .bind(control_id.as_str())
        .fetch_all(&self.pool)
        .await
        .op(OP)?;
        rows.iter()
            .map(|r| {
                let version: Option<i64> = r.try_get("version").op(OP)?;
                let status: Option<i64> = r.try_get("http_status").op(OP)?;
                Ok(Attempt {
                    operation: r.try_get("operation").op(OP)?,
                    version: version
                        .map(Version::from_i64)
                        .transpose()
                        .map_err(|e| StoreError::decode(OP, e))?,
                    http_status: status.and_then(|s| u16::try_from(s).ok()),
                    ers_code: r.try_get("ers_code").op(OP)?,
                    correlation_id: r.try_get("correlation_id").op(OP)?,
                    request_id: r.try_get("request_id").op(OP)?,
                    at_ms: r.try_get("at_ms").op(OP)?,
                })
            })
            .collect()
    }

    /// Records how the message ended ([`Ending`]) with the reply it gets, when it gets one
    /// (its MSA-1 and exact bytes), in one transaction: kept before the reply is sent, so a
    /// resend of the message finds the outcome and gets these bytes again.
    pub async fn inbound_end(
        &self,
        control_id: &ControlId,
        end: &Ending<'_>,
        reply: Option<(&str, &[u8])>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "inbound_end";
        let code = reply.map(|(code, _)| code);
        // Finished "now" by the wall clock, as before; the reply's payload row takes the
        // caller's time.
        let finished_ms = chrono::Utc::now().timestamp_millis();
        let Some((_, bytes)) = reply else {
            end_query(control_id, end, code, finished_ms)
                .execute(&self.pool)
                .await
                .op(OP)?;
            return Ok(());
        };
        let mut tx = self.pool.begin().await.op(OP)?;
        end_query(control_id, end, code, finished_ms)
            .execute(&mut *tx)
            .await
            .op(OP)?;
        put_reply(&mut tx, control_id, bytes, now_ms).await.op(OP)?;
        tx.commit().await.op(OP)?;
        Ok(())
    }

    /// Keeps the exact bytes of the reply sent to the PAS for this message (a `reply`
    /// payload, base64, pruned by retention like the others), replacing an earlier one: a
    /// resend of the message gets these bytes again.
    pub async fn inbound_store_reply(
        &self,
        control_id: &ControlId,
        reply: &[u8],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "inbound_store_reply";
        let mut tx = self.pool.begin().await.op(OP)?;
        put_reply(&mut tx, control_id, reply, now_ms).await.op(OP)?;
        tx.commit().await.op(OP)?;
        Ok(())
    }

    /// The bytes of the reply last sent to the PAS for this message; `None` when none was
    /// sent (an ACK from the PAS, a message not finished) or retention pruned it.
    pub async fn inbound_reply(
        &self,
        control_id: &ControlId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        const OP: &str = "inbound_reply";
        let row = sqlx::query("SELECT body FROM payloads WHERE kind = 'reply' AND ref_id = $1")
            .bind(control_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .op(OP)?;
        let Some(row) = row else { return Ok(None) };
        let body: String = row.try_get("body").op(OP)?;
        from_base64(OP, &body).map(Some)
    }
}

fn end_query<'q>(
    control_id: &'q ControlId,
    end: &Ending<'q>,
    reply_code: Option<&'q str>,
    now_ms: i64,
) -> AnyQuery<'q> {
    let (ubrn, action, detail) = end.columns();
    sqlx::query(
        "UPDATE inbound_messages SET status = $2, ubrn = COALESCE($3, ubrn), \
         action = COALESCE($4, action), detail = $5, reply_code = $6, next_attempt_ms = NULL, \
         finished_at_ms = $7 WHERE control_id = $1",
    )
    .bind(control_id.as_str())
    .bind(end.status().as_str())
    .bind(ubrn.map(Ubrn::as_str))
    .bind(action)
    .bind(detail)
    .bind(reply_code)
    .bind(now_ms)
}

fn insert_attempt<'q>(control_id: &'q ControlId, attempt: &'q Attempt) -> AnyQuery<'q> {
    sqlx::query(
        "INSERT INTO inbound_attempts (control_id, attempt, operation, version, http_status, \
         ers_code, correlation_id, request_id, at_ms) \
         VALUES ($1, (SELECT COUNT(*) + 1 FROM inbound_attempts WHERE control_id = $1), \
         $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(control_id.as_str())
    .bind(attempt.operation.as_str())
    .bind(attempt.version.map(Version::as_i64))
    .bind(attempt.http_status.map(i64::from))
    .bind(attempt.ers_code.as_deref())
    .bind(attempt.correlation_id.as_deref())
    .bind(attempt.request_id.as_deref())
    .bind(attempt.at_ms)
}

/// Replaces the `reply` payload of a message with these bytes, inside `tx`.
async fn put_reply(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    control_id: &ControlId,
    reply: &[u8],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let body = to_base64(reply);
    sqlx::query("DELETE FROM payloads WHERE kind = 'reply' AND ref_id = $1")
        .bind(control_id.as_str())
        .execute(&mut **tx)
        .await?;
    super::insert_payload("reply", control_id.as_str(), now_ms, &body)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
