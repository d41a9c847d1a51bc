//! The inbound side of the store: each PAS message by its MSH-10 (the idempotency key),
//! with its raw HL7 (the PAS's bytes, base64, payload kind `in64`), the decision, the e-RS
//! action's intent and result, every attempt of the e-RS call, the reply sent to the PAS,
//! and store-scheduled retries.
//!
//! Exactly once in effect: [`Store::inbound_begin_hashed`] inserts the message with a hash
//! of its bytes or finds it (a redelivery or a resend with the same MSH-10; the hash tells
//! a copy from another message reusing the id); the intent (action, UBRN, version sent, and
//! the [`Decision`] behind it) is written **before** the e-RS call
//! ([`Store::inbound_intent`]) and the result after it ([`Store::inbound_finish`]); the
//! delivery is acked only after that. A message found in `intent` was interrupted between
//! the call and the record: the pipeline acts on the stored decision, re-reading the
//! referral to find whether the write was applied, instead of deciding or writing again.
//! The exact bytes of the reply sent to the PAS are kept ([`Store::inbound_store_reply`],
//! a `reply` payload) so a resend of the message gets the same reply again.
//!
//! Retries of transient e-RS failures are rows in `retry` with a due time; any instance
//! claims a due row with a lease ([`Store::inbound_claim_due`]), so two bridges never run
//! the same retry at once and nothing lives only in memory.

use sqlx::Row;

use super::{OpContext, PublishedMessage, Store, StoreError};
use crate::ids::{ControlId, Ubrn, Version};

/// Where an inbound message is in its handling (`inbound_messages.status`). The one place
/// these strings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundStatus {
    /// Stored, not decided yet.
    Received,
    /// The e-RS call is about to be made (or was made and its result not recorded).
    Intent,
    /// A transient failure: waits for `next_attempt_ms`.
    Retry,
    /// The e-RS action was applied (or found applied).
    Done,
    /// Nothing to do in e-RS (a commit ACK, a pending RRI).
    NoAction,
    /// e-RS will not take it from us (state, auth mode, missing data): a person must act.
    NeedsAction,
    /// Unreadable or unroutable: sent to the dead letter with the reason.
    DeadLettered,
    /// A needs-action record a person closed (`ers-bridge needs-action resolve`).
    Resolved,
}

impl InboundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InboundStatus::Received => "received",
            InboundStatus::Intent => "intent",
            InboundStatus::Retry => "retry",
            InboundStatus::Done => "done",
            InboundStatus::NoAction => "no-action",
            InboundStatus::NeedsAction => "needs-action",
            InboundStatus::DeadLettered => "dead-lettered",
            InboundStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "received" => InboundStatus::Received,
            "intent" => InboundStatus::Intent,
            "retry" => InboundStatus::Retry,
            "done" => InboundStatus::Done,
            "no-action" => InboundStatus::NoAction,
            "needs-action" => InboundStatus::NeedsAction,
            "dead-lettered" => InboundStatus::DeadLettered,
            "resolved" => InboundStatus::Resolved,
            _ => return None,
        })
    }

    /// No more work will happen on it (a redelivery only re-acknowledges).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            InboundStatus::Done
                | InboundStatus::NoAction
                | InboundStatus::NeedsAction
                | InboundStatus::DeadLettered
                | InboundStatus::Resolved
        )
    }
}

/// One inbound message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRecord {
    pub control_id: ControlId,
    pub received_at_ms: i64,
    /// MSH-9 as `RRI^I12`.
    pub message_type: String,
    pub ubrn: Option<Ubrn>,
    pub status: InboundStatus,
    /// The action decided (`accept`, `reject`, ...), once decided.
    pub action: Option<String>,
    /// The `If-Match` version of the last e-RS call.
    pub version_sent: Option<Version>,
    /// Why (the decision, the e-RS result or error), for people.
    pub detail: Option<String>,
    /// MSA-1 of the reply sent to the PAS.
    pub reply_code: Option<String>,
    pub attempts: i64,
    pub next_attempt_ms: Option<i64>,
    /// The raw HL7 as text for people (bytes that are not UTF-8 shown lossily); `None`
    /// once retention pruned it.
    pub hl7: Option<String>,
    /// The PAS's exact bytes (kind `in64`, base64 in `payloads`; a row stored before
    /// bytes were kept has its text's bytes): what a retry reads, decoding with MSH-18.
    pub hl7_bytes: Option<Vec<u8>>,
    /// A hash of the message's bytes (`None` for rows stored before it was kept).
    pub body_hash: Option<String>,
    /// The referral's e-RS state the stored decision was made on.
    pub decided_state: Option<String>,
    /// A hash of the action decided, once an e-RS write was intended.
    pub decision_hash: Option<String>,
}

/// The decision behind an e-RS write, stored with its intent: a message interrupted after
/// it acts on this decision again, and a later message whose decision hashes the same on
/// the same state is a resend of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The referral's e-RS state the decision table was applied to (`None`: decided
    /// without it).
    pub state: Option<String>,
    /// A hash of the action decided (its kind and every value it sends).
    pub hash: String,
}

/// What [`Store::inbound_begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First time this MSH-10 is seen: stored as received.
    New,
    /// Seen before (a redelivery or a resend).
    Seen(Box<InboundRecord>),
}

/// One e-RS call made for an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub operation: String,
    pub version: Option<Version>,
    /// `None` when no response came (a timeout, a reset).
    pub http_status: Option<u16>,
    pub ers_code: Option<String>,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub at_ms: i64,
}

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
    /// sent in `If-Match` and the decision behind them.
    pub async fn inbound_intent(
        &self,
        control_id: &ControlId,
        ubrn: &Ubrn,
        action: &str,
        version: Version,
        decision: &Decision,
        new_attempt: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE inbound_messages SET status = $2, ubrn = $3, action = $4, version_sent = $5, \
             decided_state = $6, decision_hash = $7, attempts = attempts + $8, \
             next_attempt_ms = NULL WHERE control_id = $1",
        )
        .bind(control_id.as_str())
        .bind(InboundStatus::Intent.as_str())
        .bind(ubrn.as_str())
        .bind(action)
        .bind(version.as_i64())
        .bind(decision.state.as_deref())
        .bind(decision.hash.as_str())
        .bind(i64::from(new_attempt))
        .execute(&self.pool)
        .await
        .op("inbound_intent")?;
        Ok(())
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
        sqlx::query(
            "INSERT INTO inbound_attempts (control_id, attempt, operation, version, http_status, \
             ers_code, correlation_id, request_id, at_ms) \
             VALUES ($1, (SELECT COUNT(*) + 1 FROM inbound_attempts WHERE control_id = $1), \
             $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(control_id.as_str())
        .bind(&attempt.operation)
        .bind(attempt.version.map(Version::as_i64))
        .bind(attempt.http_status.map(i64::from))
        .bind(attempt.ers_code.as_deref())
        .bind(attempt.correlation_id.as_deref())
        .bind(attempt.request_id.as_deref())
        .bind(attempt.at_ms)
        .execute(&self.pool)
        .await
        .op("inbound_attempt")?;
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

    /// Records how the message ended (done, no action, needs action, dead-lettered), why,
    /// its UBRN when known, and the MSA-1 of the reply sent to the PAS.
    pub async fn inbound_finish(
        &self,
        control_id: &ControlId,
        status: InboundStatus,
        ubrn: Option<&Ubrn>,
        action: Option<&str>,
        detail: &str,
        reply_code: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE inbound_messages SET status = $2, ubrn = COALESCE($3, ubrn), \
             action = COALESCE($4, action), detail = $5, reply_code = $6, next_attempt_ms = NULL, \
             finished_at_ms = $7 WHERE control_id = $1",
        )
        .bind(control_id.as_str())
        .bind(status.as_str())
        .bind(ubrn.map(Ubrn::as_str))
        .bind(action)
        .bind(detail)
        .bind(reply_code)
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(&self.pool)
        .await
        .op("inbound_finish")?;
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
        let body = to_base64(reply);
        let mut tx = self.pool.begin().await.op(OP)?;
        sqlx::query("DELETE FROM payloads WHERE kind = 'reply' AND ref_id = $1")
            .bind(control_id.as_str())
            .execute(&mut *tx)
            .await
            .op(OP)?;
        super::insert_payload("reply", control_id.as_str(), now_ms, &body)
            .execute(&mut *tx)
            .await
            .op(OP)?;
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
        sqlx::query(concat!(
            "UPDATE inbound_messages SET next_attempt_ms = $2 WHERE control_id IN ",
            "(SELECT control_id FROM inbound_messages WHERE status = $3 AND next_attempt_ms <= $1 ",
            "ORDER BY next_attempt_ms LIMIT $4) ",
            "AND status = $3 AND next_attempt_ms <= $1 RETURNING ",
            columns!()
        ))
        .bind(now_ms)
        .bind(now_ms + lease_ms)
        .bind(InboundStatus::Retry.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .op(OP)?
        .iter()
        .map(|r| inbound_from_row(r, OP))
        .collect()
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

/// Bytes as a `payloads.body` (base64: the column is text on both databases, and the PAS's
/// bytes or our reply's may be in any MSH-18 charset).
fn to_base64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

/// The bytes [`to_base64`] stored; a body that is not base64 is a decode error of `op`.
fn from_base64(op: &'static str, body: &str) -> Result<Vec<u8>, StoreError> {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body)
        .map_err(|e| StoreError::decode(op, e))
}

fn inbound_from_row(r: &sqlx::any::AnyRow, op: &'static str) -> Result<InboundRecord, StoreError> {
    let b64: Option<String> = r.try_get("hl7_b64").op(op)?;
    let text: Option<String> = r.try_get("hl7").op(op)?;
    let hl7_bytes = match b64 {
        Some(b) => Some(from_base64(op, &b)?),
        None => text.map(String::into_bytes),
    };
    let hl7 = hl7_bytes
        .as_deref()
        .map(|b| String::from_utf8_lossy(b).into_owned());
    let control_id: String = r.try_get("control_id").op(op)?;
    let ubrn: Option<String> = r.try_get("ubrn").op(op)?;
    let status: String = r.try_get("status").op(op)?;
    let version: Option<i64> = r.try_get("version_sent").op(op)?;
    Ok(InboundRecord {
        control_id: ControlId::parse(&control_id).map_err(|e| StoreError::decode(op, e))?,
        received_at_ms: r.try_get("received_at_ms").op(op)?,
        message_type: r.try_get("message_type").op(op)?,
        ubrn: ubrn
            .map(|u| Ubrn::parse(&u))
            .transpose()
            .map_err(|e| StoreError::decode(op, e))?,
        status: InboundStatus::parse(&status)
            .ok_or_else(|| StoreError::decode(op, format!("unknown inbound status {status:?}")))?,
        action: r.try_get("action").op(op)?,
        version_sent: version
            .map(Version::from_i64)
            .transpose()
            .map_err(|e| StoreError::decode(op, e))?,
        detail: r.try_get("detail").op(op)?,
        reply_code: r.try_get("reply_code").op(op)?,
        attempts: r.try_get("attempts").op(op)?,
        next_attempt_ms: r.try_get("next_attempt_ms").op(op)?,
        hl7,
        hl7_bytes,
        body_hash: r.try_get("body_hash").op(op)?,
        decided_state: r.try_get("decided_state").op(op)?,
        decision_hash: r.try_get("decision_hash").op(op)?,
    })
}
