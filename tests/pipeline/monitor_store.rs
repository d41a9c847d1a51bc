//! The monitoring side of the store, on SQLite and PostgreSQL: keyset search pages,
//! alerts that open and resolve once, dead letters re-driven once, payload pruning in
//! batches that keeps the metadata (and shrinks the SQLite file); and the alert engine (one
//! opening and one resolution over many failing evaluations) with its webhook called
//! exactly twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ers_bridge::events::{Event, Events};
use ers_bridge::monitor::alerts::{self, AlertEngine, Condition};
use ers_bridge::store::{DeadLetter, InboundStatus, SearchFilter, Store};
use secrecy::SecretString;

use crate::helpers;
use crate::ids::cid;

async fn scenario(store: &Store) {
    // 120 inbound messages, a third of them old.
    let big = format!("MSH|^~\\&|PAS|{}", "x".repeat(4000));
    for i in 0..120i64 {
        let id = cid(&format!("PASMON{i:04}"));
        store
            .inbound_begin(&id, "RRI^I12", &big, 1_000 + i)
            .await
            .unwrap();
        store
            .inbound_finish(
                &id,
                InboundStatus::Done,
                None,
                Some("accept"),
                "ok",
                Some("AA"),
            )
            .await
            .unwrap();
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
    // Fill, prune everything, reclaim: the file gets smaller.
    let big = "y".repeat(8000);
    for i in 0..500i64 {
        let id = cid(&format!("PASBIG{i:04}"));
        store
            .inbound_begin(&id, "RRI^I12", &big, 5_000)
            .await
            .unwrap();
        store
            .inbound_finish(&id, InboundStatus::NoAction, None, None, "", None)
            .await
            .unwrap();
    }
    store.reclaim_space(0).await.unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    while store.prune_payloads_batch(10_000, 200).await.unwrap() > 0 {}
    assert!(store.reclaim_space(100_000).await.unwrap());
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after < before * 3 / 4, "{before} -> {after} bytes");
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

/// Two hundred evaluations with the condition failing, then fifty with it clear: one
/// opening and one resolution, never one per failure.
#[tokio::test]
async fn an_alert_opens_once_over_many_failures_and_resolves_once() {
    let store = Store::connect(&SecretString::from("sqlite::memory:"))
        .await
        .unwrap();
    let events = Events::new();
    let mut observed = events.subscribe();
    let engine = AlertEngine::new(store.clone(), events.clone(), None);
    let calls = Arc::new(Mutex::new(0usize));
    let stop = tokio::sync::Notify::new();
    let stop = Arc::new(stop);
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
    // A 1 ms period: the count of evaluations, not time, drives the test (the store's pool
    // keeps its own timeouts, which a paused clock would fire while SQLite works).
    alerts::run(engine, Duration::from_millis(1), probe, stopped).await;
    let mut transitions = Vec::new();
    while let Ok(e) = observed.try_recv() {
        if let Event::Alert(a) = e {
            transitions.push(a.state);
        }
    }
    assert_eq!(transitions, ["open", "resolved"]);
    assert!(store.open_alerts().await.unwrap().is_empty());
    assert_eq!(events.metrics().alerts_opened.get(), 1);
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
