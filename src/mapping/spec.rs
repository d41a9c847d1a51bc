//! The serde shape of an outbound mapping file. Unknown keys are errors everywhere, and
//! positions of values are kept ([`Spanned`]) so compile errors can name the line.
//!
//! ```toml
//! version = 1
//! message = "REF^I12^REF_I12"
//! hl7_version = "2.4"
//! charset = "8859/1"
//! [tables]
//! priority = "tables/priority.csv"
//! [[segment]]
//! id = "PID"
//! [[segment.set]]
//! at = "3.1"
//! expr = "nhs_number(subject.identifier.where(system = 'http://fhir.nhs.net/Id/nhs-number').value)"
//! on_missing = "error"
//! name = "NHS number"
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A whole mapping file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// Format version; only 1 exists.
    pub version: Spanned<u32>,
    pub description: Option<String>,
    /// Another mapping file (relative path) whose tables and segments this one reuses,
    /// changing only the header: used for the v2.5.1 variants and REF^I13. A file that
    /// extends another has no segments or tables of its own.
    pub extends: Option<Spanned<String>>,
    /// MSH-9 as `type^event^structure`, e.g. `REF^I12^REF_I12`.
    pub message: Spanned<String>,
    /// MSH-12: `2.4` or `2.5.1` (required unless inherited through `extends`).
    pub hl7_version: Option<Spanned<String>>,
    /// MSH-18 and the byte encoding: `ASCII`, `8859/1` or `UNICODE UTF-8` (required
    /// unless inherited).
    pub charset: Option<Spanned<String>>,
    /// Attachments up to this size go inline (OBX ED base64); larger ones by reference
    /// (default 5 MiB, or inherited).
    pub attachment_max_inline_bytes: Option<usize>,
    /// Code tables by name: CSV paths relative to the mapping file.
    #[serde(default)]
    pub tables: BTreeMap<String, Spanned<String>>,
    /// Named expressions (`[let]`), used in any expression of the file as `%name`: a long
    /// path written once. Each is pasted where it is used (its paths start at the use's
    /// focus); one may use another, but not itself.
    #[serde(default, rename = "let")]
    pub lets: BTreeMap<String, Spanned<String>>,
    /// The segments in message order. Consecutive segments with the same `for_each`
    /// repeat together as a group.
    #[serde(default, rename = "segment")]
    pub segments: Vec<SegmentSpec>,
}

/// The default inline limit for attachments.
pub const DEFAULT_MAX_INLINE_BYTES: usize = 5 * 1024 * 1024;

/// One `[[segment]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    /// The segment id, e.g. `PRD`.
    pub id: Spanned<String>,
    /// Repeat the segment (with its group) once per item of this collection; inside,
    /// paths start at the item and `%index` counts from 1.
    pub for_each: Option<Spanned<String>>,
    /// Emit the segment only when this is true.
    pub when: Option<Spanned<String>>,
    #[serde(default, rename = "set")]
    pub sets: Vec<SetSpec>,
}

/// One `[[segment.set]]`: an assignment to an HL7 position.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSpec {
    /// `field[.component[.subcomponent]]` with an optional repetition: `3[2].1`.
    pub at: Spanned<String>,
    /// A constant: a string, or a list of strings for consecutive components.
    pub value: Option<Spanned<ConstValue>>,
    /// An expression (FHIRPath subset and mapping functions).
    pub expr: Option<Spanned<String>>,
    /// Several values go to successive repetitions (otherwise several values are an error).
    #[serde(default)]
    pub repeat: bool,
    /// What an empty result means.
    #[serde(default)]
    pub on_missing: OnMissing,
    /// A human name for messages, e.g. `NHS number`.
    pub name: Option<String>,
}

/// A constant value.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConstValue {
    One(String),
    Components(Vec<String>),
}

/// What to do when an expression yields nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// Leave the position empty.
    #[default]
    Ignore,
    /// Leave it empty and report a warning.
    Warn,
    /// Refuse the referral with a named error.
    Error,
}
