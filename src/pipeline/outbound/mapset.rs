//! The compiled outbound mappings the pipeline chooses from, and a hash of the mapping
//! folder so parked referrals are retried when the files change.

use std::path::Path;

use crate::config::MappingFiles;
use crate::mapping::{compile_file, CompiledMapping, MappingError};
use crate::pipeline::PipelineError;

/// Which message a referral version gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Never published for this UBRN: REF^I12 (after the patient message when configured).
    New,
    /// A higher version of a UBRN already published: REF^I13.
    Changed,
    /// Cancelled: REF^I14.
    Cancelled,
}

/// The outbound mappings, compiled once at start.
#[derive(Debug)]
pub struct Mappings {
    pub new_referral: CompiledMapping,
    pub changed_referral: CompiledMapping,
    pub cancelled_referral: CompiledMapping,
    /// Sent before a new referral when configured (e.g. ADT^A28).
    pub patient: Option<CompiledMapping>,
    /// FNV-1a hash over every file under the mapping folder (names and contents).
    pub hash: String,
}

impl Mappings {
    /// Compiles the configured mappings; errors name the file, line and field.
    pub fn load(cfg: &MappingFiles) -> Result<Self, PipelineError> {
        let compile = |f: &str| {
            compile_file(&cfg.dir.join(f))
                .map(|m| m.with_header(&cfg.header))
                .map_err(PipelineError::Mapping)
        };
        Ok(Self {
            new_referral: compile(&cfg.new_referral)?,
            changed_referral: compile(&cfg.changed_referral)?,
            cancelled_referral: compile(&cfg.cancelled_referral)?,
            patient: cfg.patient.as_deref().map(compile).transpose()?,
            hash: hash_dir(&cfg.dir).map_err(PipelineError::Mapping)?,
        })
    }

    /// The mappings to publish, in order, for an event.
    pub fn for_event(&self, kind: EventKind) -> Vec<&CompiledMapping> {
        match kind {
            EventKind::New => self
                .patient
                .iter()
                .chain(std::iter::once(&self.new_referral))
                .collect(),
            EventKind::Changed => vec![&self.changed_referral],
            EventKind::Cancelled => vec![&self.cancelled_referral],
        }
    }
}

/// A stable hash of every file under `dir` (sorted by path), as 16 hex digits.
pub fn hash_dir(dir: &Path) -> Result<String, MappingError> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for f in files {
        let rel = f.strip_prefix(dir).unwrap_or(&f);
        feed(rel.to_string_lossy().as_bytes());
        feed(&[0]);
        feed(&std::fs::read(&f).map_err(|e| io_err(&f, e))?);
        feed(&[0]);
    }
    Ok(format!("{h:016x}"))
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), MappingError> {
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let path = entry.map_err(|e| io_err(dir, e))?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn io_err(path: &Path, e: std::io::Error) -> MappingError {
    MappingError::io(path.display(), &e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_changes_with_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "x").unwrap();
        let h1 = hash_dir(dir.path()).unwrap();
        assert_eq!(h1, hash_dir(dir.path()).unwrap());
        std::fs::write(dir.path().join("a.toml"), "y").unwrap();
        assert_ne!(h1, hash_dir(dir.path()).unwrap());
    }
}
