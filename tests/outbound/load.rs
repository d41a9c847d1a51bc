//! The whole loop under load, through `run` (worklist pollers and the inbound consumer at
//! once): 1,500 generated referrals make the outbound backlog, the PAS simulator answers
//! every REF^I12 as it arrives (a commit ACK and an RRI^I12; about a third of the RRIs are
//! decisions, the rest pending), and the bridge applies each decision in e-RS exactly once
//! while the backlog is still being worked. Nothing is left unhandled.

use std::collections::HashMap;
use std::time::Duration;

use ers_bridge::app::Shutdown;
use ers_bridge::pas_sim::{self, Mix, PasSimConfig, PasSimReport};
use ers_bridge::store::InboundStatus;

use crate::helpers::{Harness, Opts, AMQP_URL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_decisions_behind_a_thousand_referral_backlog_are_each_applied_once() {
    let h = Harness::start(Opts {
        generate: 1500,
        client_rate: 5000,
        sim_rate: 10_000,
        ..Opts::default()
    })
    .await;
    let shutdown = Shutdown::new();
    let app = h.app(shutdown.clone()).await;
    let store = app.shared().store.clone();
    let events = app.shared().events.clone();
    let mut observed = events.subscribe();
    let running = tokio::spawn(app.run_until_stopped());

    let pas = PasSimConfig {
        amqp_url: AMQP_URL.to_string(),
        pas_queue: h.pas_queue(),
        inbound_queue: format!("{}-in", h.prefix),
        mix: Mix {
            reject_pct: 10,
            pending_pct: 64,
        },
        faults: Vec::new(),
    };
    let mut report = PasSimReport::default();
    let mut decisions_while_backlogged = 0usize;
    let settled = tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            let published = |store: ers_bridge::store::Store| async move {
                store
                    .published_counts()
                    .await
                    .unwrap()
                    .iter()
                    .filter(|(t, _)| t == "REF^I12")
                    .map(|(_, n)| *n as usize)
                    .sum::<usize>()
            };
            let before = published(store.clone()).await;
            let round = pas_sim::answer_all(&pas).await.unwrap();
            if before < 1500 {
                decisions_while_backlogged += round.accepted + round.rejected;
            }
            let published = published(store.clone()).await;
            report += round;
            let sent = report.acked + report.accepted + report.rejected + report.pending;
            let finished: i64 = store
                .inbound_counts()
                .await
                .unwrap()
                .iter()
                .filter(|(s, ..)| s.is_final())
                .map(|(.., n)| n)
                .sum();
            if published >= 1500 && report.received >= 1500 && finished as usize >= sent {
                break;
            }
            // Wake on the pipeline's next event rather than on a timer; a quiet second
            // (the consumer between batches) just loops.
            let _ = tokio::time::timeout(Duration::from_secs(1), observed.recv()).await;
        }
    })
    .await;
    settled.expect("the loop settles");

    let decisions = report.accepted + report.rejected;
    assert!(decisions >= 500, "{decisions} decisions: {report:?}");
    assert!(
        decisions_while_backlogged > 0,
        "decisions arrived while the backlog was worked"
    );
    eprintln!("{decisions} decisions, {decisions_while_backlogged} sent while referrals were still waiting to be published");
    // Every PAS message ended: decisions done, ACKs and pending RRIs no action; nothing for
    // a person, nothing waiting for a retry.
    let mut by = HashMap::new();
    for (status, action, _, n) in store.inbound_counts().await.unwrap() {
        *by.entry((status.as_str(), action)).or_insert(0i64) += n;
    }
    let done: i64 = by
        .iter()
        .filter(|((s, _), _)| *s == InboundStatus::Done.as_str())
        .map(|(_, n)| n)
        .sum();
    assert_eq!(done as usize, decisions, "{by:?}");
    assert!(
        !by.keys().any(|(s, _)| [
            InboundStatus::NeedsAction,
            InboundStatus::Retry,
            InboundStatus::Intent
        ]
        .iter()
        .any(|x| x.as_str() == *s)),
        "{by:?}"
    );
    shutdown.trigger();
    running.await.unwrap().expect("stops cleanly");
    // Exactly one applied e-RS write per decision.
    let mut applied: HashMap<String, usize> = HashMap::new();
    for c in crate::inbound::write_calls(&h).await {
        if c["applied"] == true {
            *applied
                .entry(c["ubrn"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(applied.len(), decisions, "one referral per decision");
    assert!(
        applied.values().all(|&n| n == 1),
        "a referral written twice: {:?}",
        applied.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
    h.cleanup().await;
}
