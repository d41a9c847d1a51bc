//! The envelope the pipelines hand a transport, with nothing of any wire protocol in it:
//! [`Hl7Out`], a message for the PAS with what it is about. Each transport (`amqp/`, and
//! `mllp/` beside it) makes its own routing keys, headers or frames from it; the way back
//! is `transport::Hl7In`.

use crate::ids::{ControlId, Version};

/// An HL7 message for the PAS as the pipelines know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Out {
    /// MSH-10.
    pub control_id: ControlId,
    /// MSH-9.1 and MSH-9.2, e.g. `("REF", "I12")`, `("ACK", "I12")`.
    pub message_type: (String, String),
    /// What it is about: the UBRN of a REF or ADT, the PAS's MSH-10 an ACK answers.
    pub about: String,
    /// The referral version a REF or ADT carries.
    pub version: Option<Version>,
    /// The messages this one replays under a new id.
    pub replay_of: Vec<ControlId>,
    /// The encoded message (MSH-18's charset).
    pub bytes: Vec<u8>,
}

impl Hl7Out {
    /// `MSH-9.1^MSH-9.2`, as stored and shown.
    pub fn type_name(&self) -> String {
        format!("{}^{}", self.message_type.0, self.message_type.1)
    }
}
