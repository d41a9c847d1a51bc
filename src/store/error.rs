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
    /// A query failed.
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
}

impl StoreError {
    pub(crate) fn connect(e: sqlx::Error) -> Self {
        StoreError::Connect(e)
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Connect(_) => true,
            StoreError::Migrate { .. } => false,
            StoreError::Query(e) => matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            ),
        }
    }
}
