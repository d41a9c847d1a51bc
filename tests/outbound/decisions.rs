//! More of the inbound direction: the e-RS comment limit answered as an AE naming the NTE,
//! a dead letter that keeps the PAS's AMQP properties (and is counted), and the bridge
//! process killed between e-RS applying a write and the broker ack: after a restart the
//! redelivered decisions are found applied, never written twice. And answering every PAS
//! message once and the same way: a decision interrupted after its write acts on its stored
//! decision (not one made again from the state our write produced); a triage decision
//! resent under a new MSH-10, sequentially or two at once, is answered as applied; the same
//! MSH-10 twice in flight is handled once; an MSH-10 reused for another body is refused;
//! a resend of a handled message gets the stored reply again, byte for byte.

use std::process::{Child, Stdio};
use std::time::Duration;

use chrono::Utc;
use ers_bridge::app::Shutdown;
use ers_bridge::hl7::{read_inbound, AckCode, ControlId};
use ers_bridge::pipeline::inbound::Handled;
use ers_bridge::store::InboundStatus;
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

use crate::common::bridge;
use crate::helpers::{Harness, Opts, AMQP_URL};
use crate::inbound::{applied_writes, ops, reply, rri, seeded};

/// e-RS takes at most 2,000 characters of comment: one more is an AE naming NTE-3 and no
/// call; exactly 2,000 is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_over_the_e_rs_limit_is_an_ae_naming_the_nte_and_no_call() {
    let (h, app) = seeded(false).await;
    let long = "x".repeat(2001);
    let msg = rri(
        "PASLONG001",
        "R^Rejected^HL70283",
        "000000070002",
        "WRONGSVC^Wrong service",
        &long,
    );
    let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
    let Handled::NeedsAction { why } = handled else {
        panic!("{handled:?}");
    };
    assert!(why.contains("2000"), "{why}");
    let ack = reply(&h).await;
    assert_eq!(ack.ack_code, Some(AckCode::AE));
    let err = ack.errors.first().expect("an ERR segment");
    assert!(err.location.starts_with("NTE"), "{:?}", err.location);
    assert_eq!(ops(&h, "A014").await, 0, "nothing was sent");

    let fits = rri(
        "PASLONG002",
        "R^Rejected^HL70283",
        "000000070002",
        "WRONGSVC^Wrong service",
        &"x".repeat(2000),
    );
    let handled = app.inbound().handle(&fits, Utc::now()).await.unwrap();
    assert_eq!(
        handled,
        Handled::Done {
            action: "reject".into()
        }
    );
    assert_eq!(applied_writes(&h, "A014").await, 1);
    assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA));
    app.close().await;
    h.cleanup().await;
}

/// A message that is not HL7, sent with the PAS's own properties, reaches the dead letter
/// with those properties and the reason headers, and the metrics count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_keeps_the_pas_properties_and_is_counted() {
    let h = Harness::start(Opts::default()).await;
    let shutdown = Shutdown::new();
    let app = h.app(shutdown.clone()).await;
    let events = app.shared().events.clone();
    let mut observed = events.subscribe();
    let running = tokio::spawn(app.run_until_stopped());

    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut headers = FieldTable::default();
    headers.insert("x-pas-site".into(), AMQPValue::LongString("north".into()));
    ch.basic_publish(
        "".into(),
        format!("{}-in", h.prefix).as_str().into(),
        BasicPublishOptions::default(),
        b"\x00\x01 not hl7",
        BasicProperties::default()
            .with_message_id("PASGARB001".into())
            .with_correlation_id("pas-corr-7".into())
            .with_app_id("pas-engine".into())
            .with_timestamp(1_764_000_000)
            .with_headers(headers),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    // Wait for the pipeline to say it handled it (an observer event, not a sleep).
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(ers_bridge::events::Event::InboundHandled(e)) = observed.recv().await {
                assert_eq!(e.outcome, "dead_lettered");
                break;
            }
        }
    })
    .await
    .expect("the garbage was handled");
    shutdown.trigger();
    running.await.unwrap().expect("stops cleanly");

    let dl = ch
        .basic_get(
            format!("{}-dlq", h.prefix).as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the message on the dead letter");
    let p = &dl.delivery.properties;
    assert_eq!(dl.delivery.data, b"\x00\x01 not hl7");
    assert_eq!(p.message_id().as_ref().unwrap().as_str(), "PASGARB001");
    assert_eq!(p.correlation_id().as_ref().unwrap().as_str(), "pas-corr-7");
    assert_eq!(p.app_id().as_ref().unwrap().as_str(), "pas-engine");
    assert_eq!(*p.timestamp(), Some(1_764_000_000));
    let headers = p.headers().as_ref().unwrap().inner();
    assert_eq!(
        headers.get("x-pas-site"),
        Some(&AMQPValue::LongString("north".into()))
    );
    assert_eq!(
        headers.get("x-ers-error"),
        Some(&AMQPValue::LongString("unreadable".into()))
    );
    assert!(headers.contains_key("x-ers-error-detail"));

    let text = events.encode();
    assert!(
        text.lines()
            .any(|l| l == "ers_bridge_dead_lettered_total 1"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| {
            l
            == "ers_bridge_inbound_messages_total{kind=\"unreadable\",outcome=\"dead_lettered\"} 1"
        }),
        "{text}"
    );
    let _ = conn.close(200, "done".into()).await;
    h.cleanup().await;
}

/// `ers-bridge run` as a child process of this test.
fn spawn_run(h: &Harness) -> Child {
    bridge()
        .args(["run", "--config"])
        .arg(&h.config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ers-bridge run starts")
}

/// Waits (up to a minute) until `done` says so, asking every 50 ms: the bridge is another
/// process, so there is no event to wait on.
async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// e-RS applies an accept and a reject, the bridge is killed (SIGKILL) before it hears
/// back, so neither result is recorded nor the deliveries acked; the restarted bridge gets
/// both again, finds each applied (the reject from the referral's state, the accept from
/// the 422 a second accept gets) and answers AA: exactly one applied write each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_killed_after_e_rs_applied_its_writes_never_writes_twice() {
    let h = Harness::start(Opts {
        seed: true,
        ..Opts::default()
    })
    .await;
    // Declares the topology, so messages sent before the child attaches wait in the queue.
    h.app(Shutdown::new()).await.close().await;
    h.admin(
        "faults",
        serde_json::json!({"hold_write_responses_ms": 600_000}),
    )
    .await;
    let q = ers_bridge::amqp::QueueClient::connect(AMQP_URL)
        .await
        .unwrap();
    let inbound = format!("{}-in", h.prefix);
    q.send(
        &inbound,
        &rri("PASKILL001", "A^Accepted^HL70283", "000000070001", "", "ok"),
    )
    .await
    .unwrap();
    q.send(
        &inbound,
        &rri(
            "PASKILL002",
            "R^Rejected^HL70283",
            "000000070002",
            "WRONGSVC^Wrong service",
            "No",
        ),
    )
    .await
    .unwrap();

    let mut first = spawn_run(&h);
    wait_until("both writes applied in e-RS", || async {
        applied_writes(&h, "A013").await == 1 && applied_writes(&h, "A014").await == 1
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let acks = format!("{}-acks", h.prefix);
    assert!(
        q.take(&acks).await.unwrap().is_none(),
        "killed before it answered the PAS"
    );

    h.admin("faults", serde_json::json!({})).await;
    let mut second = spawn_run(&h);
    let mut replies = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while replies.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: both decisions answered after the restart"
        );
        match q.take(&acks).await.unwrap() {
            Some(body) => replies.push(read_inbound(&body, 1 << 20).unwrap()),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    second.kill().unwrap();
    second.wait().unwrap();
    for r in &replies {
        assert_eq!(r.ack_code, Some(AckCode::AA), "{r:?} {}", r.ack_text);
    }
    assert_eq!(applied_writes(&h, "A013").await, 1, "one accept applied");
    assert_eq!(applied_writes(&h, "A014").await, 1, "one reject applied");
    q.close().await;
    h.cleanup().await;
}

/// The next ACK on the PAS's reply queue as sent: its bytes and AMQP message id.
async fn reply_raw(h: &Harness) -> (Vec<u8>, String) {
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let got = ch
        .basic_get(
            format!("{}-acks", h.prefix).as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("an ACK to the PAS");
    let id = got
        .delivery
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    let _ = conn.close(200, "done".into()).await;
    (got.delivery.data, id)
}

/// The stored inbound message `id`.
async fn row(app: &ers_bridge::app::App, id: &str) -> ers_bridge::store::InboundRecord {
    app.outbound()
        .store()
        .inbound(&ControlId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap()
}

/// Whether the PAS's reply queue is empty.
async fn no_more_replies(h: &Harness) -> bool {
    let q = ers_bridge::amqp::QueueClient::connect(AMQP_URL)
        .await
        .unwrap();
    let none = q
        .take(&format!("{}-acks", h.prefix))
        .await
        .unwrap()
        .is_none();
    q.close().await;
    none
}

/// The RRI `rri` writes, under another MSH-10 (a resend the PAS makes after losing our
/// ACK).
fn with_control_id(body: &[u8], from: &str, to: &str) -> Vec<u8> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .replacen(from, to, 1)
        .into_bytes()
}

/// Defect 5: a PAS that lost our ACK resends the message with the same MSH-10: it gets the
/// stored reply again, byte for byte (the same MSH-10 of ours), for an AA and an AE alike,
/// and nothing is done again in e-RS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_of_a_handled_message_gets_the_stored_reply_byte_for_byte() {
    let (h, app) = seeded(false).await;
    // 70001 is booked: AA. 70000 is not: e-RS refuses the accept, AE.
    for (id, ubrn, code) in [
        ("PASAGN0001", "000000070001", AckCode::AA),
        ("PASAGN0002", "000000070000", AckCode::AE),
    ] {
        let msg = rri(id, "A^Accepted^HL70283", ubrn, "", "ok");
        app.inbound().handle(&msg, Utc::now()).await.unwrap();
        let (first, first_id) = reply_raw(&h).await;
        assert_eq!(read_inbound(&first, 1 << 20).unwrap().ack_code, Some(code));

        let again = app.inbound().handle(&msg, Utc::now()).await.unwrap();
        assert!(
            matches!(again, Handled::Duplicate { .. }),
            "{id}: {again:?}"
        );
        let (second, second_id) = reply_raw(&h).await;
        assert_eq!(second, first, "{id}: the same reply, byte for byte");
        assert_eq!(second_id, first_id, "{id}: under the same message id");
        assert!(no_more_replies(&h).await, "{id}: one reply per copy");
    }
    assert_eq!(ops(&h, "A013").await, 2, "one call per message, none again");
    app.close().await;
    h.cleanup().await;
}

/// Defect 4: the same message twice in flight (a broker redelivery after a channel loss, a
/// PAS resend before our reply) is handled once; the second copy waits for the first and
/// repeats its reply, and the record stays done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_control_id_twice_in_flight_is_handled_once_and_answered_alike() {
    let (h, app) = seeded(false).await;
    let msg = rri("PASTWO0001", "A^Accepted^HL70283", "000000070001", "", "ok");
    let inbound = app.inbound();
    let (a, b) = tokio::join!(
        inbound.handle(&msg, Utc::now()),
        inbound.handle(&msg, Utc::now())
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|h| h.outcome());
    assert_eq!(
        outcomes,
        [
            Handled::Done {
                action: "accept".into()
            },
            Handled::Duplicate {
                status: InboundStatus::Done
            },
        ]
    );
    assert_eq!(ops(&h, "A013").await, 1, "one e-RS call");
    let (first, _) = reply_raw(&h).await;
    let (second, _) = reply_raw(&h).await;
    assert_eq!(first, second, "the second copy repeats the first's reply");
    assert_eq!(
        read_inbound(&first, 1 << 20).unwrap().ack_code,
        Some(AckCode::AA)
    );
    let r = row(&app, "PASTWO0001").await;
    assert_eq!(r.status, InboundStatus::Done);
    assert_eq!(r.reply_code.as_deref(), Some("AA"));
    app.close().await;
    h.cleanup().await;
}

/// Defect 4: an MSH-10 reused for a different body (another referral) while the first is
/// in flight, and again after it: refused with an AE saying so (table 0357 `205`, under a
/// reply id of its own), no e-RS write, and the first message's record untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_id_reused_for_another_body_is_refused_and_nothing_written() {
    let (h, app) = seeded(false).await;
    let accept = rri("PASREU0001", "A^Accepted^HL70283", "000000070001", "", "ok");
    let reject = rri(
        "PASREU0001",
        "R^Rejected^HL70283",
        "000000070002",
        "WRONGSVC^Wrong service",
        "No",
    );
    let inbound = app.inbound();
    let (a, b) = tokio::join!(
        inbound.handle(&accept, Utc::now()),
        inbound.handle(&reject, Utc::now())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let (done, refused) = match (&a, &b) {
        (Handled::Done { action }, Handled::IdReused { why })
        | (Handled::IdReused { why }, Handled::Done { action }) => (action.clone(), why.clone()),
        _ => panic!("one applied, one refused: {a:?} {b:?}"),
    };
    assert!(refused.contains("PASREU0001"), "{refused}");
    let (applied_ubrn, first_op) = if done == "accept" {
        ("000000070001", "A013")
    } else {
        ("000000070002", "A014")
    };
    assert_eq!(applied_writes(&h, first_op).await, 1);
    assert_eq!(
        applied_writes(&h, "A013").await + applied_writes(&h, "A014").await,
        1,
        "only the first message was written"
    );

    // Two replies: the first message's AA and the refusal, under different ids.
    let mut replies = [reply_raw(&h).await, reply_raw(&h).await];
    replies.sort_by_key(|(body, _)| {
        read_inbound(body, 1 << 20)
            .unwrap()
            .ack_code
            .map(|c| c.as_str())
    });
    let (aa, aa_id) = &replies[0];
    let (ae, ae_id) = &replies[1];
    assert_eq!(
        read_inbound(aa, 1 << 20).unwrap().ack_code,
        Some(AckCode::AA)
    );
    let ae = read_inbound(ae, 1 << 20).unwrap();
    assert_eq!(ae.ack_code, Some(AckCode::AE));
    assert_eq!(ae.acked_control_id.unwrap().as_str(), "PASREU0001");
    assert!(ae.ack_text.contains("MSH-10 reused"), "{}", ae.ack_text);
    let err = ae.errors.first().expect("an ERR segment");
    assert_eq!(err.code, "205", "{err:?}");
    assert!(err.location.starts_with("MSH"), "{err:?}");
    assert_ne!(aa_id, ae_id, "the refusal is not taken for the first reply");

    // Again after the first finished: refused again, still one write, the record is the
    // first message's.
    let late = if done == "accept" { &reject } else { &accept };
    let again = app.inbound().handle(late, Utc::now()).await.unwrap();
    assert!(matches!(again, Handled::IdReused { .. }), "{again:?}");
    assert_eq!(
        read_inbound(&reply_raw(&h).await.0, 1 << 20)
            .unwrap()
            .ack_code,
        Some(AckCode::AE)
    );
    assert_eq!(
        applied_writes(&h, "A013").await + applied_writes(&h, "A014").await,
        1
    );
    let r = row(&app, "PASREU0001").await;
    assert_eq!(r.status, InboundStatus::Done);
    assert_eq!(r.ubrn.unwrap().as_str(), applied_ubrn);
    assert_eq!(r.reply_code.as_deref(), Some("AA"));
    app.close().await;
    h.cleanup().await;
}

/// Defect 3: a triage decision resent under a new MSH-10 (the PAS lost our ACK) is
/// recognised whatever state our write moved the referral to: an accept on an
/// awaiting-triage referral (A028 ACCEPT_REFER_BOOK_LATER) and a return to the referrer on
/// a deferred one (A028 RETURN_TO_REFERRER_WITH_ADVICE) are each answered AA again, with no
/// A013 or A014 made from the new state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triage_decision_resent_under_a_new_control_id_is_answered_as_applied() {
    let (h, app) = seeded(false).await;
    for (first, resend, status, ubrn, reason) in [
        (
            "PASTRG0001",
            "PASTRG0002",
            "A^Accepted^HL70283",
            "000000070013",
            "",
        ),
        (
            "PASTRG0003",
            "PASTRG0004",
            "R^Rejected^HL70283",
            "000000070003",
            "WRONGSVC^Wrong service",
        ),
    ] {
        let msg = rri(first, status, ubrn, reason, "Decided at triage");
        for body in [msg.clone(), with_control_id(&msg, first, resend)] {
            let handled = app.inbound().handle(&body, Utc::now()).await.unwrap();
            assert_eq!(
                handled,
                Handled::Done {
                    action: "record_review_outcome".into()
                },
                "{ubrn}"
            );
            assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA), "{ubrn}");
        }
        let r = row(&app, resend).await;
        assert!(
            r.detail.as_deref().unwrap_or("").contains(first),
            "{ubrn}: {:?}",
            r.detail
        );
    }
    assert_eq!(applied_writes(&h, "A028").await, 2, "one per referral");
    assert_eq!(ops(&h, "A013").await, 0);
    assert_eq!(ops(&h, "A014").await, 0);
    app.close().await;
    h.cleanup().await;
}

/// Defect 3: two copies of a triage decision under different MSH-10s in flight at once:
/// one A028, both answered AA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_of_a_triage_decision_at_once_make_one_write_and_two_aas() {
    let (h, app) = seeded(false).await;
    let a = rri(
        "PASTRC0001",
        "A^Accepted^HL70283",
        "000000070013",
        "",
        "Decided at triage",
    );
    let b = with_control_id(&a, "PASTRC0001", "PASTRC0002");
    let inbound = app.inbound();
    let (x, y) = tokio::join!(
        inbound.handle(&a, Utc::now()),
        inbound.handle(&b, Utc::now())
    );
    for handled in [x.unwrap(), y.unwrap()] {
        assert_eq!(
            handled,
            Handled::Done {
                action: "record_review_outcome".into()
            }
        );
    }
    for _ in 0..2 {
        assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA));
    }
    assert_eq!(applied_writes(&h, "A028").await, 1);
    assert_eq!(ops(&h, "A013").await, 0);
    app.close().await;
    h.cleanup().await;
}

/// Defect 3: a decision interrupted after e-RS applied its write acts on its stored
/// decision, not on one made again from the state the write produced. A return to the
/// referrer on an awaiting-triage referral whose response is lost is retried from the
/// store; an accept on a deferred referral whose bridge stopped mid-call (found at its
/// intent by a new bridge on the same store) is handled again. Each is found applied
/// (A028), answered AA, with no A013 or A014 and the record naming A028's action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_decision_acts_on_its_stored_decision() {
    let (h, app) = seeded(false).await;

    // The response is lost: a retry from the store.
    let reject = rri(
        "PASINT0001",
        "R^Rejected^HL70283",
        "000000070013",
        "WRONGSVC^Wrong service",
        "Decided at triage",
    );
    let done = crate::inbound::lose_the_response_then_retry(&h, &app, &reject, "A028").await;
    assert_eq!(
        done,
        [Handled::Done {
            action: "record_review_outcome".into()
        }]
    );
    assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA));

    // The bridge stops between the call and its record: the row is left at its intent.
    h.admin(
        "faults",
        serde_json::json!({"hold_write_responses_ms": 600_000}),
    )
    .await;
    let accept = rri(
        "PASINT0002",
        "A^Accepted^HL70283",
        "000000070003",
        "",
        "Decided at triage",
    );
    tokio::select! {
        handled = app.inbound().handle(&accept, Utc::now()) => {
            panic!("the write's response is held: {handled:?}")
        }
        () = wait_until("the accept applied in e-RS", || async {
            applied_writes(&h, "A028").await == 2
        }) => {}
    }
    app.close().await;
    h.admin("faults", serde_json::json!({})).await;
    let restarted = h.app(Shutdown::new()).await;
    assert_eq!(
        row(&restarted, "PASINT0002").await.status,
        InboundStatus::Intent,
        "interrupted at its intent"
    );
    let handled = restarted
        .inbound()
        .handle(&accept, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        handled,
        Handled::Done {
            action: "record_review_outcome".into()
        }
    );
    assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA));
    let r = row(&restarted, "PASINT0002").await;
    assert_eq!(r.action.as_deref(), Some("record_review_outcome"));
    assert!(
        r.detail.as_deref().unwrap_or("").contains("A028"),
        "{:?}",
        r.detail
    );

    assert_eq!(applied_writes(&h, "A028").await, 2, "one write each");
    assert_eq!(
        ops(&h, "A013").await,
        0,
        "no accept made from the new state"
    );
    assert_eq!(
        ops(&h, "A014").await,
        0,
        "no reject made from the new state"
    );
    restarted.close().await;
    h.cleanup().await;
}

/// The outcome is recorded with the reply's bytes before the reply is published; when the
/// publish fails (the broker went away) the row is marked, and the retry loop sends the
/// stored bytes, once, without deciding or writing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_whose_publish_failed_is_sent_by_the_retry_loop() {
    let (h, app) = seeded(false).await;
    let msg = rri(
        "PASPEND001",
        "A^Accepted^HL70283",
        "000000070001",
        "",
        "Decided in clinic",
    );
    let now = Utc::now();
    let handled = app.inbound().handle(&msg, now).await.unwrap();
    assert_eq!(
        handled,
        Handled::Done {
            action: "accept".into()
        }
    );
    let (sent, _) = reply_raw(&h).await;
    // As a failed publish leaves it.
    let store = app.outbound().store();
    let id = ControlId::parse("PASPEND001").unwrap();
    store
        .inbound_reply_pending(&id, Some(now.timestamp_millis()))
        .await
        .unwrap();
    let done = app
        .inbound()
        .retry_due(now + chrono::Duration::seconds(10))
        .await
        .unwrap();
    assert_eq!(
        done,
        [Handled::Duplicate {
            status: InboundStatus::Done
        }]
    );
    let (again, _) = reply_raw(&h).await;
    assert_eq!(again, sent, "the stored bytes");
    assert!(no_more_replies(&h).await);
    assert!(app
        .inbound()
        .retry_due(now + chrono::Duration::minutes(10))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(row(&app, "PASPEND001").await.status, InboundStatus::Done);
    assert_eq!(applied_writes(&h, "A013").await, 1);
    app.close().await;
    h.cleanup().await;
}
