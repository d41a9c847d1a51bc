//! The PAS over MLLP as the destination of the bridge's messages (REF/ADT, and the
//! application ACK that follows a commit accept): one persistent connection, one message
//! in flight on it, each message answered by the PAS's ACK before the next is sent.
//!
//! An ACK is taken only when its MSA-2 names the MSH-10 just sent: an ACK for an earlier
//! message (a late one, after a resend) is logged and skipped, never taken for this one (a
//! known failure of other engines). AA/CA: accepted. AE/AR (CE/CR): refused, with MSA-3 and
//! the ERR text as the reason. No ACK within the timeout, a reset, a closed connection or
//! an unreadable answer: the outcome is unknown ([`MllpError`], every variant retryable),
//! the connection is dropped, and the caller sends the same bytes under the same MSH-10
//! again on a new connection (the PAS de-duplicates on MSH-10, docs/pas-interface.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use tokio_util::codec::Framed;

use super::codec::{Block, MllpCodec};
use super::tls::{self, ClientTls, Stream, TlsError};
use crate::events::{Events, MessageConfirmed, PublishAttemptFailed};
use crate::hl7::{read_inbound, AckCode, ControlId};

/// `[transport.mllp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderSettings {
    /// `host:port` of the PAS's MLLP listener.
    pub address: String,
    pub connect_timeout: Duration,
    /// How long the PAS has to acknowledge one message.
    pub ack_timeout: Duration,
    /// The largest ACK read.
    pub max_frame: usize,
    /// TLS to the PAS, when configured.
    pub tls: Option<ClientTls>,
    /// An AE/AR is retried with backoff rather than handed back as a refusal
    /// (`on_refusal = "retry"`).
    pub retry_refused: bool,
}

/// What the PAS answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acked {
    /// AA or CA.
    Accepted,
    /// AE, AR, CE or CR, with its reason.
    Refused(String),
}

/// Why a message's outcome is unknown; it is sent again.
#[derive(Debug, thiserror::Error)]
pub enum MllpError {
    #[error("connecting to the pas at {address} failed: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to the pas at {address} took longer than {timeout_ms} ms")]
    ConnectTimeout { address: String, timeout_ms: u64 },
    #[error("the connection to the pas at {address} failed: {source}")]
    Io {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no ack from the pas at {address} for {control_id} within {timeout_ms} ms")]
    AckTimeout {
        address: String,
        control_id: ControlId,
        timeout_ms: u64,
    },
    #[error("the pas at {address} closed the connection before acknowledging {control_id}")]
    Closed {
        address: String,
        control_id: ControlId,
    },
}

impl MllpError {
    /// Every MLLP failure leaves the outcome unknown: the same message is sent again.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

type Connection = Framed<Box<dyn Stream>, MllpCodec>;

/// The connection to the PAS, opened on first use and after every failure.
pub struct MllpSender {
    settings: SenderSettings,
    /// Where each ACK and failed attempt is counted (the broker's families: confirms, ACK
    /// latency, the outage log), when given.
    events: Option<Events>,
    tls: Option<(TlsConnector, rustls_pki_types::ServerName<'static>)>,
    conn: Mutex<Option<Connection>>,
    connected: AtomicBool,
}

impl std::fmt::Debug for MllpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MllpSender")
            .field("settings", &self.settings)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl MllpSender {
    /// A sender to `settings.address`; fails only on the TLS files or names.
    pub fn new(settings: SenderSettings) -> Result<Self, TlsError> {
        let tls = settings
            .tls
            .as_ref()
            .map(|t| tls::connector(t, &settings.address))
            .transpose()?;
        Ok(Self {
            settings,
            events: None,
            tls,
            conn: Mutex::new(None),
            connected: AtomicBool::new(false),
        })
    }

    /// Counts each accepted ACK (with its latency) and each failed attempt in `events`, as
    /// the broker publisher counts confirms: `/metrics` shows the PAS link's ACK latency,
    /// and an outage is logged once, with its end.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = Some(events);
        self
    }

    /// `mllp://host:port` (`mllps://` with TLS), where delivered messages went.
    pub fn destination(&self) -> String {
        let scheme = if self.tls.is_some() { "mllps" } else { "mllp" };
        format!("{scheme}://{}", self.settings.address)
    }

    /// Whether an AE/AR is to be retried rather than handed back.
    pub fn retries_refusals(&self) -> bool {
        self.settings.retry_refused
    }

    /// Whether a connection is open now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Opens the connection when there is none.
    pub async fn ensure_connected(&self) -> Result<(), MllpError> {
        let mut conn = self.conn.lock().await;
        if conn.is_none() {
            *conn = Some(self.connect().await?);
            self.connected.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Closes the connection (at shutdown, after the last message).
    pub async fn close(&self) {
        self.conn.lock().await.take();
        self.connected.store(false, Ordering::Release);
    }

    /// Sends one message and waits for the PAS's ACK naming it. Messages queue for the
    /// connection: one in flight at a time, in the order they asked.
    pub async fn send(&self, bytes: &[u8], control_id: &ControlId) -> Result<Acked, MllpError> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(self.connect().await?);
            self.connected.store(true, Ordering::Release);
        }
        let conn = guard.as_mut().expect("connected above");
        let started = std::time::Instant::now();
        let timeout = self.settings.ack_timeout;
        let result =
            match tokio::time::timeout(timeout, self.exchange(conn, bytes, control_id)).await {
                Ok(r) => r,
                Err(_) => Err(MllpError::AckTimeout {
                    address: self.settings.address.clone(),
                    control_id: control_id.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                }),
            };
        if result.is_err() {
            // The stream may hold half an answer or a late ACK: start clean.
            guard.take();
            self.connected.store(false, Ordering::Release);
        }
        if let Some(events) = &self.events {
            match &result {
                Ok(Acked::Accepted) => events.emit(MessageConfirmed {
                    latency: started.elapsed(),
                }),
                Ok(Acked::Refused(_)) => {}
                Err(_) => events.emit(PublishAttemptFailed),
            }
        }
        result
    }

    async fn exchange(
        &self,
        conn: &mut Connection,
        bytes: &[u8],
        control_id: &ControlId,
    ) -> Result<Acked, MllpError> {
        let io = |source| MllpError::Io {
            address: self.settings.address.clone(),
            source,
        };
        conn.send(bytes).await.map_err(io)?;
        loop {
            let block = match conn.next().await {
                None => {
                    return Err(MllpError::Closed {
                        address: self.settings.address.clone(),
                        control_id: control_id.clone(),
                    })
                }
                Some(Err(e)) => return Err(io(e)),
                Some(Ok(Block::Message(m))) => m,
                Some(Ok(other)) => {
                    tracing::warn!(address = %self.settings.address, block = ?kind(&other), "a broken block from the pas, skipped");
                    continue;
                }
            };
            let ack = match read_inbound(&block, self.settings.max_frame) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(address = %self.settings.address, error = %e, "an unreadable answer from the pas, skipped");
                    continue;
                }
            };
            if ack.acked_control_id.as_ref() != Some(control_id) {
                tracing::warn!(
                    address = %self.settings.address,
                    sent = %control_id,
                    acked = ?ack.acked_control_id.as_ref().map(ControlId::as_str),
                    "an ack from the pas for another message (a late one), skipped"
                );
                continue;
            }
            return Ok(match ack.ack_code {
                Some(AckCode::AA | AckCode::CA) => Acked::Accepted,
                Some(code) => {
                    let mut reason = format!("{}: {}", code.as_str(), ack.ack_text);
                    for e in &ack.errors {
                        reason.push_str(&format!("; {} {} {}", e.location, e.code, e.message));
                    }
                    Acked::Refused(reason.trim().to_string())
                }
                None => {
                    tracing::warn!(address = %self.settings.address, "an ack from the pas without MSA-1, skipped");
                    continue;
                }
            });
        }
    }

    async fn connect(&self) -> Result<Connection, MllpError> {
        let address = &self.settings.address;
        let connect = async {
            let mut last = None;
            for addr in tokio::net::lookup_host(address.as_str()).await? {
                let socket = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                // A silently dead peer (a firewall dropping the connection) is noticed.
                socket.set_keepalive(true)?;
                match socket.connect(addr).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the name")
            }))
        };
        let stream = self.within_connect_timeout(connect).await?;
        let _ = stream.set_nodelay(true);
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(stream),
            Some((connector, name)) => {
                let handshake = connector.connect(name.clone(), stream);
                Box::new(self.within_connect_timeout(handshake).await?)
            }
        };
        tracing::info!(%address, tls = self.tls.is_some(), "mllp connection to the pas opened");
        Ok(Framed::new(stream, MllpCodec::new(self.settings.max_frame)))
    }
}

impl MllpSender {
    /// A step of connecting (the TCP connect, the TLS handshake), bounded by the connect
    /// timeout, its failure named with the address.
    async fn within_connect_timeout<T>(
        &self,
        step: impl std::future::Future<Output = std::io::Result<T>>,
    ) -> Result<T, MllpError> {
        let timeout = self.settings.connect_timeout;
        match tokio::time::timeout(timeout, step).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(MllpError::Connect {
                address: self.settings.address.clone(),
                source,
            }),
            Err(_) => Err(MllpError::ConnectTimeout {
                address: self.settings.address.clone(),
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }
}

fn kind(b: &Block) -> &'static str {
    match b {
        Block::Message(_) => "message",
        Block::Oversized { .. } => "oversized",
        Block::Truncated(_) => "truncated",
    }
}
