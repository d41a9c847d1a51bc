//! `ers-bridge demo`: a self-contained run of the main job. Starts the e-RS simulator
//! in-process (seeded from `samples/fhir` plus `--generate N` synthetic referrals), points
//! the bridge at it and at the local RabbitMQ, runs until the worklists are drained, prints
//! a summary (referrals, messages by type, parked items, e-RS calls by operation) and exits
//! 0, or 1 when something failed. The store is a temporary SQLite file.

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::app::{App, DrainSummary, Shutdown};
use crate::config::{self, MapEnv};
use crate::simulator::{self, SimAuth, SimConfig};

/// Services the simulator's seeded and generated referrals belong to.
const DEMO_SERVICES: [&str; 7] = [
    "21012", "21013", "21014", "21015", "11016", "11010", "11014",
];

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Synthetic referrals to generate on top of the seeded samples.
    #[arg(long, default_value_t = 50)]
    pub generate: usize,
    /// Folder with the seed referrals.
    #[arg(long, default_value = "samples/fhir")]
    pub seed_dir: PathBuf,
    /// Folder with the mapping files.
    #[arg(long, default_value = "mappings")]
    pub mappings_dir: PathBuf,
    /// The RabbitMQ to publish to.
    #[arg(
        long,
        default_value = "amqp://127.0.0.1:5672/%2f",
        env = "ERS_BRIDGE_DEMO_AMQP_URL"
    )]
    pub amqp_url: String,
    /// Prefix of the exchanges and queues the demo declares (`<prefix>.to-pas`,
    /// `<prefix>.pas.referrals`, ...), so the demo never touches a real topology.
    #[arg(long, default_value = "demo")]
    pub queue_prefix: String,
    /// e-RS calls per second the bridge allows itself (the simulator allows this or 1000,
    /// whichever is higher).
    #[arg(long, default_value_t = 200)]
    pub rate_limit_per_sec: u32,
    /// Referrals handled at once (`[pipeline] concurrency`).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

/// Runs `demo`.
pub fn run(args: &DemoArgs) -> ExitCode {
    super::exit_code(super::runtime().and_then(|rt| rt.block_on(demo(args))))
}

async fn demo(args: &DemoArgs) -> anyhow::Result<bool> {
    let started = Instant::now();
    let sim = simulator::spawn(SimConfig {
        seed_dir: Some(args.seed_dir.clone()),
        generate: args.generate,
        auth: SimAuth {
            require_auth: false,
            ..SimAuth::default()
        },
        // The simulator allows at least what the bridge allows itself.
        rate_limit_per_sec: args.rate_limit_per_sec.max(1000),
        ..SimConfig::default()
    })
    .await
    .context("cannot start the simulator")?;
    let db = std::env::temp_dir().join(format!("ers-bridge-demo-{}.db", uuid::Uuid::new_v4()));
    let text = demo_config(args, &sim.fhir_base(), &db);
    let cfg = config::load_str("<demo>", &text, &MapEnv::default())?;
    let app = App::build(&cfg, Shutdown::new())
        .await
        .context("cannot start the bridge")?;
    let summary = app.drain(50).await;
    let stats = reqwest::get(format!("{}/_admin/stats", sim.base_url()))
        .await
        .and_then(|r| r.error_for_status());
    let stats: serde_json::Value = match stats {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    app.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let summary = summary?;
    println!(
        "ers-bridge demo: {} seeded + {} generated referrals",
        count_seed(&args.seed_dir),
        args.generate
    );
    print_summary(&summary, Some(&stats), started.elapsed());
    println!(
        "  published to:         exchange {p}.to-pas, queue {p}.pas.referrals",
        p = args.queue_prefix
    );
    let r = &summary.report;
    Ok(r.failed == 0 && r.worklist_errors == 0 && r.published > 0)
}

/// Prints what a drain did (shared with `run --until-drained`); `sim_stats` is the
/// simulator's `/_admin/stats` when there is one.
pub(crate) fn print_summary(
    summary: &DrainSummary,
    sim_stats: Option<&serde_json::Value>,
    took: Duration,
) {
    let r = &summary.report;
    println!("  worklist passes:      {}", summary.passes);
    println!("  referrals published:  {}", r.published);
    for (t, n) in &summary.published_by_type {
        println!("  messages {t:<12} {n}");
    }
    println!("  parked:               {}", summary.parked.len());
    for p in &summary.parked {
        println!("    {} v{}: {}", p.ubrn, p.version, p.reason);
    }
    println!("  failed (retryable):   {}", r.failed + r.worklist_errors);
    if let Some(ops) = sim_stats
        .and_then(|s| s.get("by_operation"))
        .and_then(|v| v.as_object())
    {
        let calls: Vec<String> = ops.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  e-rs calls:           {}", calls.join(" "));
        println!(
            "  rate limited (429):   {}",
            sim_stats
                .and_then(|s| s.get("rate_limited"))
                .cloned()
                .unwrap_or_default()
        );
    }
    println!("  took:                 {:.1}s", took.as_secs_f64());
}

fn count_seed(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("referrals")).map_or(0, |d| d.count())
}

fn demo_config(args: &DemoArgs, base_url: &str, db: &std::path::Path) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let p = &args.queue_prefix;
    let mut text = format!(
        "[ers]\nbase_url = {}\nrate_limit_per_sec = {}\n[ers.retry]\nbase_delay_ms = 100\nmax_delay_ms = 1000\n\
         [ers.auth]\nmode = \"none\"\n\
         [amqp]\nurl = {}\ndeclare_topology = true\ntenant = \"demo\"\nexchange = {}\npas_queue = {}\n\
         pas_ack_queue = {}\ninbound_queue = {}\ndead_letter_exchange = {}\ndead_letter_queue = {}\n\
         [store]\nurl = {}\n[mappings]\ndir = {}\n[pipeline]\nconcurrency = {}\n",
        q(base_url),
        args.rate_limit_per_sec,
        q(&args.amqp_url),
        q(&format!("{p}.to-pas")),
        q(&format!("{p}.pas.referrals")),
        q(&format!("{p}.pas.acks")),
        q(&format!("{p}.from-pas")),
        q(&format!("{p}.dead-letter")),
        q(&format!("{p}.dead-letter")),
        q(&format!("sqlite://{}", db.display())),
        q(&args.mappings_dir.display().to_string()),
        args.concurrency,
    );
    for s in DEMO_SERVICES {
        text.push_str(&format!(
            "[[poll]]\nservice = \"{s}\"\nlists = [\"referrals-for-review\", \"appointment-slot-issues\"]\ninterval_secs = 60\n"
        ));
    }
    text
}
