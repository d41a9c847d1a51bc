//! The HL7v2 message model and its writer.
//!
//! A [`Message`] holds decoded text: segments → fields → repetitions → components →
//! subcomponents. Positions are 1-based as in HL7 (`PID-3[2].4`). For MSH, field 1 is the
//! field separator and field 2 the encoding characters, both taken from the message's
//! [`Delimiters`] when writing, never from stored text. The writer escapes every value,
//! trims trailing empty parts, ends every segment with CR and encodes the text in the
//! character set MSH-18 names (ASCII, `8859/1`, `UNICODE UTF-8`).

use super::escape::{self, Delimiters};

/// A component: one or more subcomponents.
pub type Component = Vec<String>;
/// A repetition: one or more components.
pub type Repetition = Vec<Component>;
/// A field: zero or more repetitions (an empty field has none).
pub type Field = Vec<Repetition>;

/// One segment, e.g. `PID`. `fields[0]` is field 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub id: String,
    pub fields: Vec<Field>,
}

/// A whole message. `Debug` shows the segment ids only (the values carry patient data);
/// print [`Message::encode`] output in a test when the content matters.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub delimiters: Delimiters,
    pub segments: Vec<Segment>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.segments.iter().map(|s| s.id.as_str()).collect();
        f.debug_struct("Message")
            .field("segments", &ids)
            .finish_non_exhaustive()
    }
}

/// The character sets of table 0211 that the bridge reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Ascii,
    Latin1,
    Utf8,
}

impl Charset {
    /// Reads MSH-18 (first repetition); empty means ASCII per the standard, but real feeds
    /// send UTF-8 without saying so, so empty is read as UTF-8 (a superset of ASCII).
    pub fn from_msh18(value: &str) -> Result<Self, String> {
        match value.trim() {
            "" | "UNICODE UTF-8" | "UTF-8" => Ok(Self::Utf8),
            "ASCII" => Ok(Self::Ascii),
            "8859/1" => Ok(Self::Latin1),
            other => Err(format!("unsupported character set {other:?}")),
        }
    }
}

/// Why a message could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("{segment}-{field}: character {ch:?} cannot be written in {charset:?}")]
    Unrepresentable {
        segment: String,
        field: usize,
        ch: char,
        charset: Charset,
    },
    #[error("msh-18: {0}")]
    Charset(String),
    #[error("the message does not start with MSH")]
    NoMsh,
}

impl WriteError {
    /// Writing is deterministic: the same message always fails the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl Segment {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            fields: Vec::new(),
        }
    }

    /// The decoded text at field/repetition/component/subcomponent (1-based), or "".
    pub fn get(&self, field: usize, rep: usize, comp: usize, sub: usize) -> &str {
        (|| {
            let f = self.fields.get(field.checked_sub(1)?)?;
            let r = f.get(rep.checked_sub(1)?)?;
            let c = r.get(comp.checked_sub(1)?)?;
            c.get(sub.checked_sub(1)?).map(String::as_str)
        })()
        .unwrap_or("")
    }

    /// Shorthand for the first repetition's component `comp`, subcomponent 1.
    pub fn comp(&self, field: usize, comp: usize) -> &str {
        self.get(field, 1, comp, 1)
    }

    /// The number of repetitions of a field.
    pub fn repetitions(&self, field: usize) -> usize {
        field
            .checked_sub(1)
            .and_then(|i| self.fields.get(i))
            .map_or(0, Vec::len)
    }

    /// True when the field has any non-empty text.
    pub fn has(&self, field: usize) -> bool {
        field
            .checked_sub(1)
            .and_then(|i| self.fields.get(i))
            .is_some_and(|f| f.iter().flatten().flatten().any(|s| !s.is_empty()))
    }

    /// Sets one subcomponent (all positions 1-based), growing the segment as needed.
    pub fn set(
        &mut self,
        field: usize,
        rep: usize,
        comp: usize,
        sub: usize,
        value: impl Into<String>,
    ) {
        let (field, rep, comp, sub) = (field.max(1), rep.max(1), comp.max(1), sub.max(1));
        if self.fields.len() < field {
            self.fields.resize_with(field, Vec::new);
        }
        let f = &mut self.fields[field - 1];
        if f.len() < rep {
            f.resize_with(rep, Vec::new);
        }
        let r = &mut f[rep - 1];
        if r.len() < comp {
            r.resize_with(comp, Vec::new);
        }
        let c = &mut r[comp - 1];
        if c.len() < sub {
            c.resize_with(sub, String::new);
        }
        c[sub - 1] = value.into();
    }
}

impl Message {
    pub fn new(delimiters: Delimiters) -> Self {
        Self {
            delimiters,
            segments: Vec::new(),
        }
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// All segments with this id, in order.
    pub fn segments_named<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Segment> + 'a {
        self.segments.iter().filter(move |s| s.id == id)
    }

    /// MSH-9 as `(type, event, structure)`.
    pub fn message_type(&self) -> (&str, &str, &str) {
        match self.segment("MSH") {
            Some(m) => (m.comp(9, 1), m.comp(9, 2), m.comp(9, 3)),
            None => ("", "", ""),
        }
    }

    /// Writes the message as ER7 text with CR terminators (before charset encoding).
    pub fn to_er7(&self) -> String {
        let d = &self.delimiters;
        let mut out = String::with_capacity(1024);
        for seg in &self.segments {
            out.push_str(&seg.id);
            let is_msh = seg.id == "MSH";
            let mut fields: &[Field] = &seg.fields;
            if is_msh {
                out.push(d.field);
                out.push_str(&d.encoding_characters());
                fields = fields.get(2..).unwrap_or(&[]);
            }
            let last = last_nonempty(fields, |f| !field_empty(f));
            for field in &fields[..last] {
                out.push(d.field);
                write_field(field, d, &mut out);
            }
            out.push('\r');
        }
        out
    }

    /// Writes the message and encodes it in the charset named by MSH-18.
    pub fn encode(&self) -> Result<Vec<u8>, WriteError> {
        let msh = self
            .segments
            .first()
            .filter(|s| s.id == "MSH")
            .ok_or(WriteError::NoMsh)?;
        let charset = Charset::from_msh18(msh.comp(18, 1)).map_err(WriteError::Charset)?;
        if charset != Charset::Utf8 {
            let limit = if charset == Charset::Ascii {
                0x7f
            } else {
                0xff
            };
            for seg in &self.segments {
                for (i, f) in seg.fields.iter().enumerate() {
                    if let Some(ch) = f
                        .iter()
                        .flatten()
                        .flatten()
                        .filter(|s| !s.is_ascii())
                        .flat_map(|s| s.chars())
                        .find(|c| u32::from(*c) > limit)
                    {
                        return Err(WriteError::Unrepresentable {
                            segment: seg.id.clone(),
                            field: i + 1,
                            ch,
                            charset,
                        });
                    }
                }
            }
        }
        let text = self.to_er7();
        Ok(match charset {
            Charset::Utf8 | Charset::Ascii => text.into_bytes(),
            // Every char is at most U+00FF here, so the cast is exact.
            Charset::Latin1 if text.is_ascii() => text.into_bytes(),
            Charset::Latin1 => text.chars().map(|c| c as u8).collect(),
        })
    }
}

fn field_empty(f: &Field) -> bool {
    f.iter().flatten().flatten().all(String::is_empty)
}

fn last_nonempty<T>(items: &[T], nonempty: impl Fn(&T) -> bool) -> usize {
    items.iter().rposition(nonempty).map_or(0, |i| i + 1)
}

fn write_field(field: &Field, d: &Delimiters, out: &mut String) {
    let reps = last_nonempty(field, |r| r.iter().flatten().any(|s| !s.is_empty()));
    for (ri, rep) in field[..reps].iter().enumerate() {
        if ri > 0 {
            out.push(d.repetition);
        }
        let comps = last_nonempty(rep, |c| c.iter().any(|s| !s.is_empty()));
        for (ci, comp) in rep[..comps].iter().enumerate() {
            if ci > 0 {
                out.push(d.component);
            }
            let subs = last_nonempty(comp, |s| !s.is_empty());
            for (si, sub) in comp[..subs].iter().enumerate() {
                if si > 0 {
                    out.push(d.subcomponent);
                }
                escape::encode_into(sub, d, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msh(charset: &str) -> Segment {
        let mut s = Segment::new("MSH");
        s.set(3, 1, 1, 1, "ERS_BRIDGE");
        s.set(9, 1, 1, 1, "REF");
        s.set(9, 1, 2, 1, "I12");
        s.set(18, 1, 1, 1, charset);
        s
    }

    #[test]
    fn writes_msh_delimiters_and_trims_trailing_empties() {
        let mut m = Message::new(Delimiters::default());
        m.segments.push(msh("UNICODE UTF-8"));
        let mut pid = Segment::new("PID");
        pid.set(3, 1, 1, 1, "9434765919");
        pid.set(3, 1, 4, 1, "NHS");
        pid.set(3, 1, 5, 1, "NH");
        pid.set(5, 1, 1, 1, "O'NEIL|SMITH");
        pid.set(9, 1, 1, 1, "");
        m.segments.push(pid);
        assert_eq!(
            m.to_er7(),
            "MSH|^~\\&|ERS_BRIDGE||||||REF^I12|||||||||UNICODE UTF-8\rPID|||9434765919^^^NHS^NH||O'NEIL\\F\\SMITH\r"
        );
    }

    #[test]
    fn latin1_encodes_bytes_and_refuses_wider_characters() {
        let mut m = Message::new(Delimiters::default());
        m.segments.push(msh("8859/1"));
        let mut nte = Segment::new("NTE");
        nte.set(3, 1, 1, 1, "Zoë");
        m.segments.push(nte.clone());
        let bytes = m.encode().unwrap();
        assert!(bytes.ends_with(b"NTE|||Zo\xeb\r"));
        m.segments[1].set(3, 1, 1, 1, "€");
        assert!(matches!(
            m.encode(),
            Err(WriteError::Unrepresentable { field: 3, .. })
        ));
    }
}
