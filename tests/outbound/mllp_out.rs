//! The bridge's referrals to a PAS over MLLP (`[transport] to_pas = "mllp"`), against a
//! PAS of our own written apart from the bridge (`mllp_pas.py`, asyncio) that misbehaves
//! on request: no ACK for the first copy, a reset mid-ACK, a late ACK for the previous
//! message in the same write, ACKs one byte at a time, a slow reader, an AE or AR now and
//! then. Whatever it
//! does, every referral version is delivered and recorded, a message is sent again only
//! under the same MSH-10, an ACK is taken only for the MSH-10 it names, and a refusal is
//! parked with the PAS's reason; no broker is used.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use ers_bridge::app::Shutdown;

use crate::helpers::{Harness, Opts};

/// The test PAS, and every message it received (MSH-10, MSH-9).
pub(crate) struct TestPas {
    child: Child,
    pub(crate) port: u16,
    pub(crate) received: Arc<Mutex<Vec<(String, String)>>>,
}

impl TestPas {
    pub(crate) fn start(faults: &str) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/outbound/mllp_pas.py");
        let mut child = Command::new("python3")
            .args([script, "--faults", faults])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the test pas");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("the pas says its port").unwrap();
        let port = first
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("not a port line: {first}"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                sink.lock().unwrap().push((
                    v["control_id"].as_str().unwrap().to_string(),
                    v["type"].as_str().unwrap().to_string(),
                ));
            }
        });
        Self {
            child,
            port,
            received,
        }
    }

    /// After a crash and a restart: all `n` referrals arrived, one MSH-10 per referral and
    /// message type (outbound MSH-10s are `<UBRN><event><version>`), and at most the 8 in
    /// flight at the crash (the pipeline's concurrency) arrived twice.
    fn assert_each_referral_once_per_msh10(&self, n: usize) {
        let received = self.received.lock().unwrap().clone();
        let mut by_message = HashMap::<(String, String), HashSet<String>>::new();
        for (id, kind) in &received {
            by_message
                .entry((id[..12].to_string(), kind.clone()))
                .or_default()
                .insert(id.clone());
        }
        let ubrns: HashSet<_> = by_message.keys().map(|(u, _)| u.clone()).collect();
        assert_eq!(ubrns.len(), n, "nothing lost");
        assert!(
            by_message.values().all(|ids| ids.len() == 1),
            "{by_message:?}"
        );
        assert!(
            received.len() <= by_message.len() + 8,
            "{} messages for {} distinct",
            received.len(),
            by_message.len()
        );
    }

    /// How many copies of each MSH-10 arrived.
    fn copies(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for (id, _) in self.received.lock().unwrap().iter() {
            *out.entry(id.clone()).or_insert(0) += 1;
        }
        out
    }
}

impl Drop for TestPas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bridge of `h` sending to the test PAS over MLLP, with a short ACK timeout.
async fn bridge(h: &Harness, pas: &TestPas) -> ers_bridge::app::App {
    let transport = format!(
        "[transport]\nto_pas = \"mllp\"\n[transport.mllp]\naddress = \"127.0.0.1:{}\"\nack_timeout_ms = 400\n[pipeline]\n",
        pas.port
    );
    h.app_with("[pipeline]\n", &transport, Shutdown::new())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_referral_reaches_a_misbehaving_pas_once_per_msh10() {
    let h = Harness::start(Opts {
        seed: true,
        ..Opts::default()
    })
    .await;
    let pas = TestPas::start("reset-first,no-ack-first,late-ack,split,slow-reader");
    let app = bridge(&h, &pas).await;
    let summary = app.drain(10).await.expect("drain");
    let r = &summary.report;
    assert!(r.published > 0, "{r:?}");
    assert_eq!((r.parked, r.failed), (0, 0), "{r:?}");

    let copies = pas.copies();
    assert_eq!(
        copies.len(),
        r.messages,
        "the pas got every message the bridge recorded, and no other MSH-10"
    );
    for (id, n) in &copies {
        // The first copy got no ACK (or a reset): each was sent again, same MSH-10.
        assert!(*n >= 2, "{id} arrived {n} times");
    }
    // Counted as the broker's confirms are: one accepted ACK per message, and each copy
    // that got none a failed attempt.
    let m = app.shared().events.metrics();
    assert_eq!(m.messages_confirmed.get(), r.messages as u64);
    assert!(m.publish_attempts_failed.get() >= r.messages as u64);
    // Recorded with where they went, and nothing went to the broker.
    let ubrn = ers_bridge::ids::Ubrn::parse("000000070001").unwrap();
    let stored = app.shared().store.messages_for(&ubrn).await.unwrap();
    assert!(!stored.is_empty());
    let to = format!("mllp://127.0.0.1:{}", pas.port);
    assert!(stored.iter().all(|m| m.routing_key == to), "{stored:?}");
    assert!(
        app.shared().pas.broker().is_none(),
        "a bridge sending over MLLP opens no broker connection (its queues were never declared)"
    );

    // A second pass finds nothing new to send.
    let before: HashSet<String> = copies.keys().cloned().collect();
    let again = app.drain(3).await.expect("drain");
    assert_eq!(again.report.published, 0);
    let after: HashSet<String> = pas.copies().keys().cloned().collect();
    assert_eq!(before, after);
    app.close().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_the_pas_parks_the_referral_with_its_reason() {
    let h = Harness::start(Opts {
        seed: true,
        ..Opts::default()
    })
    .await;
    let pas = TestPas::start("ae-every:3");
    let app = bridge(&h, &pas).await;
    let summary = app.drain(10).await.expect("drain");
    let r = &summary.report;
    assert!(r.parked >= 2, "{r:?}");
    assert_eq!(r.failed, 0, "{r:?}");
    // Every third message refused, AE and AR in turn: both are refusals.
    for code in ["AE:", "AR:"] {
        assert!(
            summary.parked.iter().any(|p| p.reason.contains(code)),
            "no {code} among {:?}",
            summary.parked
        );
    }
    for p in &summary.parked {
        assert!(
            p.reason.contains("the PAS refused") && p.reason.contains("refused by the test pas"),
            "{}",
            p.reason
        );
    }
    // Refused messages are not recorded as delivered; the others are.
    let copies = pas.copies();
    assert!(copies.len() >= r.messages + r.parked);
    app.close().await;
    h.cleanup().await;
}

/// `on_refusal = "retry"`: a PAS that refuses the first copy of every message and takes
/// it when sent again gets every referral, none parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_refusal_retry_a_refused_message_is_sent_again_not_parked() {
    let h = Harness::start(Opts {
        seed: true,
        ..Opts::default()
    })
    .await;
    let pas = TestPas::start("ae-first");
    let transport = format!(
        "[transport]\nto_pas = \"mllp\"\n[transport.mllp]\naddress = \"127.0.0.1:{}\"\nack_timeout_ms = 400\non_refusal = \"retry\"\n[pipeline]\n",
        pas.port
    );
    let app = h
        .app_with("[pipeline]\n", &transport, Shutdown::new())
        .await;
    let summary = app.drain(10).await.expect("drain");
    let r = &summary.report;
    assert_eq!((r.parked, r.failed), (0, 0), "{r:?}");
    assert!(r.published > 0);
    let copies = pas.copies();
    assert_eq!(copies.len(), r.messages);
    assert!(copies.values().all(|n| *n >= 2), "{copies:?}");
    app.close().await;
    h.cleanup().await;
}

/// A bridge dropped mid-run (no graceful shutdown) and started again on the same store:
/// every referral reaches the PAS, and one sent twice (acknowledged, then the crash before
/// the store write) carries the same MSH-10 both times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_run_loses_nothing_and_resends_only_under_the_same_msh10() {
    use crate::helpers::wait_for_events;
    use ers_bridge::events::Event;
    let n = 120;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    let pas = TestPas::start("");
    let first = bridge(&h, &pas).await;
    let mut events = first.shared().events.subscribe();
    let pipeline = first.outbound().clone();
    let run = tokio::spawn(async move { pipeline.drain(10, std::time::Duration::ZERO).await });
    wait_for_events(&mut events, 15, |e| matches!(e, Event::Published(_))).await;
    run.abort();
    assert!(
        run.await.is_err_and(|e| e.is_cancelled()),
        "the first run must still be going when it is dropped"
    );
    drop(first);

    let second = bridge(&h, &pas).await;
    second.drain(10).await.expect("second run");
    pas.assert_each_referral_once_per_msh10(n);
    second.close().await;
    h.cleanup().await;
}

/// `kill -9` of a real `ers-bridge run` process mid-way through a backlog sent over MLLP,
/// then `run --until-drained` on the same store: every referral reaches the PAS, only ever
/// under its own MSH-10, and at most the messages in flight at the kill arrive twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_run_mid_backlog_loses_nothing_over_mllp() {
    let n = 80;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    // 50 ms before each ACK: the backlog takes seconds, so the kill lands mid-way.
    let pas = TestPas::start("slow");
    let text = h.config_text.replace(
        "[pipeline]\n",
        &format!(
            "[transport]\nto_pas = \"mllp\"\n[transport.mllp]\naddress = \"127.0.0.1:{}\"\nack_timeout_ms = 2000\n[pipeline]\n",
            pas.port
        ),
    );
    let config = h.config_path.with_file_name("mllp.toml");
    std::fs::write(&config, text).unwrap();

    let mut first = crate::common::bridge()
        .env("RUST_LOG", "warn")
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until a part of the backlog has arrived, then SIGKILL.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while pas.received.lock().unwrap().len() < 15 {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing arrived in 60 s"
        );
        // A bounded wait for another process's progress, not a timing assertion.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let at_kill = pas.received.lock().unwrap().len();
    assert!(at_kill < n, "killed mid-way: {at_kill} of {n} had arrived");

    let config_arg = config.clone();
    let second = tokio::task::spawn_blocking(move || {
        crate::common::bridge()
            .env("RUST_LOG", "warn")
            .args(["run", "--until-drained", "--config"])
            .arg(&config_arg)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    crate::common::assert_success(&second);

    pas.assert_each_referral_once_per_msh10(n);
    h.cleanup().await;
}
