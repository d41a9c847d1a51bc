//! Transient e-RS failures, retried from the store: a decision that could not be applied
//! yet is scheduled with backoff (`status = retry`, `next_attempt_ms`), and
//! [`Inbound::retry_due`] runs the ones due, claimed with a lease so another instance does
//! not run the same one. Past `[inbound] max_attempts` it becomes a needs-action record.
//! A retry that ends sends its reply through the deployment's link (the PAS's message was
//! answered by nothing when it was scheduled).

use chrono::{DateTime, Utc};

use super::reply::refusal;
use super::{Handled, Inbound, PipelineError};
use crate::hl7::{Inbound as InboundMsg, Message, Ubrn};
use crate::store::{InboundRecord, InboundStatus};

impl Inbound {
    /// Runs the retries due now (claimed in the store with a lease, so another instance
    /// does not run the same one). Returns what became of each.
    pub async fn retry_due(&self, now: DateTime<Utc>) -> Result<Vec<Handled>, PipelineError> {
        let lease_ms = 60_000;
        let due = self
            .shared
            .store
            .inbound_claim_due(now.timestamp_millis(), lease_ms, 16)
            .await?;
        let mut out = Vec::with_capacity(due.len());
        for r in due {
            out.push(self.retry_one(&r, now).await?);
        }
        Ok(out)
    }

    /// Runs one message's retry now, whatever its due time (`needs-action retry`, after
    /// the record was put back in `retry`); `None` when there is no such message.
    pub async fn retry_now(
        &self,
        control_id: &crate::hl7::ControlId,
        now: DateTime<Utc>,
    ) -> Result<Option<Handled>, PipelineError> {
        match self.shared.store.inbound(control_id).await? {
            Some(r) => self.retry_one(&r, now).await.map(Some),
            None => Ok(None),
        }
    }

    /// One retry, and the reply it ends with sent through the link.
    async fn retry_one(
        &self,
        claimed: &InboundRecord,
        now: DateTime<Utc>,
    ) -> Result<Handled, PipelineError> {
        let _handling = self.handling(&claimed.control_id).await?;
        let handled = self.retry_handled(claimed, now).await;
        // Taken whatever the outcome, so an error leaves nothing behind.
        let reply = self.take_reply(&claimed.control_id);
        let handled = handled?;
        if let Some(reply) = &reply {
            self.send_reply(reply, now).await?;
        }
        Ok(handled)
    }

    async fn retry_handled(
        &self,
        claimed: &InboundRecord,
        now: DateTime<Utc>,
    ) -> Result<Handled, PipelineError> {
        // Read again under the message's mark: a try still running past its lease, or a
        // copy handled meanwhile, may have finished it.
        let r = match self.shared.store.inbound(&claimed.control_id).await? {
            Some(r) if r.status == InboundStatus::Retry => r,
            // A retry interrupted mid-way (the process stopped after the intent): carry
            // on as the first handling of a redelivered message would.
            Some(r) if matches!(r.status, InboundStatus::Intent | InboundStatus::Received) => r,
            // Finished, its reply's publish failed: send the stored bytes.
            Some(r) if r.status.is_final() && r.next_attempt_ms.is_some() => {
                return self.send_pending_reply(&r, now).await;
            }
            Some(r) => return Ok(Handled::Duplicate { status: r.status }),
            None => {
                return Ok(Handled::Duplicate {
                    status: claimed.status,
                })
            }
        };
        // Stored text that cannot be acted on any more ends the retries as a record for a
        // person (a message left in `retry` would be claimed again after every lease).
        let read = match &r.hl7_bytes {
            None => Err("the message text was pruned before its retry".to_string()),
            Some(bytes) => self.read(bytes).map_err(|e| e.to_string()),
        };
        let (message, msg) = match read {
            Ok(m) => m,
            Err(why) => {
                let end = crate::store::Ending::NeedsAction {
                    ubrn: None,
                    why: &why,
                };
                self.shared
                    .store
                    .inbound_end(&r.control_id, &end, None, now.timestamp_millis())
                    .await?;
                return Ok(Handled::NeedsAction { why });
            }
        };
        let started = std::time::Instant::now();
        let handled = self.decide_and_act(&msg, &message, Some(&r), now).await?;
        self.emit(Some(&msg), &handled, started);
        Ok(handled)
    }

    /// After a transient failure: a retry from the store with backoff, or, past the
    /// attempts allowed, a needs-action record and an AE.
    pub(super) async fn schedule_retry(
        &self,
        msg: &InboundMsg,
        message: &Message,
        ubrn: &Ubrn,
        why: String,
        now: DateTime<Utc>,
    ) -> Result<Handled, PipelineError> {
        let store = &self.shared.store;
        let attempts = store
            .inbound(&msg.control_id)
            .await?
            .map_or(1, |r| r.attempts.max(1));
        if attempts >= i64::from(self.settings.max_attempts) {
            let why = format!("gave up after {attempts} attempts: {why}");
            let reply = refusal("not applied in e-RS", "", None, "207", why.clone());
            return self
                .finish_needs_action(msg, message, Some(ubrn), &why, Some(reply), now)
                .await;
        }
        let wait = self.settings.retry.delay_random(attempts as u32);
        let due_ms = now.timestamp_millis() + wait.as_millis() as i64;
        store
            .inbound_schedule_retry(&msg.control_id, due_ms, &why)
            .await?;
        tracing::warn!(ubrn = %ubrn, control_id = %msg.control_id, retry_in_ms = wait.as_millis() as u64, error = %why, "pas decision not applied yet, retry scheduled");
        Ok(Handled::RetryScheduled { due_ms })
    }
}
