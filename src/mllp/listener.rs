//! The PAS's messages over MLLP: a TCP listener whose every block goes through the same
//! inbound pipeline as a queued message ([`Inbound::process`]), the reply written back on
//! the same connection, one message at a time per connection (MLLP's rule: the sender waits
//! for the ACK before sending the next).
//!
//! What the PAS gets on the connection, and when: never before the message is recorded
//! (`process` returns only then).
//! - the application ACK (AA/AE) once the decision is made and, when it needs one, the
//!   e-RS write done;
//! - a commit accept (CA) when the write waits for a retry (e-RS down), or when deciding
//!   takes longer than `reply_within` (e-RS slow, the rate limit): the message is stored,
//!   and the application ACK follows through the deployment's link to the PAS;
//! - nothing for an ACK from the PAS (an acknowledgement is not acknowledged);
//! - an AR naming the reason for bytes that are not readable HL7 (kept as a dead letter);
//!   the connection stays open;
//! - nothing, and the connection closed, when the bridge could not record the message (the
//!   store is down): the PAS sends it again, as MLLP senders do when no ACK comes.
//!
//! A block longer than the limit is kept (its head) as a dead letter and answered with an
//! AR; a block cut short is kept and not answered (its sender gave up on it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;

use super::codec::{Block, MllpCodec};
use super::tls::Stream;
use crate::pipeline::inbound::Inbound;
use crate::runtime::Shutdown;
use crate::transport::Hl7In;

/// The largest message taken, as from the queue (16 MiB).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// `[inbound] mllp_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub max_frame: usize,
    /// The longest the PAS waits for its answer: past it, a recorded message gets a CA and
    /// its application ACK follows through the link.
    pub reply_within: Duration,
    /// TLS on the listener, when configured.
    pub tls: Option<super::tls::ServerTls>,
}

/// Binds the listener (so a taken port fails the start, not a task later).
pub async fn bind(settings: &ListenerSettings) -> std::io::Result<TcpListener> {
    TcpListener::bind(settings.listen).await
}

/// Serves connections until shutdown; each connection ends at shutdown after the message
/// in hand is answered.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    inbound: Arc<Inbound>,
    settings: ListenerSettings,
    shutdown: Shutdown,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.wait() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let (inbound, settings, shutdown, tls) = (
                    inbound.clone(),
                    settings.clone(),
                    shutdown.clone(),
                    tls.clone(),
                );
                connections.spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let stream: Box<dyn Stream> = match tls {
                        None => Box::new(stream),
                        Some(acceptor) => {
                            let handshake = acceptor.accept(stream);
                            match tokio::time::timeout(Duration::from_secs(10), handshake).await {
                                Ok(Ok(s)) => Box::new(s),
                                Ok(Err(e)) => {
                                    tracing::warn!(%peer, error = %e, "mllp tls handshake refused");
                                    return;
                                }
                                Err(_) => {
                                    tracing::warn!(%peer, "mllp tls handshake took longer than 10 s");
                                    return;
                                }
                            }
                        }
                    };
                    serve_connection(stream, peer, inbound, &settings, &shutdown).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "mllp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: Box<dyn Stream>,
    peer: SocketAddr,
    inbound: Arc<Inbound>,
    settings: &ListenerSettings,
    shutdown: &Shutdown,
) {
    tracing::info!(%peer, "mllp connection opened");
    let mut framed = Framed::new(stream, MllpCodec::new(settings.max_frame));
    loop {
        let next = tokio::select! {
            n = tokio::time::timeout(settings.idle_timeout, framed.next()) => n,
            () = shutdown.wait() => break,
        };
        let block = match next {
            Err(_) => {
                tracing::info!(%peer, "mllp connection idle, closed");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::warn!(%peer, error = %e, "mllp connection failed");
                break;
            }
            Ok(Some(Ok(block))) => block,
        };
        match answer(&inbound, block, settings.reply_within).await {
            Ok(Some(reply)) => {
                if let Err(e) = framed.send(reply).await {
                    tracing::warn!(%peer, error = %e, "mllp reply not written; the pas sends the message again");
                    break;
                }
            }
            Ok(None) => {}
            Err(()) => break,
        }
    }
    let stray = framed.codec().stray_bytes();
    if stray > 0 {
        tracing::warn!(%peer, stray_bytes = stray, "mllp bytes outside any block were dropped");
    }
    tracing::info!(%peer, "mllp connection closed");
}

/// How [`decide_within`] ended.
enum Decided {
    Now(Box<Result<crate::pipeline::inbound::Answer, crate::pipeline::PipelineError>>),
    /// Recorded, and still being decided after the deadline.
    Later,
}

/// Runs the inbound pipeline on `input`, waiting at most `within` for its answer. Past the
/// deadline, once the message is recorded (never before: a CA promises that), the answer
/// is left to the task, which sends its reply through the link when it comes.
async fn decide_within(inbound: &Arc<Inbound>, input: &Hl7In, within: Duration) -> Decided {
    let mut task = {
        let (inbound, input) = (inbound.clone(), input.clone());
        tokio::spawn(async move { inbound.process(&input, Utc::now()).await })
    };
    let joined = match tokio::time::timeout(within, &mut task).await {
        Ok(joined) => joined,
        Err(_) if inbound.is_recorded(input).await => {
            let inbound = inbound.clone();
            tokio::spawn(async move {
                if let Ok(Ok(answer)) = task.await {
                    if let Some(reply) = answer.reply {
                        inbound.send_later(&reply).await;
                    }
                }
            });
            return Decided::Later;
        }
        // Not even recorded yet: the PAS waits for it.
        Err(_) => task.await,
    };
    Decided::Now(Box::new(joined.unwrap_or_else(|e| {
        Err(crate::pipeline::PipelineError::BadMessage(format!(
            "the handling task failed: {e}"
        )))
    })))
}

/// The bytes to write back for one block, `None` for no reply; `Err` closes the connection
/// without one (nothing was recorded: the PAS sends it again).
async fn answer(
    inbound: &Arc<Inbound>,
    block: Block,
    reply_within: Duration,
) -> Result<Option<Vec<u8>>, ()> {
    let now = Utc::now();
    let (kind, detail, input, reply) = match block {
        Block::Message(bytes) => {
            let input = Hl7In::new(bytes.to_vec());
            let answer = match decide_within(inbound, &input, reply_within).await {
                Decided::Now(r) => match *r {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "mllp message not recorded, connection closed without a reply");
                        return Err(());
                    }
                },
                // Recorded, still being decided: a commit accept now; the application
                // ACK follows through the link.
                Decided::Later => return Ok(inbound.commit_accept(&input, now)),
            };
            if let crate::pipeline::inbound::Handled::DeadLettered { reason } = &answer.handled {
                let nak = inbound.reject_unreadable(reason, now);
                ("unreadable", reason.clone(), input, Some(nak))
            } else {
                return Ok(match answer.reply {
                    Some(r) => Some(r.out.bytes),
                    None => inbound.commit_accept(&input, now),
                });
            }
        }
        Block::Oversized { seen, head } => {
            let why = format!("an mllp block of more than {seen} bytes, over the limit");
            let nak = inbound.reject_unreadable(&why, now);
            ("oversized", why, Hl7In::new(head.to_vec()), Some(nak))
        }
        Block::Truncated(bytes) => {
            let why = "an mllp block cut short by the start of another".to_string();
            ("truncated", why, Hl7In::new(bytes.to_vec()), None)
        }
    };
    if let Err(e) = inbound.keep_dead_letter(&input, kind, &detail).await {
        tracing::warn!(error = %e, "mllp dead letter not kept, connection closed without a reply");
        return Err(());
    }
    Ok(reply)
}
