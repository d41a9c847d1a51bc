//! The `ers-bridge` command line (clap). Each subcommand's work lives in the library; this
//! module parses arguments, sets up telemetry and maps errors to exit codes:
//! 0 success, 1 runtime failure, 64 (`EX_USAGE`) for a configuration error.

mod check;
mod decide;
mod demo;
mod ers;
mod needs_action;
mod ops;
mod parked;
mod pas_sim;
mod progress;
mod render;
mod replay;
mod run;
mod simulate;
mod test_mappings;
mod validate;
mod when;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

/// Exit code for configuration and usage errors (sysexits `EX_USAGE`).
pub const EX_USAGE: u8 = 64;

/// Bridge between the NHS e-Referral Service and a PAS speaking HL7v2 over RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "ers-bridge", version, about)]
pub struct Cli {
    /// Log format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value = "pretty", global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge: poll e-RS, publish to RabbitMQ, until SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// Run the bridge against an in-process simulator and the local RabbitMQ until drained.
    Demo(demo::DemoArgs),
    /// List the referrals parked because they could not be mapped.
    Parked(parked::ParkedArgs),
    /// Re-process one referral (e.g. a parked one after fixing its mapping).
    Replay(replay::ReplayArgs),
    /// List, resolve or retry the PAS decisions e-RS would not take from the bridge.
    NeedsAction(needs_action::NeedsActionArgs),
    /// One screen for the on-call: flow both ways, alerts, needs-action, parked, dead letters.
    Status(ops::StatusArgs),
    /// Every stored stage of one referral, both directions, in order.
    Timeline(ops::TimelineArgs),
    /// Find stored messages by direction, status, type, time or control id (paged).
    Search(ops::SearchArgs),
    /// Send a dead-lettered PAS message back to the inbound queue (once, recorded).
    Redrive(ops::RedriveArgs),
    /// Check a configuration file offline; exits 64 naming the file, key and reason.
    Validate(validate::ValidateArgs),
    /// Check the e-RS connection: authenticate and read reference data.
    Check(check::CheckArgs),
    /// Call one e-RS operation with the configured auth and print the FHIR JSON.
    Ers(ers::ErsArgs),
    /// Run the stateful e-RS simulator (docs/simulator.md).
    Simulate(simulate::SimulateArgs),
    /// Play the PAS on RabbitMQ: answer each REF^I12 with a commit ACK and an RRI^I12.
    PasSim(pas_sim::PasSimArgs),
    /// Map one referral with a mapping file and print the HL7 (offline).
    ///
    /// Prints one segment per line, for reading; the message published to the PAS is the
    /// same message with each segment ending in CR, in the mapping's charset. `--wire`
    /// prints exactly those bytes.
    Render(render::RenderArgs),
    /// Run every mapping against its samples and show a diff for each mismatch.
    TestMappings(test_mappings::TestMappingsArgs),
    /// What the bridge would do with one PAS message, offline: rule, action, e-RS body.
    Decide(decide::DecideArgs),
}

/// Parses the process arguments and runs the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Parked(args) => parked::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::NeedsAction(args) => needs_action::run(&args),
        Command::Status(args) => ops::status(&args),
        Command::Timeline(args) => ops::timeline(&args),
        Command::Search(args) => ops::search(&args),
        Command::Redrive(args) => ops::redrive(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Ers(args) => ers::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::PasSim(args) => pas_sim::run(&args),
        Command::Render(args) => render::run(&args),
        Command::TestMappings(args) => test_mappings::run(&args),
        Command::Decide(args) => decide::run(&args),
    }
}

/// Builds the multi-threaded runtime the async subcommands use.
/// 0 when the job succeeded, 1 when it finished with failures or failed (printed).
/// Loads the configuration named by `--config` / `ERS_BRIDGE_CONFIG`; on error prints it
/// and gives the exit code (64).
/// The URL without its password (for messages about a broker or store URL).
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "the configured URL".to_string(),
    }
}

/// The configuration for a one-shot tool (`needs-action`, `replay`): it serves no monitor,
/// so it needs neither the monitor's address nor its API tokens' environment variables.
fn load_tool_config(path: Option<&std::path::Path>) -> Result<crate::config::Config, ExitCode> {
    let mut cfg = load_config(path)?;
    cfg.monitor.enabled = false;
    cfg.monitor.tokens.clear();
    Ok(cfg)
}

fn load_config(path: Option<&std::path::Path>) -> Result<crate::config::Config, ExitCode> {
    run::load(path).map_err(|e| {
        eprintln!("error: {}", explain(e.as_ref()));
        ExitCode::from(EX_USAGE)
    })
}

/// An error and its causes on one line, each cause once: a cause whose text its wrapper
/// already shows (`cannot connect to the store: {0}` with the same error as its source) is
/// not repeated, so a store that cannot start says why once, not three times.
pub(crate) fn explain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn exit_code(result: anyhow::Result<bool>) -> std::process::ExitCode {
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", explain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

#[cfg(test)]
mod tests {
    /// A wrapper that shows its source in its own text (as `StoreError::Connect` does),
    /// wrapped again with a context: the cause is said once.
    #[test]
    fn explain_says_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot connect to the store: {0}")]
        struct Connect(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("store: {0}")]
        struct App(#[source] Connect);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = anyhow::Error::new(App(Connect(io))).context("cannot start the bridge");
        let text = super::explain(e.as_ref());
        assert_eq!(text.matches("connection refused").count(), 1, "{text}");
        assert_eq!(
            text,
            "cannot start the bridge: store: cannot connect to the store: connection refused"
        );
    }
}
