//! MLLP, the way most hospital PAS interfaces exchange HL7v2: blocks on a TCP connection
//! (`0x0B` … `0x1C 0x0D`, [`codec`]), each message answered by an ACK on the same
//! connection. The only module that knows MLLP framing; `docs/mllp.md` is the guide.
//!
//! - [`codec`]: the framing, as a `tokio-util` codec that scans forward and survives
//!   broken blocks.
//! - [`listener`]: the PAS's messages in (ACK, RRI^I12): each block handed to the inbound
//!   pipeline, its reply written back on the same connection.
//! - [`tls`]: rustls both ways (the PAS's CA or the system's roots, optional client
//!   certificates).
//! - [`sender`]: the bridge's messages out (REF/ADT, later application ACKs): one
//!   connection, one message in flight, the ACK matched on MSA-2.

pub mod codec;
pub mod listener;
pub mod sender;
pub mod tls;

pub use codec::{Block, MllpCodec};
pub use sender::{Acked, MllpError, MllpSender, SenderSettings};
