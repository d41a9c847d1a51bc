//! `ers-bridge run --config FILE`: the main job. Polls the configured worklists, publishes
//! to RabbitMQ and records in the store until SIGINT or SIGTERM, then stops gracefully.
//! With `--until-drained` it instead runs passes until one finds nothing new, prints the
//! summary `demo` prints and exits (a one-shot catch-up, and the bridge-only benchmark).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::app::{App, Shutdown};
use crate::config::{self, ProcessEnv};

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The configuration file (or set ERS_BRIDGE_CONFIG).
    #[arg(long, short, env = "ERS_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Run passes over every worklist until one finds nothing new (at most 50), print a
    /// summary and exit: 0 when nothing failed, 1 otherwise.
    #[arg(long)]
    pub until_drained: bool,
}

/// Loads the configuration (exit 64 when it is wrong), then runs until stopped.
pub fn run(args: &RunArgs) -> ExitCode {
    let cfg = match super::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = super::runtime().and_then(|rt| {
        rt.block_on(async {
            let shutdown = Shutdown::new();
            let app = App::build(&cfg, shutdown.clone())
                .await
                .context("cannot start the bridge")?;
            shutdown.trigger_on_signals();
            if args.until_drained {
                let started = std::time::Instant::now();
                let summary = app.drain(50).await;
                app.close().await;
                let summary = summary.context("the bridge failed")?;
                super::demo::print_summary(&summary, None, started.elapsed());
                return Ok(summary.report.failed == 0 && summary.report.worklist_errors == 0);
            }
            app.run_until_stopped().await.context("the bridge failed")?;
            Ok(true)
        })
    });
    super::exit_code(result)
}

/// Loads and validates the configuration file (shared by `parked` and `replay`).
pub(crate) fn load(path: Option<&std::path::Path>) -> anyhow::Result<config::Config> {
    let path = path.context("no configuration: pass --config FILE or set ERS_BRIDGE_CONFIG")?;
    Ok(config::load(path, &ProcessEnv)?)
}
