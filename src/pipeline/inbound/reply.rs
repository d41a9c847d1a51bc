//! What the inbound pipeline answers: the bridge's HL7 ACK to each PAS RRI (its bytes kept
//! in the store and answered again, the same bytes, to a resend of the message), the AE
//! refusing an MSH-10 reused for another body, and the record kept of a message it cannot
//! read (the transport hands the dead letter itself on). Replies are returned to
//! [`Inbound::process`]'s caller ([`AckOut`]); only the replies that come later (a retry
//! that ends, a send that failed) are sent from here, through the deployment's link.

use chrono::{DateTime, Utc};

use crate::hl7::ack::AckCode;
use crate::hl7::reply::{self, Reply, ReplyError};
use crate::hl7::{ControlId, Hl7Out, Inbound as InboundMsg, Message};
use crate::store::{Ending, InboundRecord};
use crate::transport::Hl7In;

use super::{Handled, Inbound, PipelineError};

/// How long after a failed reply send the retry loop sends it again.
const REPLY_RESEND_MS: i64 = 5_000;

/// The bridge's reply to one PAS message, ready for the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckOut {
    /// The PAS's MSH-10 it answers.
    pub about: ControlId,
    /// MSA-1.
    pub code: &'static str,
    /// The ACK itself (`about` is the PAS's MSH-10; its own MSH-10 is ours).
    pub out: Hl7Out,
}

impl Inbound {
    /// Records how the message ended (`end`) together with the bridge's ACK to it (its code
    /// and bytes), in one transaction, and posts the ACK for the
    /// caller to send (RRIs only: an ACK from the PAS is never acknowledged). Recorded
    /// first, so a resend of the message, or the retry loop after a failed send, finds the
    /// outcome and sends these bytes again.
    pub(super) async fn finish(
        &self,
        (msg, message): (&InboundMsg, &Message),
        reply: Option<Reply>,
        end: Ending<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), PipelineError> {
        let control_id = reply_control_id(&msg.control_id);
        let bytes = reply
            .as_ref()
            .map(|r| encode(message, r, &control_id, now))
            .transpose()?;
        let code = reply.as_ref().map(|r| r.code.as_str());
        self.shared
            .store
            .inbound_end(
                &msg.control_id,
                &end,
                code.zip(bytes.as_deref()),
                now.timestamp_millis(),
            )
            .await?;
        if let (Some(reply), Some(bytes)) = (reply, bytes) {
            let out = ack_out(msg, control_id, reply.code.as_str(), bytes);
            self.post_reply(&msg.control_id, out);
        }
        Ok(())
    }

    /// Sends a reply through the deployment's link. When the send fails the reply is
    /// marked for the retry loop to send again (its bytes are in the store), and the error
    /// returned, so the delivery the reply answers is not acked yet.
    pub(super) async fn send_reply(
        &self,
        reply: &AckOut,
        now: DateTime<Utc>,
    ) -> Result<(), PipelineError> {
        if let Err(e) = self.shared.pas.send(&reply.out).await {
            let due = now.timestamp_millis() + REPLY_RESEND_MS;
            if let Err(s) = self
                .shared
                .store
                .inbound_reply_pending(&reply.about, Some(due))
                .await
            {
                tracing::warn!(control_id = %reply.about, error = %s, "could not mark the unsent reply for a resend");
            }
            return Err(PipelineError::Link(Box::new(e)));
        }
        self.shared.events.emit(super::ReplySent {
            control_id: reply.about.clone(),
            code: reply.code,
        });
        Ok(())
    }

    /// Sends a reply its transport could not give on the spot (an MLLP answer that took
    /// longer than the PAS waits) through the deployment's link; a failed send is left to
    /// the retry loop, which sends the stored bytes again.
    pub async fn send_later(&self, reply: &AckOut) {
        if let Err(e) = self.send_reply(reply, Utc::now()).await {
            tracing::warn!(control_id = %reply.about, error = %e, "a late reply was not sent, the retry loop sends it");
        }
    }

    /// Whether the message in `input` is recorded (by its MSH-10): a commit accept may be
    /// given for it.
    pub async fn is_recorded(&self, input: &Hl7In) -> bool {
        let Ok((_, msg)) = self.read(&input.bytes) else {
            return false;
        };
        matches!(
            self.shared.store.inbound(&msg.control_id).await,
            Ok(Some(_))
        )
    }

    /// Sends the stored reply of a finished message whose send failed (the retry loop).
    pub(super) async fn send_pending_reply(
        &self,
        row: &InboundRecord,
        now: DateTime<Utc>,
    ) -> Result<Handled, PipelineError> {
        let msg = row
            .hl7_bytes
            .as_deref()
            .map(|b| self.read(b))
            .transpose()
            .ok()
            .flatten();
        match msg {
            Some((_, msg)) => {
                if let Some(reply) = self.stored_reply(&msg, row).await? {
                    self.send_reply(&reply, now).await?;
                }
            }
            None => {
                tracing::warn!(control_id = %row.control_id, "the reply to a pas message could not be sent and its text is gone: not sent");
            }
        }
        self.shared
            .store
            .inbound_reply_pending(&row.control_id, None)
            .await?;
        Ok(Handled::Duplicate { status: row.status })
    }

    /// Posts the stored reply to a message handled before again, the same bytes (the same
    /// MSH-10 of ours): the PAS resent it because our ACK did not reach it. `false` when
    /// there is none (an ACK from the PAS is never answered; retention may have pruned it).
    pub(super) async fn resend_reply(
        &self,
        msg: &InboundMsg,
        stored: &InboundRecord,
    ) -> Result<bool, PipelineError> {
        match self.stored_reply(msg, stored).await? {
            Some(reply) => {
                // The reply was owed (its first send failed): this resend is it, so the
                // retry loop must not send it a second time. A failed send marks it again.
                if stored.status.is_final() && stored.next_attempt_ms.is_some() {
                    self.shared
                        .store
                        .inbound_reply_pending(&stored.control_id, None)
                        .await?;
                }
                self.post_reply(&msg.control_id, reply);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The stored reply to a message, as it went out the first time.
    async fn stored_reply(
        &self,
        msg: &InboundMsg,
        stored: &InboundRecord,
    ) -> Result<Option<AckOut>, PipelineError> {
        let Some(bytes) = self.shared.store.inbound_reply(&msg.control_id).await? else {
            if stored.reply_code.is_some() {
                tracing::warn!(control_id = %msg.control_id, "the reply to a resent pas message was pruned, not sent again");
            }
            return Ok(None);
        };
        let code = stored
            .reply_code
            .as_deref()
            .and_then(AckCode::parse)
            .map_or("AA", |c| c.as_str());
        Ok(Some(ack_out(
            msg,
            reply_control_id(&msg.control_id),
            code,
            bytes,
        )))
    }

    /// Refuses a message whose MSH-10 was used before for a different body: an AE saying
    /// so (under a reply MSH-10 of its own, so it is never taken for the reply to the first
    /// message), no e-RS call, and nothing stored about the first message changed.
    pub(super) async fn refuse_reused_id(
        &self,
        msg: &InboundMsg,
        message: &Message,
        body_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Handled, PipelineError> {
        let why = format!(
            "MSH-10 {} was already used for a different message: not sent to e-RS; send it \
             under a new MSH-10",
            msg.control_id
        );
        tracing::warn!(control_id = %msg.control_id, "pas message reuses an msh-10 for a different body, refused");
        if msg.referral.is_some() {
            let reply = refusal(
                "not sent to e-RS: MSH-10 reused",
                "MSH",
                Some(10),
                "205",
                why.clone(),
            );
            let control_id = reply_control_id_salted(&msg.control_id, body_hash);
            let bytes = encode(message, &reply, &control_id, now)?;
            let out = ack_out(msg, control_id, reply.code.as_str(), bytes);
            self.post_reply(&msg.control_id, out);
        }
        Ok(Handled::IdReused { why })
    }

    /// Keeps a message that could not be read, with its reason, for the dashboard's list
    /// and a re-drive (its body is pruned by retention); the transport has handed the dead
    /// letter itself on.
    pub async fn keep_dead_letter(
        &self,
        input: &Hl7In,
        kind: &str,
        detail: &str,
    ) -> Result<(), PipelineError> {
        let kept = crate::store::DeadLetter {
            id: uuid::Uuid::new_v4().to_string(),
            at_ms: chrono::Utc::now().timestamp_millis(),
            reason: kind.to_string(),
            detail: detail.chars().take(500).collect(),
            message_id: input.received.delivery_id.clone(),
            body_b64: Some(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &input.bytes,
            )),
            redriven_at_ms: None,
        };
        self.shared.store.record_dead_letter(&kept).await?;
        Ok(())
    }
}

impl Inbound {
    /// For a transport that must answer on the spot (MLLP) when [`Inbound::process`]
    /// returned no reply for a readable RRI (its e-RS write waits for a retry): a commit
    /// accept, `CA`, saying the message is stored and the application ACK follows. Under a
    /// reply MSH-10 of its own, so it is never taken for that ACK. `None` for an ACK from
    /// the PAS (never acknowledged) and for what cannot be read.
    pub fn commit_accept(&self, input: &Hl7In, now: DateTime<Utc>) -> Option<Vec<u8>> {
        let (message, msg) = self.read(&input.bytes).ok()?;
        msg.referral.as_ref()?;
        let reply = Reply {
            code: AckCode::CA,
            text: "stored; the application ACK follows when e-RS has the decision".into(),
            error: None,
        };
        let control_id = reply_control_id_salted(&msg.control_id, "CA");
        encode(&message, &reply, &control_id, now).ok()
    }

    /// For a transport that must answer on the spot (MLLP): the reject, `AR`, of bytes
    /// that are not a readable HL7 message, with the reason (MSA-2 empty: there is no
    /// MSH-10 to name).
    pub fn reject_unreadable(&self, reason: &str, now: DateTime<Utc>) -> Vec<u8> {
        let why: String = reason.chars().take(200).collect();
        let reply = Reply {
            code: AckCode::AR,
            text: "not readable HL7: kept as a dead letter".into(),
            error: Some(ReplyError {
                segment: String::new(),
                field: None,
                code: "100",
                text: why.clone(),
            }),
        };
        let id = hashed_control_id(
            why.bytes()
                .chain(now.timestamp_millis().to_string().bytes()),
        );
        let empty = Message::new(crate::hl7::Delimiters::default());
        // An empty original and a fixed text: encoding cannot fail; an empty reply if it did.
        encode(&empty, &reply, &id, now).unwrap_or_default()
    }
}

/// The ACK `bytes` (under our `control_id`) answering `msg`.
fn ack_out(msg: &InboundMsg, control_id: ControlId, code: &'static str, bytes: Vec<u8>) -> AckOut {
    AckOut {
        about: msg.control_id.clone(),
        code,
        out: Hl7Out {
            control_id,
            message_type: ("ACK".into(), msg.event.clone()),
            about: msg.control_id.to_string(),
            version: None,
            replay_of: Vec::new(),
            bytes,
        },
    }
}

/// The bytes of the ACK to `message`.
fn encode(
    message: &Message,
    reply: &Reply,
    control_id: &ControlId,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, PipelineError> {
    reply::build(
        message,
        reply,
        control_id,
        &now.format("%Y%m%d%H%M%S%z").to_string(),
    )
    .encode()
    .map_err(|e| PipelineError::BadMessage(e.to_string()))
}

/// An AE reply: `text` in MSA-3, the ERR naming `segment`/`field` with a table 0357 code
/// and `why` for the PAS's people.
pub(super) fn refusal(
    text: &str,
    segment: &str,
    field: Option<usize>,
    code: &'static str,
    why: String,
) -> Reply {
    Reply::error(
        text,
        ReplyError {
            segment: segment.to_string(),
            field,
            code,
            text: why,
        },
    )
}

/// The MSH-10 of our reply: `R` and 19 digits of a hash of the PAS's MSH-10, so a reply
/// sent again carries the same id (20 characters, MSH-10's limit).
pub fn reply_control_id(theirs: &ControlId) -> ControlId {
    hashed_control_id(theirs.as_str().bytes())
}

/// The MSH-10 of the AE refusing a reused MSH-10: a hash of theirs and of the body, so it
/// differs from the reply to the first message and is the same if the refused one comes
/// again.
fn reply_control_id_salted(theirs: &ControlId, body_hash: &str) -> ControlId {
    hashed_control_id(
        theirs
            .as_str()
            .bytes()
            .chain(std::iter::once(b'|'))
            .chain(body_hash.bytes()),
    )
}

fn hashed_control_id(bytes: impl Iterator<Item = u8>) -> ControlId {
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ControlId::parse(&format!("R{:019}", h % 10_000_000_000_000_000_000))
        .expect("R and 19 digits is a valid control id")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_ids_are_stable_and_fit_msh10() {
        let a = reply_control_id(&ControlId::parse("PAS00017").unwrap());
        let b = reply_control_id(&ControlId::parse("PAS00017").unwrap());
        let c = reply_control_id(&ControlId::parse("PAS00018").unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.as_str().len(), 20);
        assert!(a.as_str().starts_with('R'));
        let reused = reply_control_id_salted(&ControlId::parse("PAS00017").unwrap(), "ab12");
        assert_ne!(reused, a, "the refusal of a reused id has an id of its own");
        assert_eq!(reused.as_str().len(), 20);
    }
}
