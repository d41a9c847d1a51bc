//! Simulator faults (500s, 503 with Retry-After, 429s, latency, PENDING attachments): every
//! referral is eventually published exactly once, and the client never goes over its rate
//! limit (the simulator counts 429s caused by going too fast separately).

use std::collections::HashSet;

use chrono::Utc;
use ers_bridge::app::Shutdown;

use crate::helpers::{Harness, Opts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_referral_is_published_despite_faults_and_pending_attachments() {
    let n = 40;
    let h = Harness::start(Opts {
        generate: n,
        client_rate: 90,
        sim_rate: 100,
        ..Opts::default()
    })
    .await;
    let faults = |pending: u64| {
        serde_json::json!({
            "error_500_rate": 0.1,
            "error_503_rate": 0.015,
            "retry_after_secs": 1,
            "error_429_rate": 0.01,
            "latency_ms": 2,
            "latency_jitter_ms": 3,
            "attachments_pending_secs": pending,
        })
    };
    // Each 429 (and three 503s in a row) pauses the client's shared limiter for its
    // Retry-After (1 s), so their rates are kept low to keep the test quick.
    h.admin("faults", faults(3600)).await;
    let app = h.app(Shutdown::new()).await;
    let p = app.outbound();

    // While e-RS still scans attachments, referrals with attachments wait; the others flow.
    let first = p.poll_once(Utc::now()).await.expect("first pass");
    assert!(first.deferred > 0, "{first:?}");
    assert!(first.published > 0, "{first:?}");
    let early = h.take_messages().await;
    assert_eq!(early.len(), first.messages);

    // Scanning done (the error faults stay): everything else arrives.
    h.admin("faults", faults(0)).await;
    let summary = app.drain(30).await.expect("drain");
    assert_eq!(summary.parked.len(), 0, "{:?}", summary.parked);
    let rest = h.take_messages().await;
    let ubrns: HashSet<_> = early.iter().chain(&rest).map(|m| m.ubrn()).collect();
    assert_eq!(ubrns.len(), n, "every referral published");
    assert_eq!(early.len() + rest.len(), n, "each exactly once");

    let stats = h.stats().await;
    assert_eq!(
        stats["rate_limited"], 0,
        "client exceeded its rate limit: {stats}"
    );
    assert!(
        stats["by_status"]["500"].as_u64().unwrap_or(0) > 0,
        "faults were injected: {stats}"
    );
    app.close().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_pending_too_long_are_sent_by_reference_and_the_wait_survives_a_restart() {
    let n = 10;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    h.admin(
        "faults",
        serde_json::json!({"attachments_pending_secs": 86_400}),
    )
    .await;
    let t0 = Utc::now();
    let app = h.app(Shutdown::new()).await;
    let first = app.outbound().poll_once(t0).await.expect("pass");
    assert!(first.deferred > 0, "{first:?}");
    app.close().await;

    // Restarted half an hour later: still within the default hour, still waiting.
    let app = h.app(Shutdown::new()).await;
    let later = app
        .outbound()
        .poll_once(t0 + chrono::Duration::minutes(30))
        .await
        .expect("pass");
    assert_eq!(later.deferred, first.deferred, "{later:?}");
    assert_eq!(later.published, 0);

    // Past the hour counted from the first wait: published without the attachment bytes.
    let late = app
        .outbound()
        .poll_once(t0 + chrono::Duration::minutes(61))
        .await
        .expect("pass");
    assert_eq!(late.deferred, 0, "{late:?}");
    assert_eq!(late.published, first.deferred);
    let msgs = h.take_messages().await;
    assert_eq!(msgs.len(), n);
    for m in &msgs {
        assert!(
            m.message
                .segments_named("OBX")
                .filter(|obx| obx.comp(4, 1) != "clinical-info")
                .all(|obx| obx.get(2, 1, 1, 1) != "ED"),
            "no attachment was inline (only the clinical summary standing in for them)"
        );
    }
    app.close().await;
    h.cleanup().await;
}

/// A worklist e-RS refuses for good (422 for one service): reported once, recorded in the
/// store, alerted with the list named, and not asked again on the next pass, while the
/// other services' referrals are all published and the drain ends at once instead of
/// spending its passes on it (issue 21: 50 passes, 31 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worklist_refused_for_good_is_reported_once_and_left_alone() {
    let h = Harness::start(Opts {
        generate: 40,
        ..Opts::default()
    })
    .await;
    h.admin(
        "faults",
        serde_json::json!({"refuse_worklist_services": ["21013"]}),
    )
    .await;
    let app = h.app(ers_bridge::app::Shutdown::new()).await;
    let first = app.drain(50).await.unwrap();
    let r = &first.report;
    assert_eq!(
        r.worklist_refused,
        2 * first.passes,
        "both lists of 21013, each pass: {r:?}"
    );
    assert_eq!(r.worklist_errors, 0, "{r:?}");
    assert!(r.published > 0, "the other services flow: {r:?}");
    assert!(
        first.passes <= 3,
        "no pass spent on the refused list: {}",
        first.passes
    );
    let refused = app.shared().store.lists_refused().await.unwrap();
    let names: Vec<String> = refused
        .iter()
        .map(|l| format!("{}/{}", l.service, l.list))
        .collect();
    assert_eq!(
        names,
        [
            "21013/APPOINTMENT_SLOT_ISSUES",
            "21013/REFERRALS_FOR_REVIEW"
        ],
        "{refused:?}"
    );
    assert!(refused[0].error.contains("422"), "{:?}", refused[0]);

    // The next pass does not ask e-RS for it again.
    let a008 = h.stats().await["by_operation"]["A008"].as_u64().unwrap();
    let again = app.outbound().poll_once(chrono::Utc::now()).await.unwrap();
    assert_eq!(again.worklist_refused, 2);
    let lists = app.outbound().targets().len() as u64;
    assert_eq!(
        h.stats().await["by_operation"]["A008"].as_u64().unwrap(),
        a008 + lists - 2,
        "only the lists not refused were polled"
    );

    // The alert names the lists and the fix.
    let lists: Vec<(String, String)> = app
        .outbound()
        .targets()
        .iter()
        .map(|t| (t.service.clone(), t.list.code().to_string()))
        .collect();
    let conditions = ers_bridge::monitor::alerts::probe(
        &app.watched(),
        &ers_bridge::config::AlertsConfig::default(),
        chrono::Utc::now().timestamp_millis(),
        &lists,
    )
    .await;
    let refused = conditions
        .iter()
        .find(|c| c.name == "worklist_refused")
        .and_then(|c| c.firing.clone())
        .expect("the worklist_refused alert fires");
    assert!(refused.contains("21013/REFERRALS_FOR_REVIEW"), "{refused}");
    assert!(refused.contains("[[poll]]"), "{refused}");
    let stale = conditions
        .iter()
        .find(|c| c.name == "worklist_poll_stale")
        .unwrap();
    assert!(stale.firing.is_none(), "just polled: {stale:?}");
    // With no time allowed between polls every list is stale, each named (one store read).
    let strict = ers_bridge::config::AlertsConfig {
        no_poll_minutes: 0,
        ..Default::default()
    };
    // (The last poll was before the probe above: milliseconds ago, never this one.)
    let conditions = ers_bridge::monitor::alerts::probe(
        &app.watched(),
        &strict,
        chrono::Utc::now().timestamp_millis(),
        &lists,
    )
    .await;
    let stale = conditions
        .iter()
        .find(|c| c.name == "worklist_poll_stale")
        .and_then(|c| c.firing.clone())
        .expect("every list is stale at 0 minutes");
    assert!(stale.contains("21012/REFERRALS_FOR_REVIEW"), "{stale}");
    app.close().await;
    h.cleanup().await;
}

/// e-RS answering with broken bodies (issue 21): a quarter of the A005 and A008 answers
/// truncated, without `meta.versionId`, with fields of the wrong type or as an HTML page;
/// then every worklist padded past the client's 10 MiB cap. Nothing panics; nothing is
/// published from a broken body (each message once, each parses); a referral whose read
/// failed is parked with a reason naming the call and what was wrong; the other referrals flow; a worklist
/// over the cap is an error of its pass, not a crash. Once e-RS answers properly again and
/// the parked referrals are released, every referral is published exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_e_rs_bodies_park_or_retry_and_never_publish() {
    let n = 30;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    h.admin("faults", serde_json::json!({"corrupt_rate": 0.25}))
        .await;
    let app = h.app(Shutdown::new()).await;
    let broken = app.drain(10).await.expect("a drain through broken bodies");
    let stats = h.stats().await;
    assert!(
        stats["corrupted_bodies"].as_u64().unwrap_or(0) > 0,
        "bodies were corrupted: {stats}"
    );
    let first = h.take_messages().await; // each parses, or take_messages panics
    let once: HashSet<_> = first.iter().map(|m| m.ubrn()).collect();
    assert_eq!(once.len(), first.len(), "each referral published once");
    assert!(!first.is_empty(), "the unbroken referrals flowed");
    for p in &broken.parked {
        assert!(
            p.reason.contains("A005")
                && ["unexpected response", "version", "decod"]
                    .iter()
                    .any(|w| p.reason.contains(w)),
            "a parked referral names what was wrong: {}",
            p.reason
        );
    }

    // A worklist of 20 MiB: refused by the client's cap, reported in the pass.
    h.admin("faults", serde_json::json!({"worklist_pad_mib": 20}))
        .await;
    let pass = app
        .outbound()
        .poll_once(Utc::now())
        .await
        .expect("a pass with worklists over the cap");
    assert!(pass.worklist_errors > 0, "{pass:?}");
    assert_eq!(pass.published, 0, "{pass:?}");

    // e-RS well again; the parked referrals released: everything else arrives, once.
    h.admin("faults", serde_json::json!({})).await;
    let store = &app.shared().store;
    for p in &broken.parked {
        store.unpark(&p.ubrn).await.unwrap();
    }
    let summary = app.drain(10).await.expect("drain");
    assert_eq!(summary.parked.len(), 0, "{:?}", summary.parked);
    let rest = h.take_messages().await;
    let all: HashSet<_> = first.iter().chain(&rest).map(|m| m.ubrn()).collect();
    assert_eq!(all.len(), n, "every referral published");
    assert_eq!(first.len() + rest.len(), n, "each exactly once");
    app.close().await;
    h.cleanup().await;
}

/// e-RS serving attachments over the client's cap (issue 21): with every attachment 2 MiB
/// larger and `max_attachment_bytes` at 1 MiB, no download is held whole and nothing
/// panics; each referral is still published once, its attachments sent by reference
/// (OBX-2 `RP`, the e-RS URL) with a note saying why they were not embedded (the call and
/// the limit), never silently left out. With the attachments back to their size, a replay embeds them (OBX-2 `ED`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_over_the_cap_is_sent_by_reference_with_a_note() {
    let n = 20;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    h.admin("faults", serde_json::json!({"attachment_pad_mib": 2}))
        .await;
    let app = h
        .app_with(
            "[ers.retry]",
            "max_attachment_bytes = 1048576\n[ers.retry]",
            Shutdown::new(),
        )
        .await;
    let first = app
        .drain(10)
        .await
        .expect("a drain through oversized attachments");
    assert_eq!(first.parked.len(), 0, "{:?}", first.parked);
    let messages = h.take_messages().await;
    let once: HashSet<_> = messages.iter().map(|m| m.ubrn()).collect();
    assert_eq!((once.len(), messages.len()), (n, n), "each referral once");
    let segments = |m: &crate::helpers::Delivered, prefix: &str| {
        m.body.split('\r').filter(|s| s.starts_with(prefix)).count()
    };
    let with_attachments: Vec<_> = messages
        .iter()
        .filter(|m| segments(m, "OBX|1|RP|") > 0)
        .collect();
    assert!(
        !with_attachments.is_empty(),
        "some referrals have attachments"
    );
    for m in &messages {
        assert_eq!(
            segments(m, "OBX|1|ED|REFERRER"),
            0,
            "nothing over the cap embedded"
        );
        assert_eq!(
            segments(m, "OBX|1|RP|"),
            segments(
                m,
                "NTE|1|L|Attachment not embedded (not downloaded: A042 (retrieve attachment): \
                 response larger than the 1048576 byte limit)"
            ),
            "each attachment by reference says why: {}",
            m.body.replace('\r', "\n")
        );
    }

    h.admin("faults", serde_json::json!({})).await;
    let ubrn = ers_bridge::ids::Ubrn::parse(&with_attachments[0].ubrn()).unwrap();
    app.outbound()
        .replay(&ubrn, Utc::now())
        .await
        .expect("replay");
    let again = h.take_messages().await;
    assert_eq!(again.len(), 1);
    assert!(
        segments(&again[0], "OBX|1|ED|REFERRER") > 0,
        "embedded once they fit"
    );
    app.close().await;
    h.cleanup().await;
}
