//! The inbound direction against the simulator over HTTP and the real RabbitMQ: a PAS
//! decision becomes exactly one e-RS write and an HL7 ACK back to the PAS; a duplicate
//! makes no second call; a refused decision is a needs-action record with an AE; garbage
//! goes to the dead letter with its reason; the bridge's own write is not echoed as a
//! REF^I13.

use chrono::Utc;
use ers_bridge::app::Shutdown;
use ers_bridge::hl7::{read_inbound, AckCode, ControlId};
use ers_bridge::pipeline::inbound::Handled;
use ers_bridge::pipeline::outbound::Outcome;
use ers_bridge::store::InboundStatus;
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;

use crate::helpers::{Harness, Opts};

/// A harness with the sample referrals seeded, and its bridge.
pub(crate) async fn seeded(app_restricted: bool) -> (Harness, ers_bridge::app::App) {
    let h = Harness::start(Opts {
        seed: true,
        app_restricted,
        ..Opts::default()
    })
    .await;
    let app = h.app(Shutdown::new()).await;
    (h, app)
}

pub(crate) fn rri(control_id: &str, status: &str, ubrn: &str, reason: &str, note: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116091500||RRI^I12^RRI_I12|{control_id}|P|2.4|||AL|NE\r\
         RF1|{status}||||O^Outpatient^HL70284|{ubrn}^UBRN|20240116091500|||{reason}\r\
         PID|1||9912003888^^^NHS^NH||^^^^^^U\r\
         NTE|1|L|{note}\r"
    )
    .into_bytes()
}

pub(crate) async fn ops(h: &Harness, op: &str) -> u64 {
    h.stats().await["by_operation"][op].as_u64().unwrap_or(0)
}

/// The next ACK on the PAS's reply queue.
pub(crate) async fn reply(h: &Harness) -> ers_bridge::hl7::Inbound {
    let conn = lapin::Connection::connect(crate::helpers::AMQP_URL, Default::default())
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
    read_inbound(&got.delivery.data, 1 << 20).unwrap()
}

/// Handles `msg` and asserts it ended done with `action`.
pub(crate) async fn done(app: &ers_bridge::app::App, msg: &[u8], action: &str) {
    let handled = app.inbound().handle(msg, Utc::now()).await.unwrap();
    assert_eq!(
        handled,
        Handled::Done {
            action: action.into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_is_one_a013_an_aa_and_no_echo() {
    let (h, app) = seeded(false).await;
    app.drain(10).await.expect("drain");
    h.take_messages().await;

    let msg = rri("PASACC0001", "A^Accepted^HL70283", "000000070001", "", "ok");
    done(&app, &msg, "accept").await;
    assert_eq!(ops(&h, "A013").await, 1);
    let ack = reply(&h).await;
    assert_eq!(ack.ack_code, Some(AckCode::AA));
    assert_eq!(ack.acked_control_id.unwrap().as_str(), "PASACC0001");

    // The same message again (a redelivery or a resend): no second call; the PAS gets the
    // stored reply again (decisions.rs checks its bytes).
    let again = app.inbound().handle(&msg, Utc::now()).await.unwrap();
    assert_eq!(
        again,
        Handled::Duplicate {
            status: InboundStatus::Done
        }
    );
    assert_eq!(ops(&h, "A013").await, 1);

    // The store has the message, its action and its one attempt.
    let store = app.outbound().store();
    let id = ControlId::parse("PASACC0001").unwrap();
    let r = store.inbound(&id).await.unwrap().unwrap();
    assert_eq!(r.status, InboundStatus::Done);
    assert_eq!(r.action.as_deref(), Some("accept"));
    assert_eq!(r.reply_code.as_deref(), Some("AA"));
    let attempts = store.inbound_attempts(&id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].operation, "A013");
    assert_eq!(attempts[0].http_status, Some(200));
    assert!(attempts[0].correlation_id.is_some());

    // The version our accept produced is recorded as our own write, so it is never
    // published back to the PAS as a REF^I13.
    let now_version = h.referral("000000070001").await["meta"]["versionId"]
        .as_str()
        .unwrap()
        .parse::<u32>()
        .unwrap();
    assert!(store
        .is_own_write(
            &ers_bridge::ids::Ubrn::parse("000000070001").unwrap(),
            ers_bridge::ids::Version::new(now_version)
        )
        .await
        .unwrap());
    let summary = app.drain(5).await.expect("drain");
    assert_eq!(summary.report.published, 0, "{:?}", summary.report);
    assert!(h.take_messages().await.is_empty());
    app.close().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reject_carries_the_a004_reason_and_a_refused_accept_is_needs_action_with_ae() {
    let (h, app) = seeded(false).await;

    // 70002 is booked into an indirectly bookable service: A014 with the A004 reason.
    let reject = rri(
        "PASREJ0001",
        "R^Rejected^HL70283",
        "000000070002",
        "WRONGSVC^Wrong service",
        "Please refer to the heart failure nurse service",
    );
    let handled = app.inbound().handle(&reject, Utc::now()).await.unwrap();
    assert_eq!(
        handled,
        Handled::Done {
            action: "reject".into()
        }
    );
    assert_eq!(ops(&h, "A014").await, 1);
    assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA));
    let referral = h.referral("000000070002").await;
    let state = referral["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"].as_str().unwrap().ends_with("ReferralState-1"))
        .unwrap()["extension"][0]["valueCoding"]["code"]
        .clone();
    assert_eq!(state, "REJECTED");

    // 70000 is not booked: e-RS refuses A013; the PAS hears why, a person acts.
    let accept = rri("PASACC0002", "A^Accepted^HL70283", "000000070000", "", "ok");
    let handled = app.inbound().handle(&accept, Utc::now()).await.unwrap();
    let Handled::NeedsAction { why } = handled else {
        panic!("{handled:?}");
    };
    assert!(why.contains("A013"), "{why}");
    let ack = reply(&h).await;
    assert_eq!(ack.ack_code, Some(AckCode::AE));
    assert_eq!(ack.errors.len(), 1);
    let r = app
        .outbound()
        .store()
        .inbound(&ControlId::parse("PASACC0002").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, InboundStatus::NeedsAction);
    assert_eq!(r.reply_code.as_deref(), Some("AE"));
    app.close().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_dead_lettered_and_a_ubrn_mismatch_is_never_a_guess() {
    let (h, app) = seeded(false).await;
    let handled = app
        .inbound()
        .handle(b"this is not hl7", Utc::now())
        .await
        .unwrap();
    assert!(
        matches!(handled, Handled::DeadLettered { .. }),
        "{handled:?}"
    );
    let conn = lapin::Connection::connect(crate::helpers::AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let dl = ch
        .basic_get(
            format!("{}-dlq", h.prefix).as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the garbage on the dead letter");
    assert_eq!(dl.delivery.data, b"this is not hl7");
    let headers = dl.delivery.properties.headers().as_ref().unwrap();
    assert_eq!(
        headers.inner().get("x-ers-error"),
        Some(&AMQPValue::LongString("unreadable".into()))
    );
    assert!(headers.inner().contains_key("x-ers-error-detail"));

    // MSA-2 acknowledges our message about 70001, RF1 names 70002: AE, no e-RS write.
    let mismatch =
        "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116091500||RRI^I12^RRI_I12|PASMIS0001|P|2.4\r\
         MSA|AA|000000070001I1200005\r\
         RF1|A^Accepted^HL70283|||||000000070002^UBRN\r";
    let handled = app
        .inbound()
        .handle(mismatch.as_bytes(), Utc::now())
        .await
        .unwrap();
    let Handled::NeedsAction { why } = handled else {
        panic!("{handled:?}");
    };
    assert!(
        why.contains("000000070001") && why.contains("000000070002"),
        "{why}"
    );
    let ack = reply(&h).await;
    assert_eq!(ack.ack_code, Some(AckCode::AE));
    assert_eq!(ack.errors[0].code, "204", "{:?}", ack.errors);
    assert_eq!(ops(&h, "A013").await, 0);
    // Both referrals' timelines show the refused decision.
    let store = app.outbound().store();
    for ubrn in ["000000070001", "000000070002"] {
        let rows = store
            .inbound_for(&ers_bridge::hl7::Ubrn::parse(ubrn).unwrap())
            .await
            .unwrap();
        assert!(
            rows.iter().any(|r| r.control_id.as_str() == "PASMIS0001"),
            "{ubrn}: {rows:?}"
        );
    }

    // e-RS does not know the referral: the failed read is in the message's timeline, and
    // the AE says 204 (unknown key) against RF1-6.
    let unknown = rri("PASUNK0001", "A^Accepted^HL70283", "000000079999", "", "ok");
    let handled = app.inbound().handle(&unknown, Utc::now()).await.unwrap();
    assert!(
        matches!(handled, Handled::NeedsAction { .. }),
        "{handled:?}"
    );
    let ack = reply(&h).await;
    assert_eq!(ack.errors[0].code, "204", "{:?}", ack.errors);
    let attempts = store
        .inbound_attempts(&ControlId::parse("PASUNK0001").unwrap())
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].operation, "A005");
    assert_eq!(attempts[0].http_status, Some(404));
    app.close().await;
    h.cleanup().await;
}

/// A referral deferred to the provider is answered with a review outcome (A028), not an
/// accept: the decision table reads the referral's e-RS state before deciding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_referral_gets_a_review_outcome() {
    let (h, app) = seeded(false).await;
    let msg = rri(
        "PASTRI0001",
        "A^Accepted^HL70283",
        "000000070003",
        "",
        "We will contact the patient to book",
    );
    let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
    assert_eq!(
        handled,
        Handled::Done {
            action: "record_review_outcome".into()
        }
    );
    assert_eq!(
        ops(&h, "A029").await,
        1,
        "asked whether A028 is offered first"
    );
    assert_eq!(ops(&h, "A028").await, 1);
    assert_eq!(ops(&h, "A013").await, 0);
    assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA));
    app.close().await;
    h.cleanup().await;
}

/// e-RS failing (every request 500) does not hold the queue: the decision waits in the
/// store and is applied, once, when a later pass finds it due and e-RS is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_from_the_store_once_e_rs_is_back() {
    let (h, app) = seeded(false).await;
    h.admin("faults", serde_json::json!({"error_500_rate": 1.0}))
        .await;
    let msg = rri("PASACC0003", "A^Accepted^HL70283", "000000070001", "", "ok");
    let now = Utc::now();
    let handled = app.inbound().handle(&msg, now).await.unwrap();
    let Handled::RetryScheduled { due_ms } = handled else {
        panic!("{handled:?}");
    };
    assert!(due_ms > now.timestamp_millis());
    // Not due yet: nothing runs.
    assert!(app.inbound().retry_due(now).await.unwrap().is_empty());
    h.admin("faults", serde_json::json!({})).await;
    let later = now + chrono::Duration::minutes(10);
    let done = app.inbound().retry_due(later).await.unwrap();
    assert_eq!(
        done,
        [Handled::Done {
            action: "accept".into()
        }]
    );
    assert_eq!(ops(&h, "A013").await, 1);
    assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA));
    app.close().await;
    h.cleanup().await;
}

/// App-restricted mode may not reject (A014): the decision is kept as a needs-action
/// record and the PAS is told, with nothing sent to e-RS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_restricted_keeps_a_reject_as_needs_action() {
    let (h, app) = seeded(true).await;
    let reject = rri(
        "PASREJ0009",
        "R^Rejected^HL70283",
        "000000070002",
        "WRONGSVC^Wrong service",
        "Please refer to the community service",
    );
    let handled = app.inbound().handle(&reject, Utc::now()).await.unwrap();
    let Handled::NeedsAction { why } = handled else {
        panic!("{handled:?}");
    };
    assert!(
        why.contains("A014") && why.contains("app-restricted"),
        "{why}"
    );
    assert_eq!(ops(&h, "A014").await, 0);
    let ack = reply(&h).await;
    assert_eq!(ack.ack_code, Some(AckCode::AE));
    app.close().await;
    h.cleanup().await;
}

/// A needs-action record is listed and resolved from the CLI; a retry with access that
/// still may not perform it leaves it listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_action_is_listed_resolved_and_retried_without_being_dropped() {
    let (h, app) = seeded(true).await;
    for (id, ubrn) in [
        ("PASREJ0010", "000000070002"),
        ("PASREJ0011", "000000070001"),
    ] {
        let msg = rri(
            id,
            "R^Rejected^HL70283",
            ubrn,
            "WRONGSVC^Wrong service",
            "No",
        );
        let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
        assert!(
            matches!(handled, Handled::NeedsAction { .. }),
            "{handled:?}"
        );
    }
    app.close().await;

    // The configuration names a dashboard token whose variable this shell lacks: a
    // one-shot tool serves no monitor and must not need it.
    let with_token = h.config_path.with_file_name("with-token.toml");
    std::fs::write(
        &with_token,
        std::fs::read_to_string(&h.config_path).unwrap()
            + "\n[[monitor.tokens]]\nname = \"dashboard\"\ntoken_env = \"ERS_BRIDGE_TEST_TOKEN_NEVER_SET\"\n",
    )
    .unwrap();
    let config = with_token.to_str().unwrap().to_string();
    let cli = move |args: Vec<String>| {
        let out = crate::common::bridge()
            .env("RUST_LOG", "warn")
            .args(["needs-action", "--config", &config])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let cli2 = cli.clone();
    let (code, listed) = tokio::task::spawn_blocking(move || cli2(vec!["list".into()]))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    assert!(
        listed.contains("PASREJ0010") && listed.contains("PASREJ0011"),
        "{listed}"
    );
    let cli3 = cli.clone();
    let (code, out) = tokio::task::spawn_blocking(move || {
        cli3(vec![
            "resolve".into(),
            "PASREJ0011".into(),
            "--note".into(),
            "rejected by hand in e-RS".into(),
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{out}");
    let cli5 = cli.clone();
    let (_, listed) = tokio::task::spawn_blocking(move || cli5(vec![]))
        .await
        .unwrap();
    assert!(
        listed.contains("PASREJ0010") && !listed.contains("PASREJ0011"),
        "{listed}"
    );

    // Retried from the command line with the same (app-restricted) access: refused again,
    // said in words (not a Rust debug dump), exit 1, still listed.
    let cli4 = cli.clone();
    let (code, out) =
        tokio::task::spawn_blocking(move || cli4(vec!["retry".into(), "PASREJ0010".into()]))
            .await
            .unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.starts_with("PASREJ0010: still needs action: "), "{out}");
    assert!(!out.contains("NeedsAction {"), "{out}");

    // And through the pipeline: refused again before any call, and still listed, never
    // dropped.
    let again = h.app(Shutdown::new()).await;
    let id = ControlId::parse("PASREJ0010").unwrap();
    let store = again.outbound().store();
    assert!(store.inbound_requeue(&id, 0).await.unwrap());
    let handled = again.inbound().retry_due(Utc::now()).await.unwrap();
    assert!(
        matches!(handled.as_slice(), [Handled::NeedsAction { .. }]),
        "{handled:?}"
    );
    assert_eq!(ops(&h, "A014").await, 0);
    assert_eq!(store.inbound_needing_action().await.unwrap().len(), 1);
    again.close().await;
    h.cleanup().await;
}

/// The simulator's log of write calls.
pub(crate) async fn write_calls(h: &Harness) -> Vec<serde_json::Value> {
    let calls: serde_json::Value = reqwest::get(format!("{}/_admin/calls", h.sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    calls.as_array().unwrap().clone()
}

pub(crate) async fn applied_writes(h: &Harness, op: &str) -> usize {
    write_calls(h)
        .await
        .iter()
        .filter(|c| c["operation"] == op && c["applied"] == true)
        .count()
}

/// Handles `msg` while e-RS loses the response to its write (applied, answered 502):
/// checks the decision waits in the store with `op` applied once, then runs the retries
/// due ten minutes later and returns what became of them.
pub(crate) async fn lose_the_response_then_retry(
    h: &Harness,
    app: &ers_bridge::app::App,
    msg: &[u8],
    op: &str,
) -> Vec<Handled> {
    h.admin("faults", serde_json::json!({"lose_write_responses": 1}))
        .await;
    let now = Utc::now();
    let handled = app.inbound().handle(msg, now).await.unwrap();
    assert!(
        matches!(handled, Handled::RetryScheduled { .. }),
        "{op}: {handled:?}"
    );
    assert_eq!(applied_writes(h, op).await, 1, "{op}: e-RS applied it");
    app.inbound()
        .retry_due(now + chrono::Duration::minutes(10))
        .await
        .unwrap()
}

/// e-RS applies the write but the response is lost (a 502): the bridge cannot know, so it
/// retries from the store, asks e-RS, finds it applied and makes no second write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_applied_with_its_response_lost_is_not_written_twice() {
    let (h, app) = seeded(false).await;
    for (id, status, ubrn, reason, op) in [
        (
            "PASLOST001",
            "A^Accepted^HL70283",
            "000000070001",
            "",
            "A013",
        ),
        (
            "PASLOST002",
            "R^Rejected^HL70283",
            "000000070002",
            "WRONGSVC^Wrong service",
            "A014",
        ),
    ] {
        let msg = rri(id, status, ubrn, reason, "Decided in clinic");
        let done = lose_the_response_then_retry(&h, &app, &msg, op).await;
        assert!(
            matches!(done.as_slice(), [Handled::Done { .. }]),
            "{id}: {done:?}"
        );
        assert_eq!(
            applied_writes(&h, op).await,
            1,
            "{id}: still exactly one write"
        );
        // The PAS, which had no answer either, resends its decision under a new MSH-10:
        // answered as applied, no write (the accept's version marked as ours although its
        // response never came; found by the chaos run with the PAS as its own process).
        let resent_id = format!("{id}R");
        let calls = ops(&h, op).await;
        let resent = rri(&resent_id, status, ubrn, reason, "Decided in clinic");
        let handled = app.inbound().handle(&resent, Utc::now()).await.unwrap();
        assert!(
            matches!(handled, Handled::Done { .. }),
            "{resent_id}: {handled:?}"
        );
        assert_eq!(
            applied_writes(&h, op).await,
            1,
            "{resent_id}: no second write"
        );
        assert_eq!(ops(&h, op).await, calls, "{resent_id}: no call at all");
    }
    app.close().await;
    h.cleanup().await;
}

/// `run` consumes the inbound queue on its own: decisions sent to it are applied and
/// answered, garbage is dead-lettered, and a shutdown stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_consumes_the_inbound_queue_and_answers() {
    use futures_util::StreamExt as _;
    let h = Harness::start(Opts {
        seed: true,
        ..Opts::default()
    })
    .await;
    let shutdown = Shutdown::new();
    let app = h.app(shutdown.clone()).await;
    let running = tokio::spawn(app.run_until_stopped());

    let q = ers_bridge::amqp::QueueClient::connect(crate::helpers::AMQP_URL)
        .await
        .unwrap();
    let inbound = format!("{}-in", h.prefix);
    // The bridge declared its topology when it was built: messages sent before its
    // consumer attaches wait in the queue.
    let conn = lapin::Connection::connect(crate::helpers::AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    for body in [
        rri("PASRUN0001", "A^Accepted^HL70283", "000000070001", "", "ok"),
        rri(
            "PASRUN0002",
            "R^Rejected^HL70283",
            "000000070002",
            "WRONGSVC^Wrong service",
            "No",
        ),
        b"garbage".to_vec(),
    ] {
        q.send(&inbound, &body).await.unwrap();
    }
    let mut acks = ch
        .basic_consume(
            format!("{}-acks", h.prefix).as_str().into(),
            "test".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let mut codes = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while codes.len() < 2 {
            let d = acks.next().await.unwrap().unwrap();
            let ack = read_inbound(&d.data, 1 << 20).unwrap();
            codes.push((
                ack.acked_control_id.unwrap().to_string(),
                ack.ack_code.unwrap().as_str(),
            ));
        }
    })
    .await
    .expect("both decisions answered");
    codes.sort();
    assert_eq!(
        codes,
        [
            ("PASRUN0001".to_string(), "AA"),
            ("PASRUN0002".to_string(), "AA")
        ]
    );
    assert_eq!(ops(&h, "A013").await, 1);
    assert_eq!(ops(&h, "A014").await, 1);
    shutdown.trigger();
    running.await.unwrap().expect("stops cleanly");
    let dl = q
        .take(&format!("{}-dlq", h.prefix))
        .await
        .unwrap()
        .expect("the garbage was dead-lettered");
    assert_eq!(dl, b"garbage");
    q.close().await;
    let _ = conn.close(200, "done".into()).await;
    h.cleanup().await;
}

/// Every message in `samples/pas/` through the real pipeline against the seeded simulator:
/// each ends as the table says, with the reply the PAS should get (an ACK from the PAS is
/// never answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pas_sample_ends_as_expected() {
    let (h, app) = seeded(false).await;
    let done = |a: &str| format!("done:{a}");
    let table: Vec<(&str, String, Option<&str>)> = vec![
        ("ack-application-aa", "no-action".into(), None),
        ("ack-commit-ca", "no-action".into(), None),
        ("ack-error-v24", "needs-action".into(), None),
        ("ack-error-v251", "needs-action".into(), None),
        ("ack-reject-ar", "needs-action".into(), None),
        ("rri-accepted", done("accept"), Some("AA")),
        ("rri-accepted-no-msh93-zsegment", done("accept"), Some("AA")),
        ("rri-accepted-not-booked", "needs-action".into(), Some("AE")),
        (
            "rri-accepted-without-ubrn",
            "needs-action".into(),
            Some("AE"),
        ),
        ("rri-ag-advice", "needs-action".into(), Some("AE")),
        ("rri-ag-convert", "needs-action".into(), Some("AE")),
        (
            "rri-cancel-action-later",
            done("cancel_action_later"),
            Some("AA"),
        ),
        ("rri-expired", "needs-action".into(), Some("AE")),
        ("rri-pending", "no-action".into(), Some("AA")),
        ("rri-rejected", done("reject"), Some("AA")),
        (
            "rri-rejected-unknown-reason",
            "needs-action".into(),
            Some("AE"),
        ),
        (
            "rri-triage-book-later",
            done("record_review_outcome"),
            Some("AA"),
        ),
        (
            "rri-triage-return-advice",
            done("record_review_outcome"),
            Some("AA"),
        ),
        ("unreadable-truncated", "dead-lettered".into(), None),
    ];
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/pas"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "hl7")
        })
        .count();
    // Samples about a referral that another sample here changes first run in their own
    // test: rri-cancel-action-later-ibs (70002, as rri-rejected) in cancel_action_later.rs.
    // The official-body samples (70001, 70002, 70003, 70013) in official_bodies.rs.
    let elsewhere = [
        "rri-cancel-action-later-ibs",
        "rri-reject-dbs",
        "rri-reject-ibs",
        "rri-triage-return-no-action",
        "rri-triage-book-later-urgent",
    ];
    assert_eq!(
        files,
        table.len() + elsewhere.len(),
        "a sample without an expected outcome"
    );
    for (name, want, reply_code) in table {
        let path = format!("{}/samples/pas/{name}.hl7", env!("CARGO_MANIFEST_DIR"));
        let body = std::fs::read(&path).unwrap();
        let handled = app.inbound().handle(&body, Utc::now()).await.unwrap();
        let got = match &handled {
            Handled::Done { action } => done(action),
            Handled::NoAction { .. } => "no-action".into(),
            Handled::NeedsAction { .. } => "needs-action".into(),
            Handled::DeadLettered { .. } => "dead-lettered".into(),
            other => format!("{other:?}"),
        };
        assert_eq!(got, want, "{name}: {handled:?}");
        if let Some(code) = reply_code {
            let ack = reply(&h).await;
            assert_eq!(ack.ack_code.map(|c| c.as_str()), Some(code), "{name}");
        }
    }
    // Nothing else was answered (the PAS's own ACKs got no reply).
    let q = ers_bridge::amqp::QueueClient::connect(crate::helpers::AMQP_URL)
        .await
        .unwrap();
    assert!(q
        .take(&format!("{}-acks", h.prefix))
        .await
        .unwrap()
        .is_none());
    q.close().await;
    app.close().await;
    h.cleanup().await;
}

/// The PAS resends the same decision under a new MSH-10: answered as applied, one write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_decision_with_a_new_control_id_is_not_written_twice() {
    let (h, app) = seeded(false).await;
    for id in ["PASRES0001", "PASRES0002"] {
        let msg = rri(id, "A^Accepted^HL70283", "000000070001", "", "ok");
        let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
        assert_eq!(
            handled,
            Handled::Done {
                action: "accept".into()
            },
            "{id}"
        );
        assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA), "{id}");
    }
    assert_eq!(ops(&h, "A013").await, 1);
    app.close().await;
    h.cleanup().await;
}

/// A misbehaving PAS (`ers-bridge pas-sim` with every fault: duplicates, resends, garbage,
/// a wrong UBRN, LF separators, AE ACKs, escaped text) against the pipeline: everything is
/// handled, garbage is dead-lettered, a wrong UBRN is never acted on, and no referral gets
/// two applied writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_pas_never_causes_a_second_write() {
    let h = Harness::start(Opts {
        generate: 30,
        ..Opts::default()
    })
    .await;
    let app = h.app(Shutdown::new()).await;
    let published = app.drain(10).await.unwrap().report.published;
    assert_eq!(published, 30);
    let config = h.config_path.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = crate::common::bridge();
        cmd.env("RUST_LOG", "warn")
            .args(["pas-sim", "--config", &config, "--once"]);
        for f in [
            "duplicate",
            "resend",
            "garbage",
            "wrong-ubrn",
            "lf",
            "ae",
            "escaped",
        ] {
            cmd.args(["--fault", f]);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap();
    let stdout = crate::common::assert_success(&out);
    assert!(stdout.contains("answered 30 referrals"), "{stdout}");

    let q = ers_bridge::amqp::QueueClient::connect(crate::helpers::AMQP_URL)
        .await
        .unwrap();
    let mut outcomes: Vec<Handled> = Vec::new();
    while let Some(body) = q.take(&format!("{}-in", h.prefix)).await.unwrap() {
        outcomes.push(app.inbound().handle(&body, Utc::now()).await.unwrap());
    }
    q.close().await;
    // 30 commit ACKs + 30 RRIs + for 6 referrals a duplicate, a resend and garbage.
    assert_eq!(outcomes.len(), 78, "{outcomes:?}");
    let count = |f: &dyn Fn(&Handled) -> bool| outcomes.iter().filter(|h| f(h)).count();
    assert_eq!(count(&|h| matches!(h, Handled::DeadLettered { .. })), 6);
    assert!(count(&|h| matches!(h, Handled::Duplicate { .. })) >= 6);
    assert!(
        count(&|h| matches!(h, Handled::NeedsAction { why } if why.contains("999999999999"))) >= 6,
        "wrong UBRNs are never acted on"
    );
    let calls: serde_json::Value = reqwest::get(format!("{}/_admin/calls", h.sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut applied = std::collections::HashMap::<String, usize>::new();
    for c in calls.as_array().unwrap() {
        if c["applied"] == true {
            *applied
                .entry(c["ubrn"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert!(!applied.is_empty());
    assert!(applied.values().all(|n| *n == 1), "{applied:?}");
    app.close().await;
    h.cleanup().await;
}

/// A decision that needs nothing from e-RS (pending) costs no e-RS call: the referral is
/// read only when a rule depends on its state or a write follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_rri_makes_no_e_rs_call() {
    let (h, app) = seeded(false).await;
    let pending = rri(
        "PASPEN0001",
        "P^Pending^HL70283",
        "000000070001",
        "",
        "Thinking",
    );
    let handled = app.inbound().handle(&pending, Utc::now()).await.unwrap();
    assert!(matches!(handled, Handled::NoAction { .. }), "{handled:?}");
    assert_eq!(h.stats().await["total"], 0, "{}", h.stats().await);
    assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA));
    app.close().await;
    h.cleanup().await;
}

/// A PAS that attaches a document to its decision (OBX ED) is told it is not carried: an
/// AE at OBX-5, a needs-action record, and nothing written to e-RS (never the decision
/// without its document).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_with_a_document_is_refused_naming_the_obx() {
    let (h, app) = seeded(false).await;
    let mut msg = rri(
        "PASOBX0001",
        "A^Accepted^HL70283",
        "000000070001",
        "",
        "See the triage letter",
    );
    msg.extend_from_slice(b"OBX|1|ED|LETTER^Triage letter||^application^pdf^Base64^JVBERi0xLjQK\r");
    let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
    let Handled::NeedsAction { why } = handled else {
        panic!("{handled:?}");
    };
    assert!(why.contains("OBX"), "{why}");
    let ack = reply(&h).await;
    assert_eq!(ack.ack_code, Some(AckCode::AE));
    assert_eq!(ack.errors[0].code, "207");
    assert!(
        ack.errors[0].location.starts_with("OBX"),
        "{:?}",
        ack.errors
    );
    assert!(write_calls(&h).await.is_empty(), "nothing written");
    app.close().await;
    h.cleanup().await;
}

/// A PAS that accepts a referral before the bridge has sent it (keyed in from the e-RS web
/// application, say), between the pass that listed the referral and the bridge's read of
/// it: the version the accept produced is the bridge's own write, but the PAS has never had
/// a REF^I12 for the referral, so that version is published, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_before_the_first_ref_still_publishes_the_referral_once() {
    let (h, app) = seeded(false).await;
    let msg = rri("PASEARLY01", "A^Accepted^HL70283", "000000070001", "", "ok");
    done(&app, &msg, "accept").await;
    assert_eq!(ops(&h, "A013").await, 1);
    let ubrn = ers_bridge::ids::Ubrn::parse("000000070001").unwrap();
    let now_version = h.referral("000000070001").await["meta"]["versionId"]
        .as_str()
        .unwrap()
        .parse::<u32>()
        .unwrap();
    let store = app.outbound().store();
    let own = ers_bridge::ids::Version::new(now_version);
    assert!(store.is_own_write(&ubrn, own).await.unwrap());
    assert!(
        store
            .seen_versions(&[(&ubrn, own)])
            .await
            .unwrap()
            .is_empty(),
        "an own write with nothing published before it is not handled yet"
    );

    // The pass listed the referral before the accept and reads it now.
    let outcome = app
        .outbound()
        .process_referral(&ubrn, false, Utc::now())
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Published(_)), "{outcome:?}");
    let published = store.messages_for(&ubrn).await.unwrap();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].version, own);
    assert_eq!(published[0].message_type, "REF^I12");

    // Read again (a later pass, another instance): handled now, nothing more published.
    let again = app
        .outbound()
        .process_referral(&ubrn, false, Utc::now())
        .await
        .unwrap();
    assert!(matches!(again, Outcome::Skipped), "{again:?}");
    assert_eq!(store.seen_versions(&[(&ubrn, own)]).await.unwrap().len(), 1);
    assert_eq!(store.messages_for(&ubrn).await.unwrap().len(), 1);

    // Published, the version is still the bridge's own write: the PAS resending its accept
    // under a new MSH-10 is answered as applied, not written again (e-RS would refuse a
    // second A013 and leave a needs-action behind).
    assert!(store.is_own_write(&ubrn, own).await.unwrap());
    reply(&h).await;
    let resent = rri("PASEARLY02", "A^Accepted^HL70283", "000000070001", "", "ok");
    done(&app, &resent, "accept").await;
    assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA));
    assert_eq!(ops(&h, "A013").await, 1);
    app.close().await;
    h.cleanup().await;
}
