//! The configuration boundary's error: always names the file, the key and the reason.

use thiserror::Error;

/// Why a configuration could not be loaded. Every variant is permanent: fix the file.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read config: {reason}")]
    Io { file: String, reason: String },
    /// The file is not valid TOML.
    #[error("{file}{}: invalid toml: {reason}", fmt_line(*.line))]
    Syntax {
        file: String,
        line: Option<usize>,
        reason: String,
    },
    /// A key is unknown, missing, of the wrong type, or breaks a rule.
    #[error("{file}{}: key `{key}`: {reason}", fmt_line(*.line))]
    Invalid {
        file: String,
        key: String,
        line: Option<usize>,
        reason: String,
    },
}

fn fmt_line(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}
