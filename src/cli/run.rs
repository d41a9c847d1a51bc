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
    crate::telemetry::set_instance(&cfg.cluster.instance_id);
    // SQLite is for one instance: a second `run` on the same file is refused here, before
    // anything else (docs/ha.md). The lock lasts as long as this process.
    let _lock = match lock_sqlite(&cfg) {
        Ok(l) => l,
        Err(why) => {
            eprintln!("error: {why}");
            return ExitCode::from(64);
        }
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
                // A member of the cluster while it drains: registered, its share of the
                // rate limit taken, its leases renewed and given back at the end.
                let cluster = app.shared().cluster.clone();
                cluster
                    .join(&app.shared().ers)
                    .await
                    .context("cannot join the cluster")?;
                let leases_stop = Shutdown::new();
                let leases =
                    tokio::spawn(cluster.run(app.shared().ers.clone(), leases_stop.clone()));
                let progress = super::progress::Progress::start(&app.shared().events, "draining");
                let summary = app.drain(50).await;
                progress.finish();
                leases_stop.trigger();
                let _ = leases.await;
                app.close().await;
                let summary = summary.context("the bridge failed")?;
                super::demo::print_summary(&summary, None, started.elapsed());
                let r = &summary.report;
                return Ok(r.failed == 0 && r.worklist_errors == 0 && r.worklist_refused == 0);
            }
            app.run_until_stopped().await.context("the bridge failed")?;
            Ok(true)
        })
    });
    super::exit_code(result)
}

/// Takes the lock file beside a SQLite store (`<file>.lock`, an advisory OS lock released
/// when the process ends, however it ends); `None` for PostgreSQL or an in-memory store.
/// Another process holding it is refused with what to do instead.
fn lock_sqlite(cfg: &config::Config) -> Result<Option<std::fs::File>, String> {
    let url = secrecy::ExposeSecret::expose_secret(&cfg.store.url);
    let Some(path) = sqlite_file(url) else {
        return Ok(None);
    };
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open the store's lock file {lock_path}: {e}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another ers-bridge run is using the sqlite store {path} (it holds {lock_path}): \
             sqlite is for one instance; to run several, give them one postgresql store \
             (docs/ha.md)"
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!(
            "cannot lock the store's lock file {lock_path}: {e}"
        )),
    }
}

/// The file of a `sqlite://FILE[?…]` url; `None` for other stores and `:memory:`.
pub(crate) fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:")).then_some(path)
}

/// Loads and validates the configuration file (shared by `parked` and `replay`).
pub(crate) fn load(path: Option<&std::path::Path>) -> anyhow::Result<config::Config> {
    let path = path.context("no configuration: pass --config FILE or set ERS_BRIDGE_CONFIG")?;
    Ok(config::load(path, &ProcessEnv)?)
}
