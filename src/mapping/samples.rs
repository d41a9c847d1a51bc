//! The sample manifest (`mappings/samples.toml`): which referral renders through which
//! mapping to which golden HL7 file, and which PAS message decodes to which actions. Both
//! the golden tests (`tests/mappings`) and `ers-bridge test-mappings` run it, so there is
//! one list of samples. This module only reads and compares: a mismatch carries the
//! rendered bytes and the golden's path, and `ers-bridge test-mappings --bless` (or the
//! golden test under `UPDATE_EXPECT=1`) writes them.
//!
//! Golden HL7 files hold one segment per line (LF) for readable diffs; the wire uses CR.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::DateTime;
use serde::Deserialize;

use super::compile::{compile_file, CompiledMapping};
use super::eval::Attachments;
use super::inbound::DecisionTable;
use super::{toml_error, ApplyInput, MappingError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    /// RFC 3339; MSH-7 of every rendered sample.
    timestamp: String,
    /// Folder of attachment files named by attachment id.
    attachments: Option<String>,
    #[serde(default, rename = "case")]
    cases: Vec<Case>,
    #[serde(default)]
    inbound: Vec<InboundCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    mapping: String,
    input: String,
    expected: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundCase {
    table: String,
    input: String,
    expected: String,
}

/// The outcome of one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// The golden differs (`diff`) or does not exist yet; `actual` is what was rendered.
    Mismatch {
        diff: String,
        actual: Vec<u8>,
    },
    Failed(String),
}

/// One sample's name (its expected file) and outcome.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    /// The golden file (relative to the working directory of the run).
    pub path: PathBuf,
    pub outcome: Outcome,
}

impl CaseResult {
    /// The bytes to write to [`CaseResult::path`] to accept this result, for a mismatch.
    pub fn blessable(&self) -> Option<&[u8]> {
        match &self.outcome {
            Outcome::Mismatch { actual, .. } => Some(actual),
            _ => None,
        }
    }
}

/// Reads every file in `dir` as an attachment keyed by file name.
pub fn read_attachments(dir: &Path) -> Result<Attachments, MappingError> {
    let io = |e: std::io::Error| MappingError::io(dir.display(), &e);
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_file() {
            let name = entry.file_name().to_string_lossy().to_string();
            out.insert(name, std::fs::read(entry.path()).map_err(io)?);
        }
    }
    Ok(out)
}

/// Turns wire bytes into the golden form (one segment per line).
pub fn to_golden(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| if b == b'\r' { b'\n' } else { b })
        .collect()
}

/// A readable diff of two HL7 texts (one segment per line): each line that differs, then,
/// when both lines are the same segment, every field and component that differs named by
/// its position (`PID-5.1`), expected against actual.
pub fn diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            out.push_str(&format!("  line {}\n", i + 1));
            if let Some(x) = x {
                out.push_str(&format!("  - {x}\n"));
            }
            if let Some(y) = y {
                out.push_str(&format!("  + {y}\n"));
            }
            if let (Some(x), Some(y)) = (x, y) {
                for (at, want, got) in field_differences(x, y) {
                    out.push_str(&format!("    {at}: expected {want:?}, actual {got:?}\n"));
                }
            }
        }
    }
    out
}

/// The positions where two lines of one segment differ: `(PID-5.1, expected, actual)`,
/// down to components (`^`) when a field has them; empty when the segment ids differ.
fn field_differences(expected: &str, actual: &str) -> Vec<(String, String, String)> {
    let (e, a): (Vec<&str>, Vec<&str>) =
        (expected.split('|').collect(), actual.split('|').collect());
    let id = e[0];
    if id != a[0] {
        return Vec::new();
    }
    // MSH-1 is the field separator itself: MSH's n-th piece after the id is MSH-(n+1).
    let offset = usize::from(id == "MSH");
    let mut out = Vec::new();
    for n in 1..e.len().max(a.len()) {
        let (x, y) = (
            e.get(n).copied().unwrap_or(""),
            a.get(n).copied().unwrap_or(""),
        );
        if x == y {
            continue;
        }
        let field = format!("{id}-{}", n + offset);
        let (xc, yc): (Vec<&str>, Vec<&str>) = (x.split('^').collect(), y.split('^').collect());
        // Component positions only where both sides are one repetition of a composite.
        if (xc.len() > 1 || yc.len() > 1) && !x.contains('~') && !y.contains('~') {
            for c in 0..xc.len().max(yc.len()) {
                let (p, q) = (
                    xc.get(c).copied().unwrap_or(""),
                    yc.get(c).copied().unwrap_or(""),
                );
                if p != q {
                    out.push((format!("{field}.{}", c + 1), p.to_string(), q.to_string()));
                }
            }
        } else {
            out.push((field, x.to_string(), y.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod diff_tests {
    #[test]
    fn differences_are_named_by_field_and_component() {
        let d = super::diff(
            "MSH|^~\\&|ERS_BRIDGE|RXX|PAS\nPID|1||943^^^NHS||SMITH^JOHN\n",
            "MSH|^~\\&|ERS_BRIDGE|RAJ|PAS\nPID|1||943^^^NHS||SMITH^JON\n",
        );
        assert!(
            d.contains("    MSH-4: expected \"RXX\", actual \"RAJ\"\n"),
            "{d}"
        );
        assert!(
            d.contains("    PID-5.2: expected \"JOHN\", actual \"JON\"\n"),
            "{d}"
        );
        assert!(!d.contains("PID-3"), "{d}");
    }
}

impl Manifest {
    /// The timestamp and attachments every case is rendered with.
    fn render_inputs(
        &self,
        file: &str,
        base: &Path,
    ) -> Result<(DateTime<chrono::FixedOffset>, Attachments), MappingError> {
        let timestamp =
            DateTime::parse_from_rfc3339(&self.timestamp).map_err(|e| MappingError::Invalid {
                file: file.to_string(),
                line: None,
                field: "timestamp".into(),
                reason: e.to_string(),
            })?;
        let attachments = match &self.attachments {
            Some(dir) => read_attachments(&base.join(dir))?,
            None => Attachments::new(),
        };
        Ok((timestamp, attachments))
    }
}

/// A manifest case for one mapping and referral: its golden text, and the timestamp and
/// attachments the golden was rendered with.
#[derive(Debug)]
pub struct SampleCase {
    pub golden: Option<String>,
    pub golden_path: PathBuf,
    pub timestamp: DateTime<chrono::FixedOffset>,
    pub attachments: Attachments,
}

/// The case of the manifest at `path` that renders the referral with `id` through
/// `mapping` (a file name in the manifest's folder), if there is one.
pub fn sample_case(
    path: &Path,
    mapping: &str,
    id: &str,
) -> Result<Option<SampleCase>, MappingError> {
    let (file, text) = super::read_text(path)?;
    let m: Manifest = toml::from_str(&text).map_err(|e| toml_error(&file, &text, &e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for case in m.cases.iter().filter(|c| c.mapping == mapping) {
        let Ok(input) = std::fs::read_to_string(base.join(&case.input)) else {
            continue;
        };
        let same = serde_json::from_str::<serde_json::Value>(&input)
            .ok()
            .is_some_and(|v| v.get("id").and_then(|i| i.as_str()) == Some(id));
        if !same {
            continue;
        }
        let (timestamp, attachments) = m.render_inputs(&file, base)?;
        let golden_path = base.join(&case.expected);
        return Ok(Some(SampleCase {
            golden: std::fs::read_to_string(&golden_path).ok(),
            golden_path,
            timestamp,
            attachments,
        }));
    }
    Ok(None)
}

/// Runs every sample of the manifest at `path`, with the default MSH-3..6.
pub fn run_manifest(path: &Path) -> Result<Vec<CaseResult>, MappingError> {
    run_manifest_with(path, &super::Header::default())
}

/// Runs every sample of the manifest at `path`, sending as `header` (a trust's
/// `[mappings]` values, so its goldens show what its PAS receives).
pub fn run_manifest_with(
    path: &Path,
    header: &super::Header,
) -> Result<Vec<CaseResult>, MappingError> {
    let (file, text) = super::read_text(path)?;
    let m: Manifest = toml::from_str(&text).map_err(|e| toml_error(&file, &text, &e))?;
    if m.version != 1 {
        return Err(MappingError::Invalid {
            file,
            line: None,
            field: "version".into(),
            reason: "only version 1 is supported".into(),
        });
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let (timestamp, attachments) = m.render_inputs(&file, base)?;
    let mut mappings: HashMap<PathBuf, CompiledMapping> = HashMap::new();
    let mut results = Vec::new();
    for case in &m.cases {
        let mapping_path = base.join(&case.mapping);
        if !mappings.contains_key(&mapping_path) {
            mappings.insert(
                mapping_path.clone(),
                compile_file(&mapping_path)?.with_header(header),
            );
        }
        let mapping = &mappings[&mapping_path];
        let outcome = (|| -> Result<Vec<u8>, String> {
            let input = std::fs::read_to_string(base.join(&case.input))
                .map_err(|e| format!("{}: {e}", case.input))?;
            let referral: serde_json::Value =
                serde_json::from_str(&input).map_err(|e| format!("{}: {e}", case.input))?;
            let control_id = mapping
                .control_id_for(&referral)
                .map_err(|e| e.to_string())?;
            let (_, bytes) = mapping
                .render(&ApplyInput {
                    referral: &referral,
                    control_id: &control_id,
                    timestamp,
                    attachments: &attachments,
                    attachment_errors: &Default::default(),
                })
                .map_err(|e| e.to_string())?;
            Ok(to_golden(&bytes))
        })();
        results.push(compare(&case.expected, base, outcome));
    }
    let mut tables: HashMap<PathBuf, DecisionTable> = HashMap::new();
    for case in &m.inbound {
        let table_path = base.join(&case.table);
        if !tables.contains_key(&table_path) {
            tables.insert(table_path.clone(), DecisionTable::load(&table_path)?);
        }
        let table = &tables[&table_path];
        let outcome = (|| -> Result<Vec<u8>, String> {
            let bytes = std::fs::read(base.join(&case.input))
                .map_err(|e| format!("{}: {e}", case.input))?;
            let action = match crate::hl7::read_inbound(&bytes, crate::hl7::read::DEFAULT_MAX_BYTES)
            {
                Ok(msg) => table.decide(&msg),
                Err(e) => super::Action::review(format!("unreadable message: {e}")),
            };
            let mut json = serde_json::to_string_pretty(&action).map_err(|e| e.to_string())?;
            json.push('\n');
            Ok(json.into_bytes())
        })();
        results.push(compare(&case.expected, base, outcome));
    }
    Ok(results)
}

fn compare(expected: &str, base: &Path, actual: Result<Vec<u8>, String>) -> CaseResult {
    let path = base.join(expected);
    let name = expected.to_string();
    let outcome = match actual {
        Err(e) => Outcome::Failed(e),
        Ok(actual) => match std::fs::read(&path).ok() {
            Some(c) if c == actual => Outcome::Pass,
            Some(c) => Outcome::Mismatch {
                diff: diff(
                    &String::from_utf8_lossy(&c),
                    &String::from_utf8_lossy(&actual),
                ),
                actual,
            },
            None => Outcome::Mismatch {
                diff: format!(
                    "  {} does not exist (run test-mappings --bless to create it)\n",
                    path.display()
                ),
                actual,
            },
        },
    };
    CaseResult {
        name,
        path,
        outcome,
    }
}
