//! Reading what the PAS sends back: ACK (both the v2.4 and v2.5.1 ERR layouts) and, via
//! [`super::rri`], RRI^I12. [`read_inbound`] turns bytes into an [`Inbound`] summary that
//! the decision table (`mapping::inbound`) works on.
//!
//! Tolerant by design (HL7V2.md §6): unknown segments (Z-segments) are ignored, MSH-9.3
//! may be missing, and a bare `MSA` inside any message type is read.

use serde::Serialize;

use super::message::{Message, Segment};
use super::read::{read_with_limit, ReadError};
use super::rri::RriReferral;
use crate::ids::ControlId;

/// MSA-1 (table 0008).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AckCode {
    AA,
    AE,
    AR,
    CA,
    CE,
    CR,
}

impl AckCode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "AA" => Self::AA,
            "AE" => Self::AE,
            "AR" => Self::AR,
            "CA" => Self::CA,
            "CE" => Self::CE,
            "CR" => Self::CR,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AA => "AA",
            Self::AE => "AE",
            Self::AR => "AR",
            Self::CA => "CA",
            Self::CE => "CE",
            Self::CR => "CR",
        }
    }
}

/// One ERR segment, read from either layout.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ErrDetail {
    /// Where the error is: `PID-3` (segment id and field position).
    pub location: String,
    /// Table 0357 code, e.g. `204`.
    pub code: String,
    /// The code's text, e.g. `Unknown key identifier`.
    pub text: String,
    /// ERR-4 severity (2.5.1 only): E, W or I.
    pub severity: String,
    /// ERR-7 diagnostic and ERR-8 user message (2.5.1 only), joined.
    pub message: String,
}

/// A summary of one inbound message. `Debug` leaves out the free text (MSA-3, ERR
/// messages, the RRI's comments), which can carry patient details.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Inbound {
    /// MSH-9.1, e.g. `ACK` or `RRI`.
    pub message_type: String,
    /// MSH-9.2, e.g. `I12`.
    pub event: String,
    /// MSH-12.
    pub version: String,
    /// MSH-10 of this message (the de-duplication key).
    pub control_id: ControlId,
    /// MSA-1, when there is an MSA.
    pub ack_code: Option<AckCode>,
    /// MSA-2: the MSH-10 of our message being acknowledged.
    pub acked_control_id: Option<ControlId>,
    /// MSA-3 text.
    pub ack_text: String,
    pub errors: Vec<ErrDetail>,
    /// RF1/PRD/PID/NTE content of an RRI.
    pub referral: Option<RriReferral>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let errors: Vec<_> = self
            .errors
            .iter()
            .map(|e| (&e.location, &e.code, &e.severity))
            .collect();
        f.debug_struct("Inbound")
            .field("message_type", &self.message_type)
            .field("event", &self.event)
            .field("version", &self.version)
            .field("control_id", &self.control_id)
            .field("ack_code", &self.ack_code)
            .field("acked_control_id", &self.acked_control_id)
            .field("ack_text", &Redacted(&self.ack_text))
            .field("errors", &errors)
            .field("referral", &self.referral)
            .finish()
    }
}

/// Free text in `Debug`: only its length.
pub(crate) struct Redacted<'a>(pub &'a str);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} chars redacted>", self.0.chars().count())
    }
}

/// Why an inbound message cannot be summarised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{segment}-{field}: {reason}")]
    Invalid {
        segment: &'static str,
        field: usize,
        reason: String,
    },
}

impl InboundError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The longest MSH-9 message type or trigger event read (HL7's codes are 3 to 7).
const MAX_CODE_LEN: usize = 10;

/// Reads and summarises bytes from the PAS.
pub fn read_inbound(bytes: &[u8], max_bytes: usize) -> Result<Inbound, InboundError> {
    let msg = read_with_limit(bytes, max_bytes)?;
    summarise(&msg)
}

/// Summarises an already-read message.
pub fn summarise(msg: &Message) -> Result<Inbound, InboundError> {
    let msh = msg.segment("MSH").ok_or(InboundError::Invalid {
        segment: "MSH",
        field: 0,
        reason: "missing".into(),
    })?;
    let (message_type, event, _) = msg.message_type();
    if message_type.is_empty() {
        return Err(InboundError::Invalid {
            segment: "MSH",
            field: 9,
            reason: "message type is empty".into(),
        });
    }
    // MSH-9's parts become the reply's routing key and AMQP type: codes, not text (HL7
    // tables 0076, 0003 and 0354 are up to 7 characters; a PAS once sent 144 KB here).
    for (part, value) in [("message type", message_type), ("trigger event", event)] {
        let ok = value.len() <= MAX_CODE_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(InboundError::Invalid {
                segment: "MSH",
                field: 9,
                reason: format!(
                    "the {part} must be up to {MAX_CODE_LEN} letters or digits ({} bytes given)",
                    value.len()
                ),
            });
        }
    }
    let control_id = ControlId::parse(msh.comp(10, 1)).map_err(|e| InboundError::Invalid {
        segment: "MSH",
        field: 10,
        reason: e.to_string(),
    })?;
    let (mut ack_code, mut acked_control_id, mut ack_text) = (None, None, String::new());
    if let Some(msa) = msg.segment("MSA") {
        let code = msa.comp(1, 1);
        ack_code = Some(AckCode::parse(code).ok_or_else(|| InboundError::Invalid {
            segment: "MSA",
            field: 1,
            reason: format!("unknown acknowledgment code {code:?}"),
        })?);
        acked_control_id =
            Some(
                ControlId::parse(msa.comp(2, 1)).map_err(|e| InboundError::Invalid {
                    segment: "MSA",
                    field: 2,
                    reason: e.to_string(),
                })?,
            );
        ack_text = msa.comp(3, 1).to_string();
    }
    let errors = msg.segments_named("ERR").flat_map(read_err).collect();
    let referral = if message_type == "RRI" || msg.segment("RF1").is_some() {
        Some(RriReferral::read(msg))
    } else {
        None
    };
    Ok(Inbound {
        message_type: message_type.to_string(),
        event: event.to_string(),
        version: msh.comp(12, 1).to_string(),
        control_id,
        ack_code,
        acked_control_id,
        ack_text,
        errors,
        referral,
    })
}

/// Reads one ERR: the 2.5.1 layout when ERR-2 or ERR-3 is present, else the 2.4 ELD
/// repetitions of ERR-1.
fn read_err(err: &Segment) -> Vec<ErrDetail> {
    if err.has(2) || err.has(3) {
        let location = match (err.comp(2, 1), err.comp(2, 3)) {
            ("", _) => String::new(),
            (seg, "") => seg.to_string(),
            (seg, field) => format!("{seg}-{field}"),
        };
        let message = [err.comp(7, 1), err.comp(8, 1)]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("; ");
        return vec![ErrDetail {
            location,
            code: err.comp(3, 1).to_string(),
            text: err.comp(3, 2).to_string(),
            severity: err.comp(4, 1).to_string(),
            message,
        }];
    }
    (1..=err.repetitions(1))
        .map(|r| {
            let seg = err.get(1, r, 1, 1);
            let field = err.get(1, r, 3, 1);
            ErrDetail {
                location: if field.is_empty() {
                    seg.to_string()
                } else {
                    format!("{seg}-{field}")
                },
                code: err.get(1, r, 4, 1).to_string(),
                text: err.get(1, r, 4, 2).to_string(),
                ..ErrDetail::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::read::DEFAULT_MAX_BYTES;

    /// MSH-9's parts end up in the reply's routing key (AMQP allows 255 bytes): a message
    /// type or event that is not a code is refused naming MSH-9 (found by the fuzz test).
    #[test]
    fn an_msh9_that_is_not_a_code_is_refused() {
        let huge = "A".repeat(300);
        for (mt, why) in [
            (format!("RRI^{huge}"), "trigger event"),
            (format!("{huge}^I12"), "message type"),
            ("RRI^I 12".to_string(), "trigger event"),
        ] {
            let m = format!("MSH|^~\\&|PAS|RXX|ERS|RXX|20240115103002||{mt}|PAS1|P|2.4\r");
            match read_inbound(m.as_bytes(), DEFAULT_MAX_BYTES) {
                Err(InboundError::Invalid {
                    segment: "MSH",
                    field: 9,
                    reason,
                }) => {
                    assert!(reason.contains(why), "{reason}")
                }
                other => panic!("{mt:.20}: {other:?}"),
            }
        }
        let ok = "MSH|^~\\&|PAS|RXX|ERS|RXX|20240115103002||RRI^I12^RRI_I12|PAS1|P|2.4\r";
        assert!(read_inbound(ok.as_bytes(), DEFAULT_MAX_BYTES).is_ok());
    }

    #[test]
    fn reads_v24_err_layout() {
        let m = "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240115103002||ACK^I12^ACK|PAS-778800|P|2.4\rMSA|AE|E000000070000-I12-1|NHS number not traced\rERR|PID^1^3^204&Unknown key identifier&HL70357\r";
        let a = read_inbound(m.as_bytes(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(a.ack_code, Some(AckCode::AE));
        assert_eq!(a.acked_control_id.unwrap().as_str(), "E000000070000-I12-1");
        assert_eq!(a.ack_text, "NHS number not traced");
        assert_eq!(a.errors.len(), 1);
        assert_eq!(a.errors[0].location, "PID-3");
        assert_eq!(a.errors[0].code, "204");
        assert_eq!(a.errors[0].text, "Unknown key identifier");
        assert!(a.referral.is_none());
    }

    #[test]
    fn reads_v251_err_layout_and_missing_msh_9_3() {
        let m = "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240115103002||ACK^I12|PAS-778800|P|2.5.1\rMSA|AE|E000000070000-I12-1\rERR||PID^1^3^1^1|101^Required field missing^HL70357|E||||Patient identifier list missing NHS number\rZXX|whatever\r";
        let a = read_inbound(m.as_bytes(), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(a.event, "I12");
        assert_eq!(a.errors[0].location, "PID-3");
        assert_eq!(a.errors[0].code, "101");
        assert_eq!(a.errors[0].severity, "E");
        assert_eq!(
            a.errors[0].message,
            "Patient identifier list missing NHS number"
        );
    }

    #[test]
    fn unknown_ack_code_names_the_field() {
        let m = "MSH|^~\\&|PAS|RXX|||2024||ACK|X1|P|2.4\rMSA|ZZ|E1\r";
        let e = read_inbound(m.as_bytes(), DEFAULT_MAX_BYTES).unwrap_err();
        assert!(e.to_string().starts_with("MSA-1:"), "{e}");
    }
}
