//! More of the inbound direction: the e-RS comment limit answered as an AE naming the NTE,
//! a dead letter that keeps the PAS's AMQP properties (and is counted), and the bridge
//! process killed between e-RS applying a write and the broker ack: after a restart the
//! redelivered decisions are found applied, never written twice.

use std::process::{Child, Stdio};
use std::time::Duration;

use chrono::Utc;
use ers_bridge::app::Shutdown;
use ers_bridge::hl7::{read_inbound, AckCode};
use ers_bridge::pipeline::inbound::Handled;
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
