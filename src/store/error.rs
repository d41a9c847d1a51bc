//! The store boundary's error, classified retryable (connection trouble) or permanent.

use thiserror::Error;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database could not be reached or opened.
    #[error("cannot connect to the store: {0}")]
    Connect(#[source] sqlx::Error),
    /// A schema migration failed; the store is left at the previous version.
    #[error("store migration {version} failed: {source}")]
    Migrate {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    /// A statement of `op` (the store method, e.g. `seen_versions`) failed.
    #[error("store {op} failed: {source}")]
    Query {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A stored value is not what the store writes (e.g. a UBRN that is not 12 digits):
    /// the database was edited by hand or by another program.
    #[error("store {op}: bad stored value: {reason}")]
    Decode { op: &'static str, reason: String },
    /// A group-committed write failed; every version in the batch gets this copy of the
    /// cause (see [`StoreError::for_batch`]).
    #[error("recording a batch of {versions} version(s) failed: {reason}")]
    Batch {
        versions: usize,
        reason: String,
        retryable: bool,
    },
    /// The task writing batches has stopped (the runtime is shutting down).
    #[error("the store writer has stopped")]
    WriterGone,
    /// A write under a lease this process no longer holds (it expired and may be
    /// another instance's now): refused, so a process that paused past its lease changes
    /// nothing (docs/ha.md).
    #[error("store {op} refused: lease {lease} (term {term}) is no longer held")]
    Fenced {
        op: &'static str,
        lease: String,
        term: i64,
    },
}

impl StoreError {
    pub(crate) fn connect(e: sqlx::Error) -> Self {
        StoreError::Connect(e)
    }

    pub(crate) fn decode(op: &'static str, e: impl std::fmt::Display) -> Self {
        StoreError::Decode {
            op,
            reason: e.to_string(),
        }
    }

    /// The error each caller of a failed batch of `versions` sees.
    pub fn for_batch(&self, versions: usize) -> Self {
        StoreError::Batch {
            versions,
            reason: self.to_string(),
            retryable: self.is_retryable(),
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Batch { retryable, .. } => *retryable,
            StoreError::WriterGone => true,
            // Another instance has the work now; this one may take it again later.
            StoreError::Fenced { .. } => true,
            StoreError::Connect(_) => true,
            StoreError::Migrate { .. } => false,
            StoreError::Decode { .. } => false,
            StoreError::Query { source: e, .. } => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            ),
        }
    }
}

/// Names the store operation a sqlx failure happened in.
pub(crate) trait OpContext<T> {
    fn op(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> OpContext<T> for Result<T, sqlx::Error> {
    fn op(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Query { op, source })
    }
}
