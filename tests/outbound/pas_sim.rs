//! The PAS simulator (`ers_bridge::pas_sim`, `ers-bridge pas-sim`) against the real
//! RabbitMQ: it never repeats an MSH-10 (across passes, instances and restarts, so the
//! bridge never drops a later decision as a duplicate), it waits for queues the bridge has
//! not declared yet, and it survives a broker restart. The restart is a TCP proxy in front
//! of the real broker that drops every connection and stops listening, then listens again:
//! what a client sees of a broker restart, without stopping the broker other tests share.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ers_bridge::amqp::QueueClient;
use ers_bridge::app::Shutdown;
use ers_bridge::hl7::{read_inbound, Inbound};
use ers_bridge::pas_sim::{self, Mix, PasSimConfig};
use ers_bridge::pipeline::inbound::Handled;
use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions, QueueDeleteOptions};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{Harness, Opts, AMQP_URL};

/// A REF^I12 as the bridge publishes it, enough for the PAS simulator to answer.
fn ref_i12(ubrn: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|ERS_BRIDGE|RXX|PAS|RXX|20240115103000+0000||REF^I12^REF_I12|{ubrn}I1200005|P|2.5.1\r\
         RF1|P^Pending^HL70283||||O^Outpatient^HL70284|{ubrn}^UBRN\r"
    )
    .into_bytes()
}

/// Everything now on `queue`, read as PAS messages.
async fn take_all(q: &QueueClient, queue: &str) -> Vec<(Vec<u8>, Inbound)> {
    let mut out = Vec::new();
    while let Some(body) = q.take(queue).await.unwrap() {
        let msg = read_inbound(&body, 1 << 20).expect("the simulated PAS sends HL7");
        out.push((body, msg));
    }
    out
}

/// Two passes of `answer_all` (as the demo and the load test call it) give every message
/// a new MSH-10, so the bridge handles every decision of the second pass instead of
/// taking it for the first pass's `PASRRI0000001` (a duplicate, or an MSH-10 reused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_never_repeat_a_control_id() {
    let h = Harness::start(Opts {
        seed: true,
        ..Opts::default()
    })
    .await;
    let app = h.app(Shutdown::new()).await;
    let cfg = PasSimConfig {
        amqp_url: AMQP_URL.to_string(),
        pas_queue: h.pas_queue(),
        inbound_queue: format!("{}-in", h.prefix),
        mix: Mix::default(),
        faults: Vec::new(),
    };
    let q = QueueClient::connect(AMQP_URL).await.unwrap();
    let mut answers = Vec::new();
    for pass in [
        ["000000070001", "000000070002"],
        ["000000070005", "000000070013"],
    ] {
        for ubrn in pass {
            q.send(&cfg.pas_queue, &ref_i12(ubrn)).await.unwrap();
        }
        let report = pas_sim::answer_all(&cfg).await.unwrap();
        assert_eq!(report.received, 2, "{report:?}");
        answers.extend(take_all(&q, &cfg.inbound_queue).await);
    }
    assert_eq!(answers.len(), 8, "a commit ACK and an RRI per REF");
    let ids: HashSet<String> = answers
        .iter()
        .map(|(_, m)| m.control_id.to_string())
        .collect();
    assert_eq!(
        ids.len(),
        answers.len(),
        "an MSH-10 was sent twice: {ids:?}"
    );
    assert!(ids.iter().all(|id| id.len() <= 20), "{ids:?}");
    for (body, msg) in &answers {
        let handled = app.inbound().handle(body, Utc::now()).await.unwrap();
        assert!(
            !matches!(
                handled,
                Handled::Duplicate { .. } | Handled::IdReused { .. }
            ),
            "{} not handled as a new message: {handled:?}",
            msg.control_id
        );
    }
    q.close().await;
    app.close().await;
    h.cleanup().await;
}

/// A TCP proxy in front of the real broker.
struct BrokerProxy {
    port: u16,
    /// Client connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// One task per proxied connection.
    pipes: Arc<tokio::sync::Mutex<tokio::task::JoinSet<()>>>,
    listening: Option<tokio::task::JoinHandle<()>>,
}

impl BrokerProxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut proxy = Self {
            port: listener.local_addr().unwrap().port(),
            accepted: Arc::new(AtomicUsize::new(0)),
            pipes: Arc::default(),
            listening: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let (accepted, pipes) = (self.accepted.clone(), self.pipes.clone());
        self.listening = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                pipes.lock().await.spawn(async move {
                    if let Ok(mut broker) = TcpStream::connect("127.0.0.1:5672").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                    }
                });
            }
        }));
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The broker "stops": nothing listens any more and every connection through the
    /// proxy is cut (both waited for).
    async fn stop(&mut self) {
        if let Some(t) = self.listening.take() {
            t.abort();
            let _ = t.await;
        }
        self.pipes.lock().await.shutdown().await;
    }

    /// The broker "is back" on the same port.
    fn restart(&mut self) {
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.serve(TcpListener::from_std(listener).unwrap());
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The `pas-sim` process, killed when the test ends (also on panic).
struct PasSimProcess {
    child: Child,
    stderr: std::path::PathBuf,
}

impl PasSimProcess {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Fails the test when the process has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("pas-sim exited with {status}: {}", self.stderr());
        }
    }
}

impl Drop for PasSimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` every 20 ms until it holds, failing after `limit` or when the process
/// exits. This waits for progress in another process; it asserts nothing about timing.
async fn wait_until(
    what: &str,
    sim: &mut PasSimProcess,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        sim.assert_running();
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}: {}",
            sim.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the simulator's messages from `answers` until both answers to the REF about
/// `ubrn` have come (a REF redelivered after a restart may be answered again first, under
/// new ids), adding every MSH-10 to `ids`.
async fn answers_for(
    ubrn: &str,
    answers: &mut lapin::Consumer,
    ids: &mut Vec<String>,
    sim: &PasSimProcess,
) {
    let mut for_ubrn = 0;
    let got = tokio::time::timeout(Duration::from_secs(60), async {
        while for_ubrn < 2 {
            let d = answers.next().await.unwrap().unwrap();
            let msg = read_inbound(&d.data, 1 << 20).unwrap();
            if msg
                .acked_control_id
                .as_ref()
                .is_some_and(|c| c.as_str().starts_with(ubrn))
            {
                for_ubrn += 1;
            }
            ids.push(msg.control_id.to_string());
        }
    })
    .await;
    assert!(got.is_ok(), "no answers for {ubrn}: {}", sim.stderr());
}

/// Started before the bridge has declared its queues, `ers-bridge pas-sim` waits for them
/// instead of exiting; when the broker restarts it reconnects and answers the next REF,
/// under MSH-10s it has not used before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pas_sim_waits_for_the_queues_and_reconnects_after_a_broker_restart() {
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let (pas_queue, inbound_queue) = (format!("{prefix}-pas"), format!("{prefix}-in"));
    let mut proxy = BrokerProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ers-bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[ers]\nbase_url = \"http://127.0.0.1:9/referrals/FHIR\"\n[ers.auth]\nmode = \"none\"\n\
             [amqp]\nurl = \"{}\"\npas_queue = \"{pas_queue}\"\ninbound_queue = \"{inbound_queue}\"\n",
            proxy.url()
        ),
    )
    .unwrap();
    let stderr = dir.path().join("pas-sim.stderr");
    let mut cmd: Command = crate::common::bridge();
    cmd.env("RUST_LOG", "warn,ers_bridge=debug")
        .args([
            "pas-sim",
            "--config",
            config.to_str().unwrap(),
            "--every-ms",
            "50",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut sim = PasSimProcess {
        child: cmd.spawn().unwrap(),
        stderr,
    };

    // No queues yet: the simulator connects, finds none, and tries again.
    let accepted = proxy.accepted.clone();
    wait_until(
        "a second connection after finding no queues",
        &mut sim,
        Duration::from_secs(60),
        || accepted.load(Ordering::SeqCst) >= 2,
    )
    .await;

    // The bridge declares its queues; a REF is answered.
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    for q in [&pas_queue, &inbound_queue] {
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
    }
    let mut answers = ch
        .basic_consume(
            inbound_queue.as_str().into(),
            "test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let q = QueueClient::connect(AMQP_URL).await.unwrap();
    let mut ids = Vec::new();
    q.send(&pas_queue, &ref_i12("000000070001")).await.unwrap();
    answers_for("000000070001", &mut answers, &mut ids, &sim).await;
    sim.assert_running();

    // The broker restarts: every connection is cut, then it listens again.
    let before = proxy.accepted();
    proxy.stop().await;
    q.send(&pas_queue, &ref_i12("000000070002")).await.unwrap();
    proxy.restart();
    answers_for("000000070002", &mut answers, &mut ids, &sim).await;
    sim.assert_running();
    assert!(proxy.accepted() > before, "the simulator reconnected");

    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an MSH-10 was sent twice: {ids:?}");

    drop(sim);
    proxy.stop().await;
    q.close().await;
    for q in [&pas_queue, &inbound_queue] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
}
