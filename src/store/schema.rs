//! Schema migrations, written once in SQL that both SQLite and PostgreSQL accept.
//!
//! Each migration runs in its own transaction and is recorded in `schema_migrations`; a
//! migration is never edited once released, only followed by a new one. On PostgreSQL the
//! run holds an advisory lock, so bridges starting together migrate one after the other. Timestamps are
//! integers (milliseconds since the Unix epoch) so both engines compare them the same way.

use sqlx::{AnyConnection, AnyPool, Connection, Row};

use super::{OpContext, StoreError};

/// `(version, statements)`, in order.
const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE referral_versions (
            ubrn TEXT NOT NULL,
            version BIGINT NOT NULL,
            outcome TEXT NOT NULL,
            seen_at_ms BIGINT NOT NULL,
            PRIMARY KEY (ubrn, version)
        )",
            "CREATE TABLE published_messages (
            control_id TEXT PRIMARY KEY,
            ubrn TEXT NOT NULL,
            version BIGINT NOT NULL,
            message_type TEXT NOT NULL,
            routing_key TEXT NOT NULL,
            hl7 TEXT,
            confirmed_at_ms BIGINT NOT NULL
        )",
            "CREATE INDEX published_messages_ubrn ON published_messages (ubrn)",
            "CREATE INDEX published_messages_confirmed ON published_messages (confirmed_at_ms)",
            "CREATE TABLE parked (
            ubrn TEXT NOT NULL,
            version BIGINT NOT NULL,
            reason TEXT NOT NULL,
            parked_at_ms BIGINT NOT NULL,
            PRIMARY KEY (ubrn, version)
        )",
            "CREATE TABLE worklist_budget (
            service TEXT NOT NULL,
            day TEXT NOT NULL,
            calls BIGINT NOT NULL,
            PRIMARY KEY (service, day)
        )",
        ],
    ),
    (
        2,
        &[
            // The UBRNs on each worklist at its last successful poll: a referral that leaves
            // a list is re-read (A005) to notice cancellations.
            "CREATE TABLE worklist_members (
            service TEXT NOT NULL,
            list TEXT NOT NULL,
            ubrn TEXT NOT NULL,
            PRIMARY KEY (service, list, ubrn)
        )",
            // Small named values the pipeline keeps across restarts (e.g. the mapping hash).
            "CREATE TABLE pipeline_state (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )",
            // Since when a referral version has waited for attachments e-RS still scans.
            "CREATE TABLE deferred (
            ubrn TEXT NOT NULL,
            version BIGINT NOT NULL,
            since_ms BIGINT NOT NULL,
            PRIMARY KEY (ubrn, version)
        )",
            "CREATE INDEX published_messages_ubrn_version ON published_messages (ubrn, version)",
        ],
    ),
    (
        3,
        &[
            // Each PAS message by its MSH-10 (the idempotency key): raw HL7 (pruned by
            // retention), the decision, the intent/result of its e-RS action, the reply sent
            // and store-scheduled retries (store/inbound.rs).
            "CREATE TABLE inbound_messages (
            control_id TEXT PRIMARY KEY,
            received_at_ms BIGINT NOT NULL,
            message_type TEXT NOT NULL,
            ubrn TEXT,
            status TEXT NOT NULL,
            action TEXT,
            version_sent BIGINT,
            detail TEXT,
            reply_code TEXT,
            attempts BIGINT NOT NULL,
            next_attempt_ms BIGINT,
            hl7 TEXT
        )",
            "CREATE INDEX inbound_messages_due ON inbound_messages (status, next_attempt_ms)",
            "CREATE INDEX inbound_messages_ubrn ON inbound_messages (ubrn)",
            "CREATE INDEX inbound_messages_received ON inbound_messages (received_at_ms)",
            // Every e-RS call made for an inbound message.
            "CREATE TABLE inbound_attempts (
            control_id TEXT NOT NULL,
            attempt BIGINT NOT NULL,
            operation TEXT NOT NULL,
            version BIGINT,
            http_status BIGINT,
            ers_code TEXT,
            correlation_id TEXT,
            request_id TEXT,
            at_ms BIGINT NOT NULL,
            PRIMARY KEY (control_id, attempt)
        )",
        ],
    ),
    (
        4,
        &[
            // When a PAS message's outcome and reply were recorded (the timeline's "reply").
            "ALTER TABLE inbound_messages ADD COLUMN finished_at_ms BIGINT",
            // Messages sent to the dead-letter exchange, with their body (base64, pruned by
            // retention) for the dashboard's list and a re-drive.
            "CREATE TABLE dead_letters (
            id TEXT PRIMARY KEY,
            at_ms BIGINT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            message_id TEXT,
            body_b64 TEXT,
            redriven_at_ms BIGINT
        )",
            "CREATE INDEX dead_letters_at ON dead_letters (at_ms)",
            // Alerts: one row per opening; an open alert has no resolved_at_ms.
            "CREATE TABLE alerts (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            detail TEXT NOT NULL,
            opened_at_ms BIGINT NOT NULL,
            resolved_at_ms BIGINT
        )",
            "CREATE INDEX alerts_open ON alerts (name, resolved_at_ms)",
            // What operators did through the API or the CLI (replays, re-drives), by whom.
            "CREATE TABLE operator_actions (
            id TEXT PRIMARY KEY,
            at_ms BIGINT NOT NULL,
            who TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL
        )",
            "CREATE INDEX inbound_messages_type_received ON inbound_messages (message_type, received_at_ms)",
            "CREATE INDEX published_messages_type_confirmed ON published_messages (message_type, confirmed_at_ms)",
        ],
    ),
    (
        5,
        &[
            // Retention finds the payloads still to prune through indexes that hold only
            // those rows, so each batch costs the same however much was pruned before it.
            "CREATE INDEX published_messages_payload ON published_messages (confirmed_at_ms) WHERE hl7 IS NOT NULL",
            "CREATE INDEX inbound_messages_payload ON inbound_messages (received_at_ms) WHERE hl7 IS NOT NULL",
            "CREATE INDEX dead_letters_payload ON dead_letters (at_ms) WHERE body_b64 IS NOT NULL",
            // The search's order (time, then control id, newest first) straight from an
            // index, so a page stops after `limit` rows instead of sorting the window.
            "CREATE INDEX published_messages_search ON published_messages (message_type, confirmed_at_ms, control_id)",
            "CREATE INDEX published_messages_recent ON published_messages (confirmed_at_ms, control_id)",
            "CREATE INDEX inbound_messages_search ON inbound_messages (status, received_at_ms, control_id)",
        ],
    ),
    (
        6,
        &[
            // Payloads (outbound HL7, inbound HL7, dead-letter bodies) in a table of their
            // own, which retention deletes from. Rows sit in insertion order (SQLite's rowid),
            // so deleting the oldest frees whole pages that an incremental vacuum returns to
            // the file system; clearing a small column inside a metadata row freed none.
            "CREATE TABLE payloads (
            kind TEXT NOT NULL,
            ref_id TEXT NOT NULL,
            stored_at_ms BIGINT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (kind, ref_id)
        )",
            "CREATE INDEX payloads_stored ON payloads (stored_at_ms)",
            "INSERT INTO payloads (kind, ref_id, stored_at_ms, body) SELECT 'out', control_id, \
             confirmed_at_ms, hl7 FROM published_messages WHERE hl7 IS NOT NULL ORDER BY confirmed_at_ms",
            "INSERT INTO payloads (kind, ref_id, stored_at_ms, body) SELECT 'in', control_id, \
             received_at_ms, hl7 FROM inbound_messages WHERE hl7 IS NOT NULL ORDER BY received_at_ms",
            "INSERT INTO payloads (kind, ref_id, stored_at_ms, body) SELECT 'dead', id, at_ms, \
             body_b64 FROM dead_letters WHERE body_b64 IS NOT NULL ORDER BY at_ms",
            "DROP INDEX published_messages_payload",
            "DROP INDEX inbound_messages_payload",
            "DROP INDEX dead_letters_payload",
            "ALTER TABLE published_messages DROP COLUMN hl7",
            "ALTER TABLE inbound_messages DROP COLUMN hl7",
            "ALTER TABLE dead_letters DROP COLUMN body_b64",
        ],
    ),
    (
        7,
        &[
            // A hash of the PAS message's bytes: a second message under an MSH-10 already
            // used is a copy only when its body is the same (store/inbound.rs).
            "ALTER TABLE inbound_messages ADD COLUMN body_hash TEXT",
            // The decision behind an e-RS write, kept with its intent: the referral's e-RS
            // state the table was applied to and a hash of the action, so an interrupted
            // message acts on what was decided and a resend under a new MSH-10 is known.
            "ALTER TABLE inbound_messages ADD COLUMN decided_state TEXT",
            "ALTER TABLE inbound_messages ADD COLUMN decision_hash TEXT",
        ],
    ),
    (
        8,
        &[
            // The clinically relevant facts of a version published to the PAS (JSON,
            // fhir/relevant.rs): a decision on it arriving after e-RS moved on is checked
            // against what changed, since e-RS serves only a referral's latest version.
            "ALTER TABLE referral_versions ADD COLUMN facts TEXT",
            // The UBRN MSA-2's message names when it differs from RF1's (a refused
            // decision shows on both referrals' timelines).
            "ALTER TABLE inbound_messages ADD COLUMN other_ubrn TEXT",
            "CREATE INDEX inbound_messages_other_ubrn ON inbound_messages (other_ubrn)",
        ],
    ),
    (
        9,
        &[
            // At most one open alert per name, whichever instance opens it: duplicates
            // left by two bridges racing are closed (the earliest stays open) before the
            // index that makes the rule the database's.
            "UPDATE alerts SET resolved_at_ms = opened_at_ms WHERE resolved_at_ms IS NULL \
             AND EXISTS (SELECT 1 FROM alerts a2 WHERE a2.name = alerts.name \
             AND a2.resolved_at_ms IS NULL AND (a2.opened_at_ms < alerts.opened_at_ms \
             OR (a2.opened_at_ms = alerts.opened_at_ms AND a2.id < alerts.id)))",
            "CREATE UNIQUE INDEX alerts_one_open ON alerts (name) WHERE resolved_at_ms IS NULL",
        ],
    ),
    (
        10,
        &[
            // Leases (store/leases.rs): a referral's claim, a worklist's poller, a
            // cluster-wide job; times and terms from the database clock.
            "CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            term BIGINT NOT NULL,
            taken_ms BIGINT NOT NULL,
            expires_ms BIGINT NOT NULL,
            hurry BIGINT NOT NULL DEFAULT 0
        )",
            "CREATE INDEX leases_holder ON leases (holder)",
            // One row per bridge process, with its heartbeat.
            "CREATE TABLE instances (
            holder TEXT PRIMARY KEY,
            instance TEXT NOT NULL,
            host TEXT NOT NULL,
            pid BIGINT NOT NULL,
            version TEXT NOT NULL,
            started_ms BIGINT NOT NULL,
            heartbeat_ms BIGINT NOT NULL,
            left_ms BIGINT
        )",
        ],
    ),
    (
        11,
        &[
            // Code-table look-ups that found no entry (store/code_misses.rs): one row per
            // (table, code), for the page, `status` and the integration team's fix list.
            "CREATE TABLE code_misses (
            table_name TEXT NOT NULL,
            code TEXT NOT NULL,
            first_ms BIGINT NOT NULL,
            last_ms BIGINT NOT NULL,
            count BIGINT NOT NULL,
            PRIMARY KEY (table_name, code)
        )",
            // Per-minute counts for the dashboard's trends (store/trends.rs): each bridge
            // adds what it counted, so a cluster's rows are its sum; kept eight days.
            "CREATE TABLE minute_counts (
            minute_ms BIGINT NOT NULL,
            series TEXT NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY (minute_ms, series)
        )",
        ],
    ),
];

/// The PostgreSQL advisory lock a bridge holds while it migrates, so two first starts on
/// one database migrate one after the other (the second finds the work done). Any fixed
/// number: "ers-bridge" in ASCII.
const MIGRATION_LOCK: i64 = 0x6572_732d_6272_6964;

/// Applies every migration the database has not seen yet, up to `until` (the last one when
/// `None`; migration tests stop earlier to write rows in an old layout).
///
/// On PostgreSQL the whole run holds an advisory lock ([`MIGRATION_LOCK`]) on one
/// connection, and the version reached is read under it: bridges starting together on a
/// new database never run a migration twice. (SQLite is for one instance.)
pub(super) async fn migrate(pool: &AnyPool, until: Option<i64>) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.op("migrate")?;
    let pg = conn.backend_name() == "PostgreSQL";
    if pg {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await
            .op("migrate lock")?;
    }
    let result = migrate_on(&mut conn, until).await;
    if pg {
        // Released with the session anyway if this fails.
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await;
        if let Err(e) = unlocked {
            tracing::warn!(error = %e, "releasing the migration lock failed");
        }
    }
    result
}

async fn migrate_on(conn: &mut AnyConnection, until: Option<i64>) -> Result<(), StoreError> {
    let sqlite = conn.backend_name() == "SQLite";
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await.op("migrate")?;
    let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        .fetch_one(&mut *conn)
        .await
        .op("migrate")?
        .try_get("v")
        .op("migrate")?;
    for (version, statements) in MIGRATIONS
        .iter()
        .filter(|(v, _)| *v > current && until.is_none_or(|u| *v <= u))
    {
        let wrap = |source| StoreError::Migrate {
            version: *version,
            source,
        };
        // Another process may be migrating the same store at this moment (a second
        // instance, or `ers-bridge status` beside a starting `run`): PostgreSQL holds the
        // advisory lock above; SQLite takes the write lock before anything is read, and
        // both look again whether this migration is still to do.
        let mut tx = if sqlite {
            conn.begin_with("BEGIN IMMEDIATE").await.map_err(wrap)?
        } else {
            conn.begin().await.map_err(wrap)?
        };
        let done = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = $1")
            .bind(*version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(wrap)?;
        if done.is_some() {
            tx.commit().await.map_err(wrap)?;
            continue;
        }
        for sql in *statements {
            sqlx::query(*sql).execute(&mut *tx).await.map_err(wrap)?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)")
            .bind(*version)
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(&mut *tx)
            .await
            .map_err(wrap)?;
        tx.commit().await.map_err(wrap)?;
    }
    Ok(())
}
