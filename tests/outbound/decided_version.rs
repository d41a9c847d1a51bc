//! A PAS decision is written on the referral version the PAS saw: `If-Match` carries the
//! version of the REF published to the PAS (the one MSA-2 names, else the latest), and a
//! referral whose clinically relevant content changed in e-RS since is not written (an AE
//! naming what changed, a needs-action record, and the new version sent to the PAS as a
//! REF^I13), never written over with the version just read. A change to nothing relevant
//! (bookkeeping) is written with the current version; a 409 re-reads under the same rule.

use chrono::Utc;
use ers_bridge::hl7::AckCode;
use ers_bridge::pipeline::inbound::Handled;

use crate::helpers::Harness;
use crate::inbound::{ops, reply, rri, seeded, write_calls};

/// An accept of `ubrn` whose MSA-2 acknowledges our message `acked`.
fn accept_acking(control_id: &str, acked: &str, ubrn: &str) -> Vec<u8> {
    let body = rri(control_id, "A^Accepted^HL70283", ubrn, "", "ok");
    let text = String::from_utf8(body).unwrap();
    let (msh, rest) = text.split_once('\r').unwrap();
    format!("{msh}\rMSA|AA|{acked}\r{rest}").into_bytes()
}

/// The message of `kind` about 70001 among those the PAS has been sent since the last
/// look (taking them all off its queue).
async fn sent_for_70001(h: &Harness, kind: &str) -> crate::helpers::Delivered {
    h.take_messages()
        .await
        .into_iter()
        .find(|m| m.kind == kind && m.ubrn() == "000000070001")
        .unwrap_or_else(|| panic!("a {kind} about 70001"))
}

/// The referral's current version in the simulator.
async fn version_of(h: &Harness, ubrn: &str) -> String {
    h.referral(ubrn).await["meta"]["versionId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The A013 calls made for `ubrn`, with their `If-Match` and whether e-RS applied them.
async fn a013s(h: &Harness, ubrn: &str) -> Vec<(String, bool)> {
    write_calls(h)
        .await
        .into_iter()
        .filter(|c| c["operation"] == "A013" && c["ubrn"] == ubrn)
        .map(|c| {
            (
                c["if_match"].as_str().unwrap_or_default().to_string(),
                c["applied"] == true,
            )
        })
        .collect()
}

/// Handles `msg`, an accept of 70001, and checks it was applied as the one A013 on
/// 70001, with `If-Match: W/"<version>"`.
async fn assert_accepted_on(h: &Harness, app: &ers_bridge::app::App, msg: &[u8], version: &str) {
    let handled = app.inbound().handle(msg, Utc::now()).await.unwrap();
    assert_eq!(
        handled,
        Handled::Done {
            action: "accept".into()
        }
    );
    assert_eq!(
        a013s(h, "000000070001").await,
        [(format!("W/\"{version}\""), true)]
    );
}

/// A refusal's ERR: (table 0357 code, the reason text), from a 2.4 ACK's ERR-1.4.
fn err_of(ack: &ers_bridge::hl7::Inbound) -> (String, String) {
    let e = ack.errors.first().expect("an ERR");
    (e.code.clone(), format!("{} {}", e.text, e.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_referral_is_written_with_the_version_the_pas_saw() {
    let (h, app) = seeded(false).await;
    app.drain(10).await.expect("drain");
    let published = h.take_messages().await;
    assert!(!published.is_empty());
    let seen = h.referral("000000070001").await["meta"]["versionId"]
        .as_str()
        .unwrap()
        .to_string();

    let msg = rri("PASVER0001", "A^Accepted^HL70283", "000000070001", "", "ok");
    let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
    assert_eq!(
        handled,
        Handled::Done {
            action: "accept".into()
        }
    );
    let calls = write_calls(&h).await;
    let a013: Vec<_> = calls.iter().filter(|c| c["operation"] == "A013").collect();
    assert_eq!(a013.len(), 1);
    assert_eq!(a013[0]["if_match"], format!("W/\"{seen}\""));
    app.close().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_changed_since_the_pas_saw_it_is_not_written() {
    let (h, app) = seeded(false).await;
    app.drain(10).await.expect("drain");
    h.take_messages().await;

    // The referrer changes the referral while the clinician decides.
    h.admin(
        "referrals/000000070001/change",
        serde_json::json!({"priority": "URGENT"}),
    )
    .await;

    let msg = rri("PASVER0002", "A^Accepted^HL70283", "000000070001", "", "ok");
    let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
    assert!(
        matches!(handled, Handled::NeedsAction { .. }),
        "{handled:?}"
    );
    assert_eq!(ops(&h, "A013").await, 0);
    let ack = reply(&h).await;
    assert_eq!(ack.ack_code, Some(AckCode::AE));
    app.close().await;
    h.cleanup().await;
}

/// A bookkeeping change (a new version, nothing a clinician reads changed) is not a
/// reason to refuse: written with the current version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bookkeeping_change_is_written_with_the_current_version() {
    let (h, app) = seeded(false).await;
    app.drain(10).await.expect("drain");
    h.take_messages().await;
    h.admin(
        "referrals/000000070001/change",
        serde_json::json!({"touch": true}),
    )
    .await;
    let now_version = version_of(&h, "000000070001").await;
    let msg = rri("PASVER0003", "A^Accepted^HL70283", "000000070001", "", "ok");
    assert_accepted_on(&h, &app, &msg, &now_version).await;
    assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA));
    app.close().await;
    h.cleanup().await;
}

/// The letter changes while the clinician decides: no write, an AE naming what changed
/// (table 0357 206 against MSA-2), and the next poll sends the new version to the PAS as
/// a REF^I13, on which a new decision is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_change_is_refused_naming_it_and_the_new_version_goes_to_the_pas() {
    let (h, app) = seeded(false).await;
    app.drain(10).await.expect("drain");
    h.take_messages().await;
    h.admin(
        "referrals/000000070001/change",
        serde_json::json!({"letter_changed": true}),
    )
    .await;
    let msg = rri("PASVER0004", "A^Accepted^HL70283", "000000070001", "", "ok");
    let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
    assert!(
        matches!(handled, Handled::NeedsAction { .. }),
        "{handled:?}"
    );
    assert!(a013s(&h, "000000070001").await.is_empty(), "no write");
    let ack = reply(&h).await;
    assert_eq!(ack.ack_code, Some(AckCode::AE));
    let (code, text) = err_of(&ack);
    assert_eq!(code, "206", "{text}");
    assert!(text.contains("clinical information"), "{text}");

    app.drain(10).await.expect("drain");
    let sent = h.take_messages().await;
    let i13: Vec<_> = sent
        .iter()
        .filter(|m| m.kind == "REF^I13" && m.ubrn() == "000000070001")
        .collect();
    assert_eq!(i13.len(), 1, "the new version reaches the PAS");
    let new_version = version_of(&h, "000000070001").await;
    assert_eq!(
        i13[0].header("x-ers-version").as_deref(),
        Some(new_version.as_str())
    );
    // The clinician decides again on the new version: applied.
    let again = accept_acking("PASVER0005", &i13[0].message_id, "000000070001");
    assert_accepted_on(&h, &app, &again, &new_version).await;
    app.close().await;
    h.cleanup().await;
}

/// The PAS received v1 and, after a priority change, v2; a decision whose MSA-2 names the
/// v1 REF was made on v1 and is refused (the priority changed), while one naming the v2
/// REF is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msa_2_naming_an_older_ref_is_checked_against_that_version() {
    let (h, app) = seeded(false).await;
    app.drain(10).await.expect("drain");
    let first = sent_for_70001(&h, "REF^I12").await;
    h.admin(
        "referrals/000000070001/change",
        serde_json::json!({"priority": "URGENT"}),
    )
    .await;
    app.drain(10).await.expect("drain");
    let second = sent_for_70001(&h, "REF^I13").await;

    let on_first = accept_acking("PASVER0006", &first.message_id, "000000070001");
    let handled = app.inbound().handle(&on_first, Utc::now()).await.unwrap();
    assert!(
        matches!(handled, Handled::NeedsAction { .. }),
        "{handled:?}"
    );
    let (code, text) = err_of(&reply(&h).await);
    assert_eq!(code, "206");
    assert!(text.contains("priority"), "{text}");
    assert!(a013s(&h, "000000070001").await.is_empty());

    let current = version_of(&h, "000000070001").await;
    let on_second = accept_acking("PASVER0007", &second.message_id, "000000070001");
    assert_accepted_on(&h, &app, &on_second, &current).await;
    app.close().await;
    h.cleanup().await;
}

/// e-RS answers 409 because the referral changed between our read and our write: a
/// bookkeeping change is re-read and written (one attempt, not two, for the backoff); a
/// letter change is refused, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_is_re_read_under_the_same_rule() {
    let (h, app) = seeded(false).await;
    app.drain(10).await.expect("drain");
    h.take_messages().await;

    h.admin("faults", serde_json::json!({"change_before_writes": 1}))
        .await;
    let msg = rri("PASVER0008", "A^Accepted^HL70283", "000000070001", "", "ok");
    let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
    assert_eq!(
        handled,
        Handled::Done {
            action: "accept".into()
        }
    );
    let calls = a013s(&h, "000000070001").await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(!calls[0].1 && calls[1].1, "409, then applied: {calls:?}");
    let row = app
        .outbound()
        .store()
        .inbound(&ers_bridge::hl7::ControlId::parse("PASVER0008").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.attempts, 1, "a re-read after a 409 is the same attempt");
    assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA));

    h.admin(
        "faults",
        serde_json::json!({"change_before_writes": 1, "change_before_writes_letter": true}),
    )
    .await;
    let msg = rri("PASVER0009", "A^Accepted^HL70283", "000000070002", "", "ok");
    let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
    assert!(
        matches!(handled, Handled::NeedsAction { .. }),
        "{handled:?}"
    );
    let calls = a013s(&h, "000000070002").await;
    assert_eq!(calls.len(), 1, "the 409 only: {calls:?}");
    assert!(!calls[0].1);
    let (code, text) = err_of(&reply(&h).await);
    assert_eq!(code, "206");
    assert!(text.contains("clinical information"), "{text}");
    app.close().await;
    h.cleanup().await;
}

/// What one decision costs the store, counted (issue 20): an accept whose MSA-2 names the
/// REF the PAS received, from the message stored to the reply recorded. The exactly-once
/// design needs six: the message stored by its MSH-10 (with its bytes), the REF MSA-2
/// names, the referral's earlier decisions (a resend under a new MSH-10), the intent
/// before the call, the attempt with the version it produced after it, and the final
/// status with the reply's bytes (docs/inbound.md). It was twelve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_costs_the_store_what_exactly_once_needs() {
    let (h, app) = seeded(false).await;
    app.drain(10).await.expect("drain");
    let first = sent_for_70001(&h, "REF^I12").await;
    let store = app.outbound().store().clone();
    let before = store.round_trips();
    let msg = accept_acking("PASCOST001", &first.message_id, "000000070001");
    let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
    assert_eq!(
        handled,
        Handled::Done {
            action: "accept".into()
        }
    );
    let used = store.round_trips() - before;
    eprintln!("store round trips for one decision: {used}");
    assert!(used <= 6, "{used} round trips (6 is what the design needs)");
    app.close().await;
    h.cleanup().await;
}

/// An attempt's time is when the call was made, not when the handling began (a retry
/// handled with a `now` long past still shows the call's time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_is_timed_at_its_call() {
    let (h, app) = seeded(false).await;
    let before = Utc::now();
    let msg = rri("PASVER0010", "A^Accepted^HL70283", "000000070001", "", "ok");
    let handled = app
        .inbound()
        .handle(&msg, before - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(matches!(handled, Handled::Done { .. }), "{handled:?}");
    let attempts = app
        .outbound()
        .store()
        .inbound_attempts(&ers_bridge::hl7::ControlId::parse("PASVER0010").unwrap())
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(
        attempts[0].at_ms >= before.timestamp_millis(),
        "{} < {}",
        attempts[0].at_ms,
        before.timestamp_millis()
    );
    app.close().await;
    h.cleanup().await;
}
