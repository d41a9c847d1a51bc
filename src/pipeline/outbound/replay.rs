//! Replay under a new control id: an operator asks for a referral's message again (the PAS
//! lost it, or the mapping was fixed). The latest version is read from e-RS, re-mapped with
//! the current mappings as the same event it first went out as, and published with new ids
//! (`<UBRN>R<nn><version>`), each carrying its original's id in `x-ers-replay-of`; the store
//! keeps both, so the timeline shows the replay beside the original and the PAS's ACK of
//! the replay correlates. A version never published (parked, say) is processed as usual.
//! The claim on the UBRN is taken first, as for any other work on the referral.

use chrono::{DateTime, Utc};

use super::handle::is_replay;
use super::{EventKind, Outcome, Pipeline};
use crate::ids::Ubrn;
use crate::pipeline::PipelineError;

/// What a replay would do or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPlan {
    pub ubrn: Ubrn,
    /// The event the version first went out as, or `None` when it never did (the replay
    /// then processes it as new).
    pub event: Option<String>,
    /// The ids of the messages being replayed.
    pub originals: Vec<String>,
}

impl Pipeline {
    /// What [`Pipeline::replay_as_new`] would do, without publishing (the dry run).
    pub async fn replay_plan(&self, ubrn: &Ubrn) -> Result<ReplayPlan, PipelineError> {
        let store = &self.shared.store;
        let messages = store
            .messages_for(ubrn)
            .await
            .map_err(PipelineError::store(ubrn))?;
        let latest = messages
            .iter()
            .filter(|m| !is_replay(&m.control_id))
            .map(|m| m.version)
            .max();
        let originals: Vec<_> = messages
            .iter()
            .filter(|m| Some(m.version) == latest && !is_replay(&m.control_id))
            .collect();
        let event = originals
            .iter()
            .find(|m| m.message_type.starts_with("REF^"))
            .map(|m| m.message_type.clone());
        Ok(ReplayPlan {
            ubrn: ubrn.clone(),
            event,
            originals: originals.iter().map(|m| m.control_id.to_string()).collect(),
        })
    }

    /// Replays the referral's latest version under new control ids (see the module
    /// header). Returns the new ids.
    pub async fn replay_as_new(
        &self,
        ubrn: &Ubrn,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let claim = tokio::select! {
            c = self.shared.claims.take_when_free(ubrn) => c.map_err(PipelineError::store(ubrn))?,
            () = self.shared.shutdown.wait() => return Err(PipelineError::ShuttingDown),
        };
        let result = claim.scope(self.replay_claimed(ubrn, now)).await;
        drop(claim);
        result
    }

    async fn replay_claimed(
        &self,
        ubrn: &Ubrn,
        now: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let store = &self.shared.store;
        let referral = self.read_latest(ubrn).await?;
        let version = referral.version;
        let messages = store
            .messages_for(ubrn)
            .await
            .map_err(PipelineError::store(ubrn))?;
        let first = messages
            .iter()
            .filter(|m| m.version == version && !is_replay(&m.control_id))
            .find(|m| m.message_type.starts_with("REF^"));
        let Some(first) = first else {
            // Never published at this version: the ordinary path decides what it needs.
            return self.replay_claimed_latest(ubrn, now).await;
        };
        let kind = match first.message_type.as_str() {
            "REF^I13" => EventKind::Changed,
            "REF^I14" => EventKind::Cancelled,
            _ => EventKind::New,
        };
        let before = messages
            .iter()
            .filter(|m| m.version < version && !is_replay(&m.control_id))
            .map(|m| m.version)
            .max();
        let done = messages
            .iter()
            .filter(|m| m.version == version && is_replay(&m.control_id))
            .count() as u32;
        self.deliver(ubrn, &referral, kind, before, now, Some(done + 1))
            .await
    }
}
