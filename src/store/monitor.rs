//! What the monitoring side reads: a referral's timeline across both directions, the
//! indexed, keyset-paginated message search, the flow counts of the dashboard and the
//! store's facts the alert evaluation reads. Dead letters, alerts and operator actions are
//! in `operations.rs`; retention in `retention.rs`.

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use super::{InboundStatus, OpContext, Store, StoreError};
use crate::ids::Ubrn;

/// One stage of a referral's story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    pub at_ms: i64,
    /// `published` (confirmed by the broker), `recorded` (the version's outcome committed
    /// after its confirms: published, cancelled, ...), `parked`, `pas_ack`, `pas_decision`,
    /// `ers_call`, `reply`.
    pub stage: &'static str,
    pub control_id: Option<String>,
    pub message_type: Option<String>,
    pub detail: String,
    /// The HL7 while retention keeps it.
    pub payload: Option<String>,
}

/// A stored message, either direction, as the search lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRow {
    /// `out` (published to the PAS) or `in` (from the PAS).
    pub direction: &'static str,
    pub control_id: String,
    pub ubrn: Option<String>,
    pub message_type: String,
    /// `confirmed` for outbound; the inbound status otherwise.
    pub status: String,
    pub at_ms: i64,
    pub detail: Option<String>,
}

/// What to search for; every part is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchFilter {
    /// `in` or `out`.
    pub direction: Option<String>,
    pub status: Option<String>,
    /// e.g. `REF^I12`, `RRI^I12`, `ACK^I12`.
    pub message_type: Option<String>,
    pub control_id: Option<String>,
    pub ubrn: Option<String>,
    /// Inclusive lower bound, epoch milliseconds.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound, epoch milliseconds.
    pub to_ms: Option<i64>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    pub limit: Option<u32>,
}

/// One page of results, newest first, and the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchPage {
    pub items: Vec<MessageRow>,
    pub next: Option<String>,
}

/// A message on the dead-letter exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub at_ms: i64,
    pub reason: String,
    pub detail: String,
    pub message_id: Option<String>,
    /// Base64 of the body while retention keeps it.
    #[serde(skip)]
    pub body_b64: Option<String>,
    pub redriven_at_ms: Option<i64>,
}

/// An alert opening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRow {
    pub name: String,
    pub detail: String,
    pub opened_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
}

/// Messages per direction over the last hour and day, and per hour for the chart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Flow {
    pub out_last_hour: i64,
    pub out_last_day: i64,
    pub in_last_hour: i64,
    pub in_last_day: i64,
    /// Oldest first: 24 hourly buckets ending now.
    pub out_per_hour: Vec<i64>,
    pub in_per_hour: Vec<i64>,
}

const HOUR_MS: i64 = 3_600_000;

/// What counts as "recent" for dead letters (the `dead_letters_growing` alert).
pub const DEAD_LETTER_WINDOW_MS: i64 = 15 * 60_000;

/// Counts of what needs attention, as [`Store::facts`] reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreFacts {
    pub needs_action_open: i64,
    pub oldest_needs_action_ms: Option<i64>,
    pub parked_open: i64,
    /// Dead letters not re-driven.
    pub dead_letters_waiting: i64,
    /// Dead letters in the last [`DEAD_LETTER_WINDOW_MS`].
    pub dead_letters_recent: i64,
    pub alerts_open: i64,
    pub oldest_awaiting_decision_ms: Option<i64>,
}

impl Store {
    /// Every stored stage of one referral, in time order.
    pub async fn timeline(&self, ubrn: &Ubrn) -> Result<Vec<TimelineEntry>, StoreError> {
        const OP: &str = "timeline";
        let u = ubrn.as_str();
        let mut out = Vec::new();
        for r in sqlx::query(
            "SELECT version, outcome, seen_at_ms FROM referral_versions WHERE ubrn = $1",
        )
        .bind(u)
        .fetch_all(&self.pool)
        .await
        .op(OP)?
        {
            let v: i64 = r.try_get("version").op(OP)?;
            let outcome: String = r.try_get("outcome").op(OP)?;
            out.push(entry(
                r.try_get("seen_at_ms").op(OP)?,
                "recorded",
                format!("version {v}: {outcome}"),
            ));
        }
        for r in sqlx::query("SELECT version, reason, parked_at_ms FROM parked WHERE ubrn = $1")
            .bind(u)
            .fetch_all(&self.pool)
            .await
            .op(OP)?
        {
            let v: i64 = r.try_get("version").op(OP)?;
            let reason: String = r.try_get("reason").op(OP)?;
            out.push(entry(
                r.try_get("parked_at_ms").op(OP)?,
                "parked",
                format!("version {v}: {reason}"),
            ));
        }
        for m in self.messages_for(ubrn).await? {
            out.push(TimelineEntry {
                at_ms: m.confirmed_at_ms,
                stage: "published",
                control_id: Some(m.control_id.to_string()),
                message_type: Some(m.message_type.clone()),
                detail: format!(
                    "version {} to {}, confirmed by the broker",
                    m.version, m.routing_key
                ),
                payload: m.hl7,
            });
        }
        for m in self.inbound_for(ubrn).await? {
            let rri = m.message_type.starts_with("RRI");
            let cid = m.control_id.to_string();
            out.push(TimelineEntry {
                at_ms: m.received_at_ms,
                stage: if rri { "pas_decision" } else { "pas_ack" },
                control_id: Some(cid.clone()),
                message_type: Some(m.message_type.clone()),
                detail: format!(
                    "{}{}: {}",
                    m.status.as_str(),
                    m.action
                        .as_deref()
                        .map(|a| format!(" ({a})"))
                        .unwrap_or_default(),
                    m.detail.as_deref().unwrap_or("")
                ),
                payload: m.hl7.clone(),
            });
            for a in self.inbound_attempts(&m.control_id).await? {
                out.push(TimelineEntry {
                    at_ms: a.at_ms,
                    stage: "ers_call",
                    control_id: Some(cid.clone()),
                    message_type: None,
                    detail: format!(
                        "{} If-Match {} -> {}{}{}",
                        a.operation,
                        a.version.map(|v| v.to_string()).unwrap_or_default(),
                        a.http_status
                            .map_or("no response".to_string(), |s| s.to_string()),
                        a.ers_code.map(|c| format!(" {c}")).unwrap_or_default(),
                        a.correlation_id
                            .map(|c| format!(" (X-Correlation-ID {c})"))
                            .unwrap_or_default(),
                    ),
                    payload: None,
                });
            }
            if let (Some(code), Some(at)) = (&m.reply_code, self.finished_at(&cid).await?) {
                out.push(TimelineEntry {
                    at_ms: at,
                    stage: "reply",
                    control_id: Some(cid),
                    message_type: Some("ACK".into()),
                    detail: format!("{code} sent to the PAS"),
                    payload: None,
                });
            }
        }
        // Stable: a stage recorded in the same millisecond keeps its pipeline order.
        out.sort_by_key(|e| (e.at_ms, stage_rank(e.stage)));
        Ok(out)
    }

    async fn finished_at(&self, control_id: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query("SELECT finished_at_ms FROM inbound_messages WHERE control_id = $1")
                .bind(control_id)
                .fetch_optional(&self.pool)
                .await
                .op("finished_at")?
                .map(|r| r.try_get::<Option<i64>, _>("finished_at_ms"))
                .transpose()
                .op("finished_at")?
                .flatten(),
        )
    }

    /// Messages matching `f`, newest first, one page at a time (keyset on time and
    /// control id: every page costs the same however deep).
    pub async fn search(&self, f: &SearchFilter) -> Result<SearchPage, StoreError> {
        const OP: &str = "search";
        let limit = f.limit.unwrap_or(50).clamp(1, 500) as usize;
        let after = match &f.after {
            Some(c) => Some(parse_cursor(c).ok_or_else(|| StoreError::decode(OP, "bad cursor"))?),
            None => None,
        };
        let mut rows = Vec::new();
        for dir in ["out", "in"] {
            if f.direction.as_deref().is_some_and(|d| d != dir) {
                continue;
            }
            let (table, at, status) = match dir {
                "out" => ("published_messages", "confirmed_at_ms", "'confirmed'"),
                _ => ("inbound_messages", "received_at_ms", "status"),
            };
            let detail = if dir == "out" { "NULL" } else { "detail" };
            let mut conds = Vec::new();
            let mut binds: Vec<Bind> = Vec::new();
            let p = |b: Bind, binds: &mut Vec<Bind>| {
                binds.push(b);
                format!("${}", binds.len())
            };
            if let Some(s) = &f.status {
                if dir == "out" && s != "confirmed" {
                    continue;
                }
                if dir == "in" {
                    conds.push(format!("status = {}", p(Bind::Text(s.clone()), &mut binds)));
                }
            }
            if let Some(t) = &f.message_type {
                conds.push(format!(
                    "message_type = {}",
                    p(Bind::Text(t.clone()), &mut binds)
                ));
            }
            if let Some(c) = &f.control_id {
                conds.push(format!(
                    "control_id = {}",
                    p(Bind::Text(c.clone()), &mut binds)
                ));
            }
            if let Some(u) = &f.ubrn {
                conds.push(format!("ubrn = {}", p(Bind::Text(u.clone()), &mut binds)));
            }
            if let Some(from) = f.from_ms {
                conds.push(format!("{at} >= {}", p(Bind::Int(from), &mut binds)));
            }
            if let Some(to) = f.to_ms {
                conds.push(format!("{at} < {}", p(Bind::Int(to), &mut binds)));
            }
            if let Some((at_ms, cid)) = &after {
                let a = p(Bind::Int(*at_ms), &mut binds);
                let a2 = p(Bind::Int(*at_ms), &mut binds);
                let c = p(Bind::Text(cid.clone()), &mut binds);
                conds.push(format!(
                    "({at} < {a} OR ({at} = {a2} AND control_id < {c}))"
                ));
            }
            let sql = format!(
                "SELECT control_id, ubrn, message_type, {status} AS status, {at} AS at_ms, {detail} AS detail \
                 FROM {table} {} ORDER BY {at} DESC, control_id DESC LIMIT {}",
                if conds.is_empty() {
                    String::new()
                } else {
                    format!("WHERE {}", conds.join(" AND "))
                },
                limit + 1
            );
            // Only column names and numbered placeholders are formatted in; values are bound.
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for b in binds {
                q = match b {
                    Bind::Text(s) => q.bind(s),
                    Bind::Int(i) => q.bind(i),
                };
            }
            for r in q.fetch_all(&self.pool).await.op(OP)? {
                rows.push(MessageRow {
                    direction: dir,
                    control_id: r.try_get("control_id").op(OP)?,
                    ubrn: r.try_get("ubrn").op(OP)?,
                    message_type: r.try_get("message_type").op(OP)?,
                    status: r.try_get("status").op(OP)?,
                    at_ms: r.try_get("at_ms").op(OP)?,
                    detail: r.try_get("detail").op(OP)?,
                });
            }
        }
        rows.sort_by(|a, b| (b.at_ms, &b.control_id).cmp(&(a.at_ms, &a.control_id)));
        let next = (rows.len() > limit).then(|| {
            let last = &rows[limit - 1];
            format!("{}:{}", last.at_ms, last.control_id)
        });
        rows.truncate(limit);
        Ok(SearchPage { items: rows, next })
    }

    /// Messages out and in over the last day, per hour, ending at `now_ms`.
    pub async fn flow(&self, now_ms: i64) -> Result<Flow, StoreError> {
        const OP: &str = "flow";
        let since = now_ms - 24 * HOUR_MS;
        let mut f = Flow {
            out_per_hour: vec![0; 24],
            in_per_hour: vec![0; 24],
            ..Flow::default()
        };
        for (sql, out) in [
            (
                "SELECT confirmed_at_ms AS at FROM published_messages WHERE confirmed_at_ms >= $1",
                true,
            ),
            (
                "SELECT received_at_ms AS at FROM inbound_messages WHERE received_at_ms >= $1",
                false,
            ),
        ] {
            // Bucketed here rather than in SQL: the integer division differs between
            // SQLite and PostgreSQL only in spelling, and a day is a few thousand rows.
            let rows = sqlx::query(sql)
                .bind(since)
                .fetch_all(&self.pool)
                .await
                .op(OP)?;
            for r in rows {
                let at: i64 = r.try_get("at").op(OP)?;
                let bucket = (23 - (now_ms - at).max(0) / HOUR_MS).clamp(0, 23) as usize;
                let (hour, day, per) = if out {
                    (
                        &mut f.out_last_hour,
                        &mut f.out_last_day,
                        &mut f.out_per_hour,
                    )
                } else {
                    (&mut f.in_last_hour, &mut f.in_last_day, &mut f.in_per_hour)
                };
                *day += 1;
                if now_ms - at < HOUR_MS {
                    *hour += 1;
                }
                per[bucket] += 1;
            }
        }
        Ok(f)
    }

    /// When the oldest referral still waiting for a PAS decision was published (a REF^I12
    /// with no RRI since that was acted on or needs action). Walks the REF^I12s oldest
    /// first through the (type, time) index and stops at the first one undecided.
    pub async fn oldest_awaiting_decision_ms(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query(
            "SELECT p.confirmed_at_ms AS oldest FROM published_messages p \
             WHERE p.message_type = 'REF^I12' AND NOT EXISTS (SELECT 1 FROM inbound_messages i \
             WHERE i.ubrn = p.ubrn AND i.message_type LIKE 'RRI%' \
             AND i.status IN ('done', 'needs-action', 'resolved')) \
             ORDER BY p.confirmed_at_ms LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .op("oldest_awaiting_decision")?
        .map(|r| r.try_get("oldest"))
        .transpose()
        .op("oldest_awaiting_decision")
    }

    /// The counts the gauges, the alerts and the dashboard's summary show, read once with
    /// aggregate queries (no list is loaded to be counted).
    pub async fn facts(&self, now_ms: i64) -> Result<StoreFacts, StoreError> {
        const OP: &str = "facts";
        let (needs_action_open, oldest_needs_action_ms) = self.needs_action_open().await?;
        let count = |sql: &'static str, since: Option<i64>| async move {
            let mut q = sqlx::query(sql);
            if let Some(t) = since {
                q = q.bind(t);
            }
            let r = q.fetch_one(&self.pool).await.op(OP)?;
            r.try_get::<i64, _>("n").op(OP)
        };
        let recent = Some(now_ms - DEAD_LETTER_WINDOW_MS);
        Ok(StoreFacts {
            needs_action_open,
            oldest_needs_action_ms,
            parked_open: count("SELECT COUNT(*) AS n FROM parked", None).await?,
            dead_letters_waiting: count(
                "SELECT COUNT(*) AS n FROM dead_letters WHERE redriven_at_ms IS NULL",
                None,
            )
            .await?,
            dead_letters_recent: count(
                "SELECT COUNT(*) AS n FROM dead_letters WHERE at_ms >= $1",
                recent,
            )
            .await?,
            alerts_open: count(
                "SELECT COUNT(*) AS n FROM alerts WHERE resolved_at_ms IS NULL",
                None,
            )
            .await?,
            oldest_awaiting_decision_ms: self.oldest_awaiting_decision_ms().await?,
        })
    }

    /// Needs-action records still open, and when the oldest was received.
    pub async fn needs_action_open(&self) -> Result<(i64, Option<i64>), StoreError> {
        const OP: &str = "needs_action_open";
        let r = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(received_at_ms) AS oldest FROM inbound_messages WHERE status = $1",
        )
        .bind(InboundStatus::NeedsAction.as_str())
        .fetch_one(&self.pool)
        .await
        .op(OP)?;
        Ok((r.try_get("n").op(OP)?, r.try_get("oldest").op(OP)?))
    }
}

enum Bind {
    Text(String),
    Int(i64),
}

fn entry(at_ms: i64, stage: &'static str, detail: String) -> TimelineEntry {
    TimelineEntry {
        at_ms,
        stage,
        control_id: None,
        message_type: None,
        detail,
        payload: None,
    }
}

fn stage_rank(stage: &str) -> u8 {
    match stage {
        "published" => 0,
        "recorded" => 1,
        "parked" => 2,
        "pas_ack" => 3,
        "pas_decision" => 4,
        "ers_call" => 5,
        _ => 6,
    }
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (at, cid) = c.split_once(':')?;
    Some((at.parse().ok()?, cid.to_string()))
}
