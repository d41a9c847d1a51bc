//! Which referral a PAS message is about (RF1's UBRN and the message of ours MSA-2
//! names, never a guess when they differ), the per-UBRN claim a decision is worked on
//! under, and the earlier messages about the referral that carry the same decision (a
//! resend under a new MSH-10).

use super::{decision_hash, Inbound, PipelineError};
use crate::hl7::{Inbound as InboundMsg, Ubrn};
use crate::mapping::Action;
use crate::store::{InboundRecord, PublishedMessage};

impl Inbound {
    /// The other messages among `earlier` that carry the same decision as `msg`: decided
    /// on the e-RS state each was decided on, `msg` gives the action that one stored.
    /// Returns each with that action.
    pub(super) fn same_decision<'r>(
        &self,
        msg: &InboundMsg,
        earlier: &'r [InboundRecord],
    ) -> Vec<(&'r InboundRecord, Action)> {
        earlier
            .iter()
            .filter(|r| r.control_id != msg.control_id)
            .filter_map(|r| {
                let stored = r.decision_hash.as_deref()?;
                let action = self.table.decide_with(msg, r.decided_state.as_deref());
                (decision_hash(&action) == stored).then_some((r, action))
            })
            .collect()
    }

    /// The referral a message is about: MSA-2 names one of our messages (looked up in the
    /// store), RF1-6/RF1-11 name a UBRN; when both do and they differ, that is an error,
    /// never a guess. `Ok(None)`: the message names no referral (a bare ACK of something
    /// we do not know).
    /// Also returns our message MSA-2 names as the store holds it (the version the PAS
    /// decided on, [`execute`]).
    #[allow(clippy::type_complexity)]
    pub(super) async fn correlate(
        &self,
        msg: &InboundMsg,
    ) -> Result<Result<(Option<Ubrn>, Option<PublishedMessage>), (String, Ubrn, Ubrn)>, PipelineError>
    {
        let from_rf1 = msg.referral.as_ref().and_then(|r| r.ubrn.clone());
        let acked_ref = match &msg.acked_control_id {
            Some(cid) => self.shared.store.published_by_control_id(cid).await?,
            None => None,
        };
        let from_msa = match (&acked_ref, &msg.acked_control_id) {
            (Some(p), _) => Some(p.ubrn.clone()),
            (None, Some(cid)) => cid.outbound_parts().map(|(u, ..)| u),
            (None, None) => None,
        };
        Ok(match (from_rf1, from_msa) {
            (Some(a), Some(b)) if a != b => Err((
                format!("RF1 names UBRN {a} but MSA-2 acknowledges a message about UBRN {b}"),
                a,
                b,
            )),
            (Some(a), _) => Ok((Some(a), acked_ref)),
            (None, b) => Ok((b, acked_ref)),
        })
    }

    /// Waits for the per-UBRN claim (held by an outbound fetch or another PAS message about
    /// the same referral), unless the bridge stops first.
    pub(super) async fn claim<'a>(
        &'a self,
        ubrn: &Ubrn,
    ) -> Result<crate::runtime::Claim<'a>, PipelineError> {
        tokio::select! {
            c = self.shared.claims.take_when_free(ubrn) => c.map_err(PipelineError::store(ubrn)),
            () = self.shared.shutdown.wait() => Err(PipelineError::ShuttingDown),
        }
    }
}
