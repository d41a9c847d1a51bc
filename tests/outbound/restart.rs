//! Restart: a bridge stopped mid-run and started again on the same store publishes the
//! rest and none of the first ones again.

use std::collections::HashSet;

use ers_bridge::app::Shutdown;
use ers_bridge::events::Event;

use crate::helpers::{wait_for_events, Harness, Opts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_mid_run_then_restarted_publishes_each_referral_once() {
    let n = 150;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;

    let shutdown = Shutdown::new();
    let first = h.app(shutdown.clone()).await;
    let mut events = first.shared().events.subscribe();
    let pipeline = first.outbound().clone();
    let run = tokio::spawn(async move { pipeline.drain(10, std::time::Duration::ZERO).await });
    wait_for_events(&mut events, 20, |e| matches!(e, Event::Published(_))).await;
    shutdown.trigger();
    run.await.unwrap().expect("first run stops cleanly");
    let before = h.take_messages().await;
    assert!(
        before.len() >= 20 && before.len() < n,
        "stopped mid-run: {}",
        before.len()
    );
    first.close().await;

    let second = h.app(Shutdown::new()).await;
    let summary = second.drain(10).await.expect("second run");
    assert_eq!(summary.report.published, n - before.len());
    let after = h.take_messages().await;
    let first_ids: HashSet<_> = before.iter().map(|m| m.message_id.clone()).collect();
    for m in &after {
        assert!(
            !first_ids.contains(&m.message_id),
            "{} published twice",
            m.ubrn()
        );
    }
    let all: HashSet<_> = before.iter().chain(&after).map(|m| m.ubrn()).collect();
    assert_eq!(all.len(), n);
    assert_eq!(before.len() + after.len(), n);
    second.close().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_run_loses_nothing_and_duplicates_carry_the_same_control_id() {
    let n = 150;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    let first = h.app(Shutdown::new()).await;
    let mut events = first.shared().events.subscribe();
    let pipeline = first.outbound().clone();
    let run = tokio::spawn(async move { pipeline.drain(10, std::time::Duration::ZERO).await });
    wait_for_events(&mut events, 15, |e| matches!(e, Event::Published(_))).await;
    // No graceful shutdown: the task is dropped wherever it is.
    run.abort();
    let crashed = run.await;
    assert!(
        crashed.is_err_and(|e| e.is_cancelled()),
        "the first run must still be going when it is aborted"
    );
    drop(first);

    let second = h.app(Shutdown::new()).await;
    second.drain(10).await.expect("second run");
    let msgs = h.take_messages().await;
    let ubrns: HashSet<_> = msgs.iter().map(|m| m.ubrn()).collect();
    assert_eq!(ubrns.len(), n, "nothing lost");
    // A referral delivered twice (confirmed, then the crash before the store write) carries
    // the same MSH-10 both times, so the PAS can de-duplicate.
    let mut by_ubrn = std::collections::HashMap::<String, HashSet<String>>::new();
    for m in &msgs {
        by_ubrn
            .entry(m.ubrn())
            .or_default()
            .insert(m.message_id.clone());
    }
    assert!(by_ubrn.values().all(|ids| ids.len() == 1));
    // At most the referrals in flight at the crash (concurrency 8) are duplicated.
    assert!(msgs.len() <= n + 8, "{} messages", msgs.len());
    second.close().await;
    h.cleanup().await;
}
