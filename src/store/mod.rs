//! The durable store: referral versions seen, messages published, parked items, the
//! worklist call budget, and payload retention. SQLite by default (`sqlite://FILE`), the same
//! schema on PostgreSQL (`postgres://…`) when several instances share one store.
//!
//! # Delivery semantics
//!
//! Outbound delivery is **at-least-once with a stable MSH-10**. For each referral version the
//! pipeline (1) maps it with a control id derived only from (UBRN, version, message type),
//! (2) publishes it and waits for the broker's confirm, then (3) records it with
//! [`Store::record_versions_published`] (through the pipeline's group commit). A message is "published" only once that row exists, and the
//! row is written only after the confirm. The only duplicate window is a crash between the
//! confirm and the write: on restart the version looks unpublished, is published again with
//! the same MSH-10, and the PAS de-duplicates on it. A nack, a return or a lost connection
//! before the confirm leaves no row, so the message is retried, never marked done.
//!
//! The worklist budget ([`Store::take_worklist_call`]) is counted here, not in memory, so a
//! restart cannot reset the app-restricted limit of calls per service per day.
//!
//! # Durability
//!
//! SQLite runs in WAL mode with `synchronous = NORMAL`: a commit survives a crash of the
//! bridge, and only a power failure or OS crash can lose the last commits. Losing one is
//! the same case as a crash between confirm and record above: the version is published again
//! with the same MSH-10. A referral version's messages, its "seen" row and the clearing of
//! its parked item and waits are written in one transaction
//! ([`Store::record_versions_published`], which the pipeline calls
//! for a batch of versions at once).
//!
//! Payloads (HL7 both ways, dead-letter bodies) live in their own `payloads` table, keyed
//! by kind and owner id. Retention ([`Store::prune_gently`]) deletes those older than the
//! configured age; the metadata rows (who, what, when, control id) stay as the audit trail.
//!
//! Files: this one has the types, connecting (WAL set-up) and the shared statements;
//! `versions.rs` the versions seen and messages published; `bookkeeping.rs` parked items,
//! the worklist budget and members, attachment waits and named values; `inbound.rs` the
//! PAS's messages, their e-RS actions and retries; `monitor.rs` timelines, search, flow and
//! facts; `operations.rs` dead letters, alerts and operator actions; `retention.rs`
//! pruning and giving space back; `schema.rs` the migrations.

mod bookkeeping;
mod code_misses;
mod error;
mod inbound;
mod inbound_queue;
mod inbound_record;
mod leases;
mod monitor;
mod operations;
mod read_only;
mod retention;
mod schema;
mod trends;
mod versions;

pub use bookkeeping::RefusedList;
pub use code_misses::CodeMiss;
pub(crate) use error::OpContext;
pub use error::StoreError;
pub use inbound::{Attempt, Begin, Decision, Ending, InboundRecord, InboundStatus};
pub use leases::{Fence, InstanceRow, LeaseRow};
pub use monitor::{
    AlertRow, DeadLetter, Flow, MessageRow, SearchFilter, SearchPage, StoreFacts, TimelineEntry,
    DEAD_LETTER_WINDOW_MS,
};
pub use trends::TREND_KEEP_MS;

use crate::ids::{ControlId, Ubrn, Version};

use secrecy::{ExposeSecret, SecretString};
use sqlx::{any::AnyPoolOptions, AnyPool, AssertSqlSafe, Executor, Row};

/// Connections to a SQLite file. It takes one writer at a time and every connection is a
/// thread of its own with its own page cache and allocator arena: four serve the
/// pipelines' reads beside the group commit, and eight cost about 2 MB more of peak RSS on
/// a 10,000-referral backlog with no gain in throughput (issue 20, BENCHMARKS.md).
const SQLITE_CONNECTIONS: u32 = 4;

/// Bind parameters per batched statement: well under SQLite's (32,766) and PostgreSQL's
/// (65,535) limits. Batched statements, whose text varies with the batch, are not kept
/// in the connections' prepared-statement caches (`persistent(false)`): each batch size
/// would otherwise be a cached statement of its own, used again only by chance.
const BATCH_ROWS: usize = 900;

const UPSERT_SEEN: &str =
    "INSERT INTO referral_versions (ubrn, version, outcome, seen_at_ms) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (ubrn, version) DO UPDATE SET outcome = excluded.outcome, seen_at_ms = excluded.seen_at_ms";

/// A payload, by its kind (`out`, `in`, `dead`) and its owner's id; the first one wins.
const INSERT_PAYLOAD: &str = "INSERT INTO payloads (kind, ref_id, stored_at_ms, body) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (kind, ref_id) DO NOTHING";

/// `SELECT` of every [`PublishedMessage`] column (the HL7 from `payloads`, `NULL` once
/// pruned) followed by `$tail`, as one literal.
macro_rules! select_published {
    ($tail:literal) => {
        concat!(
            "SELECT control_id, ubrn, version, message_type, routing_key, p.body AS hl7, \
             confirmed_at_ms FROM published_messages LEFT JOIN payloads p \
             ON p.kind = 'out' AND p.ref_id = control_id ",
            $tail
        )
    };
}
pub(crate) use select_published;

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Marks a referral version seen with `outcome` (idempotent; the latest outcome wins).
fn upsert_seen<'q>(ubrn: &'q Ubrn, version: Version, outcome: Seen, now_ms: i64) -> AnyQuery<'q> {
    sqlx::query(UPSERT_SEEN)
        .bind(ubrn.as_str())
        .bind(version.as_i64())
        .bind(outcome.as_str())
        .bind(now_ms)
}

/// Whether `e` is SQLite's result `primary` (8 `SQLITE_READONLY`, 5 `SQLITE_BUSY`, ...),
/// whatever its extended code.
fn is_sqlite_code(e: &sqlx::Error, primary: u32) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .filter(|c| c.len() < 5)
        .and_then(|c| c.parse::<u32>().ok())
        .is_some_and(|c| c & 0xff == primary)
}

/// How a referral version was handled, as `referral_versions.outcome` records it. The one
/// place these strings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Its messages were confirmed by the broker and recorded.
    Published,
    /// It could not be mapped (or read) and waits in `parked` for a replay.
    Parked,
    /// Cancelled before the PAS ever received it: no message is owed.
    CancelledUnpublished,
    /// The version the bridge's own e-RS write produced (a PAS decision): the PAS knows it,
    /// so no REF^I13 echoes it back.
    OwnWrite,
}

impl Seen {
    pub fn as_str(self) -> &'static str {
        match self {
            Seen::Published => "published",
            Seen::Parked => "parked",
            Seen::CancelledUnpublished => "cancelled-unpublished",
            Seen::OwnWrite => "own-write",
        }
    }
}

/// Reads a UBRN column; a malformed value is a [`StoreError::Decode`] naming the operation.
fn ubrn_col(r: &sqlx::any::AnyRow, col: &str, op: &'static str) -> Result<Ubrn, StoreError> {
    let s: String = r.try_get(col).op(op)?;
    Ubrn::parse(&s).map_err(|e| StoreError::decode(op, e))
}

/// Reads a version column (see [`ubrn_col`]).
fn version_col(r: &sqlx::any::AnyRow, col: &str, op: &'static str) -> Result<Version, StoreError> {
    let v: i64 = r.try_get(col).op(op)?;
    Version::from_i64(v).map_err(|e| StoreError::decode(op, e))
}

/// Stores a payload (see [`INSERT_PAYLOAD`]).
fn insert_payload<'q>(
    kind: &'static str,
    ref_id: &'q str,
    at_ms: i64,
    body: &'q str,
) -> AnyQuery<'q> {
    sqlx::query(INSERT_PAYLOAD)
        .bind(kind)
        .bind(ref_id)
        .bind(at_ms)
        .bind(body)
}

/// `$1, $2, …, $n`. (sqlx's `QueryBuilder` writes `?` for the Any driver, which PostgreSQL
/// rejects, so batched statements number their placeholders here.)
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, …, $w), ($w+1, …, $2w), …`: `rows` rows of `width` numbered placeholders, for a
/// multi-row `INSERT … VALUES`.
fn value_rows(rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(r * width + c + 1).to_string());
        }
        out.push(')');
    }
    out
}

/// One published message, as recorded after its broker confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedMessage {
    pub control_id: ControlId,
    pub ubrn: Ubrn,
    pub version: Version,
    pub message_type: String,
    pub routing_key: String,
    /// `None` once retention has pruned it.
    pub hl7: Option<String>,
    pub confirmed_at_ms: i64,
}

/// One referral version whose messages were all confirmed, to record as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub ubrn: Ubrn,
    pub version: Version,
    pub messages: Vec<PublishedMessage>,
    /// When the version was handled (its "seen" time).
    pub now_ms: i64,
    /// Its clinically relevant facts as published ([`crate::fhir::relevant`]), compared
    /// with the referral's when a PAS decision on this version arrives after a change.
    pub facts: Option<String>,
    /// The referral's lease it was published under, when instances share the store: the
    /// record is refused if the lease was lost meanwhile.
    pub fence: Option<Fence>,
}

/// One referral version as the store recorded it ([`Store::versions_between`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub version: Version,
    /// `published`, `own-write`, `parked`, ... ([`Seen`]).
    pub outcome: String,
    /// The relevant facts as published (JSON); `None` for a version not published by this
    /// release or later.
    pub facts: Option<String>,
}

/// See [`Store::version_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionState {
    /// The version was handled before (published, parked or skipped).
    pub seen: bool,
    /// The highest version of the UBRN with a confirmed message.
    pub latest_published: Option<Version>,
}

/// A referral version that could not be processed, with the reason shown to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedItem {
    pub ubrn: Ubrn,
    /// 0 when the referral could not even be read (its version is unknown).
    pub version: Version,
    pub reason: String,
    pub parked_at_ms: i64,
}

/// Handle to the store; cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// Connections handed out by the pool: one per statement outside a transaction, one
    /// per transaction ([`Store::round_trips`]).
    round_trips: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// PostgreSQL (shared by several instances); else SQLite (one instance).
    pg: bool,
}

impl Store {
    /// Connects and brings the schema up to date. `sqlite://` files are created if missing.
    pub async fn connect(url: &SecretString) -> Result<Self, StoreError> {
        Self::connect_with_timeout(url, std::time::Duration::from_secs(10)).await
    }

    /// Connects and applies the migrations up to `version` only, leaving the schema as an
    /// older release left it: for migration tests, which then write rows in that layout and
    /// reconnect with [`Store::connect`].
    #[doc(hidden)]
    pub async fn connect_at_schema(url: &SecretString, version: i64) -> Result<Self, StoreError> {
        Self::open(url, std::time::Duration::from_secs(10), Some(version)).await
    }

    /// The pool, for migration tests that write rows in an older layout.
    #[doc(hidden)]
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Like [`Store::connect`], giving up on an unreachable database after `timeout`.
    pub async fn connect_with_timeout(
        url: &SecretString,
        timeout: std::time::Duration,
    ) -> Result<Self, StoreError> {
        Self::open(url, timeout, None).await
    }

    async fn open(
        url: &SecretString,
        timeout: std::time::Duration,
        schema_until: Option<i64>,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let raw = url.expose_secret();
        let url =
            if raw.starts_with("sqlite:") && !raw.contains("mode=") && !raw.contains(":memory:") {
                let sep = if raw.contains('?') { '&' } else { '?' };
                format!("{raw}{sep}mode=rwc")
            } else {
                raw.to_string()
            };
        // An in-memory SQLite database exists once per connection: keep a single one, and
        // never let the pool retire it (that would drop the database).
        let memory = url.contains(":memory:");
        let sqlite = url.starts_with("sqlite:");
        let round_trips = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = round_trips.clone();
        let read_only = read_only::ReadOnlyOpens::default();
        let opened_read_only = read_only.clone();
        let pool = AnyPoolOptions::new()
            .max_connections(if memory {
                1
            } else if sqlite {
                SQLITE_CONNECTIONS
            } else {
                8
            })
            .min_connections(u32::from(memory))
            .idle_timeout((!memory).then_some(std::time::Duration::from_secs(600)))
            .max_lifetime((!memory).then_some(std::time::Duration::from_secs(1800)))
            .acquire_timeout(timeout)
            .before_acquire(move |_conn, meta| {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let keep = !read_only.may_be_read_only(meta.age);
                Box::pin(async move { Ok(keep) })
            })
            .after_connect(move |conn, _meta| {
                let opened_read_only = opened_read_only.clone();
                Box::pin(async move {
                    // Per connection: in WAL mode a commit need not wait for fsync (see
                    // "Durability" above).
                    if conn.backend_name() == "SQLite" {
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        // 1 MiB of page cache per connection instead of SQLite's 2 MiB:
                        // the writes append and the reads are point look-ups, which the
                        // OS's file cache serves as well (issue 20: peak RSS).
                        conn.execute("PRAGMA cache_size = -1024").await?;
                        // SQLite opens a file it may not write read-only without a word,
                        // and such a connection stays read-only after the file is writable
                        // again: see [`read_only::ReadOnlyOpens`]. A write of the header's unused
                        // `user_version` (its own value) tells, at the cost of one small
                        // commit per connection opened.
                        // Not on a new, empty file: its first write must be the schema's
                        // (`auto_vacuum` is fixed by the first page written).
                        let pages: i64 = conn.fetch_one("PRAGMA page_count").await?.try_get(0)?;
                        if !memory && pages > 0 {
                            let v: i64 = conn.fetch_one("PRAGMA user_version").await?.try_get(0)?;
                            let probe = conn
                                .execute(AssertSqlSafe(format!("PRAGMA user_version = {v}")))
                                .await;
                            // Only a refusal to write: a busy file (another process
                            // writing for longer than the busy timeout) is not read-only.
                            if let Err(e) = probe {
                                if is_sqlite_code(&e, 8) {
                                    opened_read_only.opened_now();
                                }
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await;
        let pool = match pool {
            Ok(p) => p,
            // The pool retries until its timeout and then says only "pool timed out": one
            // direct attempt names the cause (connection refused, authentication failed,
            // no such database).
            Err(sqlx::Error::PoolTimedOut) if !sqlite => {
                use sqlx::Connection as _;
                let direct = tokio::time::timeout(timeout, sqlx::AnyConnection::connect(&url));
                return Err(StoreError::connect(match direct.await {
                    Ok(Err(cause)) => cause,
                    Ok(Ok(_)) | Err(_) => sqlx::Error::PoolTimedOut,
                }));
            }
            Err(e) => return Err(StoreError::connect(e)),
        };
        if url.starts_with("sqlite:") && !url.contains(":memory:") {
            // Freed pages go back to the file system on `reclaim_space` (retention); this
            // takes effect only on a new file, before its first table.
            sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
                .execute(&pool)
                .await
                .op("set auto vacuum")?;
            // Kept in the database file: set once, before any other connection writes. Two
            // processes opening a new file together (a `run` and an operator's `status`)
            // both ask; the change takes an exclusive lock and SQLite answers the second
            // "database is locked" at once, without waiting: asked again for up to 2 s.
            let mut tries = 0;
            loop {
                match sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&pool)
                    .await
                {
                    Ok(_) => break,
                    Err(e) if tries < 100 && is_sqlite_code(&e, 5) => {
                        tries += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    Err(e) => return Err(e).op("set journal mode"),
                }
            }
        }
        let store = Self {
            pool,
            round_trips,
            pg: url.starts_with("postgres"),
        };
        schema::migrate(&store.pool, schema_until).await?;
        Ok(store)
    }

    /// How many times the pool has handed out an idle connection: each statement outside a
    /// transaction, and each transaction, is one (a connection opened for the purpose is
    /// not counted; after the first few, the pool reuses its connections). The measure of
    /// store round trips per unit of work (BENCHMARKS.md, issue 20).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What `ers-bridge check` asks of the store, changing nothing: one connection (no
    /// pool, no migrations), a read, and on SQLite a write of the header's user version
    /// with its own value (so a read-only file or directory is found now, not at the first
    /// record). Returns what the store is, for the report.
    pub async fn probe(
        url: &SecretString,
        timeout: std::time::Duration,
    ) -> Result<String, StoreError> {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let raw = url.expose_secret();
        let sqlite = raw.starts_with("sqlite:");
        let probe = async {
            let mut conn = sqlx::AnyConnection::connect(raw)
                .await
                .map_err(StoreError::connect)?;
            if sqlite {
                let v: i64 = sqlx::query_scalar("PRAGMA user_version")
                    .fetch_one(&mut conn)
                    .await
                    .op("probe")?;
                sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA user_version = {v}")))
                    .execute(&mut conn)
                    .await
                    .op("probe (write)")?;
            } else {
                sqlx::query("SELECT 1")
                    .fetch_one(&mut conn)
                    .await
                    .op("probe")?;
            }
            let _ = conn.close().await;
            Ok(if sqlite {
                "sqlite (one instance)"
            } else {
                "postgresql"
            }
            .to_string())
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::connect(sqlx::Error::PoolTimedOut)),
        }
    }

    /// Cheap liveness probe for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .fetch_one(&self.pool)
            .await
            .op("ping")?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn value_rows_numbers_every_placeholder_once() {
        assert_eq!(super::value_rows(1, 2), "($1, $2)");
        assert_eq!(super::value_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}
