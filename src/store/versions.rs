//! The referral versions the pipeline has seen and the messages it has published: the
//! per-pass batched look-ups, the group-committed records of confirmed versions, the audit
//! queries over published messages, and payload retention.

use std::collections::HashSet;

use sqlx::{AssertSqlSafe, Row};

use super::{
    placeholders, select_published, ubrn_col, upsert_seen, value_rows, version_col, Fence,
    OpContext, PublishedMessage, Seen, Store, StoreError, StoredVersion, VersionRecord,
    VersionState, BATCH_ROWS,
};
use crate::ids::{ControlId, Ubrn, Version};

/// The condition on a `referral_versions` row `rv` that makes its version handled, so that
/// the outbound pipeline skips it: any outcome but the bridge's own write, which counts only
/// once this or an earlier version of the referral reached the PAS (a PAS that decided on a
/// referral before its first REF^I12, keyed in from the e-RS web application, say, still
/// gets that REF^I12 once). `$own` is the placeholder number bound to [`Seen::OwnWrite`].
fn handled(own: usize) -> String {
    format!(
        "(rv.outcome <> ${own} OR EXISTS \
         (SELECT 1 FROM published_messages p WHERE p.ubrn = rv.ubrn AND p.version <= rv.version))"
    )
}

impl Store {
    /// Which of these (UBRN, version) pairs have been handled ([`handled`]), so the pass
    /// skips them: one round trip per [`BATCH_ROWS`] UBRNs (a pass asks for thousands).
    pub async fn seen_versions(
        &self,
        items: &[(&Ubrn, Version)],
    ) -> Result<HashSet<(Ubrn, Version)>, StoreError> {
        let mut seen = HashSet::new();
        for chunk in items.chunks(BATCH_ROWS) {
            // Only numbered placeholders are formatted into the SQL; the values are bound.
            let sql = format!(
                "SELECT ubrn, version FROM referral_versions rv WHERE ubrn IN ({}) AND {}",
                placeholders(chunk.len()),
                handled(chunk.len() + 1)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(false);
            for (ubrn, _) in chunk {
                q = q.bind(ubrn.as_str());
            }
            q = q.bind(Seen::OwnWrite.as_str());
            let wanted: HashSet<(&str, i64)> = chunk
                .iter()
                .map(|(u, v)| (u.as_str(), v.as_i64()))
                .collect();
            for row in q.fetch_all(&self.pool).await.op("seen_versions")? {
                let ubrn: String = row.try_get("ubrn").op("seen_versions")?;
                let version: i64 = row.try_get("version").op("seen_versions")?;
                if wanted.contains(&(ubrn.as_str(), version)) {
                    let ubrn =
                        Ubrn::parse(&ubrn).map_err(|e| StoreError::decode("seen_versions", e))?;
                    let version = Version::from_i64(version)
                        .map_err(|e| StoreError::decode("seen_versions", e))?;
                    seen.insert((ubrn, version));
                }
            }
        }
        Ok(seen)
    }

    /// Records referral versions as done, all in one transaction (the pipeline's group
    /// commit), after every message of each was confirmed: the messages, each version as seen
    /// with `outcome = "published"`, and each referral's parked item and waits cleared.
    ///
    /// Each table gets one multi-row statement per [`BATCH_ROWS`] bind parameters, so a
    /// batch of 32 versions costs about six statements, not four per version: on SQLite
    /// every statement is a round trip to the connection's worker thread.
    ///
    /// A version recorded under a fence (its referral's lease, when instances share the
    /// store) whose lease is no longer this process's makes the whole call fail with
    /// [`StoreError::Fenced`]; [`Store::record_versions_fenced`] records the others.
    pub async fn record_versions_published(
        &self,
        versions: &[VersionRecord],
    ) -> Result<(), StoreError> {
        let refused = self.record_versions_fenced(versions).await?;
        match refused.first().and_then(|&i| versions[i].fence.as_ref()) {
            Some(f) => Err(StoreError::Fenced {
                op: "record_versions_published",
                lease: f.name.clone(),
                term: f.term,
            }),
            None => Ok(()),
        }
    }

    /// [`Store::record_versions_published`] for the group commit: the versions whose fence
    /// no longer holds are left out (another instance has their referral now, and will
    /// publish again under the same MSH-10), and their indices returned. The fences are
    /// checked in the same transaction, their lease rows locked against a takeover until
    /// it commits.
    pub async fn record_versions_fenced(
        &self,
        all: &[VersionRecord],
    ) -> Result<Vec<usize>, StoreError> {
        const OP: &str = "record_versions_published";
        let mut tx = self.pool.begin().await.op(OP)?;
        let refused = self.refused_fences(&mut tx, all).await?;
        let kept: Vec<VersionRecord>;
        let versions: &[VersionRecord] = if refused.is_empty() {
            all
        } else {
            kept = all
                .iter()
                .enumerate()
                .filter(|(i, _)| !refused.contains(i))
                .map(|(_, v)| v.clone())
                .collect();
            &kept
        };
        let messages: Vec<&PublishedMessage> =
            versions.iter().flat_map(|v| v.messages.iter()).collect();
        let payloads: Vec<(&PublishedMessage, &str)> = messages
            .iter()
            .filter_map(|m| Some((*m, m.hl7.as_deref()?)))
            .collect();
        // The latest record of a version wins (PostgreSQL refuses to update one row twice
        // in one statement).
        let mut seen: Vec<&VersionRecord> = Vec::with_capacity(versions.len());
        for v in versions.iter().rev() {
            if !seen
                .iter()
                .any(|s| s.ubrn == v.ubrn && s.version == v.version)
            {
                seen.push(v);
            }
        }
        for chunk in messages.chunks(BATCH_ROWS / 6) {
            let sql = format!(
                "INSERT INTO published_messages \
                 (control_id, ubrn, version, message_type, routing_key, confirmed_at_ms) \
                 VALUES {} ON CONFLICT (control_id) DO NOTHING",
                value_rows(chunk.len(), 6)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(false);
            for m in chunk {
                q = q
                    .bind(m.control_id.as_str())
                    .bind(m.ubrn.as_str())
                    .bind(m.version.as_i64())
                    .bind(m.message_type.as_str())
                    .bind(m.routing_key.as_str())
                    .bind(m.confirmed_at_ms);
            }
            q.execute(&mut *tx).await.op(OP)?;
        }
        for chunk in payloads.chunks(BATCH_ROWS / 4) {
            let sql = format!(
                "INSERT INTO payloads (kind, ref_id, stored_at_ms, body) VALUES {} \
                 ON CONFLICT (kind, ref_id) DO NOTHING",
                value_rows(chunk.len(), 4)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(false);
            for (m, body) in chunk {
                q = q
                    .bind("out")
                    .bind(m.control_id.as_str())
                    .bind(m.confirmed_at_ms)
                    .bind(*body);
            }
            q.execute(&mut *tx).await.op(OP)?;
        }
        for chunk in seen.chunks(BATCH_ROWS / 5) {
            // A version the bridge's own write produced stays marked so when it is published
            // (the first REF^I12 of a referral the PAS decided on early): a resent decision
            // is recognised as applied by that mark.
            let sql = format!(
                "INSERT INTO referral_versions (ubrn, version, outcome, seen_at_ms, facts) \
                 VALUES {} ON CONFLICT (ubrn, version) DO UPDATE SET \
                 outcome = CASE WHEN referral_versions.outcome = '{own}' \
                 THEN referral_versions.outcome ELSE excluded.outcome END, \
                 seen_at_ms = excluded.seen_at_ms, facts = excluded.facts",
                value_rows(chunk.len(), 5),
                own = Seen::OwnWrite.as_str(),
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(false);
            for v in chunk {
                q = q
                    .bind(v.ubrn.as_str())
                    .bind(v.version.as_i64())
                    .bind(Seen::Published.as_str())
                    .bind(v.now_ms)
                    .bind(v.facts.as_deref());
            }
            q.execute(&mut *tx).await.op(OP)?;
        }
        // Cleared per batch of UBRNs rather than per version: two statements in all.
        let ubrns: Vec<&str> = versions.iter().map(|v| v.ubrn.as_str()).collect();
        for chunk in ubrns.chunks(BATCH_ROWS) {
            for table in ["parked", "deferred"] {
                let sql = format!(
                    "DELETE FROM {table} WHERE ubrn IN ({})",
                    placeholders(chunk.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(false);
                for ubrn in chunk {
                    q = q.bind(*ubrn);
                }
                q.execute(&mut *tx).await.op(OP)?;
            }
        }
        tx.commit().await.op(OP)?;
        Ok(refused)
    }

    /// The indices of `versions` whose fence does not hold, their held leases locked
    /// (PostgreSQL `FOR SHARE`) for the rest of `tx`. No statement when none has a fence.
    async fn refused_fences(
        &self,
        tx: &mut sqlx::AnyConnection,
        versions: &[VersionRecord],
    ) -> Result<Vec<usize>, StoreError> {
        const OP: &str = "record_versions_published";
        let fences: Vec<&Fence> = versions.iter().filter_map(|v| v.fence.as_ref()).collect();
        let Some(first) = fences.first() else {
            return Ok(Vec::new());
        };
        let mut held = HashSet::new();
        for chunk in fences.chunks(BATCH_ROWS) {
            let sql = format!(
                "SELECT name, term FROM leases WHERE holder = $1 AND expires_ms > {} \
                 AND name IN ({}){}",
                self.clock_ms(),
                (2..chunk.len() + 2)
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if self.pg { " FOR SHARE" } else { "" }
            );
            let mut q = sqlx::query(AssertSqlSafe(sql))
                .persistent(false)
                .bind(&*first.holder);
            for f in chunk {
                q = q.bind(&f.name);
            }
            for r in q.fetch_all(&mut *tx).await.op(OP)? {
                let name: String = r.try_get("name").op(OP)?;
                let term: i64 = r.try_get("term").op(OP)?;
                held.insert((name, term));
            }
        }
        Ok(versions
            .iter()
            .enumerate()
            .filter(|(_, v)| {
                v.fence.as_ref().is_some_and(|f| {
                    f.holder != first.holder || !held.contains(&(f.name.clone(), f.term))
                })
            })
            .map(|(i, _)| i)
            .collect())
    }

    /// What the pipeline needs to know of a referral version before handling it, in one
    /// query: whether it was seen, and the highest version with a confirmed message.
    pub async fn version_state(
        &self,
        ubrn: &Ubrn,
        version: Version,
    ) -> Result<VersionState, StoreError> {
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM referral_versions rv \
             WHERE ubrn = $1 AND version = $2 AND {}) AS seen, \
             (SELECT MAX(version) FROM published_messages WHERE ubrn = $1) AS latest",
            handled(3)
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(ubrn.as_str())
            .bind(version.as_i64())
            .bind(Seen::OwnWrite.as_str())
            .fetch_one(&self.pool)
            .await
            .op("version_state")?;
        let latest: Option<i64> = row.try_get("latest").op("version_state")?;
        Ok(VersionState {
            seen: row.try_get::<i64, _>("seen").op("version_state")? > 0,
            latest_published: latest
                .map(Version::from_i64)
                .transpose()
                .map_err(|e| StoreError::decode("version_state", e))?,
        })
    }

    /// Whether this referral version has been seen (queued for publishing) before.
    pub async fn is_seen(&self, ubrn: &Ubrn, version: Version) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM referral_versions WHERE ubrn = $1 AND version = $2")
            .bind(ubrn.as_str())
            .bind(version.as_i64())
            .fetch_optional(&self.pool)
            .await
            .op("is_seen")?;
        Ok(row.is_some())
    }

    /// Whether this referral version is one the bridge's own e-RS write produced.
    pub async fn is_own_write(&self, ubrn: &Ubrn, version: Version) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM referral_versions WHERE ubrn = $1 AND version = $2 AND outcome = $3",
        )
        .bind(ubrn.as_str())
        .bind(version.as_i64())
        .bind(Seen::OwnWrite.as_str())
        .fetch_optional(&self.pool)
        .await
        .op("is_own_write")?;
        Ok(row.is_some())
    }

    /// What the store holds of this referral's versions `from..=to`, in order: each
    /// recorded version's outcome and, for a published one, its relevant facts. One round
    /// trip, for a PAS decision that arrives after e-RS moved on.
    pub async fn versions_between(
        &self,
        ubrn: &Ubrn,
        from: Version,
        to: Version,
    ) -> Result<Vec<StoredVersion>, StoreError> {
        const OP: &str = "versions_between";
        let rows = sqlx::query(
            "SELECT version, outcome, facts FROM referral_versions \
             WHERE ubrn = $1 AND version >= $2 AND version <= $3 ORDER BY version",
        )
        .bind(ubrn.as_str())
        .bind(from.as_i64())
        .bind(to.as_i64())
        .fetch_all(&self.pool)
        .await
        .op(OP)?;
        rows.iter()
            .map(|r| {
                let version: i64 = r.try_get("version").op(OP)?;
                Ok(StoredVersion {
                    version: Version::from_i64(version).map_err(|e| StoreError::decode(OP, e))?,
                    outcome: r.try_get("outcome").op(OP)?,
                    facts: r.try_get("facts").op(OP)?,
                })
            })
            .collect()
    }

    /// The highest version of this referral seen so far, if any.
    pub async fn latest_seen(&self, ubrn: &Ubrn) -> Result<Option<Version>, StoreError> {
        let row = sqlx::query("SELECT MAX(version) AS v FROM referral_versions WHERE ubrn = $1")
            .bind(ubrn.as_str())
            .fetch_one(&self.pool)
            .await
            .op("latest_seen")?;
        let v: Option<i64> = row.try_get("v").op("latest_seen")?;
        v.map(Version::from_i64)
            .transpose()
            .map_err(|e| StoreError::decode("latest_seen", e))
    }

    /// Records that a referral version has been handled (published or deliberately skipped).
    pub async fn mark_seen(
        &self,
        ubrn: &Ubrn,
        version: Version,
        outcome: Seen,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        upsert_seen(ubrn, version, outcome, now_ms)
            .execute(&self.pool)
            .await
            .op("mark_seen")?;
        Ok(())
    }

    /// Whether a message with this control id has been confirmed.
    pub async fn is_published(&self, control_id: &ControlId) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM published_messages WHERE control_id = $1")
            .bind(control_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .op("is_published")?;
        Ok(row.is_some())
    }

    /// The messages published for one referral, oldest first (the referral's timeline).
    pub async fn messages_for(&self, ubrn: &Ubrn) -> Result<Vec<PublishedMessage>, StoreError> {
        let rows = sqlx::query(select_published!(
            "WHERE ubrn = $1 ORDER BY confirmed_at_ms, control_id"
        ))
        .bind(ubrn.as_str())
        .fetch_all(&self.pool)
        .await
        .op("messages_for")?;
        rows.iter().map(published_from_row).collect()
    }

    /// Up to `limit` published messages, oldest confirm first (audit listings, and the
    /// benchmark that republishes a run's messages).
    pub async fn published_messages(
        &self,
        limit: i64,
    ) -> Result<Vec<PublishedMessage>, StoreError> {
        let rows = sqlx::query(select_published!(
            "ORDER BY confirmed_at_ms, control_id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .op("published_messages")?;
        rows.iter().map(published_from_row).collect()
    }

    /// Counts published messages by message type (for summaries).
    pub async fn published_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT message_type, COUNT(*) AS n FROM published_messages GROUP BY message_type ORDER BY message_type",
        )
        .fetch_all(&self.pool)
        .await.op("published_counts")?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("message_type").op("published_counts")?,
                    r.try_get("n").op("published_counts")?,
                ))
            })
            .collect()
    }
}

pub(super) fn published_from_row(r: &sqlx::any::AnyRow) -> Result<PublishedMessage, StoreError> {
    const OP: &str = "read published message";
    let control_id: String = r.try_get("control_id").op(OP)?;
    Ok(PublishedMessage {
        control_id: ControlId::parse(&control_id).map_err(|e| StoreError::decode(OP, e))?,
        ubrn: ubrn_col(r, "ubrn", OP)?,
        version: version_col(r, "version", OP)?,
        message_type: r.try_get("message_type").op(OP)?,
        routing_key: r.try_get("routing_key").op(OP)?,
        hl7: r.try_get("hl7").op(OP)?,
        confirmed_at_ms: r.try_get("confirmed_at_ms").op(OP)?,
    })
}
