//! The store boundary's error, classified retryable (connection trouble) or permanent.

use thiserror::Error;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database could not be reached or opened.
    #[error("cannot connect to the store: {0}{hint}", hint = fix_for(.0))]
    Connect(#[source] sqlx::Error),
    /// A schema migration failed; the store is left at the previous version.
    #[error("store migration {version} failed: {source}")]
    Migrate {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    /// A statement of `op` (the store method, e.g. `seen_versions`) failed.
    #[error("store {op} failed: {source}{hint}", hint = fix_for(source))]
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

/// What to do about a failure that is not an outage but the store refusing the bridge (a
/// login, a database that does not exist, a read-only file), as a sentence to append;
/// empty for anything else. PostgreSQL says which by SQLSTATE, SQLite by result code.
fn fix_for(e: &sqlx::Error) -> &'static str {
    let Some(code) = e.as_database_error().and_then(|d| d.code()) else {
        return "";
    };
    // PostgreSQL's SQLSTATE has five characters (often all digits, `28000`); SQLite gives
    // its (extended) result code as a number below 10,000, the primary code its low byte.
    if let (true, Ok(n)) = (code.len() < 5, code.parse::<u32>()) {
        return match n & 0xff {
            8 => " (the store file is read-only, or its directory is: the bridge must be able to write both; see [store] url)",
            10 => " (the disk refused a write: check the store's disk space, and that its file was not made read-only)",
            14 => " (the store file cannot be opened: check the path in [store] url, and that its directory exists and is writable)",
            _ => "",
        };
    }
    match code.as_ref() {
        c if c.starts_with("28") => {
            " (the database refuses the login: check the user and password in [store] url)"
        }
        "3D000" => " (create the database, or correct its name in [store] url)",
        c if c.starts_with("42501") || c == "25006" => {
            " (the database user may not write here: grant it rights on the bridge's tables, or use the owner in [store] url)"
        }
        _ => "",
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
