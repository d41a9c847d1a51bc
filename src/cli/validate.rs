//! `ers-bridge validate --config FILE`: parse and check the configuration without any IO
//! beyond reading the file.

use std::{path::PathBuf, process::ExitCode};

use crate::config::{self, ProcessEnv};

/// Arguments of `validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Runs `validate`: prints `ok` and exits 0, or prints the error and exits 64.
pub fn run(args: &ValidateArgs) -> ExitCode {
    match config::load(&args.config, &ProcessEnv) {
        Ok(cfg) => {
            println!(
                "{}: ok (auth mode {}, {} polled service(s))",
                args.config.display(),
                cfg.ers.auth.mode_name(),
                cfg.poll.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(super::EX_USAGE)
        }
    }
}
