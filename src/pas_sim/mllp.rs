//! The PAS simulator over MLLP, for a loop with no broker (`demo --transport mllp`): an
//! MLLP listener that takes the bridge's messages, answering each REF^I12 on the
//! connection with the same commit ACK as on the queue and keeping the RRI^I12 decision it
//! draws for it; ADT, REF^I13 and REF^I14 get a plain CA. [`MllpPas::send_decisions`] then
//! sends the kept RRIs to the bridge's own MLLP listener, one at a time, each waiting for
//! the bridge's ACK, as a PAS interface engine would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

use super::{answers, Answer, ControlIds, Mix, PasSimReport};
use crate::hl7::{read, ControlId};
use crate::mllp::{Acked, Block, MllpCodec, MllpError, MllpSender, SenderSettings};

/// What the listener has taken and not yet answered with a decision.
#[derive(Debug, Default)]
struct State {
    ids: ControlIds,
    answered: u64,
    /// RRIs to send, with what each counts as.
    decisions: Vec<(String, Answer)>,
    report: PasSimReport,
}

/// The simulated PAS's MLLP side; its listener runs until the value is dropped.
#[derive(Debug)]
pub struct MllpPas {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MllpPas {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MllpPas {
    /// Listens on a free loopback port, deciding with `mix`.
    pub async fn start(mix: Mix) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("an address"), mix).await
    }

    /// Listens on `addr` (the bridge's `[transport.mllp] address`).
    pub async fn start_on(addr: SocketAddr, mix: Mix) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let server = tokio::spawn(serve(listener, state.clone(), mix));
        Ok(Self {
            addr,
            state,
            server,
        })
    }

    /// Where the bridge sends (`[transport.mllp] address`).
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// Sends every decision taken so far to the bridge's listener at `bridge`, one at a
    /// time; returns what was received and sent since the last call. A decision the bridge
    /// did not acknowledge is an error, and it and the ones after it are kept for the next
    /// call.
    pub async fn send_decisions(&self, bridge: SocketAddr) -> Result<PasSimReport, MllpError> {
        let (decisions, mut report) = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (
                std::mem::take(&mut s.decisions),
                std::mem::take(&mut s.report),
            )
        };
        if decisions.is_empty() {
            return Ok(report);
        }
        let sender = MllpSender::new(SenderSettings {
            address: bridge.to_string(),
            connect_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(60),
            max_frame: 1 << 20,
            tls: None,
            retry_refused: false,
        })
        .expect("no tls files to read");
        let mut pending = decisions.into_iter();
        while let Some((text, counted)) = pending.next() {
            let id = read(text.as_bytes())
                .ok()
                .and_then(|m| ControlId::parse(m.segment("MSH")?.comp(10, 1)).ok())
                .expect("the simulator's own rri has an msh-10");
            match sender.send(text.as_bytes(), &id).await {
                Ok(Acked::Accepted | Acked::Refused(_)) => {}
                Err(e) => {
                    let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    let later = std::mem::take(&mut s.decisions);
                    s.decisions = std::iter::once((text, counted))
                        .chain(pending)
                        .chain(later)
                        .collect();
                    s.report += report;
                    return Err(e);
                }
            }
            match counted {
                Answer::Accept => report.accepted += 1,
                Answer::Reject => report.rejected += 1,
                Answer::Pending => report.pending += 1,
                Answer::Ack | Answer::Faulty => report.faulty += 1,
            }
        }
        sender.close().await;
        Ok(report)
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>, mix: Mix) {
    while let Ok((stream, _)) = listener.accept().await {
        let state = state.clone();
        tokio::spawn(async move {
            let mut framed = Framed::new(stream, MllpCodec::new(1 << 24));
            while let Some(Ok(block)) = framed.next().await {
                let Block::Message(bytes) = block else {
                    continue;
                };
                let reply = answer(&bytes, &state, mix);
                if framed.send(reply.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// The ACK for one message from the bridge, keeping a REF^I12's decision for later.
fn answer(bytes: &[u8], state: &Mutex<State>, mix: Mix) -> String {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    s.report.received += 1;
    let Ok(msg) = read(bytes) else {
        return String::new();
    };
    let (kind, event, _) = msg.message_type();
    if kind == "REF" && event == "I12" {
        s.answered += 1;
        let n = s.answered;
        let mut out = answers(&msg, n, &mut s.ids, mix, &[]).into_iter();
        let (ack, _) = out.next().expect("a commit ack first");
        s.report.acked += 1;
        s.decisions.extend(out);
        return ack;
    }
    let their = msg
        .segment("MSH")
        .map(|m| m.comp(10, 1).to_string())
        .unwrap_or_default();
    let id = s.ids.next('C');
    format!("MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116090000||ACK^{event}^ACK|{id}|P|2.4\rMSA|CA|{their}\r")
}
