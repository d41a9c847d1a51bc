//! The mapping engine: versioned, strict TOML files that turn an e-RS ReferralRequest (FHIR
//! STU3 JSON) into an HL7v2 message, and the inbound decision table that turns an ACK or
//! RRI from the PAS into a bridge action. Integration teams change these files, not Rust.
//!
//! - [`spec`]: the serde shape of a mapping file (`deny_unknown_fields`).
//! - [`path`], [`eval`], [`functions`]: the FHIRPath subset and the mapping functions.
//! - [`tables`]: CSV code tables with hit/miss counters.
//! - [`compile`]: file → [`CompiledMapping`] (all checks happen here, once).
//! - [`apply`]: [`CompiledMapping::apply`], pure and deterministic.
//! - [`inbound`]: the decision table ([`DecisionTable`], [`Action`]).
//! - [`samples`]: the sample manifest (`mappings/samples.toml`) behind the golden tests and
//!   `ers-bridge test-mappings`.
//!
//! See `docs/mappings.md` for the newcomer's guide.

pub mod apply;
pub mod compile;
pub mod eval;
pub mod functions;
pub mod header;
pub mod inbound;
mod lets;
pub mod path;
pub mod samples;
pub mod spec;
pub mod stu3;
pub mod tables;

pub use apply::{ApplyInput, Rendered};
pub use compile::{compile_file, compile_str, CompiledMapping};
pub use eval::{AttachmentErrors, Attachments};
pub use header::Header;
pub use inbound::{Action, DecisionTable};

/// Errors of the mapping engine. Compile errors name the file, line and field; apply errors
/// name the HL7 position and the mapping's label for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A file could not be read; `kind` says why (missing, permission, not UTF-8 …).
    #[error("{file}: {reason}")]
    Io {
        file: String,
        kind: std::io::ErrorKind,
        reason: String,
    },
    #[error("{file}:{}: {field}: {reason}", line.map_or("?".to_string(), |l| l.to_string()))]
    Invalid {
        file: String,
        line: Option<usize>,
        field: String,
        reason: String,
    },
    /// Required data is missing from the referral (e.g. no NHS number).
    #[error("{field} ({name}): required data missing")]
    Missing { field: String, name: String },
    /// An expression failed on this referral (e.g. an invalid NHS number).
    #[error("{field} ({name}): {reason}")]
    Eval {
        field: String,
        name: String,
        reason: String,
    },
    #[error("writing the message: {0}")]
    Write(#[from] crate::hl7::WriteError),
}

impl MappingError {
    /// Only reading files can succeed later (a file being deployed, a permission being
    /// fixed); a file that is not text, bad mappings and bad referrals stay bad.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { kind, .. } if *kind != std::io::ErrorKind::InvalidData)
    }

    /// A read failure of `file`, keeping the error's kind.
    pub fn io(file: impl std::fmt::Display, e: &std::io::Error) -> Self {
        Self::Io {
            file: file.to_string(),
            kind: e.kind(),
            reason: e.to_string(),
        }
    }
}

/// Reads a mapping, table, decision or manifest file: its display name (for errors) and
/// its text; failing is [`MappingError::Io`] naming the file.
pub(crate) fn read_text(path: &std::path::Path) -> Result<(String, String), MappingError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((file, text)),
        Err(e) => Err(MappingError::io(file, &e)),
    }
}

/// The 1-based line of a byte offset in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// Turns a TOML deserialisation error into [`MappingError::Invalid`] with the line and the
/// key or text at the error's position.
pub(crate) fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> MappingError {
    let (line, field) = match e.span() {
        Some(span) => {
            let snippet: String = text
                .get(span.clone())
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(40)
                .collect();
            (Some(line_of(text, span.start)), snippet.trim().to_string())
        }
        None => (None, String::new()),
    };
    MappingError::Invalid {
        file: file.to_string(),
        line,
        field: if field.is_empty() {
            "file".into()
        } else {
            field
        },
        reason: e.message().trim().to_string(),
    }
}
