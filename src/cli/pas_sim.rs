//! `ers-bridge pas-sim --config FILE [--fault F ...] [--once]`: plays the PAS against the
//! configured RabbitMQ: takes each REF^I12 from `[amqp] pas_queue`, answers with a commit
//! ACK and an RRI^I12 on `[amqp] inbound_queue` ([`crate::pas_sim`]), every `--every-ms`
//! until SIGINT/SIGTERM, or one pass with `--once`. `--fault` adds a PAS's misbehaviours
//! (duplicates, resends, garbage, a wrong UBRN, LF separators, AE ACKs, escaped text) to
//! every fifth referral. For tests and demos against a bridge run with `ers-bridge run`.
//! It may start before the broker or the bridge: it waits for the broker and the queues,
//! and reconnects after a broker restart ([`PasSim::run`]).
//!
//! `--transport mllp` plays the same PAS over MLLP instead ([`crate::pas_sim::mllp`]): it
//! listens on the configuration's `[transport.mllp] address` for the bridge's messages and
//! sends its decisions to the bridge's `[inbound] mllp_listen`, every `--every-ms`.

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
    /// Over RabbitMQ (the configuration's queues) or MLLP (its MLLP addresses).
    #[arg(long, value_enum, default_value_t = super::demo::DemoTransport::Amqp)]
    pub transport: super::demo::DemoTransport,
}

/// Exit 0 after `--once` or a signal (a broker that is away is waited for); 64 for a bad
/// config.
pub fn run(args: &PasSimArgs) -> ExitCode {
    let cfg = match super::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let sim = PasSimConfig {
        amqp_url: secrecy::ExposeSecret::expose_secret(&cfg.amqp.node_urls()[0]).to_string(),
        pas_queue: cfg.amqp.pas_queue.clone(),
        inbound_queue: cfg.amqp.inbound_queue.clone(),
        mix: Mix {
            reject_pct: args.reject_pct.min(100),
            pending_pct: args.pending_pct.min(100 - args.reject_pct.min(100)),
        },
        faults: args.fault.clone(),
    };
    if args.transport == super::demo::DemoTransport::Mllp {
        return run_mllp(args, &cfg, sim.mix);
    }
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

/// `--transport mllp`: listens where the bridge sends, sends decisions where it listens.
fn run_mllp(args: &PasSimArgs, cfg: &crate::config::Config, mix: Mix) -> ExitCode {
    let (Some(to_pas), Some(listen)) = (&cfg.mllp_to_pas, &cfg.inbound.mllp) else {
        eprintln!(
            "error: pas-sim --transport mllp needs [transport] to_pas = \"mllp\" with \
             [transport.mllp] address, and [inbound] mllp_listen, in the configuration"
        );
        return ExitCode::from(super::EX_USAGE);
    };
    let ours: std::net::SocketAddr = match to_pas.address.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!(
                "error: [transport.mllp] address {} must be an ip:port for the simulator to listen on",
                to_pas.address
            );
            return ExitCode::from(super::EX_USAGE);
        }
    };
    let mut bridge = listen.listen;
    if bridge.ip().is_unspecified() {
        bridge.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let result = super::runtime().and_then(|rt| {
        rt.block_on(async {
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            let pas = crate::pas_sim::mllp::MllpPas::start_on(ours, mix).await?;
            println!("pas simulator listening on mllp://{ours}, deciding to mllp://{bridge}");
            loop {
                match pas.send_decisions(bridge).await {
                    Ok(r) if r.accepted + r.rejected + r.pending > 0 => println!(
                        "answered {} referrals: {} accepted, {} rejected, {} pending",
                        r.accepted + r.rejected + r.pending,
                        r.accepted,
                        r.rejected,
                        r.pending
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "decisions not sent, trying again"),
                }
                if args.once {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(args.every_ms)) => {}
                    () = shutdown.wait() => break,
                }
            }
            anyhow::Ok(true)
        })
    });
    super::exit_code(result)
}
