//! The main flow: every worklist referral reaches the PAS queue exactly once as REF^I12;
//! a version bump gives one REF^I13 and a cancellation one REF^I14; the same on PostgreSQL.

use std::collections::HashSet;

use ers_bridge::app::Shutdown;

use crate::helpers::{by_type, Harness, Opts, StoreKind};

async fn new_changed_cancelled(store: StoreKind, n: usize) {
    let h = Harness::start(Opts {
        generate: n,
        store,
        ..Opts::default()
    })
    .await;
    let app = h.app(Shutdown::new()).await;
    let summary = app.drain(10).await.expect("drain");
    assert_eq!(summary.report.published, n, "{:?}", summary.report);
    assert!(summary.parked.is_empty(), "{:?}", summary.parked);
    assert_eq!(
        summary.published_by_type,
        [("REF^I12".to_string(), n as i64)]
    );

    let msgs = h.take_messages().await;
    assert_eq!(msgs.len(), n);
    let ids: HashSet<_> = msgs.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(ids.len(), n, "control ids are unique");
    let ubrns: HashSet<_> = msgs.iter().map(|m| m.ubrn()).collect();
    assert_eq!(ubrns.len(), n, "one message per referral");
    for m in &msgs {
        assert_eq!(m.kind, "REF^I12");
        assert_eq!(m.routing_key, "test.REF.I12");
        assert!(m.persistent);
        assert_eq!(m.correlation_id, m.ubrn());
        assert_eq!(m.message.message_type().1, "I12");
        assert_eq!(
            m.message.segment("MSH").unwrap().get(10, 1, 1, 1),
            m.message_id
        );
    }
    // The NHS number in PID-3 is the referral's (checked on a sample to keep it quick).
    for m in msgs.iter().step_by(n.div_ceil(20)) {
        let r = h.referral(&m.ubrn()).await;
        let nhs = r["subject"]["identifier"]["value"].as_str().unwrap();
        assert_eq!(m.nhs_number(), nhs, "ubrn {}", m.ubrn());
    }

    // A referrer-side change bumps the version: one REF^I13.
    let changed = msgs[0].ubrn();
    let priority_before = msgs[0]
        .message
        .segment("RF1")
        .unwrap()
        .comp(2, 4)
        .to_string();
    h.admin(
        &format!("referrals/{changed}/change"),
        serde_json::json!({"priority": "URGENT"}),
    )
    .await;
    // A cancellation takes the referral off its worklist: one REF^I14.
    let cancelled = msgs[1].ubrn();
    h.admin(
        &format!("referrals/{cancelled}/cancel"),
        serde_json::json!({}),
    )
    .await;
    let summary = app.drain(10).await.expect("second drain");
    assert_eq!(summary.report.published, 2, "{:?}", summary.report);
    let msgs = h.take_messages().await;
    assert_eq!(msgs.len(), 2);
    let types = by_type(&msgs);
    assert_eq!(types.get("REF^I13"), Some(&1));
    assert_eq!(types.get("REF^I14"), Some(&1));
    for m in &msgs {
        let expected = if m.kind == "REF^I13" {
            &changed
        } else {
            &cancelled
        };
        assert_eq!(&m.ubrn(), expected);
        assert_eq!(m.routing_key, format!("test.{}", m.kind.replace('^', ".")));
    }
    // The REF^I13 ends with what changed since the version the PAS has.
    let i13 = msgs.iter().find(|m| m.kind == "REF^I13").unwrap();
    let note = i13.message.segments.last().unwrap();
    assert_eq!(note.id, "NTE");
    assert_eq!(note.get(4, 1, 4, 1), "CHANGES");
    let text = note.comp(3, 1);
    if priority_before == "URGENT" {
        assert!(!text.contains("-> URGENT"), "{text}");
    } else {
        assert!(
            text.contains(&format!("priority {priority_before} -> URGENT")),
            "{text}"
        );
    }

    // Nothing new: a further pass publishes nothing.
    let summary = app.drain(3).await.expect("third drain");
    assert_eq!(summary.report.published, 0);
    assert!(h.take_messages().await.is_empty());
    app.close().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_referrals_then_a_change_and_a_cancellation() {
    new_changed_cancelled(StoreKind::Sqlite, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_flow_on_postgresql() {
    new_changed_cancelled(StoreKind::Postgres, 200).await;
}

/// Two passes over the same lists at once (overlapping schedulers, or a UBRN on two lists)
/// still send each referral once: one task per UBRN, the other pass leaves it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_passes_publish_each_referral_once() {
    let n = 60;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    let app = h.app(Shutdown::new()).await;
    let p = app.outbound().clone();
    let now = chrono::Utc::now();
    let (a, b) = tokio::join!(p.poll_once(now), p.poll_once(now));
    let (a, b) = (a.expect("first pass"), b.expect("second pass"));
    assert_eq!(a.published + b.published, n, "{a:?} {b:?}");
    let msgs = h.take_messages().await;
    let ubrns: HashSet<_> = msgs.iter().map(|m| m.ubrn()).collect();
    assert_eq!(msgs.len(), n, "no duplicate publishes");
    assert_eq!(ubrns.len(), n);
    app.close().await;
    h.cleanup().await;
}
