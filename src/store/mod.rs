//! The durable store: referral versions seen, messages published, parked items, the
//! worklist call budget, and payload retention. SQLite by default (`sqlite://FILE`), the same
//! schema on PostgreSQL (`postgres://…`) when several instances share one store.
//!
//! # Delivery semantics
//!
//! Outbound delivery is **at-least-once with a stable MSH-10**. For each referral version the
//! pipeline (1) maps it with a control id derived only from (UBRN, version, message type),
//! (2) publishes it and waits for the broker's confirm, then (3) calls
//! [`Store::record_published`]. A message is "published" only once that row exists, and the
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
//! Retention ([`Store::prune_payloads`]) clears HL7 payloads older than the configured age;
//! the metadata rows (who, what, when, control id) stay as the audit trail.

mod error;
mod schema;

pub use error::StoreError;

use std::collections::HashSet;

use secrecy::{ExposeSecret, SecretString};
use sqlx::{any::AnyPoolOptions, AnyPool, AssertSqlSafe, Executor, Row};

/// Bind parameters per batched statement: well under SQLite's (32,766) and PostgreSQL's
/// (65,535) limits.
const BATCH_ROWS: usize = 900;

const UPSERT_SEEN: &str =
    "INSERT INTO referral_versions (ubrn, version, outcome, seen_at_ms) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (ubrn, version) DO UPDATE SET outcome = excluded.outcome, seen_at_ms = excluded.seen_at_ms";

const INSERT_PUBLISHED: &str = "INSERT INTO published_messages \
     (control_id, ubrn, version, message_type, routing_key, hl7, confirmed_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (control_id) DO NOTHING";

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Marks a referral version seen with `outcome` (idempotent; the latest outcome wins).
fn upsert_seen<'q>(ubrn: &'q str, version: i64, outcome: &'q str, now_ms: i64) -> AnyQuery<'q> {
    sqlx::query(UPSERT_SEEN)
        .bind(ubrn)
        .bind(version)
        .bind(outcome)
        .bind(now_ms)
}

/// Inserts a confirmed message; the first row for a control id wins.
fn insert_published(m: &PublishedMessage) -> AnyQuery<'_> {
    sqlx::query(INSERT_PUBLISHED)
        .bind(&m.control_id)
        .bind(&m.ubrn)
        .bind(m.version)
        .bind(&m.message_type)
        .bind(&m.routing_key)
        .bind(m.hl7.as_deref())
        .bind(m.confirmed_at_ms)
}

/// `$1, $2, …, $n`. (sqlx's `QueryBuilder` writes `?` for the Any driver, which PostgreSQL
/// rejects, so batched statements number their placeholders here.)
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One published message, as recorded after its broker confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedMessage {
    pub control_id: String,
    pub ubrn: String,
    pub version: i64,
    pub message_type: String,
    pub routing_key: String,
    /// `None` once retention has pruned it.
    pub hl7: Option<String>,
    pub confirmed_at_ms: i64,
}

/// One referral version whose messages were all confirmed, to record as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub ubrn: String,
    pub version: i64,
    pub messages: Vec<PublishedMessage>,
    /// When the version was handled (its "seen" time).
    pub now_ms: i64,
}

/// See [`Store::version_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionState {
    /// The version was handled before (published, parked or skipped).
    pub seen: bool,
    /// The highest version of the UBRN with a confirmed message.
    pub latest_published: Option<i64>,
}

/// A referral version that could not be processed, with the reason shown to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedItem {
    pub ubrn: String,
    pub version: i64,
    pub reason: String,
    pub parked_at_ms: i64,
}

/// Handle to the store; cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Connects and brings the schema up to date. `sqlite://` files are created if missing.
    pub async fn connect(url: &SecretString) -> Result<Self, StoreError> {
        Self::connect_with_timeout(url, std::time::Duration::from_secs(10)).await
    }

    /// Like [`Store::connect`], giving up on an unreachable database after `timeout`.
    pub async fn connect_with_timeout(
        url: &SecretString,
        timeout: std::time::Duration,
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
        // An in-memory SQLite database exists once per connection: keep a single one.
        let max = if url.contains(":memory:") { 1 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(timeout)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Per connection: in WAL mode a commit need not wait for fsync (see
                    // "Durability" above).
                    if conn.backend_name() == "SQLite" {
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(StoreError::connect)?;
        if url.starts_with("sqlite:") && !url.contains(":memory:") {
            // Kept in the database file: set once, before any other connection writes.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        let store = Self { pool };
        schema::migrate(&store.pool).await?;
        Ok(store)
    }

    /// Which of these (UBRN, version) pairs have been seen, in one round trip per
    /// [`BATCH_ROWS`] UBRNs (a worklist pass asks for thousands at once).
    pub async fn seen_versions(
        &self,
        items: &[(&str, i64)],
    ) -> Result<HashSet<(String, i64)>, StoreError> {
        let mut seen = HashSet::new();
        for chunk in items.chunks(BATCH_ROWS) {
            // Only numbered placeholders are formatted into the SQL; the values are bound.
            let sql = format!(
                "SELECT ubrn, version FROM referral_versions WHERE ubrn IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (ubrn, _) in chunk {
                q = q.bind(*ubrn);
            }
            let wanted: HashSet<(&str, i64)> = chunk.iter().copied().collect();
            for row in q.fetch_all(&self.pool).await? {
                let ubrn: String = row.try_get("ubrn")?;
                let version: i64 = row.try_get("version")?;
                if wanted.contains(&(ubrn.as_str(), version)) {
                    seen.insert((ubrn, version));
                }
            }
        }
        Ok(seen)
    }

    /// Records referral versions as done, all in one transaction (the pipeline's group
    /// commit), after every message of each was confirmed: the messages, each version as seen
    /// with `outcome = "published"`, and each referral's parked item and waits cleared.
    pub async fn record_versions_published(
        &self,
        versions: &[VersionRecord],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for v in versions {
            for m in &v.messages {
                insert_published(m).execute(&mut *tx).await?;
            }
            upsert_seen(&v.ubrn, v.version, "published", v.now_ms)
                .execute(&mut *tx)
                .await?;
        }
        // Cleared per batch of UBRNs rather than per version: two statements in all.
        let ubrns: Vec<&str> = versions.iter().map(|v| v.ubrn.as_str()).collect();
        for chunk in ubrns.chunks(BATCH_ROWS) {
            for table in ["parked", "deferred"] {
                let sql = format!(
                    "DELETE FROM {table} WHERE ubrn IN ({})",
                    placeholders(chunk.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for ubrn in chunk {
                    q = q.bind(*ubrn);
                }
                q.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// What the pipeline needs to know of a referral version before handling it, in one
    /// query: whether it was seen, and the highest version with a confirmed message.
    pub async fn version_state(
        &self,
        ubrn: &str,
        version: i64,
    ) -> Result<VersionState, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM referral_versions WHERE ubrn = $1 AND version = $2) AS seen, \
             (SELECT MAX(version) FROM published_messages WHERE ubrn = $1) AS latest",
        )
        .bind(ubrn)
        .bind(version)
        .fetch_one(&self.pool)
        .await?;
        Ok(VersionState {
            seen: row.try_get::<i64, _>("seen")? > 0,
            latest_published: row.try_get("latest")?,
        })
    }

    /// Whether this referral version has been seen (queued for publishing) before.
    pub async fn is_seen(&self, ubrn: &str, version: i64) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM referral_versions WHERE ubrn = $1 AND version = $2")
            .bind(ubrn)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The highest version of this referral seen so far, if any.
    pub async fn latest_seen(&self, ubrn: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(version) AS v FROM referral_versions WHERE ubrn = $1")
            .bind(ubrn)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("v")?)
    }

    /// Records that a referral version has been handled (published or deliberately skipped).
    pub async fn mark_seen(
        &self,
        ubrn: &str,
        version: i64,
        outcome: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        upsert_seen(ubrn, version, outcome, now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a confirmed publish. Call only after the broker confirmed the message.
    /// Recording the same control id twice keeps the first row (the PAS saw that one).
    pub async fn record_published(&self, m: &PublishedMessage) -> Result<(), StoreError> {
        insert_published(m).execute(&self.pool).await?;
        Ok(())
    }

    /// Whether a message with this control id has been confirmed.
    pub async fn is_published(&self, control_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM published_messages WHERE control_id = $1")
            .bind(control_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The messages published for one referral, oldest first (the referral's timeline).
    pub async fn messages_for(&self, ubrn: &str) -> Result<Vec<PublishedMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT control_id, ubrn, version, message_type, routing_key, hl7, confirmed_at_ms \
             FROM published_messages WHERE ubrn = $1 ORDER BY confirmed_at_ms, control_id",
        )
        .bind(ubrn)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(published_from_row).collect()
    }

    /// Up to `limit` published messages, oldest confirm first (audit listings, and the
    /// benchmark that republishes a run's messages).
    pub async fn published_messages(
        &self,
        limit: i64,
    ) -> Result<Vec<PublishedMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT control_id, ubrn, version, message_type, routing_key, hl7, confirmed_at_ms \
             FROM published_messages ORDER BY confirmed_at_ms, control_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(published_from_row).collect()
    }

    /// Counts published messages by message type (for summaries).
    pub async fn published_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT message_type, COUNT(*) AS n FROM published_messages GROUP BY message_type ORDER BY message_type",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("message_type")?, r.try_get("n")?)))
            .collect()
    }

    /// Parks a referral version with its reason; parking again updates the reason.
    pub async fn park(
        &self,
        ubrn: &str,
        version: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO parked (ubrn, version, reason, parked_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (ubrn, version) DO UPDATE SET reason = excluded.reason, parked_at_ms = excluded.parked_at_ms",
        )
        .bind(ubrn)
        .bind(version)
        .bind(reason)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a parked item (after a successful replay).
    pub async fn unpark(&self, ubrn: &str) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM parked WHERE ubrn = $1")
            .bind(ubrn)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Every parked item, oldest first.
    pub async fn parked(&self) -> Result<Vec<ParkedItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT ubrn, version, reason, parked_at_ms FROM parked ORDER BY parked_at_ms, ubrn",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ParkedItem {
                    ubrn: r.try_get("ubrn")?,
                    version: r.try_get("version")?,
                    reason: r.try_get("reason")?,
                    parked_at_ms: r.try_get("parked_at_ms")?,
                })
            })
            .collect()
    }

    /// Takes one worklist call from the budget of `service` on `day` (e.g. `2026-11-24`).
    /// Returns `false`, taking nothing, when `limit` calls have already been made that day.
    /// Atomic across processes sharing the store.
    pub async fn take_worklist_call(
        &self,
        service: &str,
        day: &str,
        limit: u32,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO worklist_budget (service, day, calls) VALUES ($1, $2, 0) \
             ON CONFLICT (service, day) DO NOTHING",
        )
        .bind(service)
        .bind(day)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query(
            "UPDATE worklist_budget SET calls = calls + 1 WHERE service = $1 AND day = $2 AND calls < $3",
        )
        .bind(service)
        .bind(day)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Worklist calls made for `service` on `day`.
    pub async fn worklist_calls(&self, service: &str, day: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT calls FROM worklist_budget WHERE service = $1 AND day = $2")
            .bind(service)
            .bind(day)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("calls")?,
            None => 0,
        })
    }

    /// Clears HL7 payloads confirmed before `cutoff_ms`; returns how many were pruned.
    /// Metadata rows stay.
    pub async fn prune_payloads(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE published_messages SET hl7 = NULL WHERE confirmed_at_ms < $1 AND hl7 IS NOT NULL",
        )
        .bind(cutoff_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// The highest version of this referral with a confirmed message, if any. The pipeline
    /// sends REF^I13 rather than REF^I12 once one exists.
    pub async fn latest_published_version(&self, ubrn: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(version) AS v FROM published_messages WHERE ubrn = $1")
            .bind(ubrn)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("v")?)
    }

    /// The UBRNs on `list` of `service` at its last recorded poll.
    pub async fn worklist_members(
        &self,
        service: &str,
        list: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT ubrn FROM worklist_members WHERE service = $1 AND list = $2 ORDER BY ubrn",
        )
        .bind(service)
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("ubrn")?)).collect()
    }

    /// Replaces the recorded members of `list` of `service` in one transaction.
    pub async fn set_worklist_members(
        &self,
        service: &str,
        list: &str,
        ubrns: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM worklist_members WHERE service = $1 AND list = $2")
            .bind(service)
            .bind(list)
            .execute(&mut *tx)
            .await?;
        for chunk in ubrns.chunks(BATCH_ROWS / 3) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                .collect();
            let sql = format!(
                "INSERT INTO worklist_members (service, list, ubrn) VALUES {} \
                 ON CONFLICT (service, list, ubrn) DO NOTHING",
                rows.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for ubrn in chunk {
                q = q.bind(service).bind(list).bind(ubrn);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that a referral version waits for pending attachments (first call wins) and
    /// returns since when it has waited, in milliseconds.
    pub async fn defer(&self, ubrn: &str, version: i64, now_ms: i64) -> Result<i64, StoreError> {
        sqlx::query(
            "INSERT INTO deferred (ubrn, version, since_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (ubrn, version) DO NOTHING",
        )
        .bind(ubrn)
        .bind(version)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT since_ms FROM deferred WHERE ubrn = $1 AND version = $2")
            .bind(ubrn)
            .bind(version)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("since_ms")?)
    }

    /// Forgets the waits of a referral (once a version of it is published).
    pub async fn clear_deferred(&self, ubrn: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM deferred WHERE ubrn = $1")
            .bind(ubrn)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A named value kept across restarts (e.g. the hash of the mapping files).
    pub async fn state_value(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM pipeline_state WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("value")?),
            None => None,
        })
    }

    /// Sets a named value (see [`Store::state_value`]).
    pub async fn set_state_value(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pipeline_state (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Cheap liveness probe for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn published_from_row(r: &sqlx::any::AnyRow) -> Result<PublishedMessage, StoreError> {
    Ok(PublishedMessage {
        control_id: r.try_get("control_id")?,
        ubrn: r.try_get("ubrn")?,
        version: r.try_get("version")?,
        message_type: r.try_get("message_type")?,
        routing_key: r.try_get("routing_key")?,
        hl7: r.try_get("hl7")?,
        confirmed_at_ms: r.try_get("confirmed_at_ms")?,
    })
}
