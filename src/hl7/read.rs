//! Guarded reading of HL7v2 bytes into a [`Message`], through `hl7-parser`.
//!
//! The crate is fast and zero-copy but has pitfalls (HL7V2.md §7.1) that this module
//! guards against: it stops silently at the first segment it cannot parse, so we check that
//! the parsed segments cover the whole input; it does not validate MSH-1/MSH-2, so we do;
//! its escape decoder mishandles non-ASCII text and can panic, so values are decoded with
//! [`escape::decode`]. Input is capped in size, MLLP framing bytes are stripped, CR, LF and
//! CRLF all end a segment and blank lines are skipped. The charset named by MSH-18 decides
//! how the bytes become text. Every error names the segment and field where it can.

use std::borrow::Cow;

use super::escape::{self, Delimiters};
use super::message::{Charset, Message, Segment};

/// The default cap on an inbound message (RabbitMQ 4's default `max_message_size`).
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Why inbound bytes are not a usable HL7v2 message. Always permanent: the same bytes fail
/// the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("message is {size} bytes, over the {max} byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("message is empty")]
    Empty,
    #[error("message does not start with MSH")]
    NoMsh,
    #[error("{segment}-{field}: {reason}")]
    Field {
        segment: String,
        field: usize,
        reason: String,
    },
    #[error("segment {index} ({segment}): {reason}")]
    Segment {
        index: usize,
        segment: String,
        reason: String,
    },
}

impl ReadError {
    pub fn is_retryable(&self) -> bool {
        false
    }

    fn msh(field: usize, reason: impl Into<String>) -> Self {
        Self::Field {
            segment: "MSH".into(),
            field,
            reason: reason.into(),
        }
    }
}

/// Reads a message with the default size cap.
pub fn read(bytes: &[u8]) -> Result<Message, ReadError> {
    read_with_limit(bytes, DEFAULT_MAX_BYTES)
}

/// Reads a message of at most `max_bytes` bytes.
pub fn read_with_limit(bytes: &[u8], max_bytes: usize) -> Result<Message, ReadError> {
    if bytes.len() > max_bytes {
        return Err(ReadError::TooLarge {
            size: bytes.len(),
            max: max_bytes,
        });
    }
    let bytes = strip_framing(bytes);
    if bytes.is_empty() {
        return Err(ReadError::Empty);
    }
    if !bytes.starts_with(b"MSH") {
        return Err(ReadError::NoMsh);
    }
    let delimiters = read_delimiters(bytes)?;
    let charset = read_charset(bytes, &delimiters)?;
    let text = decode_text(bytes, charset)?;
    let text = normalise_line_ends(&text);
    let text = pad_bare_segments(text, delimiters.field);
    let parsed = hl7_parser::Message::parse(&text).map_err(|e| parse_failure(&text, 0, e))?;
    if parsed.raw_value().len() != text.len() {
        return Err(truncation(
            &text,
            parsed.raw_value().len(),
            parsed.segments.len(),
        ));
    }
    let mut message = Message::new(delimiters);
    for (i, seg) in parsed.segments().enumerate() {
        if !valid_segment_id(seg.name) {
            return Err(ReadError::Segment {
                index: i + 1,
                segment: seg.name.to_string(),
                reason: "segment id must be three upper-case letters or digits".into(),
            });
        }
        message.segments.push(convert_segment(seg, &delimiters));
    }
    Ok(message)
}

fn strip_framing(mut b: &[u8]) -> &[u8] {
    if let Some(pos) = b.iter().position(|&c| c == 0x0b) {
        if b[..pos].iter().all(u8::is_ascii_whitespace) {
            b = &b[pos + 1..];
        }
    }
    while let Some((&last, rest)) = b.split_last() {
        if matches!(last, b'\r' | b'\n' | 0x1c) {
            b = rest;
        } else {
            break;
        }
    }
    b
}

fn read_delimiters(b: &[u8]) -> Result<Delimiters, ReadError> {
    if b.len() < 8 {
        return Err(ReadError::msh(2, "encoding characters missing"));
    }
    let d = Delimiters {
        field: char::from(b[3]),
        component: char::from(b[4]),
        repetition: char::from(b[5]),
        escape: char::from(b[6]),
        subcomponent: char::from(b[7]),
    };
    if !b[3..8].is_ascii() {
        return Err(ReadError::msh(1, "delimiters must be ascii"));
    }
    d.validate().map_err(|r| ReadError::msh(2, r))?;
    if let Some(&next) = b.get(8) {
        if next != b[3] && next != b'\r' && next != b'\n' {
            return Err(ReadError::msh(
                2,
                "must be exactly 4 encoding characters (the v2.7 truncation character is not supported)",
            ));
        }
    }
    Ok(d)
}

fn read_charset(b: &[u8], d: &Delimiters) -> Result<Charset, ReadError> {
    let end = b
        .iter()
        .position(|&c| c == b'\r' || c == b'\n')
        .unwrap_or(b.len());
    let msh = String::from_utf8_lossy(&b[..end]);
    // Split index k holds MSH-(k+1): index 1 is MSH-2, so MSH-18 is index 17.
    let value = msh.split(d.field).nth(17).unwrap_or("");
    let first = value
        .split(d.repetition)
        .next()
        .and_then(|r| r.split(d.component).next())
        .unwrap_or("");
    Charset::from_msh18(first).map_err(|r| ReadError::msh(18, r))
}

fn decode_text(b: &[u8], charset: Charset) -> Result<String, ReadError> {
    match charset {
        Charset::Latin1 => Ok(b.iter().map(|&c| char::from(c)).collect()),
        Charset::Ascii | Charset::Utf8 => match std::str::from_utf8(b) {
            Ok(s) if charset == Charset::Ascii && !s.is_ascii() => Err(ReadError::msh(
                18,
                "declared ASCII but the message has non-ascii bytes",
            )),
            Ok(s) => Ok(s.to_string()),
            Err(e) => Err(ReadError::msh(
                18,
                format!(
                    "text is not valid UTF-8 at byte {} (declare 8859/1 in MSH-18 for Latin-1)",
                    e.valid_up_to()
                ),
            )),
        },
    }
}

fn normalise_line_ends(text: &str) -> Cow<'_, str> {
    // Fast path: CR-only input without blank lines is already normal.
    if !text.contains('\n') && !text.contains("\r\r") && !text.starts_with('\r') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last_was_cr = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let is_break = match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                true
            }
            '\n' => true,
            _ => false,
        };
        if is_break {
            // Blank lines are skipped rather than ending the message.
            if !last_was_cr {
                out.push('\r');
            }
            last_was_cr = true;
        } else {
            out.push(c);
            last_was_cr = false;
        }
    }
    Cow::Owned(out)
}

/// A segment with no fields (`PID` alone: HL7 lets trailing empty fields be left out, so a
/// segment may end at its id) gets a field separator, which `hl7-parser` needs to read it;
/// the reader then trims the empty field again, so `PID` and `PID|` read the same.
fn pad_bare_segments(text: Cow<'_, str>, field: char) -> Cow<'_, str> {
    let bare = |line: &str| line.len() == 3 && valid_segment_id(line);
    if !text.split('\r').any(bare) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\r').enumerate() {
        if i > 0 {
            out.push('\r');
        }
        out.push_str(line);
        if bare(line) {
            out.push(field);
        }
    }
    Cow::Owned(out)
}

fn segment_at(text: &str, offset: usize) -> (usize, String) {
    let before = text.get(..offset).unwrap_or(text);
    let index = before.matches('\r').count() + 1;
    let start = before.rfind('\r').map_or(0, |p| p + 1);
    let line = text
        .get(start..)
        .unwrap_or("")
        .split('\r')
        .next()
        .unwrap_or("");
    (index, line.chars().take(3).collect())
}

fn parse_failure(text: &str, _base: usize, e: hl7_parser::parser::ParseError) -> ReadError {
    match e {
        hl7_parser::parser::ParseError::FailedToParse { position, .. } => {
            let (index, segment) = segment_at(text, position);
            ReadError::Segment {
                index,
                segment,
                reason: format!("cannot parse at byte {position}"),
            }
        }
        hl7_parser::parser::ParseError::IncompleteInput(_) => ReadError::Segment {
            index: 1,
            segment: "MSH".into(),
            reason: "incomplete input".into(),
        },
    }
}

fn truncation(text: &str, parsed_len: usize, parsed_segments: usize) -> ReadError {
    let rest = text
        .get(parsed_len..)
        .unwrap_or("")
        .trim_start_matches('\r');
    let line = rest.split('\r').next().unwrap_or("");
    let segment: String = line.chars().take(3).collect();
    let reason = if !valid_segment_id(&segment) {
        "segment id must be three upper-case letters or digits".to_string()
    } else {
        "segment cannot be parsed".to_string()
    };
    ReadError::Segment {
        index: parsed_segments + 1,
        segment,
        reason,
    }
}

fn valid_segment_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 3
        && b[0].is_ascii_uppercase()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn convert_segment(seg: &hl7_parser::message::Segment<'_>, d: &Delimiters) -> Segment {
    let mut out = Segment::new(seg.name);
    for (fi, field) in seg.fields().enumerate() {
        if seg.name == "MSH" && fi < 2 {
            // MSH-1 and MSH-2 are the delimiters themselves, never escaped.
            out.fields
                .push(vec![vec![vec![field.raw_value().to_string()]]]);
            continue;
        }
        let reps = field
            .repeats()
            .map(|r| {
                r.components()
                    .map(|c| {
                        c.subcomponents()
                            .map(|s| escape::decode(s.raw_value(), d))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        out.fields.push(reps);
    }
    super::normalise_segment(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACK: &str = "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240115103002||ACK^I12^ACK|PAS-778800|P|2.4\rMSA|AE|E000000070000-I12-1|NHS number not traced\rERR|PID^1^3^204&Unknown key identifier&HL70357\r";

    #[test]
    fn reads_fields_components_and_subcomponents() {
        let m = read(ACK.as_bytes()).unwrap();
        assert_eq!(m.segments.len(), 3);
        let err = m.segment("ERR").unwrap();
        assert_eq!(err.get(1, 1, 4, 2), "Unknown key identifier");
        assert_eq!(m.segment("MSH").unwrap().comp(10, 1), "PAS-778800");
        assert_eq!(m.segment("MSH").unwrap().comp(2, 1), "^~\\&");
    }

    #[test]
    fn accepts_lf_crlf_blank_lines_and_mllp_framing() {
        let lf = ACK.replace('\r', "\n");
        assert_eq!(read(lf.as_bytes()).unwrap().segments.len(), 3);
        let crlf = ACK.replace('\r', "\r\n\r\n");
        assert_eq!(read(crlf.as_bytes()).unwrap().segments.len(), 3);
        let mut framed = vec![0x0b];
        framed.extend_from_slice(ACK.as_bytes());
        framed.extend_from_slice(&[0x1c, 0x0d]);
        assert_eq!(read(&framed).unwrap().segments.len(), 3);
    }

    #[test]
    fn refuses_silent_truncation_with_a_named_segment() {
        let bad = "MSH|^~\\&|A\rPID|1\rP!D|x\rNTE|1\r";
        let e = read(bad.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "segment 3 (P!D): segment id must be three upper-case letters or digits"
        );
        let lower = "MSH|^~\\&|A\rpid\rNTE|1\r";
        assert!(read(lower.as_bytes()).is_err());
        let lower = "MSH|^~\\&|A\rpid|1\r";
        assert!(read(lower.as_bytes()).is_err());
    }

    #[test]
    fn a_segment_without_fields_is_legal() {
        // Trailing empty fields may be left out, down to none: the writer emits `PID` for a
        // segment whose fields are all empty, and the reader takes it back.
        let bare = read(b"MSH|^~\\&|A\rPID\rNTE|1\r").unwrap();
        let ids: Vec<_> = bare.segments.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["MSH", "PID", "NTE"]);
        assert!(bare.segment("PID").unwrap().fields.is_empty());
        assert_eq!(bare, read(b"MSH|^~\\&|A\rPID|\rNTE|1\r").unwrap());
        let last = read(b"MSH|^~\\&|A\rPID").unwrap();
        assert_eq!(last.segments.len(), 2);
        let mut msg = Message::new(Delimiters::default());
        let mut msh = Segment::new("MSH");
        msh.set(1, 1, 1, 1, "|");
        msh.set(2, 1, 1, 1, "^~\\&");
        msg.segments.push(msh);
        msg.segments.push(Segment::new("PID"));
        let written = msg.encode().unwrap();
        assert_eq!(read(&written).unwrap(), msg);
    }

    #[test]
    fn validates_msh_delimiters_and_charset() {
        assert!(matches!(
            read(b"MSH|0~\\&|A"),
            Err(ReadError::Field { field: 2, .. })
        ));
        assert!(matches!(
            read(b"MSH|^~\\&#|A"),
            Err(ReadError::Field { field: 2, .. })
        ));
        assert!(matches!(
            read(b"MSH|^^\\&|A"),
            Err(ReadError::Field { field: 2, .. })
        ));
        assert_eq!(read(b"").unwrap_err(), ReadError::Empty);
        assert_eq!(read(b"PID|1").unwrap_err(), ReadError::NoMsh);
        let too_big = read_with_limit(ACK.as_bytes(), 10).unwrap_err();
        assert!(matches!(too_big, ReadError::TooLarge { .. }));
    }

    #[test]
    fn decodes_latin1_and_rejects_bad_utf8() {
        let mut latin = b"MSH|^~\\&|A|||||||||||||||8859/1\rNTE|||Zo".to_vec();
        latin.extend_from_slice(&[0xeb, b' ', b'\\', b'T', b'\\', b' ', b'C', b'o']);
        let m = read(&latin).unwrap();
        assert_eq!(m.segment("NTE").unwrap().comp(3, 1), "Zoë & Co");
        let mut utf = b"MSH|^~\\&|A\rNTE|||Zo".to_vec();
        utf.push(0xeb);
        assert!(matches!(
            read(&utf),
            Err(ReadError::Field { field: 18, .. })
        ));
    }

    #[test]
    fn non_ascii_escapes_do_not_panic() {
        let m = read("MSH|^~\\&|A\rNTE|||éé\\F\\x\r".as_bytes()).unwrap();
        assert_eq!(m.segment("NTE").unwrap().comp(3, 1), "éé|x");
    }
}
