//! The operator actions the API and the CLI share, each recorded in the store with who
//! asked: re-drive a dead letter to the inbound queue (once: the store's mark is the
//! guard, taken back if the broker does not take the message), replay referrals under
//! new control ids (or, with a dry run, say what would be replayed), and resolve or retry
//! a needs-action record.

use base64::Engine as _;
use serde::Serialize;

use crate::amqp::{AmqpError, OutboundMessage, Publisher};
use crate::ids::{ControlId, Ubrn};
use crate::pipeline::outbound::{Outcome, Pipeline};
use crate::store::{SearchFilter, Store, StoreError};

/// Why a re-drive did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("no dead letter {0}")]
    NotFound(String),
    #[error("dead letter {0}: its body was pruned by retention")]
    Pruned(String),
    #[error("dead letter {0} was already re-driven")]
    AlreadyRedriven(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot publish to the inbound queue: {0}")]
    Broker(#[from] AmqpError),
}

impl RedriveError {
    /// Trying again later may succeed (store or broker down).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Broker(_))
    }
}

/// Sends dead letter `id` back to `inbound_queue` (default exchange) with its original
/// message id and an `x-ers-redriven-from` header, and records it as `who`'s.
pub async fn redrive(
    store: &Store,
    publisher: &Publisher,
    inbound_queue: &str,
    id: &str,
    who: &str,
    now_ms: i64,
) -> Result<(), RedriveError> {
    let d = store
        .dead_letter(id)
        .await?
        .ok_or_else(|| RedriveError::NotFound(id.to_string()))?;
    let body = d
        .body_b64
        .as_deref()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .ok_or_else(|| RedriveError::Pruned(id.to_string()))?;
    if !store.mark_redriven(id, now_ms).await? {
        return Err(RedriveError::AlreadyRedriven(id.to_string()));
    }
    let out = OutboundMessage::redrive(inbound_queue, id, body, d.message_id.clone());
    if let Err(e) = publisher.publish(&out).await {
        store.unmark_redriven(id).await?;
        return Err(e.into());
    }
    let detail = format!("dead letter {} re-driven", d.reason);
    store
        .record_operator_action(who, "redrive", id, &detail, now_ms)
        .await?;
    tracing::info!(id, who, "dead letter re-driven");
    Ok(())
}

/// A needs-action record as the API and `needs-action list --json` show it.
pub fn needs_action_view(r: &crate::store::InboundRecord) -> serde_json::Value {
    serde_json::json!({
        "control_id": r.control_id.to_string(),
        "ubrn": r.ubrn.as_ref().map(ToString::to_string),
        "message_type": r.message_type,
        "action": r.action,
        "why": r.detail,
        "received_at_ms": r.received_at_ms,
        "reply_code": r.reply_code,
    })
}

/// Closes needs-action record `id` with `note` and records it as `who`'s; `false` when no
/// open record has that MSH-10.
pub async fn resolve_needs_action(
    store: &Store,
    id: &ControlId,
    note: &str,
    who: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    if !store.inbound_resolve(id, note).await? {
        return Ok(false);
    }
    store
        .record_operator_action(who, "resolve", id.as_str(), note, now_ms)
        .await?;
    tracing::info!(control_id = %id, who, "needs-action record resolved");
    Ok(true)
}

/// Puts needs-action record `id` back to be tried now (the retry loop of a running bridge
/// takes it) and records it as `who`'s; `false` when no open record has that MSH-10.
pub async fn retry_needs_action(
    store: &Store,
    id: &ControlId,
    who: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    if !store.inbound_requeue(id, now_ms).await? {
        return Ok(false);
    }
    store
        .record_operator_action(
            who,
            "retry",
            id.as_str(),
            "needs-action record tried again",
            now_ms,
        )
        .await?;
    tracing::info!(control_id = %id, who, "needs-action record queued to be tried again");
    Ok(true)
}

/// What a replay of one referral did, or (dry run) would do.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub ubrn: String,
    /// The ids of the messages replayed (or to be).
    pub replaying: Vec<String>,
    /// The event first sent; `None` when never published (processed as new).
    pub event: Option<String>,
    /// The new ids; empty on a dry run or when nothing was published.
    pub published: Vec<String>,
    /// How it ended when not published (parked, deferred ...) or why it failed.
    pub outcome: Option<String>,
    pub failed: bool,
}

/// The referrals with an outbound message matching `f` (at most 500), each once.
pub async fn ubrns_matching(store: &Store, f: &SearchFilter) -> Result<Vec<Ubrn>, StoreError> {
    let page = store
        .search(&SearchFilter {
            direction: Some("out".into()),
            limit: Some(500),
            ..f.clone()
        })
        .await?;
    let mut ubrns: Vec<Ubrn> = page
        .items
        .iter()
        .filter_map(|m| Ubrn::parse(m.ubrn.as_deref()?).ok())
        .collect();
    ubrns.sort();
    ubrns.dedup();
    Ok(ubrns)
}

/// Replays each referral's latest version under new ids (or says what it would), recording
/// each replay as `who`'s.
pub async fn replay(
    outbound: &Pipeline,
    store: &Store,
    who: &str,
    ubrns: &[Ubrn],
    dry_run: bool,
) -> Vec<ReplayReport> {
    let mut out = Vec::with_capacity(ubrns.len());
    for ubrn in ubrns {
        let mut r = ReplayReport {
            ubrn: ubrn.to_string(),
            replaying: Vec::new(),
            event: None,
            published: Vec::new(),
            outcome: None,
            failed: false,
        };
        match outbound.replay_plan(ubrn).await {
            Ok(plan) => {
                r.replaying = plan.originals;
                r.event = plan.event;
            }
            Err(e) => {
                r.outcome = Some(e.to_string());
                r.failed = true;
                out.push(r);
                continue;
            }
        }
        if dry_run {
            out.push(r);
            continue;
        }
        let now = chrono::Utc::now();
        match outbound.replay_as_new(ubrn, now).await {
            Ok(Outcome::Published(ids)) => {
                r.published = ids.iter().map(ToString::to_string).collect();
                let detail = format!(
                    "published {} replaying {}",
                    r.published.join(", "),
                    r.replaying.join(", ")
                );
                if let Err(e) = store
                    .record_operator_action(
                        who,
                        "replay",
                        ubrn.as_str(),
                        &detail,
                        now.timestamp_millis(),
                    )
                    .await
                {
                    tracing::warn!(error = %e, ubrn = %ubrn, "recording a replay failed");
                }
                tracing::info!(ubrn = %ubrn, who, "referral replayed");
            }
            Ok(Outcome::Skipped | Outcome::InProgress) => {
                r.outcome = Some("nothing to publish".into());
            }
            Ok(Outcome::Deferred) => {
                r.outcome = Some("attachments still pending in e-RS, try later".into());
                r.failed = true;
            }
            Ok(Outcome::Parked(reason)) => {
                r.outcome = Some(format!("parked again: {reason}"));
                r.failed = true;
            }
            Err(e) => {
                r.outcome = Some(e.to_string());
                r.failed = true;
            }
        }
        out.push(r);
    }
    out
}
