//! `ers-bridge validate --config FILE`: parse and check the configuration, then compile
//! every mapping file in `[mappings] dir` and load the inbound decision table, without any
//! IO beyond reading files.

use std::{path::PathBuf, process::ExitCode};

use crate::config::{self, ProcessEnv};
use crate::mapping::{compile_file, DecisionTable, MappingError};

/// Arguments of `validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Runs `validate`: prints `ok` and exits 0, or prints the error and exits 64.
pub fn run(args: &ValidateArgs) -> ExitCode {
    let cfg = match config::load(&args.config, &ProcessEnv) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::EX_USAGE);
        }
    };
    println!(
        "{}: ok (auth mode {}, {} polled service(s))",
        args.config.display(),
        cfg.ers.auth.mode_name(),
        cfg.poll.len()
    );
    match check_mappings(&cfg.mappings) {
        Ok(n) => {
            println!(
                "{}: ok ({n} mapping file(s) compiled)",
                cfg.mappings.dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(super::EX_USAGE)
        }
    }
}

/// Compiles every `*.toml` in the mappings folder (the decision table as such, the
/// sample manifest skipped) and checks the configured files exist. Returns the count.
pub fn check_mappings(m: &config::MappingFiles) -> Result<usize, MappingError> {
    let io = |e: std::io::Error| MappingError::io(m.dir.display(), &e);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&m.dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let inbound = m.dir.join(&m.inbound);
    let mut count = 0;
    for file in &files {
        if file.file_name().is_some_and(|n| n == "samples.toml") {
            continue;
        }
        if *file == inbound {
            DecisionTable::load(file)?;
        } else {
            compile_file(file)?;
        }
        count += 1;
    }
    let mut configured = m.outbound_files();
    configured.push(("inbound", inbound));
    for (key, path) in configured {
        if !path.is_file() {
            return Err(MappingError::Invalid {
                file: "config".into(),
                line: None,
                field: format!("mappings.{key}"),
                reason: format!("{} does not exist", path.display()),
            });
        }
    }
    Ok(count)
}
