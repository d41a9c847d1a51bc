//! Edge-triggered alerts: each condition opens an alert once when it starts and resolves it
//! once when it ends, however many failures happen in between (never one alert per retry).
//! The open alert is a row in the store ([`Store::open_alert`] opens only when none is
//! open), so two bridges on one store still raise it once. Each transition is logged once,
//! counted, broadcast to observers ([`Event::Alert`]) and, when `[alerts] webhook_url` is
//! set, POSTed as JSON (`{"alert", "state": "open"|"resolved", "detail", "at_ms"}`) with
//! retries in the background.
//!
//! [`probe`] reads the conditions from the store and the event hub; [`run`] evaluates
//! them every `evaluate_secs` on `tokio::time`, so tests drive it on a paused clock.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::AlertsConfig;
use crate::events::{AlertChanged, AlertWebhookPosted, AlertsEvaluated, Events, FactsRead};
use crate::runtime::Shutdown;
use crate::store::{Store, StoreError};
use crate::transport::PasLink;

/// One condition as probed now: firing with a detail, or clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub name: &'static str,
    pub firing: Option<String>,
}

/// An alert that opened or resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub alert: String,
    /// `open` or `resolved`.
    pub state: &'static str,
    pub detail: String,
    pub at_ms: i64,
}

/// Every condition [`probe`] evaluates, by name (the Prometheus rules in
/// `deploy/alerts.yml` have one each; a test checks both ways).
pub const CONDITIONS: &[&str] = &[
    "worklist_poll_stale",
    "worklist_refused",
    "ers_auth_failing",
    "broker_disconnected",
    "broker_refused",
    "pas_queue_unread",
    "store_not_writable",
    "dead_letters_growing",
    "needs_action_old",
    "no_pas_decision",
];

/// The alerts the store cannot hold: `store_not_writable` fires exactly when the store
/// refuses writes, so its row could never be written. Each process keeps these itself (two
/// bridges on one read-only store each raise it once).
pub const HELD_IN_PROCESS: &[&str] = &["store_not_writable"];

/// Applies probed conditions to the store's open alerts.
#[derive(Debug, Clone)]
pub struct AlertEngine {
    store: Store,
    events: Events,
    webhook: Option<Webhook>,
    /// The open alerts of [`HELD_IN_PROCESS`].
    in_process: Arc<std::sync::Mutex<std::collections::HashSet<&'static str>>>,
}

impl AlertEngine {
    pub fn new(store: Store, events: Events, webhook_url: Option<&str>) -> Self {
        Self {
            store,
            events,
            in_process: Arc::default(),
            webhook: webhook_url.map(|u| Webhook {
                url: u.to_string(),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default(),
                retry_delay: Duration::from_secs(2),
                attempts: 5,
            }),
        }
    }

    /// Opens what starts firing and resolves what stopped; returns the transitions. A
    /// store that fails for one condition does not hold up the others (the first error is
    /// returned after all were tried).
    pub async fn apply(
        &self,
        conditions: &[Condition],
        now_ms: i64,
    ) -> Result<Vec<Transition>, StoreError> {
        let mut out = Vec::new();
        let mut failed = None;
        for c in conditions {
            let changed = match self.change(c, now_ms).await {
                Ok(changed) => changed,
                Err(e) => {
                    failed.get_or_insert(e);
                    continue;
                }
            };
            if !changed {
                continue;
            }
            let t = Transition {
                alert: c.name.to_string(),
                state: if c.firing.is_some() {
                    "open"
                } else {
                    "resolved"
                },
                detail: c.firing.clone().unwrap_or_default(),
                at_ms: now_ms,
            };
            self.events.emit(AlertChanged {
                alert: t.alert.clone(),
                state: t.state,
                detail: t.detail.clone(),
            });
            if let Some(w) = &self.webhook {
                let (w, t, events) = (w.clone(), t.clone(), self.events.clone());
                tokio::spawn(async move { w.send(&t, &events).await });
            }
            out.push(t);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Opens or resolves `c`'s alert (in the store, or here for [`HELD_IN_PROCESS`]);
    /// whether that changed it.
    async fn change(&self, c: &Condition, now_ms: i64) -> Result<bool, StoreError> {
        if HELD_IN_PROCESS.contains(&c.name) {
            let mut open = self.in_process.lock().unwrap_or_else(|e| e.into_inner());
            return Ok(match c.firing {
                Some(_) => open.insert(c.name),
                None => open.remove(c.name),
            });
        }
        match &c.firing {
            Some(detail) => self.store.open_alert(c.name, detail, now_ms).await,
            None => self.store.resolve_alert(c.name, now_ms).await,
        }
    }
}

/// The webhook: POSTs each transition, retrying a failed POST a few times.
#[derive(Debug, Clone)]
struct Webhook {
    url: String,
    http: reqwest::Client,
    retry_delay: Duration,
    attempts: u32,
}

impl Webhook {
    async fn send(&self, t: &Transition, events: &Events) {
        for attempt in 1..=self.attempts {
            let result = self.http.post(&self.url).json(t).send().await;
            if let Err(e) = &result {
                tracing::debug!(alert = %t.alert, error = %e, attempt, "alert webhook unreachable");
            }
            let status = result.as_ref().ok().map(|r| r.status());
            let delivered = status.is_some_and(|s| s.is_success());
            events.emit(AlertWebhookPosted {
                alert: t.alert.clone(),
                state: t.state,
                attempt,
                status: status.map(|s| s.as_u16()),
                delivered,
            });
            if delivered {
                return;
            }
            if attempt < self.attempts {
                tokio::time::sleep(self.retry_delay * attempt).await;
            }
        }
        tracing::error!(alert = %t.alert, state = t.state, "alert webhook gave up");
    }
}

/// What the alert conditions are read from.
#[derive(Debug, Clone)]
pub struct Watched {
    pub store: Store,
    pub events: Events,
    /// The way to the PAS (`broker_disconnected`).
    pub pas: PasLink,
    /// This process among the bridges on the store: only the holder of the `job:alerts`
    /// lease opens and resolves alerts (one evaluator per cluster).
    pub cluster: Arc<crate::cluster::Cluster>,
    /// The bridge's queues on the broker, by role (empty without a broker).
    pub queues: Arc<[(&'static str, String)]>,
    /// Since when the PAS queue has had messages and no consumer (in this process: a new
    /// evaluator starts counting again).
    pub pas_unread_since: Arc<std::sync::Mutex<Option<i64>>>,
}

/// The broker's depth of the bridge's queues now, read over the publisher's connection
/// within 2 s (empty without a broker); sets the queue gauges.
pub async fn queue_depths(
    pas: &PasLink,
    queues: &[(&'static str, String)],
    events: &Events,
) -> Vec<crate::transport::QueueDepth> {
    if queues.is_empty() {
        return Vec::new();
    }
    let depths =
        match tokio::time::timeout(std::time::Duration::from_secs(2), pas.queue_depths(queues))
            .await
        {
            Ok(d) => d,
            Err(_) => queues
                .iter()
                .map(|(role, queue)| crate::transport::QueueDepth {
                    role,
                    queue: queue.clone(),
                    messages: None,
                    consumers: None,
                    error: Some("no answer from the broker within 2s".into()),
                })
                .collect(),
        };
    events.emit(crate::events::QueueDepthsRead {
        depths: depths.clone(),
    });
    depths
}

/// The conditions now, from the store, the event hub and the link to the PAS.
pub async fn probe(
    shared: &Watched,
    cfg: &AlertsConfig,
    started_ms: i64,
    lists: &[(String, String)],
) -> Vec<Condition> {
    let now = chrono::Utc::now().timestamp_millis();
    let store = &shared.store;
    let m = shared.events.metrics();
    let mut out = Vec::new();
    let mut cond = |name, firing: Option<String>| {
        debug_assert!(CONDITIONS.contains(&name), "{name} is not in CONDITIONS");
        out.push(Condition { name, firing })
    };

    // Each list on its own (one stale list among fresh ones is still stale); any
    // instance's poll counts: the store has the last one of each list, read at once. When
    // the read fails the condition is left as it is (not resolved, not opened).
    if let (false, Ok(polled)) = (lists.is_empty(), store.last_polls().await) {
        let limit = cfg.no_poll_minutes as i64 * 60_000;
        let mut stale = Vec::new();
        for (service, list) in lists {
            let last = polled.get(&(service.clone(), list.clone())).copied();
            let since = last.filter(|ms| *ms > 0).unwrap_or(started_ms);
            if now - since > limit {
                stale.push((format!("{service}/{list}"), (now - since) / 60_000));
            }
        }
        cond(
            "worklist_poll_stale",
            (!stale.is_empty()).then(|| {
                let named: Vec<String> = stale
                    .iter()
                    .map(|(l, min)| format!("{l} for {min} minutes"))
                    .collect();
                format!("no successful worklist poll of {}", named.join(", "))
            }),
        );
    }
    if !lists.is_empty() {
        let refused = store.lists_refused().await.unwrap_or_default();
        cond(
            "worklist_refused",
            (!refused.is_empty()).then(|| {
                let lists: Vec<String> = refused
                    .iter()
                    .map(|r| format!("{}/{}: {}", r.service, r.list, r.error))
                    .collect();
                format!(
                    "e-RS refuses {} worklist(s) for good; fix the [[poll]] entries: {}",
                    refused.len(),
                    lists.join("; ")
                )
            }),
        );
    }
    cond(
        "ers_auth_failing",
        (m.ers_auth_failing.get() == 1)
            .then(|| "e-RS refuses the bridge's credentials (401/403)".to_string()),
    );
    cond(
        "broker_disconnected",
        (!shared.pas.is_connected().await)
            .then(|| format!("the bridge has no connection to {}", shared.pas.describe())),
    );
    cond(
        "broker_refused",
        (m.broker_refused.get() == 1).then(|| {
            "the broker refuses the bridge's login or virtual host: check [amqp] url (a \
             configuration error, not an outage)"
                .to_string()
        }),
    );
    let depths = queue_depths(&shared.pas, &shared.queues, &shared.events).await;
    if let Some(pas) = depths.iter().find(|d| d.role == "pas") {
        let mut since = shared
            .pas_unread_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match (pas.messages, pas.consumers) {
            (Some(n), Some(0)) if n > 0 => {
                let from = *since.get_or_insert(now);
                let limit = cfg.pas_queue_unread_minutes as i64 * 60_000;
                cond(
                    "pas_queue_unread",
                    (now - from >= limit).then(|| {
                        format!(
                            "{n} messages wait on the pas queue {} and nothing has consumed it \
                             for {} minutes: the pas has stopped reading",
                            pas.queue,
                            (now - from) / 60_000
                        )
                    }),
                );
            }
            (Some(_), Some(_)) => {
                *since = None;
                cond("pas_queue_unread", None);
            }
            // Not read this time: left as it is.
            _ => {}
        }
    }
    let writable = store
        .set_state_value("alerts.probe", &now.to_string())
        .await;
    cond(
        "store_not_writable",
        writable
            .err()
            .map(|e| format!("the store refuses writes: {e}")),
    );
    // One read of the store's counts: it also sets the gauges `/metrics` shows. When the
    // read fails, the conditions that depend on it are left as they are (not resolved).
    let facts = match store.facts(now).await {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(error = %e, "alert facts not read");
            return out;
        }
    };
    shared.events.emit(FactsRead {
        facts: facts.clone(),
        now_ms: now,
    });
    let n = facts.dead_letters_recent;
    cond(
        "dead_letters_growing",
        (n > 0).then(|| format!("{n} messages dead-lettered in the last 15 minutes")),
    );
    let needs_limit = cfg.needs_action_hours as i64 * 3_600_000;
    cond(
        "needs_action_old",
        facts
            .oldest_needs_action_ms
            .filter(|o| now - o > needs_limit)
            .map(|o| {
                format!(
                    "{} needs-action records, the oldest {} hours old",
                    facts.needs_action_open,
                    (now - o) / 3_600_000
                )
            }),
    );
    let decision_limit = cfg.no_decision_hours as i64 * 3_600_000;
    cond(
        "no_pas_decision",
        facts
            .oldest_awaiting_decision_ms
            .filter(|o| now - o > decision_limit)
            .map(|o| {
                format!(
                    "a referral published {} hours ago has no PAS decision",
                    (now - o) / 3_600_000
                )
            }),
    );
    out
}

/// Evaluates `probe` every `every` until `stop` resolves.
pub async fn run<P, F>(
    engine: AlertEngine,
    every: Duration,
    mut probe: P,
    stop: impl Future<Output = ()>,
) where
    P: FnMut() -> F,
    F: Future<Output = Vec<Condition>>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => break,
        }
        let conditions = probe().await;
        let now = chrono::Utc::now().timestamp_millis();
        if let Err(e) = engine.apply(&conditions, now).await {
            tracing::warn!(error = %e, "alert evaluation failed");
        }
        engine.events.emit(AlertsEvaluated {
            firing: conditions.iter().filter(|c| c.firing.is_some()).count(),
        });
    }
}

/// The engine and its probe for a running bridge.
pub fn for_bridge(
    shared: Arc<Watched>,
    shutdown: Shutdown,
    cfg: AlertsConfig,
    lists: Vec<(String, String)>,
) -> impl Future<Output = ()> {
    let engine = AlertEngine::new(
        shared.store.clone(),
        shared.events.clone(),
        cfg.webhook_url.as_deref(),
    );
    let started = chrono::Utc::now().timestamp_millis();
    let every = Duration::from_secs(cfg.evaluate_secs);
    async move {
        let stop = async move { shutdown.wait().await };
        let probe_shared = shared.clone();
        run(
            engine,
            every,
            move || {
                let s = probe_shared.clone();
                let cfg = cfg.clone();
                let lists = lists.clone();
                async move {
                    // Every instance reads the facts (its gauges); one acts on them.
                    let conditions = probe(&s, &cfg, started, &lists).await;
                    s.events.emit(crate::events::ConditionsProbed {
                        states: conditions
                            .iter()
                            .map(|c| (c.name, c.firing.is_some()))
                            .collect(),
                    });
                    match s.cluster.hold("job:alerts").await {
                        Ok(Some(_)) => conditions,
                        _ => Vec::new(),
                    }
                }
            },
            stop,
        )
        .await;
    }
}
