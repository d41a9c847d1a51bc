//! MLLP to the PAS on this machine: sends `--count` messages of `--bytes` bytes through the
//! bridge's [`MllpSender`] (one connection, one message in flight, each waiting for the
//! ACK naming its MSH-10) and prints messages/s and the ACK latency percentiles.
//!
//! The PAS is a minimal ACK-ing listener in this process (the bridge's own codec, an AA per
//! message) unless `--pas HOST:PORT` names another (e.g. `tests/outbound/mllp_pas.py`).
//!
//! `--tls DIR` runs the in-process PAS with TLS (`DIR/server.pem`, `DIR/server.key`, a
//! certificate for 127.0.0.1) and the sender trusting `DIR/ca.pem`; BENCHMARKS.md has the
//! `openssl` commands that make them.
//!
//! ```sh
//! cargo run --release --example mllp_rate -- --count 20000
//! cargo run --release --example mllp_rate -- --count 20000 --tls /tmp/mllp-certs
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use ers_bridge::hl7::ControlId;
use ers_bridge::mllp::{tls, Acked, Block, MllpCodec, MllpSender, SenderSettings};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut count = 10_000usize;
    let mut bytes = 2_405usize;
    let mut pas: Option<String> = None;
    let mut tls_dir: Option<std::path::PathBuf> = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--count" => count = value.parse()?,
            "--bytes" => bytes = value.parse()?,
            "--pas" => pas = Some(value),
            "--tls" => tls_dir = Some(value.into()),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let address = match pas {
        Some(a) => a,
        None => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let acceptor = tls_dir
                .as_ref()
                .map(|d| {
                    tls::acceptor(&tls::ServerTls {
                        cert_file: d.join("server.pem"),
                        key_file: d.join("server.key"),
                        client_ca_file: None,
                    })
                })
                .transpose()?;
            tokio::spawn(ack_everything(listener, acceptor));
            addr.to_string()
        }
    };
    let sender = MllpSender::new(SenderSettings {
        address: address.clone(),
        connect_timeout: Duration::from_secs(5),
        ack_timeout: Duration::from_secs(5),
        max_frame: 1 << 20,
        tls: tls_dir.as_ref().map(|d| tls::ClientTls {
            ca_file: Some(d.join("ca.pem")),
            client_cert: None,
            server_name: None,
        }),
        retry_refused: false,
    })?;
    let mut latencies = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        let id = ControlId::parse(&format!("{:012}I12{:05}", 700_000 + i, i % 100_000))?;
        let message = message(&id, bytes);
        let t = Instant::now();
        match sender.send(&message, &id).await? {
            Acked::Accepted => {}
            Acked::Refused(r) => anyhow::bail!("the pas refused {id}: {r}"),
        }
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "mllp pas={address} tls={} messages={count} bytes={bytes} messages_per_s={:.0} p50_us={} p99_us={} max_us={}",
        tls_dir.is_some(),
        count as f64 / total.as_secs_f64(),
        pct(0.50).as_micros(),
        pct(0.99).as_micros(),
        latencies.last().map_or(0, |d| d.as_micros()),
    );
    sender.close().await;
    Ok(())
}

/// A REF^I12-shaped message of about `bytes` bytes under `id`.
fn message(id: &ControlId, bytes: usize) -> Vec<u8> {
    let mut m = format!(
        "MSH|^~\\&|ERS_BRIDGE|RXX|PAS|RXX|20261206120000||REF^I12^REF_I12|{id}|P|2.4\rRF1|P^Pending^HL70283\r"
    );
    let mut n = 1;
    while m.len() < bytes {
        m.push_str(&format!("NTE|{n}|L|{}\r", "x".repeat(60)));
        n += 1;
    }
    m.into_bytes()
}

/// Answers every message with an AA naming its MSH-10.
async fn ack_everything(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    while let Ok((stream, _)) = listener.accept().await {
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream: Box<dyn tls::Stream> = match tls {
                None => Box::new(stream),
                Some(a) => match a.accept(stream).await {
                    Ok(s) => Box::new(s),
                    Err(_) => return,
                },
            };
            let mut framed = Framed::new(stream, MllpCodec::new(1 << 20));
            while let Some(Ok(Block::Message(m))) = framed.next().await {
                let text = String::from_utf8_lossy(&m);
                let id = text.split('|').nth(9).unwrap_or("").to_string();
                let ack = format!(
                    "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20261206120000||ACK^I12^ACK|A{id}|P|2.4\rMSA|AA|{id}\r"
                );
                if framed.send(ack.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}
