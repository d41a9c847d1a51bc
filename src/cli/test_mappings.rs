//! `ers-bridge test-mappings [--manifest mappings/samples.toml] [--bless]`: runs every
//! mapping against its samples and shows a diff for each mismatch; `--bless` writes the
//! rendered output over mismatching (or missing) golden files instead. Exit 0 when all pass
//! (or were blessed), 1 otherwise, 64 when the manifest or a mapping is invalid.

use std::{path::PathBuf, process::ExitCode};

use crate::mapping::samples::{run_manifest, CaseResult, Outcome};

/// Arguments of `test-mappings`.
#[derive(Debug, clap::Args)]
pub struct TestMappingsArgs {
    /// The sample manifest.
    #[arg(long, default_value = "mappings/samples.toml")]
    pub manifest: PathBuf,
    /// Rewrite mismatching golden files instead of failing (review the diff after).
    #[arg(long, alias = "update")]
    pub bless: bool,
}

/// Runs `test-mappings`.
pub fn run(args: &TestMappingsArgs) -> ExitCode {
    let results = match run_manifest(&args.manifest) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::EX_USAGE);
        }
    };
    let mut failed = 0;
    for r in &results {
        match &r.outcome {
            Outcome::Pass => println!("ok       {}", r.name),
            Outcome::Mismatch { .. } if args.bless => match bless(r) {
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
