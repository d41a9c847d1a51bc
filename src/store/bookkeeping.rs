//! The store's bookkeeping for the pipeline: parked items, the app-restricted worklist call
//! budget, each worklist's members at its last poll, attachment waits, and small named
//! values kept across restarts.

use sqlx::{AssertSqlSafe, Row};

use super::{
    ubrn_col, upsert_seen, version_col, OpContext, ParkedItem, Seen, Store, StoreError, BATCH_ROWS,
};
use crate::ids::{Ubrn, Version};

impl Store {
    /// Parks a referral version with its reason and marks it seen with outcome `parked`, in
    /// one transaction; parking again updates the reason.
    pub async fn park(
        &self,
        ubrn: &Ubrn,
        version: Version,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.op("park")?;
        sqlx::query(
            "INSERT INTO parked (ubrn, version, reason, parked_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (ubrn, version) DO UPDATE SET reason = excluded.reason, parked_at_ms = excluded.parked_at_ms",
        )
        .bind(ubrn.as_str())
        .bind(version.as_i64())
        .bind(reason)
        .bind(now_ms)
        .execute(&mut *tx)
        .await.op("park")?;
        upsert_seen(ubrn, version, Seen::Parked, now_ms)
            .execute(&mut *tx)
            .await
            .op("park")?;
        tx.commit().await.op("park")?;
        Ok(())
    }

    /// Removes a parked item (after a successful replay).
    pub async fn unpark(&self, ubrn: &Ubrn) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM parked WHERE ubrn = $1")
            .bind(ubrn.as_str())
            .execute(&self.pool)
            .await
            .op("unpark")?;
        Ok(r.rows_affected())
    }

    /// Every parked item, oldest first.
    pub async fn parked(&self) -> Result<Vec<ParkedItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT ubrn, version, reason, parked_at_ms FROM parked ORDER BY parked_at_ms, ubrn",
        )
        .fetch_all(&self.pool)
        .await
        .op("parked")?;
        rows.iter()
            .map(|r| {
                Ok(ParkedItem {
                    ubrn: ubrn_col(r, "ubrn", "parked")?,
                    version: version_col(r, "version", "parked")?,
                    reason: r.try_get("reason").op("parked")?,
                    parked_at_ms: r.try_get("parked_at_ms").op("parked")?,
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
        let mut tx = self.pool.begin().await.op("take_worklist_call")?;
        sqlx::query(
            "INSERT INTO worklist_budget (service, day, calls) VALUES ($1, $2, 0) \
             ON CONFLICT (service, day) DO NOTHING",
        )
        .bind(service)
        .bind(day)
        .execute(&mut *tx)
        .await
        .op("take_worklist_call")?;
        let r = sqlx::query(
            "UPDATE worklist_budget SET calls = calls + 1 WHERE service = $1 AND day = $2 AND calls < $3",
        )
        .bind(service)
        .bind(day)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await.op("take_worklist_call")?;
        tx.commit().await.op("take_worklist_call")?;
        Ok(r.rows_affected() == 1)
    }

    /// Worklist calls made for `service` on `day`.
    pub async fn worklist_calls(&self, service: &str, day: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT calls FROM worklist_budget WHERE service = $1 AND day = $2")
            .bind(service)
            .bind(day)
            .fetch_optional(&self.pool)
            .await
            .op("worklist_calls")?;
        Ok(match row {
            Some(r) => r.try_get("calls").op("worklist_calls")?,
            None => 0,
        })
    }

    /// The UBRNs on `list` of `service` at its last recorded poll.
    pub async fn worklist_members(
        &self,
        service: &str,
        list: &str,
    ) -> Result<Vec<Ubrn>, StoreError> {
        let rows = sqlx::query(
            "SELECT ubrn FROM worklist_members WHERE service = $1 AND list = $2 ORDER BY ubrn",
        )
        .bind(service)
        .bind(list)
        .fetch_all(&self.pool)
        .await
        .op("worklist_members")?;
        rows.iter()
            .map(|r| ubrn_col(r, "ubrn", "worklist_members"))
            .collect()
    }

    /// Replaces the recorded members of `list` of `service` in one transaction, with the
    /// time of the poll they come from ([`Store::last_poll_ms`]). Under `fence` (the
    /// list's poller lease, when several instances share the store) the write is refused
    /// unless the lease is still this poller's: a poller that paused past its lease cannot
    /// overwrite the new poller's view of the list.
    pub async fn set_worklist_members(
        &self,
        service: &str,
        list: &str,
        ubrns: &[Ubrn],
        polled_at_ms: i64,
        fence: Option<&super::Fence>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.op("set_worklist_members")?;
        sqlx::query(
            "INSERT INTO pipeline_state (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(last_poll_key(service, list))
        .bind(polled_at_ms.to_string())
        .execute(&mut *tx)
        .await
        .op("set_worklist_members")?;
        // Checked after the first write: a SQLite transaction that read first could not
        // become a writer beside another (SQLITE_BUSY); the lease row is locked until
        // the commit either way.
        if let Some(f) = fence {
            super::leases::check_fence(self, &mut tx, f, "set_worklist_members").await?;
        }
        sqlx::query("DELETE FROM worklist_members WHERE service = $1 AND list = $2")
            .bind(service)
            .bind(list)
            .execute(&mut *tx)
            .await
            .op("set_worklist_members")?;
        for chunk in ubrns.chunks(BATCH_ROWS / 3) {
            let sql = format!(
                "INSERT INTO worklist_members (service, list, ubrn) VALUES {} \
                 ON CONFLICT (service, list, ubrn) DO NOTHING",
                super::value_rows(chunk.len(), 3)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).persistent(false);
            for ubrn in chunk {
                q = q.bind(service).bind(list).bind(ubrn.as_str());
            }
            q.execute(&mut *tx).await.op("set_worklist_members")?;
        }
        tx.commit().await.op("set_worklist_members")?;
        Ok(())
    }

    /// When `list` of `service` was last polled (its members recorded), by any instance.
    pub async fn last_poll_ms(&self, service: &str, list: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .state_value(&last_poll_key(service, list))
            .await?
            .and_then(|v| v.parse().ok()))
    }

    /// When each list was last polled, by any instance, in one read (the alerts ask for
    /// every configured list at each evaluation): `(service, list)` → ms.
    pub async fn last_polls(
        &self,
    ) -> Result<std::collections::HashMap<(String, String), i64>, StoreError> {
        let rows =
            sqlx::query("SELECT name, value FROM pipeline_state WHERE name LIKE 'last_poll:%'")
                .fetch_all(&self.pool)
                .await
                .op("last_polls")?;
        let mut out = std::collections::HashMap::new();
        for r in rows {
            let name: String = r.try_get("name").op("last_polls")?;
            let value: String = r.try_get("value").op("last_polls")?;
            let key = name
                .strip_prefix("last_poll:")
                .and_then(|k| k.split_once(':'));
            if let (Some((service, list)), Ok(ms)) = (key, value.parse::<i64>()) {
                out.insert((service.to_string(), list.to_string()), ms);
            }
        }
        Ok(out)
    }

    /// Records that e-RS refused `list` of `service` for good at `at_ms` (by any instance:
    /// the next leader of the list reads it and does not ask again before its time).
    pub async fn set_list_refused(
        &self,
        service: &str,
        list: &str,
        at_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.set_state_value(&refused_key(service, list), &format!("{at_ms}|{error}"))
            .await
    }

    /// Forgets a refusal of `list` (it was polled again and answered).
    pub async fn clear_list_refused(&self, service: &str, list: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM pipeline_state WHERE name = $1")
            .bind(refused_key(service, list))
            .execute(&self.pool)
            .await
            .op("clear_list_refused")?;
        Ok(())
    }

    /// The refusal of `list` of `service`, if it is refused.
    pub async fn list_refused(
        &self,
        service: &str,
        list: &str,
    ) -> Result<Option<RefusedList>, StoreError> {
        let Some(v) = self.state_value(&refused_key(service, list)).await? else {
            return Ok(None);
        };
        Ok(parse_refused(&refused_key(service, list), &v))
    }

    /// Every refused list ([`Store::set_list_refused`]), for the alert.
    pub async fn lists_refused(&self) -> Result<Vec<RefusedList>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, value FROM pipeline_state WHERE name LIKE 'list_refused:%' ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .op("lists_refused")?;
        let mut out = Vec::new();
        for r in rows {
            let name: String = r.try_get("name").op("lists_refused")?;
            let value: String = r.try_get("value").op("lists_refused")?;
            out.extend(parse_refused(&name, &value));
        }
        Ok(out)
    }

    /// Records that a referral version waits for pending attachments (first call wins) and
    /// returns since when it has waited, in milliseconds.
    pub async fn defer(
        &self,
        ubrn: &Ubrn,
        version: Version,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        // One statement: the no-op update on conflict makes RETURNING give the first time.
        let row = sqlx::query(
            "INSERT INTO deferred (ubrn, version, since_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (ubrn, version) DO UPDATE SET since_ms = deferred.since_ms \
             RETURNING since_ms",
        )
        .bind(ubrn.as_str())
        .bind(version.as_i64())
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .op("defer")?;
        row.try_get("since_ms").op("defer")
    }

    /// A named value kept across restarts (e.g. the hash of the mapping files).
    pub async fn state_value(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM pipeline_state WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .op("state_value")?;
        Ok(match row {
            Some(r) => Some(r.try_get("value").op("state_value")?),
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
        .await
        .op("set_state_value")?;
        Ok(())
    }
}

/// The `pipeline_state` name of a list's last poll time.
fn last_poll_key(service: &str, list: &str) -> String {
    format!("last_poll:{service}:{list}")
}

fn refused_key(service: &str, list: &str) -> String {
    format!("list_refused:{service}:{list}")
}

/// A worklist e-RS refused for good (a 4xx other than 401, 403 and 429): not polled again
/// until [`Store::list_refused`]'s time plus the pipeline's pause, and alerted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedList {
    pub service: String,
    pub list: String,
    /// When e-RS last refused it (ms since the epoch).
    pub at_ms: i64,
    /// e-RS's answer, as the bridge reported it.
    pub error: String,
}

/// A `list_refused:<service>:<list>` row's value `<at_ms>|<error>`.
fn parse_refused(name: &str, value: &str) -> Option<RefusedList> {
    let mut key = name.strip_prefix("list_refused:")?.splitn(2, ':');
    let (service, list) = (key.next()?, key.next()?);
    let (at, error) = value.split_once('|')?;
    Some(RefusedList {
        service: service.to_string(),
        list: list.to_string(),
        at_ms: at.parse().ok()?,
        error: error.to_string(),
    })
}
