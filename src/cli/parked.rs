//! `ers-bridge parked --config FILE`: lists the referrals the pipeline parked, with their
//! reasons (retry one with `ers-bridge replay UBRN`).

use std::{path::PathBuf, process::ExitCode};

use crate::store::Store;

/// Arguments of `parked`.
#[derive(Debug, clap::Args)]
pub struct ParkedArgs {
    /// The configuration file (or set ERS_BRIDGE_CONFIG).
    #[arg(long, short, env = "ERS_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Prints one line per parked item: UBRN, version, parked time (UTC) and reason.
pub fn run(args: &ParkedArgs) -> ExitCode {
    let cfg = match super::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = super::runtime().and_then(|rt| {
        rt.block_on(async {
            let store = Store::connect(&cfg.store.url).await?;
            let items = store.parked().await?;
            store.close().await;
            anyhow::Ok(items)
        })
    });
    match result {
        Ok(items) => {
            if items.is_empty() {
                println!("no parked referrals");
            }
            for i in items {
                let at = chrono::DateTime::from_timestamp_millis(i.parked_at_ms)
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default();
                println!("{}\tv{}\t{}\t{}", i.ubrn, i.version, at, i.reason);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", super::explain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
