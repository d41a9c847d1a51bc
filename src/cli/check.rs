//! `ers-bridge check --config FILE`: the e-RS connectivity probe. Unlike `validate` it uses
//! the network: it authenticates in the configured mode (token, bearer file, or legacy
//! session) and reads reference data (A004 PRIORITY), then ends a legacy session (A003).

use std::{path::PathBuf, process::ExitCode};

/// Arguments of `check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The configuration file (or set ERS_BRIDGE_CONFIG).
    #[arg(long, short, env = "ERS_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Runs `check`: prints one line per step; exits 0 when all pass, 1 otherwise, 64 for a
/// configuration error.
pub fn run(args: &CheckArgs) -> ExitCode {
    let (client, rt) = match super::ers::client_and_runtime(args.config.as_deref()) {
        Ok(both) => both,
        Err(code) => return code,
    };
    rt.block_on(async {
        println!("e-rs auth mode: {}", client.mode().name());
        let result = client.reference_data("PRIORITY").await;
        let shutdown = client.shutdown().await;
        match result {
            Ok(cs) => {
                if let Some(n) = client.token_fetch_count() {
                    println!("ok: access token obtained ({n} fetched)");
                }
                println!(
                    "ok: authenticated and read reference data PRIORITY ({} concepts)",
                    cs.concept.len()
                );
                if let Err(e) = shutdown {
                    eprintln!("error: could not end the legacy session: {e}");
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                super::ers::report(&anyhow::Error::new(e));
                ExitCode::FAILURE
            }
        }
    })
}
