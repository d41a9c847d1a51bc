//! `ers-bridge pas-sim --config FILE [--fault F ...] [--once]`: plays the PAS against the
//! configured RabbitMQ: takes each REF^I12 from `[amqp] pas_queue`, answers with a commit
//! ACK and an RRI^I12 on `[amqp] inbound_queue` ([`crate::pas_sim`]), every `--every-ms`
//! until SIGINT/SIGTERM, or one pass with `--once`. `--fault` adds a PAS's misbehaviours
//! (duplicates, resends, garbage, a wrong UBRN, LF separators, AE ACKs, escaped text) to
//! every fifth referral. For tests and demos against a bridge run with `ers-bridge run`.
//! It may start before the broker or the bridge: it waits for the broker and the queues,
//! and reconnects after a broker restart ([`PasSim::run`]).

use std::{path::PathBuf, process::ExitCode, time::Duration};

use crate::app::Shutdown;
use crate::pas_sim::{Fault, Mix, PasSim, PasSimConfig};

/// Arguments of `pas-sim`.
#[derive(Debug, clap::Args)]
pub struct PasSimArgs {
    /// The bridge's configuration file (or set ERS_BRIDGE_CONFIG): its broker and queues.
    #[arg(long, short, env = "ERS_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Percent of referrals rejected (reason WRONGSVC).
    #[arg(long, default_value_t = 20)]
    pub reject_pct: u8,
    /// Percent of referrals left pending.
    #[arg(long, default_value_t = 10)]
    pub pending_pct: u8,
    /// Misbehaviours to add, on every fifth referral answered (repeatable).
    #[arg(long, value_enum)]
    pub fault: Vec<Fault>,
    /// Time between passes over the PAS queue.
    #[arg(long, default_value_t = 500)]
    pub every_ms: u64,
    /// One pass (once the broker and the queues are there), then exit.
    #[arg(long)]
    pub once: bool,
}

/// Exit 0 after `--once` or a signal (a broker that is away is waited for); 64 for a bad
/// config.
pub fn run(args: &PasSimArgs) -> ExitCode {
    let cfg = match super::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let sim = PasSimConfig {
        amqp_url: secrecy::ExposeSecret::expose_secret(&cfg.amqp.url).to_string(),
        pas_queue: cfg.amqp.pas_queue.clone(),
        inbound_queue: cfg.amqp.inbound_queue.clone(),
        mix: Mix {
            reject_pct: args.reject_pct.min(100),
            pending_pct: args.pending_pct.min(100 - args.reject_pct.min(100)),
        },
        faults: args.fault.clone(),
    };
    let result = super::runtime().and_then(|rt| {
        rt.block_on(async {
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            let mut pas = PasSim::new(sim);
            let every = Duration::from_millis(args.every_ms);
            pas.run(every, args.once, &shutdown, |r| {
                if r.received > 0 {
                    println!(
                        "answered {} referrals: {} accepted, {} rejected, {} pending, {} faulty extras",
                        r.accepted + r.rejected + r.pending,
                        r.accepted,
                        r.rejected,
                        r.pending,
                        r.faulty
                    );
                }
            })
            .await;
            pas.close().await;
            anyhow::Ok(true)
        })
    });
    super::exit_code(result)
}
