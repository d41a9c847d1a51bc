//! The A014 rejection rules, shared by `ers-bridge ers reject` and the inbound pipeline: the
//! reason must be a current `PROVIDER_REJECT` concept of A004
//! `APPOINTMENT-CANCELLATION-REASON` (effective dates honoured), a comment is required
//! where the concept says `commentIsMandatory`, and the reason coding carries the code
//! system's URL. The A004 data comes through the shared [`RefDataCache`], so a PAS feed of
//! rejections does not spend the rate limit on reference data.

use chrono::{DateTime, Utc};

use super::{ErsClient, ErsError, Operation, RefDataCache};
use crate::fhir::requests::RejectReferral;
use crate::fhir::Coding;

/// The A004 code system of rejection reasons.
pub const REJECTION_REASONS: &str = "APPOINTMENT-CANCELLATION-REASON";

/// Why a rejection cannot be sent as asked.
#[derive(Debug, thiserror::Error)]
pub enum RejectionError {
    /// The auth mode cannot call A014 at all (checked before the A004 look-up).
    #[error(transparent)]
    NotAllowed(ErsError),
    /// The A004 look-up failed.
    #[error("a004 {REJECTION_REASONS}: {0}")]
    ReferenceData(#[source] ErsError),
    /// The code system came without a `url` for the reason coding.
    #[error("a004 {REJECTION_REASONS} has no url")]
    NoSystemUrl,
    /// Not a current rejection reason; `current` lists the ones that are.
    #[error("{code} is not a current rejection reason; use one of {}", current.join(", "))]
    UnknownReason { code: String, current: Vec<String> },
    /// The reason requires a comment and none was given.
    #[error("rejection reason {code} needs a comment")]
    CommentRequired { code: String },
}

impl RejectionError {
    /// Only a failed A004 look-up may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::ReferenceData(e) if e.is_retryable())
    }
}

/// The A014 body for rejecting with the reason `code` at `now`, checked against A004.
pub async fn rejection_input(
    ers: &ErsClient,
    refdata: &RefDataCache,
    code: &str,
    comments: Option<String>,
    appointment_cancelled_in_pas: Option<bool>,
    now: DateTime<Utc>,
) -> Result<RejectReferral, RejectionError> {
    if !ers.allows(Operation::A014) {
        return Err(RejectionError::NotAllowed(ErsError::NotAllowed {
            operation: Operation::A014,
            mode: ers.mode(),
        }));
    }
    let cs = refdata
        .get(ers, REJECTION_REASONS)
        .await
        .map_err(RejectionError::ReferenceData)?;
    let reasons = cs.rejection_reasons(now);
    let Some(concept) = reasons.iter().find(|r| r.code == code) else {
        return Err(RejectionError::UnknownReason {
            code: code.to_string(),
            current: reasons.iter().map(|r| r.code.clone()).collect(),
        });
    };
    if concept.comment_is_mandatory() && comments.as_deref().is_none_or(str::is_empty) {
        return Err(RejectionError::CommentRequired {
            code: code.to_string(),
        });
    }
    let system = cs.url.clone().ok_or(RejectionError::NoSystemUrl)?;
    Ok(RejectReferral {
        reason: Coding::new(system, code.to_string()),
        comments,
        appointment_cancelled_in_pas,
    })
}
