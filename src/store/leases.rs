//! Leases and instances: what lets several bridges share one store (docs/ha.md).
//!
//! A lease is a row (`leases`: name, holder, term, expiry) that one process holds until it
//! expires or is released; the expiry and the term come from the **database's clock**, so
//! the instances' clocks never have to agree. A process renews every lease it holds in one
//! statement ([`Store::leases_renew`]); a lease that was not renewed in time can be taken by
//! another process, with a higher term. Work done under a lease carries its [`Fence`]
//! (name, holder, term), and the writes that matter check it in the same statement or
//! transaction (`fence_sql`): a process that paused past its lease finds its writes
//! refused ([`StoreError::Fenced`]) once another took over.
//!
//! `instances` has one row per running process (its heartbeat, from the database clock):
//! the cluster's e-RS rate limit is divided by the live rows, and `status`, the API and the
//! dashboard show them.

use std::sync::Arc;

use sqlx::{AssertSqlSafe, Row};

use super::{OpContext, Store, StoreError};

/// Proof that this process held lease `name` under `term`: carried by the work done under
/// it, and checked by the store's fenced writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub name: String,
    pub holder: Arc<str>,
    pub term: i64,
}

/// One lease as stored, for operators (`status`, the API).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    pub name: String,
    pub holder: String,
    pub term: i64,
    pub taken_ms: i64,
    pub expires_ms: i64,
}

/// One bridge process as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceRow {
    /// `<instance id>#<incarnation>`: unique per process.
    pub holder: String,
    /// The configured id (`[cluster] instance_id`, else the host name).
    pub instance: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    /// Set when the process stopped cleanly.
    pub left_ms: Option<i64>,
    /// The database clock when this was read, to show the heartbeat's age.
    pub now_ms: i64,
}

impl Store {
    /// The database clock in milliseconds since the epoch, as SQL.
    pub(super) fn clock_ms(&self) -> &'static str {
        if self.pg {
            "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT"
        } else {
            "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
        }
    }

    /// Whether several processes may share this store (PostgreSQL). A SQLite store is for
    /// one `run` at a time (the CLI holds a lock file).
    pub fn is_shared(&self) -> bool {
        self.pg
    }

    /// Takes lease `name` for `holder` for `ttl_ms` when it is free, expired, or already
    /// this holder's. Every take gets a new term, above the last one and at least the
    /// database clock in microseconds, so a term is never given twice: a late release or
    /// write under an earlier take (even this holder's: a claim given back in the
    /// background while the next task of the same process takes it) can never touch the
    /// new one. `None`: another holder has it.
    pub async fn lease_take(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<Fence>, StoreError> {
        let now = self.clock_ms();
        let (max, term_now) = if self.pg {
            (
                "GREATEST",
                "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT",
            )
        } else {
            (
                "MAX",
                "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
            )
        };
        let sql = format!(
            "INSERT INTO leases (name, holder, term, taken_ms, expires_ms, hurry) \
             VALUES ($1, $2, {term_now}, {now}, {now} + $3, 0) \
             ON CONFLICT (name) DO UPDATE SET \
             term = {max}(leases.term + 1, excluded.term), taken_ms = excluded.taken_ms, \
             holder = excluded.holder, expires_ms = excluded.expires_ms, hurry = 0 \
             WHERE leases.expires_ms <= {now} OR leases.holder = excluded.holder \
             RETURNING term"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .bind(holder)
            .bind(ttl_ms)
            .fetch_optional(&self.pool)
            .await
            .op("lease_take")?;
        Ok(match row {
            Some(r) => Some(Fence {
                name: name.to_string(),
                holder: holder.into(),
                term: r.try_get("term").op("lease_take")?,
            }),
            None => None,
        })
    }

    /// Gives a lease back (only the term this fence holds: a lease taken over meanwhile is
    /// the new holder's). The row stays, expired, so the next term is counted on from it
    /// ([`Store::leases_forget`] deletes old ones).
    pub async fn lease_release(&self, fence: &Fence) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE leases SET expires_ms = 0 WHERE name = $1 AND holder = $2 AND term = $3",
        )
        .bind(&fence.name)
        .bind(&*fence.holder)
        .bind(fence.term)
        .execute(&self.pool)
        .await
        .op("lease_release")?;
        Ok(())
    }

    /// Gives back every lease of `holder` (a clean stop): the others take over at once.
    pub async fn leases_release_all(&self, holder: &str) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("UPDATE leases SET expires_ms = 0 WHERE holder = $1 AND expires_ms > 0")
                .bind(holder)
                .execute(&self.pool)
                .await
                .op("leases_release_all")?
                .rows_affected(),
        )
    }

    /// Extends every lease `holder` still holds by `ttl_ms` from now, in one statement, and
    /// returns `(name, term, hurry)` of each: a lease missing from the answer has expired
    /// (and may be another's now). `hurry` is set when another process waits for it.
    pub async fn leases_renew(
        &self,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Vec<(String, i64, bool)>, StoreError> {
        let now = self.clock_ms();
        let sql = format!(
            "UPDATE leases SET expires_ms = {now} + $2 WHERE holder = $1 AND expires_ms > {now} \
             RETURNING name, term, hurry"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(holder)
            .bind(ttl_ms)
            .fetch_all(&self.pool)
            .await
            .op("leases_renew")?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("name").op("leases_renew")?,
                    r.try_get("term").op("leases_renew")?,
                    r.try_get::<i64, _>("hurry").op("leases_renew")? != 0,
                ))
            })
            .collect()
    }

    /// Asks the holder of lease `name` to hurry (a PAS decision waits behind it); the
    /// holder sees it at its next renewal. Returns whether the lease is held (by anyone).
    pub async fn lease_hurry(&self, name: &str) -> Result<bool, StoreError> {
        let now = self.clock_ms();
        let sql = format!("UPDATE leases SET hurry = 1 WHERE name = $1 AND expires_ms > {now}");
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(name)
            .execute(&self.pool)
            .await
            .op("lease_hurry")?
            .rows_affected()
            > 0)
    }

    /// Whether `fence` still holds (same holder and term, not expired).
    pub async fn lease_holds(&self, fence: &Fence) -> Result<bool, StoreError> {
        let sql = format!("SELECT 1 AS held FROM leases WHERE {}", fence_sql(self, 1));
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(&fence.name)
            .bind(&*fence.holder)
            .bind(fence.term)
            .fetch_optional(&self.pool)
            .await
            .op("lease_holds")?;
        Ok(row.is_some())
    }

    /// Every lease not yet expired, by name.
    pub async fn leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        let sql = format!(
            "SELECT name, holder, term, taken_ms, expires_ms FROM leases \
             WHERE expires_ms > {} ORDER BY name",
            self.clock_ms()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .op("leases")?;
        rows.iter()
            .map(|r| {
                Ok(LeaseRow {
                    name: r.try_get("name").op("leases")?,
                    holder: r.try_get("holder").op("leases")?,
                    term: r.try_get("term").op("leases")?,
                    taken_ms: r.try_get("taken_ms").op("leases")?,
                    expires_ms: r.try_get("expires_ms").op("leases")?,
                })
            })
            .collect()
    }

    /// Registers or refreshes this process's row (its heartbeat from the database clock)
    /// and returns how many processes are live: a heartbeat within `live_ms`, not left.
    pub async fn instance_beat(&self, me: &InstanceRow, live_ms: i64) -> Result<usize, StoreError> {
        let now = self.clock_ms();
        let sql = format!(
            "INSERT INTO instances (holder, instance, host, pid, version, started_ms, \
             heartbeat_ms, left_ms) VALUES ($1, $2, $3, $4, $5, {now}, {now}, NULL) \
             ON CONFLICT (holder) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms, \
             left_ms = NULL"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&me.holder)
            .bind(&me.instance)
            .bind(&me.host)
            .bind(me.pid)
            .bind(&me.version)
            .execute(&self.pool)
            .await
            .op("instance_beat")?;
        let sql = format!(
            "SELECT COUNT(*) AS n FROM instances WHERE left_ms IS NULL \
             AND heartbeat_ms > {now} - $1"
        );
        let n: i64 = sqlx::query(AssertSqlSafe(sql))
            .bind(live_ms)
            .fetch_one(&self.pool)
            .await
            .op("instance_beat")?
            .try_get("n")
            .op("instance_beat")?;
        Ok(usize::try_from(n).unwrap_or(1).max(1))
    }

    /// Marks this process as stopped (cleanly), so the others count it out at once.
    pub async fn instance_leave(&self, holder: &str) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE instances SET left_ms = {} WHERE holder = $1",
            self.clock_ms()
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(holder)
            .execute(&self.pool)
            .await
            .op("instance_leave")?;
        Ok(())
    }

    /// The processes seen within `since_ms` (live or not), newest heartbeat first.
    pub async fn instances(&self, since_ms: i64) -> Result<Vec<InstanceRow>, StoreError> {
        let now = self.clock_ms();
        let sql = format!(
            "SELECT holder, instance, host, pid, version, started_ms, heartbeat_ms, left_ms, \
             {now} AS now_ms FROM instances WHERE heartbeat_ms > {now} - $1 \
             ORDER BY heartbeat_ms DESC, holder"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await
            .op("instances")?;
        rows.iter()
            .map(|r| {
                Ok(InstanceRow {
                    holder: r.try_get("holder").op("instances")?,
                    instance: r.try_get("instance").op("instances")?,
                    host: r.try_get("host").op("instances")?,
                    pid: r.try_get("pid").op("instances")?,
                    version: r.try_get("version").op("instances")?,
                    started_ms: r.try_get("started_ms").op("instances")?,
                    heartbeat_ms: r.try_get("heartbeat_ms").op("instances")?,
                    left_ms: r.try_get("left_ms").op("instances")?,
                    now_ms: r.try_get("now_ms").op("instances")?,
                })
            })
            .collect()
    }

    /// Deletes leases expired for longer than `older_than_ms` (a referral's claim leaves a
    /// row per referral). Their names' terms start again from the clock, which has long
    /// passed them by then.
    pub async fn leases_forget(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM leases WHERE expires_ms < {} - $1",
            self.clock_ms()
        );
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(older_than_ms)
            .execute(&self.pool)
            .await
            .op("leases_forget")?
            .rows_affected())
    }

    /// Forgets processes whose last heartbeat is older than `older_than_ms` (each restart
    /// is a new row).
    pub async fn instances_forget(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM instances WHERE heartbeat_ms < {} - $1",
            self.clock_ms()
        );
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(older_than_ms)
            .execute(&self.pool)
            .await
            .op("instances_forget")?
            .rows_affected())
    }
}

/// `name = $n AND holder = $n+1 AND term = $n+2 AND expires_ms > <clock>`: the condition a
/// fenced write adds (bind the fence's name, holder and term at `$n`…).
pub(super) fn fence_sql(store: &Store, n: usize) -> String {
    format!(
        "name = ${} AND holder = ${} AND term = ${} AND expires_ms > {}",
        n,
        n + 1,
        n + 2,
        store.clock_ms()
    )
}

/// Checks `fence` inside a transaction, locking the lease row against a takeover until the
/// transaction ends (PostgreSQL `FOR SHARE`; SQLite serialises writers anyway).
pub(super) async fn check_fence(
    store: &Store,
    tx: &mut sqlx::AnyConnection,
    fence: &Fence,
    op: &'static str,
) -> Result<(), StoreError> {
    let lock = if store.pg { " FOR SHARE" } else { "" };
    let sql = format!(
        "SELECT 1 AS held FROM leases WHERE {}{lock}",
        fence_sql(store, 1)
    );
    let held = sqlx::query(AssertSqlSafe(sql))
        .bind(&fence.name)
        .bind(&*fence.holder)
        .bind(fence.term)
        .fetch_optional(&mut *tx)
        .await
        .op(op)?;
    if held.is_none() {
        return Err(StoreError::Fenced {
            op,
            lease: fence.name.clone(),
            term: fence.term,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    async fn store() -> Store {
        Store::connect(&SecretString::from("sqlite::memory:"))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_lease_is_held_by_one_holder_until_released_or_expired() {
        let s = store().await;
        let take = |holder: &'static str| {
            let s = s.clone();
            async move { s.lease_take("poll:x", holder, 60_000).await.unwrap() }
        };
        let a = take("a#1").await.unwrap();
        assert!(take("b#1").await.is_none());
        let again = take("a#1").await.unwrap();
        assert!(again.term > a.term, "a new term for every take");
        // The first take's late release does not give the second one back.
        s.lease_release(&a).await.unwrap();
        assert!(s.lease_holds(&again).await.unwrap());
        assert!(take("b#1").await.is_none());
        s.lease_release(&again).await.unwrap();
        let b = take("b#1").await.unwrap();
        assert!(b.term > again.term, "{} > {}", b.term, again.term);
        assert!(!s.lease_holds(&again).await.unwrap());
        assert!(s.lease_holds(&b).await.unwrap());
    }

    #[tokio::test]
    async fn an_expired_lease_goes_to_the_next_holder_with_a_higher_term() {
        let s = store().await;
        let a = s.lease_take("ubrn:1", "a#1", -1).await.unwrap().unwrap();
        assert!(!s.lease_holds(&a).await.unwrap(), "expired at once");
        assert!(s.leases_renew("a#1", 60_000).await.unwrap().is_empty());
        let b = s
            .lease_take("ubrn:1", "b#1", 60_000)
            .await
            .unwrap()
            .unwrap();
        assert!(b.term > a.term);
        // The old holder's release does not free the new holder's lease.
        s.lease_release(&a).await.unwrap();
        assert!(s.lease_holds(&b).await.unwrap());
        let renewed = s.leases_renew("b#1", 60_000).await.unwrap();
        assert_eq!(renewed, vec![("ubrn:1".to_string(), b.term, false)]);
        assert!(s.lease_hurry("ubrn:1").await.unwrap());
        assert!(s.leases_renew("b#1", 60_000).await.unwrap()[0].2, "hurried");
    }

    #[tokio::test]
    async fn instances_count_the_live_ones() {
        let s = store().await;
        let me = |h: &str| InstanceRow {
            holder: h.into(),
            instance: h.split('#').next().unwrap().into(),
            host: "localhost".into(),
            pid: 1,
            version: "t".into(),
            started_ms: 0,
            heartbeat_ms: 0,
            left_ms: None,
            now_ms: 0,
        };
        assert_eq!(s.instance_beat(&me("a#1"), 5_000).await.unwrap(), 1);
        assert_eq!(s.instance_beat(&me("b#1"), 5_000).await.unwrap(), 2);
        s.instance_leave("a#1").await.unwrap();
        assert_eq!(s.instance_beat(&me("b#1"), 5_000).await.unwrap(), 1);
        let all = s.instances(60_000).await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().any(|i| i.holder == "a#1" && i.left_ms.is_some()));
    }
}
