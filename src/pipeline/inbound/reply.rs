//! What the inbound pipeline sends back: the bridge's HL7 ACK to each PAS RRI (on
//! `<tenant>.ACK.<event>`, with confirms) and, for a message it cannot read, a dead letter
//! that keeps the PAS's original AMQP properties and adds the reason headers
//! `x-ers-error` / `x-ers-error-detail`.

use chrono::{DateTime, Utc};

use crate::amqp::{AmqpError, DeliveryProperties, OutboundMessage};
use crate::hl7::reply::{self, Reply, ReplyError};
use crate::hl7::{ControlId, Inbound as InboundMsg, Message};

use super::{Inbound, PipelineError};

impl Inbound {
    /// Publishes the bridge's ACK to the PAS's message (RRIs only: an ACK is never
    /// acknowledged). Returns the MSA-1 sent.
    pub(super) async fn reply(
        &self,
        msg: &InboundMsg,
        message: &Message,
        reply: Option<Reply>,
        now: DateTime<Utc>,
    ) -> Result<Option<&'static str>, PipelineError> {
        let Some(reply) = reply else { return Ok(None) };
        let control_id = reply_control_id(&msg.control_id);
        let ack = reply::build(
            message,
            &reply,
            &control_id,
            &now.format("%Y%m%d%H%M%S%z").to_string(),
        );
        let bytes = ack
            .encode()
            .map_err(|e| PipelineError::BadMessage(e.to_string()))?;
        let out = OutboundMessage::new(
            format!("{}.ACK.{}", self.settings.tenant, msg.event),
            control_id.to_string(),
            msg.control_id.to_string(),
            format!("ACK^{}", msg.event),
            String::new(),
            bytes,
        );
        self.publish(&out).await?;
        self.shared.events.emit(super::ReplySent {
            control_id: msg.control_id.clone(),
            code: reply.code.as_str(),
        });
        Ok(Some(reply.code.as_str()))
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
        let mut out = OutboundMessage::new(
            String::new(),
            String::new(),
            String::new(),
            "unknown".into(),
            String::new(),
            body.to_vec(),
        );
        out.exchange = Some(self.settings.dead_letter_exchange.clone());
        out.headers = vec![
            ("x-ers-error".into(), kind.to_string()),
            (
                "x-ers-error-detail".into(),
                detail.chars().take(500).collect(),
            ),
        ];
        out.original = original.cloned();
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
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in theirs.as_str().bytes() {
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
    }
}
