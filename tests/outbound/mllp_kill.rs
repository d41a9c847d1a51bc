//! `kill -9` of a real `ers-bridge run` process in the middle of a PAS's conversation over
//! MLLP, inbound: the PAS sends one accept per referral to the bridge's listener; the
//! bridge is killed while e-RS holds the answer to a write it has applied, and the PAS
//! keeps sending the message it has no ACK for (the same bytes, the same MSH-10) until a
//! restarted bridge answers. Every decision is
//! applied in e-RS exactly once (the simulator's write log), and every RRI is answered.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Stdio};
use std::time::Duration;

use ers_bridge::hl7::ControlId;
use ers_bridge::mllp::{MllpSender, SenderSettings};

use crate::helpers::{Harness, Opts};
use crate::inbound::{rri, write_calls};
use crate::mllp_out::TestPas;

fn start_run(config: &std::path::Path) -> Child {
    crate::common::bridge()
        .env("RUST_LOG", "warn")
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_run_mid_conversation_applies_each_decision_once() {
    let n = 24;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    // The bridge's REFs go to a test PAS over MLLP; its decisions come to the bridge's
    // own listener, on a port chosen now.
    let pas = TestPas::start("");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = h.config_text.replace(
        "[pipeline]\n",
        &format!(
            "[transport]\nto_pas = \"mllp\"\n[transport.mllp]\naddress = \"127.0.0.1:{}\"\n\
             [inbound]\nmllp_listen = \"{listen}\"\n[pipeline]\n",
            pas.port
        ),
    );
    let config = h.config_path.with_file_name("mllp-in.toml");
    std::fs::write(&config, text).unwrap();
    let mut bridge = start_run(&config);

    // Every referral's REF reached the PAS (a bounded wait for the other process).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let ubrns: Vec<String> = loop {
        let got: HashSet<String> = pas
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id[..12].to_string())
            .collect();
        if got.len() == n {
            let mut v: Vec<String> = got.into_iter().collect();
            v.sort();
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} REFs",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let sender = MllpSender::new(SenderSettings {
        address: listen.to_string(),
        connect_timeout: Duration::from_secs(2),
        ack_timeout: Duration::from_secs(10),
        max_frame: 1 << 20,
        tls: None,
        retry_refused: false,
    })
    .unwrap();
    let mut answered = HashMap::new();
    let mut restarted = false;
    for (i, ubrn) in ubrns.iter().enumerate() {
        let id = format!("KILLACC{i:04}");
        let msg = rri(&id, "A^Accepted^HL70283", ubrn, "", "ok");
        let control_id = ControlId::parse(&id).unwrap();
        if i == 8 {
            // SIGKILL mid-decision: e-RS applies this write and holds its answer, and the
            // bridge is killed while it waits. The restarted bridge must find it applied.
            h.admin(
                "faults",
                serde_json::json!({"hold_write_responses_ms": 10_000}),
            )
            .await;
            let in_flight = {
                let one = MllpSender::new(SenderSettings {
                    address: listen.to_string(),
                    connect_timeout: Duration::from_secs(2),
                    ack_timeout: Duration::from_secs(30),
                    max_frame: 1 << 20,
                    tls: None,
                    retry_refused: false,
                })
                .unwrap();
                let (msg, control_id) = (msg.clone(), control_id.clone());
                tokio::spawn(async move { one.send(&msg, &control_id).await })
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !write_calls(&h)
                .await
                .iter()
                .any(|c| c["applied"] == true && c["ubrn"] == ubrn.as_str())
            {
                assert!(std::time::Instant::now() < deadline, "the write never came");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            bridge.kill().unwrap();
            bridge.wait().unwrap();
            h.admin("faults", serde_json::json!({})).await;
            assert!(
                in_flight.await.unwrap().is_err(),
                "no answer from a killed bridge"
            );
        }
        // As a PAS does: the same bytes again until an ACK comes.
        let mut tries = 0;
        let acked = loop {
            match sender.send(&msg, &control_id).await {
                Ok(a) => break a,
                Err(_) => {
                    tries += 1;
                    assert!(tries < 300, "{id} never answered");
                    if !restarted {
                        bridge = start_run(&config);
                        restarted = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        answered.insert(ubrn.clone(), acked);
    }
    assert!(
        restarted,
        "the kill left the PAS without an answer for a while"
    );
    bridge.kill().unwrap();
    bridge.wait().unwrap();

    // Every RRI answered, and each decision applied in e-RS once: one applied write per
    // referral, whatever was resent across the kill.
    assert_eq!(answered.len(), n);
    let mut writes = HashMap::<String, usize>::new();
    for c in write_calls(&h).await {
        if c["applied"] == true {
            *writes
                .entry(c["ubrn"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
    }
    assert!(writes.values().all(|n| *n == 1), "{writes:?}");
    assert_eq!(writes.len(), n, "{writes:?}");
    h.cleanup().await;
}
