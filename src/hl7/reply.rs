//! The bridge's own HL7 ACK to a PAS message (HL7V2.md §4): MSH with sender and receiver
//! swapped from the PAS's MSH-3..6, its MSH-12 version and MSH-18 charset, MSA-1 AA/AE/AR,
//! MSA-2 = the PAS's MSH-10, MSA-3 a short text, and for AE/AR an ERR in the layout of the
//! version (2.4: ERR-1 location and code, the reason in the code's text, ERR-1.4.2, which
//! is all 2.4's ERR has room for; 2.5.1: ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8
//! user message). Pure: the control id and time are passed in.

use super::ack::AckCode;
use super::escape::Delimiters;
use super::message::{Message, Segment};
use crate::ids::ControlId;

/// What went wrong, for the ERR segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError {
    /// The segment at fault, e.g. `RF1` or `NTE`; empty when it is the message as a whole.
    pub segment: String,
    /// The field, 1-based, when known.
    pub field: Option<usize>,
    /// Table 0357: `101` required field missing, `102` data type error, `103` table value
    /// not found, `204` unknown key identifier, `205` duplicate key identifier, `206`
    /// application record locked (the referral is not in a state to take the decision),
    /// `207` application internal error (the bridge's own limits and faults only).
    pub code: &'static str,
    /// For the PAS's people; no patient data.
    pub text: String,
}

/// The ACK to send: its code, MSA-3 text and, for AE/AR, the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: AckCode,
    pub text: String,
    pub error: Option<ReplyError>,
}

impl Reply {
    pub fn accept(text: impl Into<String>) -> Self {
        Self {
            code: AckCode::AA,
            text: text.into(),
            error: None,
        }
    }

    pub fn error(text: impl Into<String>, error: ReplyError) -> Self {
        Self {
            code: AckCode::AE,
            text: text.into(),
            error: Some(error),
        }
    }
}

/// The text of table 0357 codes the bridge uses.
fn code_text(code: &str) -> &'static str {
    match code {
        "100" => "Segment sequence error",
        "101" => "Required field missing",
        "102" => "Data type error",
        "103" => "Table value not found",
        "200" => "Unsupported message type",
        "204" => "Unknown key identifier",
        "205" => "Duplicate key identifier",
        "206" => "Application record locked",
        _ => "Application internal error",
    }
}

/// Builds the ACK to `original` (a PAS message), with our `control_id` and `timestamp`
/// (HL7 TS).
pub fn build(
    original: &Message,
    reply: &Reply,
    control_id: &ControlId,
    timestamp: &str,
) -> Message {
    let d = Delimiters::default();
    let their = original.segment("MSH");
    let get = |f: usize, c: usize| their.map(|m| m.comp(f, c).to_string()).unwrap_or_default();
    let version = match get(12, 1) {
        v if v == "2.4" || v == "2.5.1" => v,
        _ => "2.4".to_string(),
    };
    let mut msh = Segment::new("MSH");
    msh.set(1, 1, 1, 1, d.field.to_string());
    msh.set(2, 1, 1, 1, d.encoding_characters());
    // Sender and receiver swapped: we answer from where they sent to.
    for (ours, theirs) in [(3, 5), (4, 6), (5, 3), (6, 4)] {
        for c in 1..=3 {
            let v = get(theirs, c);
            if !v.is_empty() {
                msh.set(ours, 1, c, 1, v);
            }
        }
    }
    msh.set(7, 1, 1, 1, timestamp);
    msh.set(9, 1, 1, 1, "ACK");
    let event = get(9, 2);
    if !event.is_empty() {
        msh.set(9, 1, 2, 1, event);
    }
    if version == "2.5.1" {
        msh.set(9, 1, 3, 1, "ACK");
    }
    msh.set(10, 1, 1, 1, control_id.as_str());
    let processing = get(11, 1);
    msh.set(
        11,
        1,
        1,
        1,
        if processing.is_empty() {
            "P".to_string()
        } else {
            processing
        },
    );
    msh.set(12, 1, 1, 1, version.as_str());
    let charset = get(18, 1);
    if !charset.is_empty() {
        msh.set(18, 1, 1, 1, charset);
    }

    let mut msa = Segment::new("MSA");
    msa.set(1, 1, 1, 1, reply.code.as_str());
    msa.set(2, 1, 1, 1, get(10, 1));
    if !reply.text.is_empty() {
        msa.set(3, 1, 1, 1, reply.text.as_str());
    }

    let mut message = Message::new(d);
    message.segments.push(msh);
    message.segments.push(msa);
    if let Some(e) = &reply.error {
        let mut err = Segment::new("ERR");
        if version == "2.5.1" {
            // ERR-2 location (ERL: segment^sequence^field), ERR-3 code (CWE), ERR-4
            // severity, ERR-8 user message.
            if !e.segment.is_empty() {
                err.set(2, 1, 1, 1, e.segment.as_str());
                err.set(2, 1, 2, 1, "1");
                if let Some(f) = e.field {
                    err.set(2, 1, 3, 1, f.to_string());
                }
            }
            err.set(3, 1, 1, 1, e.code);
            err.set(3, 1, 2, 1, code_text(e.code));
            err.set(3, 1, 3, 1, "HL70357");
            err.set(4, 1, 1, 1, "E");
            err.set(8, 1, 1, 1, e.text.as_str());
        } else {
            // ERR-1 (ELD): segment^sequence^field^code (CE: code&text&HL70357).
            err.set(1, 1, 1, 1, e.segment.as_str());
            err.set(1, 1, 2, 1, "1");
            if let Some(f) = e.field {
                err.set(1, 1, 3, 1, f.to_string());
            }
            // 2.4's ERR has no user message: the reason goes in the code's text (CE.2,
            // 199 characters at most), after the code's own.
            err.set(1, 1, 4, 1, e.code);
            let text: String = format!("{}: {}", code_text(e.code), e.text)
                .chars()
                .take(199)
                .collect();
            err.set(1, 1, 4, 2, text.trim_end());
            err.set(1, 1, 4, 3, "HL70357");
        }
        message.segments.push(err);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::{read, read_inbound};

    fn rri(version: &str) -> Message {
        read(
            format!(
                "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116090000||RRI^I12^RRI_I12|PAS00017|P|{version}|||AL|NE|GBR|UNICODE UTF-8\r\
                 RF1|A|||||000000070001^UBRN\r"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn cid() -> ControlId {
        ControlId::parse("ERSB-ACK-1").unwrap()
    }

    #[test]
    fn an_accept_swaps_sender_and_receiver_and_names_their_control_id() {
        let ack = build(
            &rri("2.5.1"),
            &Reply::accept("accepted in e-RS"),
            &cid(),
            "20240116090001",
        );
        let text = ack.to_er7();
        assert_eq!(
            text,
            "MSH|^~\\&|ERS_BRIDGE|RXX|PAS|RXX|20240116090001||ACK^I12^ACK|ERSB-ACK-1|P|2.5.1||||||UNICODE UTF-8\r\
             MSA|AA|PAS00017|accepted in e-RS\r"
        );
        // Our own reader takes it as the ACK it is.
        let back = read_inbound(&ack.encode().unwrap(), 1 << 20).unwrap();
        assert_eq!(back.ack_code, Some(AckCode::AA));
        assert_eq!(back.acked_control_id.unwrap().as_str(), "PAS00017");
    }

    #[test]
    fn an_error_has_the_err_layout_of_the_pas_version() {
        let e = ReplyError {
            segment: "NTE".into(),
            field: Some(3),
            code: "101",
            text: "a comment is mandatory for this rejection reason".into(),
        };
        let reply = Reply::error("not sent to e-RS", e);
        let v251 = build(&rri("2.5.1"), &reply, &cid(), "20240116090001").to_er7();
        assert!(
            v251.ends_with("ERR||NTE^1^3|101^Required field missing^HL70357|E||||a comment is mandatory for this rejection reason\r"),
            "{v251}"
        );
        let v24 = build(&rri("2.4"), &reply, &cid(), "20240116090001").to_er7();
        assert!(
            v24.ends_with("ERR|NTE^1^3^101&Required field missing: a comment is mandatory for this rejection reason&HL70357\r"),
            "2.4 carries the reason too: {v24}"
        );
        assert!(v24.contains("|ACK^I12|"), "2.4 has no MSH-9.3: {v24}");
        let back = read_inbound(v251.as_bytes(), 1 << 20).unwrap();
        assert_eq!(back.ack_code, Some(AckCode::AE));
        assert_eq!(back.errors.len(), 1);
    }
}
