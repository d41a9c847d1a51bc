//! The records of the inbound side of the store: where a PAS message is in its handling
//! ([`InboundStatus`]), its stored row ([`InboundRecord`]) read from the database, the
//! decision and attempts kept with it, and how it ended ([`Ending`]).

use sqlx::Row;

use super::{OpContext, StoreError};
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

/// How an inbound message ends: one transition per final status, each carrying exactly
/// what that status records (a done message always has its UBRN and action; a dead letter
/// has neither), so no combination the record cannot mean can be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending<'a> {
    /// The e-RS action is applied (now, or found applied).
    Done {
        ubrn: &'a Ubrn,
        action: &'a str,
        detail: &'a str,
    },
    /// Nothing to do in e-RS (an ACK from the PAS, a pending RRI).
    NoAction {
        ubrn: Option<&'a Ubrn>,
        why: &'a str,
    },
    /// A person must act; `why` says what.
    NeedsAction {
        ubrn: Option<&'a Ubrn>,
        why: &'a str,
    },
}

impl Ending<'_> {
    pub fn status(&self) -> InboundStatus {
        match self {
            Ending::Done { .. } => InboundStatus::Done,
            Ending::NoAction { .. } => InboundStatus::NoAction,
            Ending::NeedsAction { .. } => InboundStatus::NeedsAction,
        }
    }

    /// The UBRN, action and detail columns.
    pub(super) fn columns(&self) -> (Option<&Ubrn>, Option<&str>, &str) {
        match *self {
            Ending::Done {
                ubrn,
                action,
                detail,
            } => (Some(ubrn), Some(action), detail),
            Ending::NoAction { ubrn, why } => (ubrn, Some("no_action"), why),
            Ending::NeedsAction { ubrn, why } => (ubrn, None, why),
        }
    }
}

/// Bytes as a `payloads.body` (base64: the column is text on both databases, and the PAS's
/// bytes or our reply's may be in any MSH-18 charset).
pub(super) fn to_base64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

/// The bytes [`to_base64`] stored; a body that is not base64 is a decode error of `op`.
pub(super) fn from_base64(op: &'static str, body: &str) -> Result<Vec<u8>, StoreError> {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body)
        .map_err(|e| StoreError::decode(op, e))
}

pub(super) fn inbound_from_row(
    r: &sqlx::any::AnyRow,
    op: &'static str,
) -> Result<InboundRecord, StoreError> {
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
