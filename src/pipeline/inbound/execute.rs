//! One PAS decision as one effective e-RS write: read the referral (A005) for its current
//! version, record the intent, call with `If-Match`, record the attempt and the result.
//!
//! - The version written is the one the PAS decided on (the REF MSA-2 acknowledges, else
//!   the latest REF published for the UBRN); a referral that moved on since is written
//!   with its current version only when every newer version is the bridge's own write,
//!   and otherwise refused (no write, a needs-action record and an AE).
//! - 409/423 (the version moved, or e-RS holds a lock): re-read (through the rule above)
//!   and try again, at most [`MAX_CONFLICTS`] times.
//! - A message found at its intent (the bridge stopped between the call and the record),
//!   or whose last call got no answer or a 5xx (applied, response lost?), first asks the
//!   referral whether the write was applied ([`already_applied`]); A013's effect does not
//!   show in A005, so there a 422 to the second accept counts as applied.
//! - 5xx, timeouts and 429 are [`Outcome::Transient`]: the caller schedules a retry.
//! - A refusal (422 `INVALID_REQUEST_STATE`, an auth mode that cannot write this, a comment
//!   e-RS would refuse) is [`Outcome::Refused`]: a needs-action record, the PAS told why.
//! - A028 on a deferred referral is sent only when A029 says e-RS offers it.
//!
//! The version a successful write returns is marked seen, so the next worklist poll does
//! not publish a REF^I13 echo of the PAS's own decision.

use chrono::{DateTime, Utc};

use crate::ers::capability::Operation;
use crate::ers::{rejection_input, ErsError, Versioned};
use crate::runtime::Shared;

use crate::fhir::requests::{CancelAppointmentActionLater, Priority, RecordReviewOutcome};
use crate::fhir::ReferralRequest;
use crate::hl7::{ControlId, Ubrn};

use super::version::{decided_version, moved_on};
use crate::mapping::Action;
use crate::pipeline::PipelineError;
use crate::store::{Attempt, Decision, InboundRecord, InboundStatus, PublishedMessage, Seen};

/// Re-reads after a 409/423 before giving the decision to a person.
pub const MAX_CONFLICTS: u32 = 3;

/// How one decision ended in e-RS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (by this call, or found applied by an earlier one).
    Applied { detail: String },
    /// e-RS will not take it from us; `segment`/`field` name what the PAS should look at,
    /// `code` the HL7 table 0357 code of the AE's ERR.
    Refused {
        why: String,
        segment: &'static str,
        field: Option<usize>,
        code: &'static str,
    },
    /// May succeed later.
    Transient { why: String },
}

/// The action's name as stored and logged.
pub fn action_name(a: &Action) -> &'static str {
    a.kind().name()
}

/// Whether the referral already shows the action's effect (a write made before a crash,
/// or for an earlier message carrying the same decision).
pub(super) fn already_applied(a: &Action, r: &ReferralRequest) -> bool {
    let state = r.state().map(|c| c.code()).unwrap_or_default();
    match a {
        Action::Reject { .. } => state == "REJECTED",
        // Still awaiting a review: not applied, whatever an older outcome says.
        Action::RecordReviewOutcome { outcome, .. } => {
            !matches!(state, "AWAITING_TRIAGE" | "DEFERRED_TO_PROVIDER")
                && r.state_reason().map(|c| c.code()) == Some(outcome.code())
        }
        // e-RS records A022 as the review outcome CANCEL_APPOINTMENT_ACTION_LATER (the
        // official response: TRIAGED_PROVIDER_TO_ACTION with that reason).
        Action::CancelActionLater { .. } => {
            r.state_reason().map(|c| c.code()) == Some("CANCEL_APPOINTMENT_ACTION_LATER")
        }
        _ => false,
    }
}

/// A refusal that is the bridge's limit, not the message's fault (table 0357 `207`).
fn refused(why: impl Into<String>) -> Outcome {
    Outcome::Refused {
        why: why.into(),
        segment: "",
        field: None,
        code: "207",
    }
}

/// The PAS message a write is for: its MSH-10, its stored row when it was stored before
/// this handling (a retry, a message interrupted mid-way; `None` for a new one), and the
/// message of ours its MSA-2 acknowledges, as the store holds it (`acked_ref`) when
/// MSA-2 names one.
pub struct ForMessage<'a> {
    pub control_id: &'a ControlId,
    pub prior: Option<&'a InboundRecord>,
    pub acked: Option<&'a ControlId>,
    pub acked_ref: Option<&'a PublishedMessage>,
    /// The referral's claim the write is made under: checked before the write, its fence
    /// carried by the intent.
    pub claim: Option<&'a crate::cluster::Claim<'a>>,
}

/// Performs `action` for the PAS message `m`; `decision` is what it was decided from,
/// stored with the intent; `first_read` is the referral as just read for the decision
/// (read again when absent, and after a conflict).
pub async fn run(
    shared: &Shared,
    m: ForMessage<'_>,
    ubrn: &Ubrn,
    action: &Action,
    decision: &Decision,
    first_read: Option<Versioned<ReferralRequest>>,
    now: DateTime<Utc>,
) -> Result<Outcome, PipelineError> {
    let control_id = m.control_id;
    // A&G answers (A026/A027) are not sent from the inbound pipeline yet.
    let op = action.kind().operation().filter(|op| {
        matches!(
            op,
            Operation::A013 | Operation::A014 | Operation::A022 | Operation::A028
        )
    });
    let Some(op) = op else {
        return Ok(refused(format!(
            "{} is not sent to e-RS by this bridge yet",
            action_name(action)
        )));
    };
    if !shared.ers.allows(op) {
        return Ok(refused(format!(
            "{op} is not allowed in {} mode; a user-restricted session must perform it",
            shared.ers.mode().name()
        )));
    }
    let store = &shared.store;
    // A write may have happened without our knowing: the bridge stopped between the call
    // and the record (status still `intent`), or the last call's answer never came or was
    // a 5xx (the write may have been applied and its response lost). A message new to
    // this handling has made no call.
    let interrupted = match m.prior {
        None => false,
        Some(r) if r.status == InboundStatus::Intent => true,
        Some(_) => store
            .inbound_attempts(control_id)
            .await?
            .into_iter()
            .rev()
            // The last write call (a failed read is in the timeline too, and wrote nothing).
            .find(|a| a.operation == op.id())
            .is_some_and(|a| a.http_status.is_none_or(|s| s >= 500)),
    };
    let name = action_name(action);
    // An interrupted write was checked against the decided version before its call; the
    // version it may have produced is not marked yet, so it goes by the stored decision.
    let decided = if interrupted {
        None
    } else {
        decided_version(shared, ubrn, (m.acked, m.acked_ref)).await?
    };
    let mut conflicts = 0;
    let mut first_read = first_read;
    loop {
        let read = match first_read.take() {
            Some(r) => r,
            None => match shared.ers.for_decision().referral(ubrn, None).await {
                Ok(r) => r,
                Err(e) => {
                    store.inbound_attempt(control_id, &failed_read(&e)).await?;
                    return Ok(classify(op, e, false));
                }
            },
        };
        if interrupted && already_applied(action, &read.resource) {
            return Ok(Outcome::Applied {
                detail: format!("{op} found applied (version {})", version_text(&read)),
            });
        }
        let Some(current) = read.version else {
            return Ok(refused("e-RS gave the referral without a version"));
        };
        // The write carries the version the PAS decided on; e-RS having moved on since is
        // written over only when every newer version is the bridge's own write.
        if let Some(d) = decided.filter(|d| *d != current) {
            if let Err(why) = moved_on(shared, ubrn, d, current, &read.resource).await? {
                tracing::info!(ubrn = %ubrn, decided = %d, current = %current, "referral changed in e-rs since the version the pas decided on");
                return Ok(Outcome::Refused {
                    why,
                    segment: "MSA",
                    field: Some(2),
                    code: "206",
                });
            }
        }
        let version = current;
        // A deferred referral takes A028 only while it is pending review: ask e-RS (A029)
        // which actions it offers first.
        if op == Operation::A028
            && read.resource.state().map(|c| c.code()) == Some("DEFERRED_TO_PROVIDER")
        {
            match shared.ers.for_decision().available_actions(ubrn, version).await {
                Ok(b) if b.task_codes().contains(&"RECORD_REVIEW_OUTCOME") => {}
                Ok(_) => {
                    return Ok(Outcome::Refused {
                        why: "e-RS does not offer A028 for this deferred referral (A029): it is no longer pending review".into(),
                        segment: "RF1",
                        field: Some(6),
                        code: "206",
                    })
                }
                Err(e) => return Ok(classify(Operation::A029, e, false)),
            }
        }
        // A re-read after a 409/423 belongs to the same attempt (the backoff counts
        // attempts).
        // A process paused past the referral's lease writes nothing: the intent is
        // fenced in the store, and checked here again after it, just before the call.
        let fence = m.claim.and_then(|c| c.fence());
        let lost = |f: Option<&crate::store::Fence>| {
            PipelineError::StoreGeneral(crate::store::StoreError::Fenced {
                op: "e-rs write",
                lease: f.map(|f| f.name.clone()).unwrap_or_default(),
                term: f.map_or(0, |f| f.term),
            })
        };
        if m.claim.is_some_and(|c| !c.holds()) {
            return Err(lost(fence));
        }
        store
            .inbound_intent(
                control_id,
                ubrn,
                name,
                version,
                decision,
                conflicts == 0,
                fence,
            )
            .await?;
        if m.claim.is_some_and(|c| !c.holds()) {
            return Err(lost(fence));
        }
        let correlation = uuid::Uuid::new_v4();
        let ers = shared.ers.for_decision().with_correlation_id(correlation);
        let called_at = Utc::now().timestamp_millis();
        let result = call(shared, &ers, ubrn, version, action, now).await;
        let attempt =
            |status: Option<u16>, e: Option<&ErsError>, request_id: Option<String>| Attempt {
                operation: op.id().to_string(),
                version: Some(version),
                http_status: status,
                ers_code: e.and_then(ErsError::ers_code).map(str::to_string),
                correlation_id: Some(correlation.to_string()),
                request_id: request_id.or_else(|| e.and_then(|e| e.api()?.request_id.clone())),
                at_ms: called_at,
            };
        match result {
            Ok(written) => {
                store
                    .inbound_attempt_applied(
                        control_id,
                        &attempt(Some(200), None, written.request_id.clone()),
                        written.version.map(|v| (ubrn, v)),
                        now.timestamp_millis(),
                    )
                    .await?;
                return Ok(Outcome::Applied {
                    detail: format!(
                        "{op} applied (version {} -> {})",
                        version,
                        version_text(&written)
                    ),
                });
            }
            Err(Call::Input(why)) => return Ok(why),
            Err(Call::Ers(e)) => {
                store
                    .inbound_attempt(control_id, &attempt(e.status(), Some(&e), None))
                    .await?;
                if matches!(e, ErsError::Conflict(_) | ErsError::Locked(_))
                    && conflicts < MAX_CONFLICTS
                {
                    conflicts += 1;
                    tracing::info!(ubrn = %ubrn, operation = op.id(), conflicts, "e-rs version moved or locked, re-reading");
                    continue;
                }
                // A second accept answers 422: after an interrupted accept that means the
                // first one was applied.
                if interrupted && op == Operation::A013 && e.status() == Some(422) {
                    // The version read before this call is the one that accept produced:
                    // marked as the bridge's own, as an answered write's is, so a resend
                    // of the accept is recognised as applied (an accepted referral shows
                    // nothing else that tells).
                    store
                        .mark_seen(ubrn, version, Seen::OwnWrite, now.timestamp_millis())
                        .await?;
                    return Ok(Outcome::Applied {
                        detail: "A013 found applied (a second accept is refused)".into(),
                    });
                }
                return Ok(classify(op, e, true));
            }
        }
    }
}

/// A failed A005 read of the referral, for the message's timeline.
pub(super) fn failed_read(e: &ErsError) -> Attempt {
    Attempt {
        operation: Operation::A005.id().to_string(),
        version: None,
        http_status: e.status(),
        ers_code: e.ers_code().map(str::to_string),
        correlation_id: None,
        request_id: e.api().and_then(|a| a.request_id.clone()),
        at_ms: Utc::now().timestamp_millis(),
    }
}

fn version_text<T>(v: &Versioned<T>) -> String {
    v.version.map_or_else(|| "?".into(), |v| v.to_string())
}

/// Retryable errors wait for a retry; the rest go to a person with e-RS's reason.
fn classify(op: Operation, e: ErsError, called: bool) -> Outcome {
    if e.is_retryable() {
        return Outcome::Transient { why: e.to_string() };
    }
    // Table 0357: 206 the referral (the record) is not in a state to take the decision,
    // 204 e-RS does not know it, 207 anything else (the bridge's own limits and faults).
    let (why, code) = match e.ers_code() {
        Some("INVALID_REQUEST_STATE") => (
            format!("e-RS refused {op}: the referral is no longer in a state that allows it ({e})"),
            "206",
        ),
        _ if e.status() == Some(404) => (format!("e-RS does not know the referral: {e}"), "204"),
        _ if called => (format!("e-RS refused {op}: {e}"), "207"),
        _ => (format!("reading the referral failed: {e}"), "207"),
    };
    Outcome::Refused {
        why,
        segment: if code == "207" { "" } else { "RF1" },
        field: (code != "207").then_some(6),
        code,
    }
}

/// `appointmentCancelledInPAS` (A014, A022) is required for an indirectly bookable service
/// and refused for any other, and A005 does not say which the referral is booked into: the
/// rule's value is sent, and when e-RS's 422 says it was wrong (`FIELD_NOT_PERMITTED` with
/// the flag, `VALUE_IS_REQUIRED` without it) this is the flag for the one corrected call
/// (the refused call changed nothing).
fn corrected_pas_flag(e: &ErsError, sent: Option<bool>) -> Option<Option<bool>> {
    if e.status() != Some(422) {
        return None;
    }
    match (e.ers_code(), sent) {
        (Some("FIELD_NOT_PERMITTED"), Some(_)) => Some(None),
        (Some("VALUE_IS_REQUIRED"), None) => Some(Some(true)),
        _ => None,
    }
}

/// Why a call was not made or failed.
enum Call {
    /// The decision cannot be sent as it is (a comment too long or missing, an unknown
    /// reason code): nothing was sent.
    Input(Outcome),
    Ers(ErsError),
}

async fn call(
    shared: &Shared,
    ers: &crate::ers::ErsClient,
    ubrn: &Ubrn,
    version: crate::ids::Version,
    action: &Action,
    now: DateTime<Utc>,
) -> Result<Versioned<ReferralRequest>, Call> {
    let nte = |e: ErsError| match e {
        // The only input e-RS limits that the PAS writes is the comment's length.
        ErsError::InvalidInput { reason, .. } => Call::Input(Outcome::Refused {
            why: reason,
            segment: "NTE",
            field: Some(3),
            code: "102",
        }),
        other => Call::Ers(other),
    };
    match action {
        Action::Accept { .. } => ers.accept(ubrn, version).await.map_err(Call::Ers),
        Action::Reject {
            reason_code,
            comments,
            appointment_cancelled_in_pas,
            ..
        } => {
            let comments = (!comments.is_empty()).then(|| comments.clone());
            let flag = appointment_cancelled_in_pas.then_some(true);
            let input =
                match rejection_input(ers, &shared.refdata, reason_code, comments, flag, now).await
                {
                    Ok(i) => i,
                    Err(e) if e.is_retryable() => {
                        return Err(Call::Input(Outcome::Transient { why: e.to_string() }))
                    }
                    Err(e) => {
                        use crate::ers::RejectionError as R;
                        let (segment, field, code) = match &e {
                            R::UnknownReason { .. } => ("RF1", Some(10), "103"),
                            R::CommentRequired { .. } => ("NTE", Some(3), "101"),
                            _ => ("", None, "207"),
                        };
                        return Err(Call::Input(Outcome::Refused {
                            why: e.to_string(),
                            segment,
                            field,
                            code,
                        }));
                    }
                };
            match ers.reject(ubrn, version, &input).await {
                Err(e) => match corrected_pas_flag(&e, input.appointment_cancelled_in_pas) {
                    Some(flag) => {
                        let input = crate::fhir::requests::RejectReferral {
                            appointment_cancelled_in_pas: flag,
                            ..input
                        };
                        ers.reject(ubrn, version, &input).await.map_err(nte)
                    }
                    None => Err(nte(e)),
                },
                ok => ok.map_err(nte),
            }
        }
        Action::CancelActionLater {
            comments,
            appointment_cancelled_in_pas,
            priority,
            ..
        } => {
            let input = CancelAppointmentActionLater {
                comments: comments.clone(),
                priority: priority.as_deref().and_then(|p| p.parse::<Priority>().ok()),
                appointment_cancelled_in_pas: appointment_cancelled_in_pas.then_some(true),
                attachments: Vec::new(),
            };
            match ers.cancel_action_later(ubrn, version, &input).await {
                Err(e) => match corrected_pas_flag(&e, input.appointment_cancelled_in_pas) {
                    Some(flag) => {
                        let input = CancelAppointmentActionLater {
                            appointment_cancelled_in_pas: flag,
                            ..input
                        };
                        ers.cancel_action_later(ubrn, version, &input)
                            .await
                            .map_err(nte)
                    }
                    None => Err(nte(e)),
                },
                ok => ok.map_err(nte),
            }
        }
        Action::RecordReviewOutcome {
            outcome,
            comments,
            priority,
            ..
        } => {
            // The PAS's priority when it gave one (RF1-2), else none: e-RS keeps the
            // referral's (and requires a return to the referrer to repeat it, which
            // leaving it out does).
            let input = RecordReviewOutcome {
                outcome: *outcome,
                comments: comments.clone(),
                priority: priority.as_deref().and_then(|p| p.parse::<Priority>().ok()),
                attachments: Vec::new(),
            };
            ers.record_review_outcome(ubrn, version, &input)
                .await
                .map_err(nte)
        }
        _ => Err(Call::Input(refused("not an e-RS write"))),
    }
}
