//! The monitoring side of the store, on SQLite and PostgreSQL: keyset search pages,
//! alerts that open and resolve once, dead letters re-driven once, payload pruning in
//! batches that keeps the metadata (and shrinks the SQLite file); and the alert engine (one
//! opening and one resolution over many failing evaluations) with its webhook called
//! exactly twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ers_bridge::events::{Event, Events};
use ers_bridge::monitor::alerts::{self, AlertEngine, Condition};
use ers_bridge::store::{Begin, DeadLetter, Ending, InboundStatus, SearchFilter, Store};
use secrecy::SecretString;

use crate::helpers;
use crate::ids::cid;

async fn scenario(store: &Store) {
    // 120 inbound messages, a third of them old.
    let big = format!("MSH|^~\\&|PAS|{}", "x".repeat(4000));
    let ubrn = ers_bridge::ids::Ubrn::parse("000000070001").unwrap();
    for i in 0..120i64 {
        let id = cid(&format!("PASMON{i:04}"));
        store
            .inbound_begin(&id, "RRI^I12", &big, 1_000 + i)
            .await
            .unwrap();
        let end = Ending::Done {
            ubrn: &ubrn,
            action: "accept",
            detail: "ok",
        };
        // No reply payload: the pruning counts below are of the messages' own bodies.
        store.inbound_end(&id, &end, None, 2_000 + i).await.unwrap();
    }
    // Keyset pages: newest first, no overlap, no gap.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .search(&SearchFilter {
                direction: Some("in".into()),
                status: Some("done".into()),
                after: after.clone(),
                limit: Some(25),
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|m| m.control_id.clone()));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 120);
    assert_eq!(seen[0], "PASMON0119");
    assert_eq!(seen[119], "PASMON0000");
    let one = store
        .search(&SearchFilter {
            control_id: Some("PASMON0007".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    assert!(store
        .search(&SearchFilter {
            after: Some("garbage".into()),
            ..Default::default()
        })
        .await
        .is_err());

    // Alerts open once and resolve once.
    assert!(store
        .open_alert("broker_disconnected", "down", 10)
        .await
        .unwrap());
    assert!(!store
        .open_alert("broker_disconnected", "down", 11)
        .await
        .unwrap());
    assert_eq!(store.open_alerts().await.unwrap().len(), 1);
    assert!(store
        .resolve_alert("broker_disconnected", 12)
        .await
        .unwrap());
    assert!(!store
        .resolve_alert("broker_disconnected", 13)
        .await
        .unwrap());
    assert!(store.open_alerts().await.unwrap().is_empty());

    // A dead letter is re-driven once.
    store
        .record_dead_letter(&DeadLetter {
            id: "dl-a".into(),
            at_ms: 1_000,
            reason: "unreadable".into(),
            detail: "MSH-1 missing".into(),
            message_id: None,
            body_b64: Some("Z2FyYmFnZQ==".into()),
            redriven_at_ms: None,
        })
        .await
        .unwrap();
    assert!(store.mark_redriven("dl-a", 2_000).await.unwrap());
    assert!(!store.mark_redriven("dl-a", 2_001).await.unwrap());

    // Pruning in batches of 50 clears the 121 old payloads in three batches.
    let mut batches = Vec::new();
    loop {
        let n = store.prune_payloads_batch(1_200, 50).await.unwrap();
        batches.push(n);
        if n < 50 {
            break;
        }
    }
    assert_eq!(batches, [50, 50, 21]);
    let kept = store.inbound(&cid("PASMON0005")).await.unwrap().unwrap();
    assert_eq!(kept.hl7, None, "payload pruned");
    assert_eq!(kept.action.as_deref(), Some("accept"), "metadata kept");
    assert_eq!(
        store.dead_letter("dl-a").await.unwrap().unwrap().body_b64,
        None
    );
}

#[tokio::test]
async fn sqlite_monitor_store_and_the_file_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::connect(&SecretString::from(format!("sqlite://{}", path.display())))
        .await
        .unwrap();
    scenario(&store).await;
    // Fill with 2 KB messages (a REF^I12's size: small enough to sit inside a metadata row's
    // page, which is why payloads have a table of their own), prune everything, reclaim:
    // the file gets smaller, and a second fill reuses the space instead of growing it.
    let body = format!("MSH|^~\\&|PAS|{}", "y".repeat(2000));
    let fill = |round: i64| {
        let (store, body) = (store.clone(), body.clone());
        async move {
            for i in 0..1000i64 {
                let id = cid(&format!("PASBIG{round}{i:04}"));
                let at = round * 100_000 + 5_000;
                store
                    .inbound_begin(&id, "RRI^I12", &body, at)
                    .await
                    .unwrap();
                let end = Ending::NoAction {
                    ubrn: None,
                    why: "",
                };
                store.inbound_end(&id, &end, None, at + 1).await.unwrap();
            }
        }
    };
    let size = || std::fs::metadata(&path).unwrap().len();
    fill(1).await;
    store.reclaim_space(0).await.unwrap();
    let before = size();
    assert!(before > 2_000_000, "{before} bytes");
    while store.prune_payloads_batch(150_000, 200).await.unwrap() > 0 {}
    assert!(store.free_pages().await.unwrap() > 500, "whole pages freed");
    // In steps of 100 pages, as the retention job does in steps of 10,000.
    let given_back = store
        .reclaim_gently(100, Duration::ZERO, || false)
        .await
        .unwrap();
    assert!(given_back > 500, "{given_back} pages");
    assert_eq!(store.free_pages().await.unwrap(), 0);
    let after = size();
    assert!(after < before / 2, "{before} -> {after} bytes");
    // Metadata kept: the message is still found, without its HL7.
    let kept = store.inbound(&cid("PASBIG10007")).await.unwrap().unwrap();
    assert_eq!((kept.status, kept.hl7), (InboundStatus::NoAction, None));
    // A resend of a message already handled keeps it as it is: the pruned payload stays
    // pruned.
    match store
        .inbound_begin(&cid("PASBIG10007"), "RRI^I12", &body, 200_000)
        .await
        .unwrap()
    {
        Begin::Seen(r) => assert_eq!(r.hl7, None, "a resend does not restore the payload"),
        Begin::New => panic!("a resend is not new"),
    }
    fill(2).await;
    while store.prune_payloads_batch(250_000, 200).await.unwrap() > 0 {}
    store.reclaim_space(0).await.unwrap();
    assert!(size() < before / 2, "bounded over two rounds: {}", size());
    store.close().await;
}

#[tokio::test]
async fn postgres_monitor_store() {
    let (name, url) = helpers::pg_database().await;
    let store = Store::connect(&SecretString::from(url)).await.unwrap();
    scenario(&store).await;
    assert!(!store.reclaim_space(10).await.unwrap(), "autovacuum's job");
    store.close().await;
    helpers::drop_pg_database(&name).await;
}

/// Where the webhook POST of the current transition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Idle,
    InFlight,
    /// Failed, waiting out its retry delay on the clock.
    Sleeping,
}

impl Hook {
    /// After a POST ended: noted in `posts`; delivered, or sleeping before its retry.
    fn after(
        w: &ers_bridge::events::AlertWebhookPosted,
        posts: &mut Vec<(&'static str, bool)>,
    ) -> Self {
        posts.push((w.state, w.delivered));
        if w.delivered {
            Hook::Idle
        } else {
            Hook::Sleeping
        }
    }
}

/// The evaluation loop on tokio's paused clock, every 30 s: 200 evaluations (100 minutes)
/// with the broker condition failing, then 50 with it clear. One opening and one resolution,
/// never one per failure; the webhook refuses its first POST, so the opening is retried on
/// the clock and the webhook ends with exactly two transitions delivered.
#[tokio::test(start_paused = true)]
async fn an_alert_opens_once_over_many_failures_and_resolves_once() {
    // Time moves only when the test advances it: a blocking task holds tokio's auto-advance
    // off, so no timeout (the store pool's, the webhook client's) fires while real I/O runs.
    // Dropping `_freeze` (also on a panic) ends the task.
    let (_freeze, held) = std::sync::mpsc::channel::<()>();
    let frozen = tokio::task::spawn_blocking(move || {
        let _ = held.recv();
    });

    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let refused_first = Arc::new(Mutex::new(false));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let (seen_tx, refused_first) = (seen_tx.clone(), refused_first.clone());
            async move {
                let _ = seen_tx.send(v);
                let mut refused = refused_first.lock().unwrap();
                if *refused {
                    axum::http::StatusCode::OK
                } else {
                    *refused = true;
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let store = Store::connect(&SecretString::from("sqlite::memory:"))
        .await
        .unwrap();
    let events = Events::new();
    let mut observed = events.subscribe();
    let engine = AlertEngine::new(
        store.clone(),
        events.clone(),
        Some(&format!("http://{addr}/hook")),
    );
    let calls = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(tokio::sync::Notify::new());
    let probe = {
        let (calls, stop) = (calls.clone(), stop.clone());
        move || {
            let (calls, stop) = (calls.clone(), stop.clone());
            async move {
                let mut n = calls.lock().unwrap();
                *n += 1;
                if *n == 250 {
                    stop.notify_one();
                }
                vec![Condition {
                    name: "broker_disconnected",
                    firing: (*n <= 200).then(|| "the bridge has no broker connection".into()),
                }]
            }
        }
    };
    let stopped = {
        let stop = stop.clone();
        async move { stop.notified().await }
    };
    let every = Duration::from_secs(30);
    let started = tokio::time::Instant::now();
    let run = tokio::spawn(alerts::run(engine, every, probe, stopped));

    let (mut transitions, mut posts) = (Vec::new(), Vec::new());
    let mut hook = Hook::Idle;
    for n in 1..=250usize {
        if n > 1 {
            // Never while a POST is on the wire: its timeout would see the jump.
            while hook == Hook::InFlight {
                match observed.recv().await.unwrap() {
                    Event::AlertWebhook(w) => {
                        hook = Hook::after(&w, &mut posts);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            tokio::time::advance(every).await;
            if hook == Hook::Sleeping {
                hook = Hook::InFlight;
            }
        }
        loop {
            match observed.recv().await.unwrap() {
                Event::Alert(a) => {
                    transitions.push((n, a.state));
                    hook = Hook::InFlight;
                }
                Event::AlertWebhook(w) => {
                    hook = Hook::after(&w, &mut posts);
                }
                Event::AlertsEvaluated(e) => {
                    assert_eq!(e.firing, usize::from(n <= 200), "evaluation {n}");
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    run.await.unwrap();
    while hook == Hook::InFlight {
        if let Event::AlertWebhook(w) = observed.recv().await.unwrap() {
            hook = Hook::after(&w, &mut posts);
        }
    }

    assert_eq!(transitions, [(1, "open"), (201, "resolved")]);
    assert_eq!(
        started.elapsed(),
        every * 249,
        "the clock moved only as the test advanced it"
    );
    assert!(store.open_alerts().await.unwrap().is_empty());
    let m = events.metrics();
    assert_eq!(m.alerts_opened.get(), 1);
    assert_eq!(m.alert_evaluations.get(), 250);
    // The webhook: the opening refused once and retried, then the resolution.
    assert_eq!(posts, [("open", false), ("open", true), ("resolved", true)]);
    let mut bodies = Vec::new();
    while let Ok(v) = seen.try_recv() {
        bodies.push((v["alert"].clone(), v["state"].clone()));
    }
    assert_eq!(bodies.len(), 3, "one refused POST and two delivered");
    assert_eq!(
        bodies[1..],
        [
            ("broker_disconnected".into(), "open".into()),
            ("broker_disconnected".into(), "resolved".into())
        ]
    );
    drop(_freeze);
    frozen.await.unwrap();
}

/// The webhook gets one POST when the alert opens and one when it resolves.
#[tokio::test]
async fn the_webhook_is_called_once_per_transition() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let store = Store::connect(&SecretString::from("sqlite::memory:"))
        .await
        .unwrap();
    let engine = AlertEngine::new(store, Events::new(), Some(&format!("http://{addr}/hook")));
    let firing = |on: bool| {
        vec![Condition {
            name: "ers_auth_failing",
            firing: on.then(|| "401".to_string()),
        }]
    };
    let mut transitions = 0;
    for i in 0..10 {
        transitions += engine.apply(&firing(i < 5), i).await.unwrap().len();
    }
    assert_eq!(transitions, 2);
    let open = rx.recv().await.unwrap();
    let resolved = rx.recv().await.unwrap();
    assert_eq!(
        (open["alert"].as_str(), open["state"].as_str()),
        (Some("ers_auth_failing"), Some("open"))
    );
    assert_eq!(resolved["state"], "resolved");
    assert!(rx.try_recv().is_err(), "exactly two calls");
}

/// A store that refuses writes (its file made read-only under a running bridge) raises
/// `store_not_writable` once, though the store cannot hold that alert; the other alerts,
/// which the store cannot record then, do not stop it; it resolves once when the store takes
/// writes again.
#[tokio::test]
async fn a_read_only_store_is_alerted_once_and_resolved_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.db");
    let url = SecretString::from(format!("sqlite://{}", path.display()));
    let store = Store::connect(&url).await.unwrap();
    store.set_state_value("alerts.probe", "0").await.unwrap();
    let events = Events::new();
    let engine = AlertEngine::new(store.clone(), events.clone(), None);
    let conditions = |writable: Result<(), String>| {
        vec![
            Condition {
                name: "store_not_writable",
                firing: writable.err(),
            },
            Condition {
                name: "dead_letters_growing",
                firing: Some("3 messages dead-lettered in the last 15 minutes".into()),
            },
        ]
    };
    let probe = |n: i64| {
        let store = store.clone();
        async move {
            store
                .set_state_value("alerts.probe", &n.to_string())
                .await
                .map_err(|e| format!("the store refuses writes: {e}"))
        }
    };

    let guard = crate::immutable::Immutable::on(&path);
    for n in 1..=5 {
        let writable = probe(n).await;
        let detail = writable.clone().unwrap_err();
        assert!(detail.contains("read-only"), "{detail}");
        assert!(engine.apply(&conditions(writable), n).await.is_err());
    }
    let m = events.metrics();
    assert_eq!((m.alerts_opened.get(), m.alerts_open.get()), (1, 1));
    assert!(store.open_alerts().await.unwrap().is_empty());

    drop(guard);
    let writable = probe(6).await;
    assert!(writable.is_ok(), "{writable:?}");
    let t = engine.apply(&conditions(writable), 6).await.unwrap();
    let names: Vec<_> = t.iter().map(|t| (t.alert.as_str(), t.state)).collect();
    assert_eq!(
        names,
        [
            ("store_not_writable", "resolved"),
            ("dead_letters_growing", "open")
        ]
    );
    assert_eq!(m.alerts_open.get(), 1, "only the stored alert is open");
    store.close().await;
}

/// Per-minute trend counts and code-table misses on one store: counts added to one minute
/// by two bridges sum; buckets sum their minutes; the last minute each series counted is
/// known; minutes past the keep are pruned; a (table, code) miss counts up in one row.
async fn trends_and_misses(store: &Store) {
    let minute = 60_000i64;
    let base = 1_000 * minute;
    store
        .add_minute_counts(base, &[("to_pas", 3), ("from_pas", 0)])
        .await
        .unwrap();
    // A second bridge, the same minute.
    store
        .add_minute_counts(base, &[("to_pas", 2), ("ers_429", 1)])
        .await
        .unwrap();
    store
        .add_minute_counts(base + 7 * minute, &[("to_pas", 4)])
        .await
        .unwrap();
    let rows = store.trend_counts(base, minute).await.unwrap();
    assert_eq!(
        rows,
        [
            (base, "ers_429".to_string(), 1),
            (base, "to_pas".to_string(), 5),
            (base + 7 * minute, "to_pas".to_string(), 4),
        ]
    );
    // Ten-minute buckets.
    let rows = store.trend_counts(base, 10 * minute).await.unwrap();
    assert_eq!(
        rows,
        [
            (base, "ers_429".to_string(), 1),
            (base, "to_pas".to_string(), 9),
        ]
    );
    let last = store.trend_last_seen().await.unwrap();
    assert_eq!(last.get("to_pas"), Some(&(base + 7 * minute)));
    assert_eq!(last.get("from_pas"), None, "zeros are not stored");
    assert_eq!(store.prune_minute_counts(base + minute).await.unwrap(), 2);
    assert_eq!(store.trend_counts(0, minute).await.unwrap().len(), 1);

    for at in [5, 9, 7] {
        store
            .record_code_miss("specialty", "SPEC_NEW", at)
            .await
            .unwrap();
    }
    store.record_code_miss("priority", "P9", 8).await.unwrap();
    let (misses, total) = store.code_misses(10).await.unwrap();
    assert_eq!(total, 2);
    let got: Vec<_> = misses
        .iter()
        .map(|m| {
            (
                m.table.as_str(),
                m.code.as_str(),
                m.first_ms,
                m.last_ms,
                m.count,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("priority", "P9", 8, 8, 1),
            ("specialty", "SPEC_NEW", 5, 7, 3)
        ],
        "most recently seen first (last_ms is the latest write's time)"
    );
}

#[tokio::test]
async fn trends_and_code_misses_on_sqlite() {
    let store = Store::connect(&SecretString::from("sqlite::memory:"))
        .await
        .unwrap();
    trends_and_misses(&store).await;
    store.close().await;
}

#[tokio::test]
async fn trends_and_code_misses_on_postgres() {
    let (name, url) = helpers::pg_database().await;
    let store = Store::connect(&SecretString::from(url)).await.unwrap();
    trends_and_misses(&store).await;
    store.close().await;
    helpers::drop_pg_database(&name).await;
}
