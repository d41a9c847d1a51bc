//! The inbound pipeline over MLLP, against the simulator over HTTP: a PAS on a TCP
//! connection, its messages in MLLP blocks cut into small writes or several to a write,
//! gets each reply on the same connection; a decision is one e-RS write whatever is
//! resent; bytes that are not HL7 get an AR and are kept as a dead letter, and the
//! connection carries on.

use std::time::Duration;

use bytes::BytesMut;
use ers_bridge::app::Shutdown;
use ers_bridge::hl7::{read_inbound, AckCode};
use ers_bridge::mllp::listener::{self, ListenerSettings};
use ers_bridge::mllp::{Block, MllpCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

use crate::inbound::{ops, rri, seeded};

/// A PAS end of an MLLP connection.
struct Pas {
    stream: TcpStream,
    codec: MllpCodec,
    buf: BytesMut,
}

impl Pas {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            codec: MllpCodec::new(1 << 20),
            buf: BytesMut::new(),
        }
    }

    /// Writes `messages` as MLLP blocks, all in one buffer, cut into writes of `piece`
    /// bytes.
    async fn send(&mut self, messages: &[&[u8]], piece: usize) {
        let mut wire = BytesMut::new();
        for m in messages {
            self.codec.encode(*m, &mut wire).unwrap();
        }
        for chunk in wire.chunks(piece) {
            self.stream.write_all(chunk).await.unwrap();
            self.stream.flush().await.unwrap();
        }
    }

    /// The next reply block (a test failure after 30 s).
    async fn reply(&mut self) -> Vec<u8> {
        let read = async {
            loop {
                if let Some(b) = self.codec.decode(&mut self.buf).unwrap() {
                    return b;
                }
                let n = self.stream.read_buf(&mut self.buf).await.unwrap();
                assert!(n > 0, "the bridge closed the connection");
            }
        };
        match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(Block::Message(m)) => m.to_vec(),
            Ok(other) => panic!("not a reply: {other:?}"),
            Err(_) => panic!("no reply within 30 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_over_mllp_are_answered_on_the_connection_once_each() {
    let (h, app) = seeded(false).await;
    app.drain(10).await.expect("drain");
    let (addr, shutdown, server) = listen(&app).await;
    let mut pas = Pas::connect(addr).await;

    // One RRI cut into 7-byte writes: one AA naming it, one A013.
    let accept = rri("MLLPACC001", "A^Accepted^HL70283", "000000070001", "", "ok");
    pas.send(&[&accept], 7).await;
    let first = pas.reply().await;
    let ack = read_inbound(&first, 1 << 20).unwrap();
    assert_eq!(ack.ack_code, Some(AckCode::AA));
    assert_eq!(ack.acked_control_id.unwrap().as_str(), "MLLPACC001");
    assert_eq!(ops(&h, "A013").await, 1);

    // Resent (the PAS did not see our ACK): the same bytes back, no second write.
    pas.send(&[&accept], 4096).await;
    assert_eq!(pas.reply().await, first, "the stored reply, byte for byte");
    assert_eq!(ops(&h, "A013").await, 1);

    // Garbage, then a rejection, in one write: an AR for the garbage (kept as a dead
    // letter), then the rejection's own reply: the connection carries on.
    let reject = rri(
        "MLLPREJ001",
        "R^Rejected^HL70283",
        "000000070002",
        "WRONGSVC^Wrong service",
        "Please refer to the heart failure nurse service",
    );
    pas.send(&[b"this is not hl7", &reject], 4096).await;
    // MSA-2 empty: unreadable bytes have no MSH-10 to name.
    let nak = assert_msa(&pas.reply().await, "AR", "");
    assert!(nak.segment("ERR").is_some(), "the reason in an ERR");
    let second = read_inbound(&pas.reply().await, 1 << 20).unwrap();
    assert_eq!(second.acked_control_id.unwrap().as_str(), "MLLPREJ001");
    assert_eq!(ops(&h, "A014").await, 1);
    let kept = app.shared().store.dead_letters(10).await.unwrap();
    assert_eq!(kept.len(), 1, "the garbage is kept: {kept:?}");
    assert_eq!(kept[0].reason, "unreadable");

    // An ACK from the PAS is not acknowledged: the next reply is the next RRI's.
    let pas_ack = b"MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116091500||ACK^I12^ACK|MLLPACK001|P|2.4\rMSA|AA|SOMEREF\r".to_vec();
    let third_rri = rri("MLLPACC003", "A^Accepted^HL70283", "000000070003", "", "ok");
    pas.send(&[&pas_ack, &third_rri], 4096).await;
    let third = read_inbound(&pas.reply().await, 1 << 20).unwrap();
    assert_eq!(third.acked_control_id.unwrap().as_str(), "MLLPACC003");

    shutdown.trigger();
    server.await.unwrap();
    app.close().await;
    h.cleanup().await;
}

/// e-RS failing when the RRI comes: the PAS gets a commit accept (CA: stored, the
/// application ACK follows) on the connection at once, and the application ACK goes out
/// through the deployment's link when the retry ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_waiting_for_e_rs_is_commit_accepted_then_answered_through_the_link() {
    let (h, app) = seeded(false).await;
    h.admin("faults", serde_json::json!({"error_500_rate": 1.0}))
        .await;
    let (addr, shutdown, server) = listen(&app).await;
    let mut pas = Pas::connect(addr).await;
    let accept = rri("MLLPCA0001", "A^Accepted^HL70283", "000000070001", "", "ok");
    pas.send(&[&accept], 4096).await;
    assert_msa(&pas.reply().await, "CA", "MLLPCA0001");
    assert_eq!(ops(&h, "A013").await, 0);

    h.admin("faults", serde_json::json!({})).await;
    let later = chrono::Utc::now() + chrono::Duration::minutes(10);
    app.inbound().retry_due(later).await.unwrap();
    assert_eq!(ops(&h, "A013").await, 1);
    let ack = crate::inbound::reply(&h).await;
    assert_eq!(ack.ack_code, Some(AckCode::AA));
    assert_eq!(ack.acked_control_id.unwrap().as_str(), "MLLPCA0001");

    shutdown.trigger();
    server.await.unwrap();
    app.close().await;
    h.cleanup().await;
}

/// e-RS slower than the PAS waits: the recorded RRI gets a CA within the deadline, and the
/// application ACK (AA, the write done once) follows through the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_decision_is_commit_accepted_in_time_then_answered_through_the_link() {
    let (h, app) = seeded(false).await;
    let (addr, shutdown, server) = listen_full(&app, None, Duration::from_millis(200)).await;
    h.admin("faults", serde_json::json!({"latency_ms": 1500}))
        .await;
    let mut pas = Pas::connect(addr).await;
    let accept = rri("MLLPSLOW01", "A^Accepted^HL70283", "000000070001", "", "ok");
    pas.send(&[&accept], 4096).await;
    assert_msa(&pas.reply().await, "CA", "MLLPSLOW01");
    // The decision goes on without the connection; its AA arrives through the link.
    let ack = next_reply_on_the_link(&h).await;
    assert_eq!(ack.ack_code, Some(AckCode::AA));
    assert_eq!(ack.acked_control_id.unwrap().as_str(), "MLLPSLOW01");
    assert_eq!(ops(&h, "A013").await, 1);
    shutdown.trigger();
    server.await.unwrap();
    app.close().await;
    h.cleanup().await;
}

/// Reads a reply and checks its MSA-1 and MSA-2; returns it.
fn assert_msa(reply: &[u8], code: &str, acked: &str) -> ers_bridge::hl7::Message {
    let m = ers_bridge::hl7::read(reply).unwrap();
    let msa = m.segment("MSA").expect("an MSA");
    assert_eq!((msa.comp(1, 1), msa.comp(2, 1)), (code, acked));
    m
}

/// The next ACK on the PAS's reply queue, waiting (bounded) for a decision still running.
async fn next_reply_on_the_link(h: &crate::helpers::Harness) -> ers_bridge::hl7::Inbound {
    let conn = lapin::Connection::connect(crate::helpers::AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let queue = format!("{}-acks", h.prefix);
    for _ in 0..600 {
        let got = ch
            .basic_get(
                queue.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        if let Some(m) = got {
            return read_inbound(&m.delivery.data, 1 << 20).unwrap();
        }
        // A bounded wait for another task's work, not a timing assertion.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no ACK on the link within 30 s");
}

/// An outside oracle: python-hl7's own MLLP client (`hl7.client.MLLPClient`, in the
/// `.venv-hl7apy` that `scripts/dev.sh setup` makes) sends an RRI to the listener and
/// parses our ACK with python-hl7's parser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hl7s_mllp_client_gets_an_aa_it_can_parse() {
    let (h, app) = seeded(false).await;
    let (addr, shutdown, server) = listen(&app).await;
    let rri = String::from_utf8(rri(
        "PYHL7ACC01",
        "A^Accepted^HL70283",
        "000000070001",
        "",
        "ok",
    ))
    .unwrap();
    let script = r#"
import json, sys
import hl7
from hl7.client import MLLPClient
host, port, message = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with MLLPClient(host, port) as client:
    raw = client.send_message(message)
ack = hl7.parse(raw.strip(b"\x0b\x1c\x0d").decode())
msa = ack.segment("MSA")
print(json.dumps({"code": str(msa[1]), "acked": str(msa[2]), "type": str(ack.segment("MSH")[9])}))
"#;
    let python = python();
    let port = addr.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(["-c", script, "127.0.0.1", &port, &rri])
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "python-hl7 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["code"], "AA", "{got}");
    assert_eq!(got["acked"], "PYHL7ACC01", "{got}");
    assert!(got["type"].as_str().unwrap().starts_with("ACK"), "{got}");
    assert_eq!(ops(&h, "A013").await, 1);
    shutdown.trigger();
    server.await.unwrap();
    app.close().await;
    h.cleanup().await;
}

/// The venv's python with python-hl7 (`HL7APY_PYTHON`, else `.venv-hl7apy/bin/python`).
fn python() -> std::path::PathBuf {
    let venv = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.venv-hl7apy/bin/python"
    ));
    std::env::var_os("HL7APY_PYTHON")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| venv.is_file().then_some(venv))
        .expect("python-hl7 is not installed: run `scripts/dev.sh setup`")
}

/// A listener on a free port serving `app`'s inbound pipeline.
async fn listen(
    app: &ers_bridge::app::App,
) -> (std::net::SocketAddr, Shutdown, tokio::task::JoinHandle<()>) {
    listen_with(app, None).await
}

/// [`listen`], with TLS when `tls` is given.
pub(crate) async fn listen_with(
    app: &ers_bridge::app::App,
    tls: Option<ers_bridge::mllp::tls::ServerTls>,
) -> (std::net::SocketAddr, Shutdown, tokio::task::JoinHandle<()>) {
    listen_full(app, tls, Duration::from_secs(60)).await
}

/// [`listen_with`], answering within `reply_within`.
async fn listen_full(
    app: &ers_bridge::app::App,
    tls: Option<ers_bridge::mllp::tls::ServerTls>,
    reply_within: Duration,
) -> (std::net::SocketAddr, Shutdown, tokio::task::JoinHandle<()>) {
    let settings = ListenerSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_connections: 4,
        idle_timeout: Duration::from_secs(60),
        max_frame: listener::MAX_FRAME,
        reply_within,
        tls: tls.clone(),
    };
    let acceptor = tls.map(|t| ers_bridge::mllp::tls::acceptor(&t).expect("tls set-up"));
    let bound = listener::bind(&settings).await.unwrap();
    let addr = bound.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let server = tokio::spawn(listener::serve(
        bound,
        acceptor,
        app.inbound().clone(),
        settings,
        shutdown.clone(),
    ));
    (addr, shutdown, server)
}
