//! `ers-bridge test-mappings [--manifest mappings/samples.toml] [--update]`: runs every
//! mapping against its samples and shows a diff for each mismatch. Exit 0 when all pass,
//! 1 otherwise, 64 when the manifest or a mapping is invalid.

use std::{path::PathBuf, process::ExitCode};

use crate::mapping::samples::{run_manifest, Outcome};

/// Arguments of `test-mappings`.
#[derive(Debug, clap::Args)]
pub struct TestMappingsArgs {
    /// The sample manifest.
    #[arg(long, default_value = "mappings/samples.toml")]
    pub manifest: PathBuf,
    /// Rewrite mismatching golden files instead of failing.
    #[arg(long)]
    pub update: bool,
}

/// Runs `test-mappings`.
pub fn run(args: &TestMappingsArgs) -> ExitCode {
    let results = match run_manifest(&args.manifest, args.update) {
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
            Outcome::Updated => println!("updated  {}", r.name),
            Outcome::Mismatch(diff) => {
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
