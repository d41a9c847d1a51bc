//! HL7v2 escape sequences (HL7V2.md §1.2): our own encoder and decoder.
//!
//! We never call `hl7-parser`'s decoder: it indexes bytes with char positions, so it
//! corrupts text after any multi-byte character and can panic (HL7V2.md §7.1). The encoder
//! escapes the escape character first, then the four delimiters, then CR and LF as
//! `\X0D\` / `\X0A\` (a raw CR would end the segment). The decoder understands
//! `\F\ \S\ \T\ \R\ \E\`, hex `\Xhh..\`, drops the display-only `\H\` / `\N\`, turns `\.br\`
//! into a line feed and keeps every other sequence (and any unterminated one) verbatim, so
//! nothing is silently lost. `decode(encode(s)) == s` for every string.

use std::fmt::Write as _;

/// The five delimiters of a message, from MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Self {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
        }
    }
}

impl Delimiters {
    /// MSH-2 as written: component, repetition, escape, subcomponent.
    pub fn encoding_characters(&self) -> String {
        [
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ]
        .iter()
        .collect()
    }

    /// True when every delimiter is ASCII (always so for a message that was read).
    pub fn is_ascii(&self) -> bool {
        [
            self.field,
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ]
        .iter()
        .all(char::is_ascii)
    }

    /// Checks the delimiters are five distinct printable ASCII punctuation characters.
    pub fn validate(&self) -> Result<(), String> {
        let all = [
            self.field,
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ];
        for c in all {
            if !c.is_ascii_punctuation() {
                return Err(format!(
                    "delimiter {c:?} is not printable ASCII punctuation"
                ));
            }
        }
        for (i, a) in all.iter().enumerate() {
            if all[i + 1..].contains(a) {
                return Err(format!("delimiter {a:?} is used twice"));
            }
        }
        Ok(())
    }
}

/// Escapes `value` for use inside a field, component or subcomponent.
pub fn encode(value: &str, d: &Delimiters) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    encode_into(value, d, &mut out);
    out
}

/// Like [`encode`], appending to `out` (the writer's hot path).
pub fn encode_into(value: &str, d: &Delimiters, out: &mut String) {
    let needs = if d.is_ascii() {
        // Fast path: delimiters are ASCII, so a byte scan finds them.
        let special = [
            d.escape as u8,
            d.field as u8,
            d.component as u8,
            d.repetition as u8,
            d.subcomponent as u8,
            b'\r',
            b'\n',
        ];
        value.bytes().any(|b| special.contains(&b))
    } else {
        value.chars().any(|c| {
            c == d.escape
                || c == d.field
                || c == d.component
                || c == d.repetition
                || c == d.subcomponent
                || c == '\r'
                || c == '\n'
        })
    };
    if !needs {
        out.push_str(value);
        return;
    }
    let e = d.escape;
    for c in value.chars() {
        let code = if c == e {
            Some('E')
        } else if c == d.field {
            Some('F')
        } else if c == d.component {
            Some('S')
        } else if c == d.subcomponent {
            Some('T')
        } else if c == d.repetition {
            Some('R')
        } else {
            None
        };
        match (code, c) {
            (Some(k), _) => {
                out.push(e);
                out.push(k);
                out.push(e);
            }
            (None, '\r') => {
                let _ = write!(out, "{e}X0D{e}");
            }
            (None, '\n') => {
                let _ = write!(out, "{e}X0A{e}");
            }
            (None, c) => out.push(c),
        }
    }
}

/// Decodes escape sequences in a raw (still escaped) value.
pub fn decode(raw: &str, d: &Delimiters) -> String {
    let e = d.escape;
    if !raw.contains(e) {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find(e) {
        out.push_str(&rest[..start]);
        let after = &rest[start + e.len_utf8()..];
        let Some(end) = after.find(e) else {
            // Unterminated: keep the text as it is rather than dropping it.
            out.push_str(&rest[start..]);
            return out;
        };
        let body = &after[..end];
        let whole = &rest[start..start + e.len_utf8() + end + e.len_utf8()];
        match body {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(e),
            "H" | "N" => {}
            ".br" => out.push('\n'),
            _ if body.len() > 1 && body.starts_with('X') => match hex_bytes(&body[1..]) {
                Some(bytes) => match String::from_utf8(bytes) {
                    Ok(s) => out.push_str(&s),
                    // Not UTF-8: read the bytes as ISO 8859-1, which maps every byte.
                    Err(e) => out.extend(e.into_bytes().into_iter().map(char::from)),
                },
                None => out.push_str(whole),
            },
            _ => out.push_str(whole),
        }
        rest = &after[end + e.len_utf8()..];
    }
    out.push_str(rest);
    out
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Delimiters {
        Delimiters::default()
    }

    #[test]
    fn encodes_every_delimiter_and_line_breaks() {
        assert_eq!(
            encode("a|b^c&d~e\\f\r\ng", &d()),
            r"a\F\b\S\c\T\d\R\e\E\f\X0D\\X0A\g"
        );
    }

    #[test]
    fn decodes_known_sequences_and_keeps_unknown_ones() {
        assert_eq!(decode(r"Zoë \T\ Co", &d()), "Zoë & Co");
        assert_eq!(decode(r"éé\F\x", &d()), "éé|x");
        assert_eq!(decode(r"\X41\\X0D0A\", &d()), "A\r\n");
        assert_eq!(decode(r"a\.br\b", &d()), "a\nb");
        assert_eq!(decode(r"\H\bold\N\", &d()), "bold");
        assert_eq!(
            decode(r"\Zlocal\ and \.sp 2\", &d()),
            r"\Zlocal\ and \.sp 2\"
        );
        assert_eq!(decode(r"open \F and more", &d()), r"open \F and more");
        assert_eq!(decode(r"\XZZ\", &d()), r"\XZZ\");
        assert_eq!(decode(r"\XE9\", &d()), "é");
    }

    #[test]
    fn custom_escape_character_is_honoured() {
        let d = Delimiters {
            escape: '!',
            ..Delimiters::default()
        };
        assert_eq!(encode("a!b|c\\", &d), r"a!E!b!F!c\");
        assert_eq!(decode(r"a!E!b!F!c\", &d), "a!b|c\\");
    }

    #[test]
    fn validate_rejects_duplicates_and_letters() {
        assert!(d().validate().is_ok());
        let bad = Delimiters {
            component: '|',
            ..Delimiters::default()
        };
        assert!(bad.validate().is_err());
        let bad = Delimiters {
            component: '0',
            ..Delimiters::default()
        };
        assert!(bad.validate().is_err());
    }
}
