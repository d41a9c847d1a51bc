//! What the inbound pipeline sends back: the bridge's HL7 ACK to each PAS RRI (on
//! `<tenant>.ACK.<event>`, with confirms; its bytes kept in the store and sent again, the
//! same bytes, to a resend of the message), the AE refusing an MSH-10 reused for another
//! body, and, for a message it cannot read, a dead letter that keeps the PAS's original
//! AMQP properties and adds the reason headers `x-ers-error` / `x-ers-error-detail`.

use chrono::{DateTime, Utc};

use crate::amqp::{AmqpError, DeliveryProperties, Hl7Out, OutboundMessage};
use crate::hl7::ack::AckCode;
use crate::hl7::reply::{self, Reply, ReplyError};
use crate::hl7::{ControlId, Inbound as InboundMsg, Message};
use crate::store::{Finish, InboundRecord};

use super::{Handled, Inbound, PipelineError};

/// How long after a failed reply publish the retry loop sends it.
const REPLY_RESEND_MS: i64 = 5_000;

impl Inbound {
    /// Records how the message ended (`end`, whose `reply_code` is set here) together with
    /// the bytes of the bridge's ACK to it, in one transaction, then publishes the ACK (RRIs
    /// only: an ACK from the PAS is never acknowledged). Recorded first, so a redelivery
    /// after a failed publish finds the outcome and sends these bytes again.
    pub(super) async fn finish(
        &self,
        (msg, message): (&InboundMsg, &Message),
        reply: Option<Reply>,
        end: Finish<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), PipelineError> {
        let control_id = reply_control_id(&msg.control_id);
        let bytes = reply
            .as_ref()
            .map(|r| encode(message, r, &control_id, now))
            .transpose()?;
        let end = Finish {
            reply_code: reply.as_ref().map(|r| r.code.as_str()),
            ..end
        };
        self.shared
            .store
            .inbound_finish_with_reply(
                &msg.control_id,
                &end,
                bytes.as_deref(),
                now.timestamp_millis(),
            )
            .await?;
        if let (Some(reply), Some(bytes)) = (reply, bytes) {
            if let Err(e) = self.publish_reply(msg, &control_id, bytes).await {
                // Recorded but not sent: the retry loop sends the stored bytes (and a
                // delivery, returned to the queue, finds them too).
                let due = now.timestamp_millis() + REPLY_RESEND_MS;
                if let Err(s) = self
                    .shared
                    .store
                    .inbound_reply_pending(&msg.control_id, Some(due))
                    .await
                {
                    tracing::warn!(control_id = %msg.control_id, error = %s, "could not mark the unsent reply for a resend");
                }
                return Err(e);
            }
            self.shared.events.emit(super::ReplySent {
                control_id: msg.control_id.clone(),
                code: reply.code.as_str(),
            });
        }
        Ok(())
    }

    /// Sends the stored reply of a finished message whose publish failed (the retry loop).
    pub(super) async fn send_pending_reply(
        &self,
        row: &InboundRecord,
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
                self.resend_reply(&msg, row).await?;
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

    /// Sends the stored reply to a message handled before again, the same bytes (the same
    /// MSH-10 of ours): the PAS resent it because our ACK did not reach it. `false` when
    /// there is none (an ACK from the PAS is never answered; retention may have pruned it).
    pub(super) async fn resend_reply(
        &self,
        msg: &InboundMsg,
        stored: &InboundRecord,
    ) -> Result<bool, PipelineError> {
        let Some(bytes) = self.shared.store.inbound_reply(&msg.control_id).await? else {
            if stored.reply_code.is_some() {
                tracing::warn!(control_id = %msg.control_id, "the reply to a resent pas message was pruned, not sent again");
            }
            return Ok(false);
        };
        self.publish_reply(msg, &reply_control_id(&msg.control_id), bytes)
            .await?;
        if let Some(code) = stored.reply_code.as_deref().and_then(AckCode::parse) {
            self.shared.events.emit(super::ReplySent {
                control_id: msg.control_id.clone(),
                code: code.as_str(),
            });
        }
        Ok(true)
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
            self.publish_reply(msg, &control_id, bytes).await?;
            self.shared.events.emit(super::ReplySent {
                control_id: msg.control_id.clone(),
                code: reply.code.as_str(),
            });
        }
        Ok(Handled::IdReused { why })
    }

    async fn publish_reply(
        &self,
        msg: &InboundMsg,
        control_id: &ControlId,
        bytes: Vec<u8>,
    ) -> Result<(), PipelineError> {
        let out = OutboundMessage::hl7(
            &self.settings.tenant,
            Hl7Out {
                control_id: control_id.clone(),
                message_type: ("ACK".into(), msg.event.clone()),
                about: msg.control_id.to_string(),
                version: None,
                replay_of: Vec::new(),
                bytes,
            },
        );
        self.publish(&out).await
    }

    /// Sends an unreadable message to the dead-letter exchange with its reason, under
    /// the properties it came with when known.
    pub(super) async fn dead_letter(
        &self,
        body: &[u8],
        original: Option<&DeliveryProperties>,
        kind: &str,
        detail: &str,
    ) -> Result<(), PipelineError> {
        let out = OutboundMessage::dead_letter(
            &self.settings.dead_letter_exchange,
            body.to_vec(),
            (kind, detail),
            original.cloned(),
        );
        self.publish(&out).await?;
        // Kept for the dashboard's list and a re-drive (the body is pruned by retention).
        let kept = crate::store::DeadLetter {
            id: uuid::Uuid::new_v4().to_string(),
            at_ms: chrono::Utc::now().timestamp_millis(),
            reason: kind.to_string(),
            detail: detail.chars().take(500).collect(),
            message_id: original.and_then(|o| o.message_id.clone()),
            body_b64: Some(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                body,
            )),
            redriven_at_ms: None,
        };
        self.shared.store.record_dead_letter(&kept).await?;
        Ok(())
    }

    async fn publish(&self, out: &OutboundMessage) -> Result<(), PipelineError> {
        self.shared
            .publisher
            .publish(out)
            .await
            .map_err(|e: AmqpError| PipelineError::Broker(Box::new(e)))
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
