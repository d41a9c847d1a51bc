//! `ers-bridge test-mappings [--manifest mappings/samples.toml] [--bless [NAME ...]] [--config FILE]`: runs every
//! mapping against its samples and shows a diff for each mismatch; `--bless` writes the
//! rendered output over mismatching (or missing) golden files instead. Exit 0 when all pass
//! (or were blessed), 1 otherwise, 64 when the manifest or a mapping is invalid.

use std::{path::PathBuf, process::ExitCode};

use crate::mapping::samples::{run_manifest_with, CaseResult, Outcome};

/// Arguments of `test-mappings`.
#[derive(Debug, clap::Args)]
pub struct TestMappingsArgs {
    /// The sample manifest.
    #[arg(long, default_value = "mappings/samples.toml")]
    pub manifest: PathBuf,
    /// Rewrite mismatching golden files instead of failing (review the diff after): all of
    /// them, or only the samples named (`--bless NAME [NAME ...]`).
    #[arg(long, alias = "update", num_args = 0.., value_name = "NAME")]
    pub bless: Option<Vec<String>>,
    /// Render with this configuration's `[mappings]` MSH-3..6 (the trust's ODS code)
    /// instead of the defaults the repository's goldens use.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// Runs `test-mappings`.
pub fn run(args: &TestMappingsArgs) -> ExitCode {
    if !args.manifest.exists() {
        eprintln!(
            "error: no sample manifest at {} (relative to {}): run from the repository root, \
             or pass --manifest PATH",
            args.manifest.display(),
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        );
        return ExitCode::from(super::EX_USAGE);
    }
    let header = match &args.config {
        Some(path) => match super::load_tool_config(Some(path)) {
            Ok(cfg) => cfg.mappings.header,
            Err(code) => return code,
        },
        None => crate::mapping::Header::default(),
    };
    let results = match run_manifest_with(&args.manifest, &header) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::EX_USAGE);
        }
    };
    // `--bless NAME ...` names samples that must exist: a typo blesses nothing silently.
    let chosen: Option<&[String]> = args.bless.as_deref().filter(|n| !n.is_empty());
    if let Some(names) = chosen {
        let unknown: Vec<&String> = names
            .iter()
            .filter(|n| !results.iter().any(|r| &r.name == *n))
            .collect();
        if !unknown.is_empty() {
            let known: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
            eprintln!(
                "error: --bless names no sample {:?}; the samples are: {}",
                unknown,
                known.join(", ")
            );
            return ExitCode::from(super::EX_USAGE);
        }
    }
    let blessing = |name: &str| match (&args.bless, chosen) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(_), Some(names)) => names.iter().any(|n| n == name),
    };
    let mut failed = 0;
    for r in &results {
        match &r.outcome {
            Outcome::Pass => println!("ok       {}", r.name),
            Outcome::Mismatch { .. } if blessing(&r.name) => match bless(r) {
                Ok(()) => println!("blessed  {}", r.name),
                Err(e) => {
                    failed += 1;
                    println!(
                        "FAILED   {}: cannot write {}: {e}",
                        r.name,
                        r.path.display()
                    );
                }
            },
            Outcome::Mismatch { diff, .. } => {
                failed += 1;
                println!("MISMATCH {}\n{diff}", r.name);
            }
            Outcome::Failed(e) => {
                failed += 1;
                println!("FAILED   {}: {e}", r.name);
            }
        }
    }
    println!("{} sample(s), {failed} failed", results.len());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes a mismatching result over its golden file.
fn bless(r: &CaseResult) -> std::io::Result<()> {
    let Some(bytes) = r.blessable() else {
        return Ok(());
    };
    if let Some(dir) = r.path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&r.path, bytes)
}
