//! The outbound pipeline, the bridge's main job: poll the provider worklists (A008), fetch
//! each new or changed referral version (A005, attachments with A042/A006, optionally the
//! clinical information PDF with A007), map it through the configured mapping and publish it
//! to RabbitMQ with publisher confirms, recording it in the store only after the confirm.
//!
//! - [`outbound`]: [`Pipeline`], the handling of one referral version and
//!   [`Pipeline::replay`].
//! - [`poll`]: one pass over the worklists ([`Pipeline::poll_once`], lists concurrently,
//!   referrals as tasks under one concurrency limit, one task per UBRN) and
//!   [`Pipeline::drain`].
//! - [`recorder`]: group commit of confirmed versions, one store transaction per batch.
//! - [`mapset`]: the compiled mappings by event and the mapping-folder hash.
//! - [`fetch`]: the referral's attachments, clinical information and related documents.
//! - [`schedule`]: one timer per configured service and list, and the app-restricted budget.
//! - [`report`]: [`Outcome`], [`PassReport`] and the [`Event`]s observers subscribe to.
//! - [`refdata`]: the A004 reference data cache, refreshed daily.
//! - [`shutdown`]: the [`Shutdown`] signal shared by every task.
//! - [`app`]: [`App::build`] (all set-up, failing early) and [`App::run_until_stopped`].
//!
//! Event choice: a referral version never published for its UBRN gives REF^I12 (the
//! `new_referral` mapping, preceded by the `patient` mapping when configured); a higher version
//! of a UBRN already published gives REF^I13 (`changed_referral`); a cancelled referral gives
//! REF^I14 (`cancelled_referral`). Cancelled referrals leave the worklists, so a UBRN that
//! disappears from a list is re-read with A005 to find out why.
//!
//! Delivery semantics are those of [`crate::store`]: at-least-once with a stable MSH-10 (the
//! mapping's control id depends only on UBRN, version and event). A referral that cannot be
//! mapped is parked with its reason and does not hold the others back; `ers-bridge replay`
//! or a change to the mapping files retries it. The guide is `docs/pipeline.md`.

pub mod app;
pub mod fetch;
pub mod mapset;
pub mod outbound;
pub mod poll;
pub mod recorder;
pub mod refdata;
pub mod report;
pub mod schedule;
pub mod shutdown;

pub use app::{App, AppError, DrainSummary};
pub use outbound::{Mappings, Pipeline, PipelineSettings, PollTarget};
pub use report::{Event, Outcome, PassReport};
pub use shutdown::Shutdown;

use crate::amqp::AmqpError;
use crate::ers::ErsError;
use crate::mapping::MappingError;
use crate::store::StoreError;

/// Why a pipeline step failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// An e-RS call failed (after the client's own retries).
    #[error("ubrn {ubrn}: {source}")]
    Ers {
        ubrn: String,
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
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A mapping file could not be loaded or compiled.
    #[error("mapping: {0}")]
    Mapping(#[source] MappingError),
    /// The broker refused in a way that retrying cannot fix.
    #[error("broker: {0}")]
    Amqp(#[from] AmqpError),
    /// The referral from e-RS lacks something every message needs (e.g. a version).
    #[error("ubrn {ubrn}: {reason}")]
    BadReferral { ubrn: String, reason: String },
    /// Work was abandoned because the bridge is stopping; it is redone on the next start.
    #[error("shutting down")]
    ShuttingDown,
    /// The task handling one referral panicked or was cancelled; the referral is retried.
    #[error("{0}")]
    TaskFailed(String),
}

impl PipelineError {
    /// Whether the same step may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            PipelineError::Ers { source, .. } | PipelineError::Worklist { source, .. } => {
                source.is_retryable()
            }
            PipelineError::Store(e) => e.is_retryable(),
            PipelineError::Mapping(e) => e.is_retryable(),
            PipelineError::Amqp(e) => e.is_retryable(),
            PipelineError::BadReferral { .. } => false,
            PipelineError::ShuttingDown | PipelineError::TaskFailed(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let bad = PipelineError::BadReferral {
            ubrn: "000000070000".into(),
            reason: "no version".into(),
        };
        assert!(!bad.is_retryable());
        assert!(PipelineError::ShuttingDown.is_retryable());
        let nacked = PipelineError::Amqp(AmqpError::Nacked {
            message_id: "x".into(),
        });
        assert!(nacked.is_retryable(), "a nack is retried");
        let mapping = PipelineError::Mapping(MappingError::Missing {
            field: "PID-3".into(),
            name: "NHS number".into(),
        });
        assert!(!mapping.is_retryable(), "bad data is parked, not retried");
    }
}
