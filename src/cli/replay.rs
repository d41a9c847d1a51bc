//! `ers-bridge replay --config FILE UBRN`: re-reads one referral and processes its latest
//! version again, whether it was parked or published (a re-publish carries the same MSH-10).
//! `--as-new` publishes it again under new control ids linked to the originals (the PAS
//! lost it, or a fixed mapping should reach it); with `--type/--since/--until` instead of a
//! UBRN it does so for every referral with a matching outbound message. `--dry-run` says
//! what would be replayed and publishes nothing. Each replay is recorded with `--by`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::app::{App, Shutdown};
use crate::ids::Ubrn;
use crate::monitor::actions;
use crate::pipeline::outbound::Outcome;

/// Arguments of `replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The configuration file (or set ERS_BRIDGE_CONFIG).
    #[arg(long, short, env = "ERS_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The referral's UBRN (12 digits); or use the filter below with `--as-new`.
    #[arg(required_unless_present_any = ["message_type", "since"])]
    pub ubrn: Option<Ubrn>,
    /// Publish again under new control ids (`<UBRN>R<nn><version>`), each linked to its
    /// original in the `x-ers-replay-of` header and the store.
    #[arg(long)]
    pub as_new: bool,
    /// Only say what would be replayed.
    #[arg(long)]
    pub dry_run: bool,
    /// Filter (instead of a UBRN, with `--as-new`): outbound message type, e.g. `REF^I12`.
    #[arg(long = "type", requires = "as_new")]
    pub message_type: Option<String>,
    /// Filter: messages published at or after this time (RFC 3339, or a duration before
    /// now such as `1h`).
    #[arg(long, requires = "as_new")]
    pub since: Option<super::when::When>,
    /// Filter: messages published before this time (RFC 3339, or a duration before now).
    #[arg(long, requires = "as_new")]
    pub until: Option<super::when::When>,
    /// Who is replaying, recorded with each replay.
    #[arg(long, default_value_t = std::env::var("USER").unwrap_or_else(|_| "cli".into()))]
    pub by: String,
}

/// Prints what happened; exits 0 when published (or nothing to do), 1 when parked again or
/// failed.
pub fn run(args: &ReplayArgs) -> ExitCode {
    let cfg = match super::load_tool_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.as_new || args.dry_run {
        return as_new(args, &cfg);
    }
    let Some(ubrn) = args.ubrn.clone() else {
        eprintln!("error: a UBRN is needed without --as-new");
        return ExitCode::from(64);
    };
    let result = super::runtime().and_then(|rt| {
        rt.block_on(async {
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            let app = App::build(&cfg, shutdown).await.context("cannot start")?;
            let r = app
                .outbound()
                .replay(&ubrn, chrono::Utc::now())
                .await
                .with_context(|| format!("replaying {ubrn}"));
            app.close().await;
            r
        })
    });
    report(&ubrn, result)
}

fn report(ubrn: &Ubrn, result: anyhow::Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Published(ids)) => {
            let ids: Vec<_> = ids.iter().map(|c| c.as_str()).collect();
            println!("published {ubrn}: {}", ids.join(", "));
            ExitCode::SUCCESS
        }
        Ok(Outcome::Skipped | Outcome::InProgress) => {
            println!("nothing to publish for {ubrn}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Deferred) => {
            println!("{ubrn}: attachments still pending in e-RS, try later");
            ExitCode::FAILURE
        }
        Ok(Outcome::Parked(reason)) => {
            println!("{ubrn} parked again: {reason}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {}", super::explain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `--as-new` (and `--dry-run`): one UBRN or every referral the filter finds.
fn as_new(args: &ReplayArgs, cfg: &crate::config::Config) -> ExitCode {
    let result = super::runtime().and_then(|rt| {
        rt.block_on(async {
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            let app = App::build(cfg, shutdown).await.context("cannot start")?;
            let store = &app.shared().store;
            let ubrns = match &args.ubrn {
                Some(u) => vec![u.clone()],
                None => {
                    let filter = crate::store::SearchFilter {
                        message_type: args.message_type.clone(),
                        from_ms: args.since.map(|t| t.timestamp_millis()),
                        to_ms: args.until.map(|t| t.timestamp_millis()),
                        ..Default::default()
                    };
                    actions::ubrns_matching(store, &filter).await?
                }
            };
            let reports =
                actions::replay(app.outbound(), store, &args.by, &ubrns, args.dry_run).await;
            for r in &reports {
                match (args.dry_run, r.published.is_empty()) {
                    (true, _) => println!(
                        "would replay {}: {} ({})",
                        r.ubrn,
                        r.replaying.join(", "),
                        r.event
                            .as_deref()
                            .unwrap_or("never published: processed as new")
                    ),
                    (false, false) => println!(
                        "published {}: {} (replaying {})",
                        r.ubrn,
                        r.published.join(", "),
                        r.replaying.join(", ")
                    ),
                    (false, true) => println!(
                        "{}: {}",
                        r.ubrn,
                        r.outcome.as_deref().unwrap_or("nothing published")
                    ),
                }
            }
            let failed = reports.iter().any(|r| r.failed);
            if ubrns.is_empty() {
                println!("no referral matches");
            }
            app.close().await;
            anyhow::Ok(failed)
        })
    });
    match result {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", super::explain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
