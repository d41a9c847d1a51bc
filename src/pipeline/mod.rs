//! The bridge's directions, each a pipeline built from the [`crate::runtime::Shared`] parts:
//!
//! - [`outbound`]: e-RS → PAS, the main job: poll the worklists (A008), fetch each new or
//!   changed referral version (A005, attachments, clinical information), map it and publish
//!   it with confirms, recording it only after the confirm.
//! - [`inbound`]: PAS → e-RS, consuming ACK and RRI^I12, calling e-RS back exactly once in
//!   effect, and answering the PAS with the bridge's own ACK.
//!
//! [`PipelineError`] is the error every direction's steps return, classified retryable or
//! permanent. The guide is `docs/pipeline.md`.

pub mod inbound;
pub mod outbound;

use crate::ers::ErsError;
use crate::ids::Ubrn;
use crate::mapping::MappingError;
use crate::store::StoreError;
use crate::transport::TransportError;

/// Why a pipeline step failed. Every variant about one referral names its UBRN.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// An e-RS call failed (after the client's own retries).
    #[error("ubrn {ubrn}: {source}")]
    Ers {
        ubrn: Ubrn,
        #[source]
        source: ErsError,
    },
    /// A worklist call failed.
    #[error("worklist {list} of service {service}: {source}")]
    Worklist {
        service: String,
        list: &'static str,
        #[source]
        source: ErsError,
    },
    /// The store failed while handling one referral.
    #[error("ubrn {ubrn}: {source}")]
    Store {
        ubrn: Ubrn,
        #[source]
        source: StoreError,
    },
    /// The store failed outside any one referral (a worklist's bookkeeping, the mapping
    /// hash).
    #[error("store: {0}")]
    StoreGeneral(#[from] StoreError),
    /// A mapping file could not be loaded or compiled.
    #[error("mapping: {0}")]
    Mapping(#[source] MappingError),
    /// The way to the PAS failed for a referral's message in a way that retrying cannot fix
    /// (or the retries were cut short).
    #[error("ubrn {ubrn}: {source}")]
    Transport {
        ubrn: Ubrn,
        #[source]
        source: Box<TransportError>,
    },
    /// The referral from e-RS lacks something every message needs (e.g. a version).
    #[error("ubrn {ubrn}: {reason}")]
    BadReferral { ubrn: Ubrn, reason: String },
    /// Work was abandoned because the bridge is stopping; it is redone on the next start.
    #[error("shutting down")]
    ShuttingDown,
    /// The way to the PAS failed outside any one referral (an inbound reply).
    #[error("{0}")]
    Link(Box<TransportError>),
    /// An inbound message the bridge cannot answer (its own reply would not encode).
    #[error("inbound message: {0}")]
    BadMessage(String),
    /// The task handling one referral panicked or was cancelled; the referral is retried.
    #[error("ubrn {ubrn}: referral task {}", if *panicked { "panicked" } else { "was cancelled" })]
    TaskFailed { ubrn: Ubrn, panicked: bool },
}

impl PipelineError {
    /// Whether the same step may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Ers { source, .. } | PipelineError::Worklist { source, .. } => {
                source.is_retryable()
            }
            PipelineError::Store { source, .. } | PipelineError::StoreGeneral(source) => {
                source.is_retryable()
            }
            PipelineError::Mapping(e) => e.is_retryable(),
            PipelineError::Transport { source, .. } => source.is_retryable(),
            PipelineError::Link(source) => source.is_retryable(),
            PipelineError::BadMessage(_) => false,
            PipelineError::BadReferral { .. } => false,
            PipelineError::ShuttingDown | PipelineError::TaskFailed { .. } => true,
        }
    }

    /// Whether the work was refused because its lease passed to another instance (this
    /// process was paused or cut off past it): not an outage, and said as what it is.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            PipelineError::Store {
                source: StoreError::Fenced { .. },
                ..
            } | PipelineError::StoreGeneral(StoreError::Fenced { .. })
        )
    }

    /// A store failure while handling `ubrn`.
    pub fn store(ubrn: &Ubrn) -> impl FnOnce(StoreError) -> Self + '_ {
        move |source| PipelineError::Store {
            ubrn: ubrn.clone(),
            source,
        }
    }

    /// An e-RS failure while handling `ubrn`.
    pub fn ers(ubrn: &Ubrn) -> impl FnOnce(ErsError) -> Self + '_ {
        move |source| PipelineError::Ers {
            ubrn: ubrn.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ubrn() -> Ubrn {
        Ubrn::parse("000000070000").unwrap()
    }

    #[test]
    fn classification() {
        let bad = PipelineError::BadReferral {
            ubrn: ubrn(),
            reason: "no version".into(),
        };
        assert!(!bad.is_retryable());
        assert!(PipelineError::ShuttingDown.is_retryable());
        let unknown = PipelineError::Transport {
            ubrn: ubrn(),
            source: Box::new(TransportError::ShuttingDown),
        };
        assert!(
            unknown.is_retryable(),
            "an undelivered message is sent again"
        );
        let mapping = PipelineError::Mapping(MappingError::Missing {
            field: "PID-3".into(),
            name: "NHS number".into(),
        });
        assert!(!mapping.is_retryable(), "bad data is parked, not retried");
    }

    #[test]
    fn errors_name_the_referral() {
        let panicked = PipelineError::TaskFailed {
            ubrn: ubrn(),
            panicked: true,
        };
        assert_eq!(
            panicked.to_string(),
            "ubrn 000000070000: referral task panicked"
        );
        assert!(panicked.is_retryable());
        let store = PipelineError::store(&ubrn())(StoreError::WriterGone);
        assert_eq!(
            store.to_string(),
            "ubrn 000000070000: the store writer has stopped"
        );
    }
}
