//! `ers-bridge needs-action --config FILE [list | resolve ID --note TEXT | retry ID]`: the
//! PAS decisions e-RS would not take from the bridge (an auth mode that cannot write them,
//! a referral no longer in a state that allows them, a message without what the action
//! needs). Nothing is dropped: each stays listed until a person resolves it (having acted in
//! e-RS themselves) or retries it (after fixing the cause, or with a user-restricted
//! configuration that may perform it). IDs are the PAS's MSH-10.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::app::{App, Shutdown};
use crate::ids::ControlId;
use crate::pipeline::inbound::Handled;
use crate::store::Store;

/// Arguments of `needs-action`.
#[derive(Debug, clap::Args)]
pub struct NeedsActionArgs {
    /// The configuration file (or set ERS_BRIDGE_CONFIG).
    #[arg(long, short, env = "ERS_BRIDGE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// `list` as one JSON array (the API's form), for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<NeedsActionCommand>,
}

/// What to do with the needs-action records.
#[derive(Debug, clap::Subcommand)]
pub enum NeedsActionCommand {
    /// List the open records (the default).
    List,
    /// Close one: a person has dealt with it in e-RS.
    Resolve {
        /// The PAS's MSH-10 of the message.
        id: ControlId,
        /// What was done, kept with the record.
        #[arg(long)]
        note: String,
        /// Who is doing it, recorded with the resolve.
        #[arg(long, default_value_t = super::ops::whoami())]
        by: String,
    },
    /// Try one again now with this configuration's e-RS access.
    Retry {
        /// The PAS's MSH-10 of the message.
        id: ControlId,
        /// Who is doing it, recorded with the retry.
        #[arg(long, default_value_t = super::ops::whoami())]
        by: String,
    },
}

/// Exits 0, 1 when the retry did not apply it or the ID is not open, 64 for a bad config.
pub fn run(args: &NeedsActionArgs) -> ExitCode {
    let cfg = match super::load_tool_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let command = args.command.as_ref().unwrap_or(&NeedsActionCommand::List);
    let result = super::runtime().and_then(|rt| {
        rt.block_on(async {
            if let NeedsActionCommand::Retry { id, by } = command {
                // Only a retry needs e-RS (and builds the whole bridge to reach it).
                let app = App::build(&cfg, Shutdown::new())
                    .await
                    .context("cannot start")?;
                let r = retry(&app, id, by).await;
                app.close().await;
                return r;
            }
            let store = Store::connect(&cfg.store.url)
                .await
                .context("cannot open the store")?;
            // `list` and `resolve` need only the store.
            let r = match command {
                NeedsActionCommand::Resolve { id, note, by } => resolve(&store, id, note, by).await,
                _ => list(&store, args.json).await,
            };
            store.close().await;
            r
        })
    });
    super::exit_code(result)
}

/// `list`: the store is all it needs; newest first, the most recent still actionable.
async fn list(store: &Store, json: bool) -> anyhow::Result<bool> {
    let mut items = store.inbound_needing_action().await?;
    // Newest first: the most recent are the ones still actionable.
    items.sort_by_key(|r| std::cmp::Reverse(r.received_at_ms));
    if json {
        let all: Vec<_> = items
            .iter()
            .map(crate::monitor::actions::needs_action_view)
            .collect();
        println!("{}", serde_json::Value::Array(all));
        return Ok(true);
    }
    if items.is_empty() {
        println!("no decisions need action");
    }
    for r in items {
        let at = chrono::DateTime::from_timestamp_millis(r.received_at_ms)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        println!(
            "{}\t{}\t{}\t{}\t{}",
            r.control_id,
            r.ubrn.map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
            at,
            r.action.unwrap_or_else(|| "-".into()),
            r.detail.unwrap_or_default()
        );
    }
    Ok(true)
}

/// `resolve`: closes one record with the note, recorded as `by`'s.
async fn resolve(store: &Store, id: &ControlId, note: &str, by: &str) -> anyhow::Result<bool> {
    let now = chrono::Utc::now().timestamp_millis();
    let done = crate::monitor::actions::resolve_needs_action(store, id, note, by, now).await?;
    if done {
        println!("resolved {id}");
    } else {
        println!("{id} is not an open needs-action record");
    }
    Ok(done)
}

/// `retry`: this message now, with this configuration's e-RS access, and what became of it.
async fn retry(app: &App, id: &ControlId, by: &str) -> anyhow::Result<bool> {
    let store = &app.shared().store;
    let now = chrono::Utc::now();
    if !crate::monitor::actions::retry_needs_action(store, id, by, now.timestamp_millis()).await? {
        println!("{id} is not an open needs-action record");
        return Ok(false);
    }
    // This message only (other retries due keep their own schedule).
    let handled = app.inbound().retry_now(id, now).await?;
    let (line, ok) = match &handled {
        Some(Handled::Done { action }) => (format!("applied in e-RS ({action})"), true),
        Some(Handled::NoAction { why }) => (format!("nothing to do in e-RS: {why}"), true),
        Some(Handled::NeedsAction { why }) => (format!("still needs action: {why}"), false),
        Some(Handled::RetryScheduled { due_ms }) => (
            format!(
                "not applied yet (e-RS unavailable); retried from the store at {}",
                chrono::DateTime::from_timestamp_millis(*due_ms)
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default()
            ),
            false,
        ),
        Some(other) => (format!("not retried: {}", other.outcome()), false),
        None => ("not found".to_string(), false),
    };
    println!("{id}: {line}");
    Ok(ok)
}
