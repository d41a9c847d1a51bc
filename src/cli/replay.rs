//! `ers-bridge replay --config FILE UBRN`: re-reads one referral and processes its latest
//! version again, whether it was parked or published (a re-publish carries the same MSH-10).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::app::{App, Shutdown};
use crate::ids::Ubrn;
use crate::pipeline::outbound::Outcome;

/// Arguments of `replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The configuration file (or set ERS_BRIDGE_CONFIG).
    #[arg(long, short, env = "ERS_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The referral's UBRN (12 digits).
    pub ubrn: Ubrn,
}

/// Prints what happened; exits 0 when published (or nothing to do), 1 when parked again or
/// failed.
pub fn run(args: &ReplayArgs) -> ExitCode {
    let cfg = match super::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = super::runtime().and_then(|rt| {
        rt.block_on(async {
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            let app = App::build(&cfg, shutdown).await.context("cannot start")?;
            let r = app
                .outbound()
                .replay(&args.ubrn, chrono::Utc::now())
                .await
                .with_context(|| format!("replaying {}", args.ubrn));
            app.close().await;
            r
        })
    });
    match result {
        Ok(Outcome::Published(ids)) => {
            let ids: Vec<_> = ids.iter().map(|c| c.as_str()).collect();
            println!("published {}: {}", args.ubrn, ids.join(", "));
            ExitCode::SUCCESS
        }
        Ok(Outcome::Skipped | Outcome::InProgress) => {
            println!("nothing to publish for {}", args.ubrn);
            ExitCode::SUCCESS
        }
        Ok(Outcome::Deferred) => {
            println!(
                "{}: attachments still pending in e-RS, try later",
                args.ubrn
            );
            ExitCode::FAILURE
        }
        Ok(Outcome::Parked(reason)) => {
            println!("{} parked again: {reason}", args.ubrn);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
