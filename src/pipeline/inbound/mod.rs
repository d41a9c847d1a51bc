//! The inbound pipeline, PAS → e-RS: each message the PAS sends (an ACK to one of ours, or
//! an RRI^I12 with its decision) is read with the guarded reader, stored by its MSH-10,
//! correlated with the referral, decided by the decision table (`mappings/inbound.toml`)
//! and, for a decision e-RS must hear, turned into exactly one effective e-RS write
//! ([`execute`]). The PAS gets the bridge's own HL7 ACK for every RRI; what cannot be read
//! is a dead letter with its reason.
//!
//! [`Inbound::process`] is the transport-neutral core: it takes an [`Hl7In`], records
//! everything, and **returns** the [`Answer`] (what became of the message, and the reply to
//! put on the wire) without sending anything. [`Inbound::handle_in`] is `process` followed
//! by the answer's delivery through the deployment's [`crate::transport::PasLink`] (the
//! AMQP consumer's path, and [`Inbound::handle`] for a bare body); a synchronous transport
//! (MLLP) writes the reply on its own connection instead. The caller acks the delivery only
//! after either returns `Ok`. Replies that come later (a retry that ends, a reply whose
//! send failed) go through the link from the retry loop. A
//! redelivery or a resend with the same MSH-10 makes no second e-RS call: a copy of a
//! message still in flight waits for it ([`inflight`]), the store decides
//! (`store/inbound.rs`), and a copy of a message handled before gets the stored reply
//! again, byte for byte; an MSH-10 reused for a different body is refused. A message
//! interrupted after its decision acts on the stored decision, never on one made again
//! from the state our own write produced. A transient e-RS failure is scheduled in the
//! store and retried by [`Inbound::retry_due`], so it never holds the queue.

mod correlate;
mod execute;
mod inflight;
mod loops;
mod reply;
mod retry;
mod version;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::backoff::Backoff;
use crate::events::{InboundHandled, ReplySent};
use crate::hl7::ack::summarise;
use crate::hl7::reply::Reply;
use crate::hl7::{read_with_limit, Inbound as InboundMsg, Message, Ubrn};
use crate::ids::ControlId;
use crate::mapping::{Action, DecisionTable};
use crate::runtime::Shared;
use crate::store::{Begin, Decision, Ending, InboundRecord, InboundStatus};
use crate::transport::Hl7In;

pub use execute::Outcome as ExecuteOutcome;
pub use loops::spawn_loops;
use reply::refusal;
pub use reply::{reply_control_id, AckOut};

use super::PipelineError;

/// The inbound pipeline's settings.
#[derive(Debug, Clone)]
pub struct InboundSettings {
    /// The largest message read; larger ones are dead-lettered.
    pub max_message_bytes: usize,
    /// Waits between retries of a transient e-RS failure.
    pub retry: Backoff,
    /// Transient failures tried before the decision becomes a needs-action record.
    pub max_attempts: u32,
}

/// What became of one inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Not readable HL7: on the dead letter with this reason.
    DeadLettered { reason: String },
    /// Its MSH-10 was handled before (or waits for a retry): nothing done again; the
    /// stored reply, when there is one, sent again.
    Duplicate { status: InboundStatus },
    /// Its MSH-10 was used before for a different body: refused with an AE, nothing
    /// written.
    IdReused { why: String },
    /// Nothing to do in e-RS (a commit ACK, a pending RRI).
    NoAction { why: String },
    /// The e-RS action is applied (now, or found applied).
    Done { action: String },
    /// e-RS will not take it from us, or the message lacks what the action needs: kept as
    /// a needs-action record, the PAS told.
    NeedsAction { why: String },
    /// A transient failure: tried again at `due_ms` from the store.
    RetryScheduled { due_ms: i64 },
}

impl Handled {
    /// The outcome as a metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::DeadLettered { .. } => "dead_lettered",
            Self::Duplicate { .. } => "duplicate",
            Self::IdReused { .. } => "id_reused",
            Self::NoAction { .. } => "no_action",
            Self::Done { .. } => "done",
            Self::NeedsAction { .. } => "needs_action",
            Self::RetryScheduled { .. } => "retry",
        }
    }
}

/// What [`Inbound::process`] answers for one message: what became of it and the reply
/// the PAS gets for it now (none for an ACK from the PAS, a message waiting for a retry, or
/// one that cannot be read: a dead letter, whose reason is in `handled`).
#[derive(Debug, Clone)]
pub struct Answer {
    pub handled: Handled,
    pub reply: Option<AckOut>,
}

/// The inbound direction: shared by the transports' listeners and the retry loop.
pub struct Inbound {
    shared: Arc<Shared>,
    table: Arc<DecisionTable>,
    settings: InboundSettings,
    /// The MSH-10s being handled now: a second copy waits for the first.
    in_flight: inflight::InFlight,
    /// The reply each message in hand produced, by the PAS's MSH-10 (one handling per
    /// MSH-10 at a time: `in_flight`), taken when its handling returns.
    outbox: std::sync::Mutex<std::collections::HashMap<ControlId, AckOut>>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Inbound {
    pub fn new(shared: Arc<Shared>, table: Arc<DecisionTable>, settings: InboundSettings) -> Self {
        Self {
            shared,
            table,
            settings,
            in_flight: inflight::InFlight::default(),
            outbox: std::sync::Mutex::default(),
        }
    }

    /// The signal the transports' listeners stop on.
    pub fn shutdown(&self) -> &crate::runtime::Shutdown {
        &self.shared.shutdown
    }

    /// The event hub this direction reports to.
    pub fn events(&self) -> &crate::events::Events {
        &self.shared.events
    }

    /// Handles one message body and delivers the answer through the deployment's link
    /// (tests, the demo). `Err` means nothing was decided (the store or the link is down):
    /// leave the delivery unacked for a later try.
    pub async fn handle(&self, body: &[u8], now: DateTime<Utc>) -> Result<Handled, PipelineError> {
        self.handle_in(&Hl7In::new(body), now).await
    }

    /// [`Inbound::process`], then the answer delivered through the deployment's link: the
    /// reply sent (a failed send is recorded and sent again by the retry loop), a dead
    /// letter handed on with its reason and kept in the store.
    pub async fn handle_in(
        &self,
        input: &Hl7In,
        now: DateTime<Utc>,
    ) -> Result<Handled, PipelineError> {
        let answer = self.process(input, now).await?;
        if let Handled::DeadLettered { reason } = &answer.handled {
            self.shared
                .pas
                .dead_letter(input, ("unreadable", reason))
                .await
                .map_err(|e| PipelineError::Link(Box::new(e)))?;
            self.keep_dead_letter(input, "unreadable", reason).await?;
        }
        if let Some(reply) = &answer.reply {
            self.send_reply(reply, now).await?;
        }
        Ok(answer.handled)
    }

    /// Handles one message from the PAS and returns what became of it with the reply to
    /// send, sending nothing: everything the answer says is recorded before it returns
    /// (the reply's bytes too, so a resend of the message gets the same bytes), except a
    /// dead letter, which the transport hands on and keeps ([`Inbound::keep_dead_letter`]).
    /// `Err` means nothing was decided (the store is down): the PAS should send it again.
    pub async fn process(
        &self,
        input: &Hl7In,
        now: DateTime<Utc>,
    ) -> Result<Answer, PipelineError> {
        let started = std::time::Instant::now();
        let body = input.bytes.as_slice();
        let (message, msg) = match self.read(body) {
            Ok(m) => m,
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(error = %reason, "inbound message is not readable hl7, dead-lettered");
                let handled = Handled::DeadLettered { reason };
                self.emit(None, &handled, started);
                return Ok(Answer {
                    handled,
                    reply: None,
                });
            }
        };
        let handled = self.handle_read(&message, &msg, body, now).await;
        // Taken whatever the outcome, so an error leaves nothing behind for a later copy.
        let reply = self.take_reply(&msg.control_id);
        let handled = handled?;
        self.emit(Some(&msg), &handled, started);
        Ok(Answer { handled, reply })
    }

    /// Puts the reply a message produced in its slot, for [`Inbound::process`] to return.
    fn post_reply(&self, about: &ControlId, reply: AckOut) {
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        outbox.insert(about.clone(), reply);
    }

    fn take_reply(&self, about: &ControlId) -> Option<AckOut> {
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        outbox.remove(about)
    }

    async fn handle_read(
        &self,
        message: &Message,
        msg: &InboundMsg,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Handled, PipelineError> {
        let message_type = format!("{}^{}", msg.message_type, msg.event);
        let hash = sha256_hex(body);
        // A copy of a message still being handled (a redelivery after a channel loss, a
        // resend before our reply) waits here for the first copy's outcome, found below.
        let _handling = self.handling(&msg.control_id).await?;
        let store = &self.shared.store;
        let seen = match store
            .inbound_begin_hashed(
                &msg.control_id,
                &message_type,
                body,
                Some(&hash),
                now.timestamp_millis(),
            )
            .await?
        {
            Begin::New => return self.decide_and_act(msg, message, None, now).await,
            Begin::Seen(r) => r,
        };
        // The same MSH-10 on another body is another message: refused, nothing written.
        // (A row stored before bodies were hashed has no hash and counts as the same.)
        if seen.body_hash.as_deref().is_some_and(|h| h != hash) {
            return self.refuse_reused_id(msg, message, &hash, now).await;
        }
        if seen.status.is_final() {
            let resent = self.resend_reply(msg, &seen).await?;
            tracing::info!(control_id = %msg.control_id, status = seen.status.as_str(), reply_resent = resent, "inbound message seen before, nothing done again");
            return Ok(Handled::Duplicate {
                status: seen.status,
            });
        }
        if seen.status == InboundStatus::Retry {
            // The reply goes out once, when the retry ends.
            tracing::info!(control_id = %msg.control_id, "inbound message seen before, waits for its retry");
            return Ok(Handled::Duplicate {
                status: seen.status,
            });
        }
        // Received, or interrupted at the intent (the bridge stopped mid-way): carry on,
        // acting on the stored decision when there is one (the execute step re-reads the
        // referral before writing again).
        self.decide_and_act(msg, message, Some(&seen), now).await
    }

    /// Marks the message as being handled here, waiting first for a copy already in
    /// flight (unless the bridge stops first).
    async fn handling<'a>(
        &'a self,
        control_id: &ControlId,
    ) -> Result<inflight::Handling<'a>, PipelineError> {
        tokio::select! {
            biased;
            h = self.in_flight.take(control_id) => Ok(h),
            () = self.shared.shutdown.wait() => Err(PipelineError::ShuttingDown),
        }
    }

    /// Counts and logs what became of one message.
    fn emit(&self, msg: Option<&InboundMsg>, handled: &Handled, started: std::time::Instant) {
        self.shared.events.emit(InboundHandled {
            control_id: msg.map(|m| m.control_id.clone()),
            ubrn: msg.and_then(|m| m.referral.as_ref()?.ubrn.clone()),
            kind: match msg {
                None => "unreadable",
                Some(m) if m.referral.is_some() => "rri",
                Some(_) => "ack",
            },
            outcome: handled.outcome(),
            took: started.elapsed(),
        });
    }

    /// Reads a PAS message once: the message (for the reply) and its summary.
    fn read(&self, body: &[u8]) -> Result<(Message, InboundMsg), crate::hl7::InboundError> {
        let message = read_with_limit(body, self.settings.max_message_bytes)?;
        let msg = summarise(&message)?;
        Ok((message, msg))
    }

    /// Decides and acts on one message; `stored` is its row when it was stored before (a
    /// retry, or a message interrupted mid-way), whose decision, when it has one, is acted
    /// on again rather than made again.
    async fn decide_and_act(
        &self,
        msg: &InboundMsg,
        message: &Message,
        stored: Option<&InboundRecord>,
        now: DateTime<Utc>,
    ) -> Result<Handled, PipelineError> {
        let store = &self.shared.store;
        let is_rri = msg.referral.is_some();
        let (ubrn, acked_ref) = match self.correlate(msg).await? {
            Ok(found) => found,
            Err((why, rf1, msa)) => {
                // Both referrals' timelines show the refused decision.
                store.inbound_other_ubrn(&msg.control_id, &msa).await?;
                let reply =
                    is_rri.then(|| refusal("not sent to e-RS", "RF1", Some(6), "204", why.clone()));
                return self
                    .finish_needs_action(msg, message, Some(&rf1), &why, reply, now)
                    .await;
            }
        };
        // An RRI about a referral is worked on under its claim (never beside an outbound
        // fetch of it). The referral is read (A005) only when the decision needs it: a rule
        // on its e-RS state, or an e-RS write (whose If-Match the same read serves); a
        // pending RRI costs no e-RS call.
        let ubrn_for_rri = ubrn.as_ref().filter(|_| is_rri);
        let claim = match ubrn_for_rri {
            Some(u) => Some(self.claim(u).await?),
            None => None,
        };
        // Another instance may have handled this message (a copy of it) while this one
        // waited for the claim: what the store holds now is what counts.
        let fresh;
        let stored = match claim.as_ref().filter(|c| c.fence().is_some()) {
            Some(_) => {
                fresh = store.inbound(&msg.control_id).await?;
                // Final, or waiting for a retry this handling is not (a copy's).
                let was_retry = stored.is_some_and(|s| s.status == InboundStatus::Retry);
                if let Some(r) = fresh.as_ref().filter(|r| {
                    r.status.is_final() || (r.status == InboundStatus::Retry && !was_retry)
                }) {
                    let resent = self.resend_reply(msg, r).await?;
                    tracing::info!(control_id = %msg.control_id, status = r.status.as_str(), reply_resent = resent, "inbound message handled by another instance meanwhile");
                    return Ok(Handled::Duplicate { status: r.status });
                }
                fresh.as_ref().or(stored)
            }
            None => stored,
        };
        let needs_read =
            self.table.depends_on_state(msg) || self.table.decide(msg).kind().operation().is_some();
        let read = match ubrn_for_rri.filter(|_| needs_read) {
            Some(u) => match self.shared.ers.for_decision().referral(u, None).await {
                Ok(r) => Some(r),
                Err(e) if e.is_retryable() => {
                    store
                        .inbound_attempt(&msg.control_id, &execute::failed_read(&e))
                        .await?;
                    return self
                        .schedule_retry(msg, message, u, e.to_string(), now)
                        .await;
                }
                Err(e) => {
                    store
                        .inbound_attempt(&msg.control_id, &execute::failed_read(&e))
                        .await?;
                    let why = format!("e-RS does not give referral {u}: {e}");
                    let code = if e.status() == Some(404) {
                        "204"
                    } else {
                        "207"
                    };
                    let reply = refusal("not sent to e-RS", "RF1", Some(6), code, why.clone());
                    return self
                        .finish_needs_action(msg, message, Some(u), &why, Some(reply), now)
                        .await;
                }
            },
            None => None,
        };
        let state = read
            .as_ref()
            .and_then(|r| r.resource.state().map(|c| c.code().to_string()));
        // A message interrupted after its decision (found at its intent, or waiting for a
        // retry of its write) acts on what was decided, on the state it was decided on:
        // the state now may be the one our own write produced.
        let resumed = stored.filter(|r| r.decision_hash.is_some());
        let (action, decided_state) = match resumed {
            Some(r) => {
                let action = self.table.decide_with(msg, r.decided_state.as_deref());
                if r.decision_hash.as_deref() != Some(decision_hash(&action).as_str()) {
                    let why = "the decision table changed while this decision was in flight: \
                               check the referral in e-RS before deciding again"
                        .to_string();
                    let reply = refusal(
                        "not sent to e-RS: needs review",
                        "",
                        None,
                        "207",
                        why.clone(),
                    );
                    return self
                        .finish_needs_action(msg, message, ubrn.as_ref(), &why, Some(reply), now)
                        .await;
                }
                (action, r.decided_state.clone())
            }
            None => (self.table.decide_with(msg, state.as_deref()), state),
        };
        match &action {
            Action::NoAction { why } => {
                let reply = is_rri.then(|| Reply::accept(why.clone()));
                let end = Ending::NoAction {
                    ubrn: ubrn.as_ref(),
                    why,
                };
                self.finish((msg, message), reply, end, now).await?;
                Ok(Handled::NoAction { why: why.clone() })
            }
            Action::Review { why, fault } => {
                // The part of the message at fault when it is the message's; else the
                // bridge does not act on this by itself (207).
                let (segment, field, code) = match fault {
                    Some(f) => (f.segment, Some(f.field), f.code),
                    None => ("", None, "207"),
                };
                let reply = is_rri.then(|| {
                    refusal(
                        "not sent to e-RS: needs review",
                        segment,
                        field,
                        code,
                        why.clone(),
                    )
                });
                self.finish_needs_action(msg, message, ubrn.as_ref(), why, reply, now)
                    .await
            }
            _ => {
                let Some(ubrn) = ubrn else {
                    let why = "the decision needs a UBRN and the message names none".to_string();
                    let reply = refusal("not sent to e-RS", "RF1", Some(6), "101", why.clone());
                    return self
                        .finish_needs_action(msg, message, None, &why, Some(reply), now)
                        .await;
                };
                // The same decision under another MSH-10 (the PAS resent it): recognised
                // by deciding this message on the state the other was decided on, whatever
                // state our write moved the referral to since.
                let earlier = self.shared.store.inbound_for(&ubrn).await?;
                let same = self.same_decision(msg, &earlier);
                // Another copy still in flight (waiting for a retry of its write, or
                // interrupted at its intent): this one waits for its outcome, never
                // writes beside it. A message with a decision of its own does not wait.
                if resumed.is_none() {
                    if let Some((other, _)) = same.iter().find(|(r, _)| {
                        matches!(r.status, InboundStatus::Retry | InboundStatus::Intent)
                    }) {
                        let why = format!(
                            "waiting for message {} carrying the same decision",
                            other.control_id
                        );
                        return self.schedule_retry(msg, message, &ubrn, why, now).await;
                    }
                }
                // Applied for a message handled before, and the referral has not changed
                // since our write or still shows the effect: answered as applied, not
                // written again. (A later decision on a changed referral is acted on.)
                // Asked only when there is such a message.
                let any_done = same.iter().any(|(r, _)| r.status == InboundStatus::Done);
                let unchanged_since_our_write = match read.as_ref().and_then(|r| r.version) {
                    Some(v) if any_done => self
                        .shared
                        .store
                        .is_own_write(&ubrn, v)
                        .await
                        .map_err(PipelineError::store(&ubrn))?,
                    _ => false,
                };
                let applied = same.iter().find(|(r, action)| {
                    r.status == InboundStatus::Done
                        && (unchanged_since_our_write
                            || read.as_ref().is_some_and(|read| {
                                execute::already_applied(action, &read.resource)
                            }))
                });
                if let Some((first, applied_action)) = applied {
                    let name = execute::action_name(applied_action);
                    let detail = format!(
                        "{name} already applied for message {} (a resend): not written again",
                        first.control_id
                    );
                    let end = Ending::Done {
                        ubrn: &ubrn,
                        action: name,
                        detail: &detail,
                    };
                    let reply = Some(Reply::accept(detail.clone()));
                    self.finish((msg, message), reply, end, now).await?;
                    tracing::info!(ubrn = %ubrn, control_id = %msg.control_id, action = name, "resent pas decision already applied");
                    return Ok(Handled::Done {
                        action: name.to_string(),
                    });
                }
                let decision = Decision {
                    state: decided_state,
                    hash: decision_hash(&action),
                };
                let m = execute::ForMessage {
                    control_id: &msg.control_id,
                    prior: stored,
                    acked: msg.acked_control_id.as_ref(),
                    acked_ref: acked_ref.as_ref(),
                    claim: claim.as_ref(),
                };
                self.act((msg, message), m, &ubrn, (&action, &decision), read, now)
                    .await
            }
        }
    }

    /// Runs the e-RS action decided (the caller holds the referral's claim), with the
    /// decision it came from, and records how it ended.
    async fn act(
        &self,
        (msg, message): (&InboundMsg, &Message),
        m: execute::ForMessage<'_>,
        ubrn: &Ubrn,
        (action, decision): (&Action, &Decision),
        read: Option<crate::ers::Versioned<crate::fhir::ReferralRequest>>,
        now: DateTime<Utc>,
    ) -> Result<Handled, PipelineError> {
        let outcome = execute::run(&self.shared, m, ubrn, action, decision, read, now).await;
        let name = execute::action_name(action);
        match outcome? {
            execute::Outcome::Applied { detail } => {
                let end = Ending::Done {
                    ubrn,
                    action: name,
                    detail: &detail,
                };
                let reply = Some(Reply::accept(detail.clone()));
                self.finish((msg, message), reply, end, now).await?;
                tracing::debug!(ubrn = %ubrn, control_id = %msg.control_id, action = name, "pas decision applied in e-rs");
                Ok(Handled::Done {
                    action: name.to_string(),
                })
            }
            execute::Outcome::Refused {
                why,
                segment,
                field,
                code,
            } => {
                let reply = refusal("not applied in e-RS", segment, field, code, why.clone());
                self.finish_needs_action(msg, message, Some(ubrn), &why, Some(reply), now)
                    .await
            }
            execute::Outcome::Transient { why } => {
                self.schedule_retry(msg, message, ubrn, why, now).await
            }
        }
    }

    async fn finish_needs_action(
        &self,
        msg: &InboundMsg,
        message: &Message,
        ubrn: Option<&Ubrn>,
        why: &str,
        reply: Option<Reply>,
        now: DateTime<Utc>,
    ) -> Result<Handled, PipelineError> {
        let end = Ending::NeedsAction { ubrn, why };
        self.finish((msg, message), reply, end, now).await?;
        tracing::warn!(control_id = %msg.control_id, why, "pas message needs action");
        Ok(Handled::NeedsAction {
            why: why.to_string(),
        })
    }
}

/// A hash of a message's bytes (SHA-256, hex): tells a copy of a message from another
/// message reusing its MSH-10.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// A hash of a decided action (its kind and every value it sends), stored with the intent.
fn decision_hash(action: &Action) -> String {
    // An enum of strings, codes and flags: serialising it cannot fail.
    sha256_hex(&serde_json::to_vec(action).unwrap_or_default())
}
