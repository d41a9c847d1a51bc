//! `ers-bridge demo`: a self-contained run of the whole loop. Starts the e-RS simulator
//! in-process (seeded from `samples/fhir` plus `--generate N` synthetic referrals), points
//! the bridge at it and at the local RabbitMQ, drains the worklists (outbound), lets the
//! PAS simulator ([`crate::pas_sim`]) answer every REF^I12 with a commit ACK and an RRI^I12,
//! and has the bridge turn those into e-RS calls and ACKs back (inbound), until nothing is
//! left to do. Prints a summary of each stage and exits 0, or 1 when something failed; 69
//! (with one line saying how to start it) when RabbitMQ is not reachable. The store is a
//! temporary SQLite file. `--no-pas-sim` stops after the outbound half and leaves the
//! messages on the PAS queue. `--transport mllp` runs the same loop with no broker: the
//! bridge sends to the PAS simulator's MLLP listener ([`crate::pas_sim::mllp`]) and takes
//! its decisions on an MLLP listener of its own.

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::app::{App, DrainSummary, Shutdown};
use crate::config::{self, MapEnv};
use crate::pas_sim::{self, PasSimConfig, PasSimReport};
use crate::simulator::{self, SimAuth, SimConfig};
use crate::store::InboundStatus;

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
    /// Outbound only: no PAS simulator, the messages stay on the PAS queue.
    #[arg(long)]
    pub no_pas_sim: bool,
    /// Serve the monitor (health, metrics, API, dashboard) on this address, e.g.
    /// `127.0.0.1:9464`; the dashboard URL with a demo token is printed.
    #[arg(long, value_name = "ADDR")]
    pub monitor: Option<std::net::SocketAddr>,
    /// After the loop settles, keep serving the monitor until Ctrl-C (with `--monitor`).
    #[arg(long, requires = "monitor")]
    pub keep_running: bool,
    /// How the bridge and the PAS simulator talk: over RabbitMQ, or over MLLP (no broker).
    #[arg(long, value_enum, default_value_t = DemoTransport::Amqp)]
    pub transport: DemoTransport,
}

/// `demo --transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoTransport {
    Amqp,
    Mllp,
}

/// The variable the demo's API token is read from (set in-process, never exported).
const DEMO_TOKEN_ENV: &str = "ERS_BRIDGE_DEMO_TOKEN";

/// `EX_UNAVAILABLE`: a service the demo needs is not there.
const EX_UNAVAILABLE: u8 = 69;

/// Runs `demo`.
pub fn run(args: &DemoArgs) -> ExitCode {
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => return super::exit_code(Err(e)),
    };
    // One line, not a warning per message per retry, when the broker is not there.
    if args.transport == DemoTransport::Amqp
        && !rt.block_on(crate::amqp::queue::probe(
            &args.amqp_url,
            Duration::from_secs(5),
        ))
    {
        eprintln!(
            "error: RabbitMQ is not reachable at {}: start it with `scripts/dev.sh demo` (which sets everything up), `docker compose up -d rabbitmq` or `rabbitmq-server -detached`",
            super::redact_url(&args.amqp_url)
        );
        return ExitCode::from(EX_UNAVAILABLE);
    }
    super::exit_code(rt.block_on(demo(args)))
}

/// What the inbound half did, from the store.
#[derive(Debug, Default)]
struct LoopSummary {
    pas: PasSimReport,
    rounds: usize,
    by_action: Vec<(String, i64)>,
    no_action: i64,
    needs_action: i64,
    dead_lettered: i64,
    replied: Vec<(String, i64)>,
    /// PAS messages the bridge handled, and the time spent handling them.
    handled: usize,
    handling: Duration,
    /// How many the bridge took at once.
    at_once: usize,
}

/// Lets the PAS answer and the bridge act on the answers until a round brings nothing new.
async fn close_the_loop(app: &App, args: &DemoArgs) -> anyhow::Result<LoopSummary> {
    let p = &args.queue_prefix;
    let pas = PasSimConfig {
        amqp_url: args.amqp_url.clone(),
        pas_queue: format!("{p}.pas.referrals"),
        inbound_queue: format!("{p}.from-pas"),
        mix: pas_sim::Mix::default(),
        faults: Vec::new(),
    };
    let q = crate::amqp::QueueClient::connect(&args.amqp_url).await?;
    let mut out = LoopSummary {
        at_once: 16,
        ..LoopSummary::default()
    };
    // One simulated PAS for every round, so its MSH-10s never repeat.
    let mut simulated_pas = pas_sim::PasSim::new(pas.clone());
    for _ in 0..10 {
        out.rounds += 1;
        let answered = simulated_pas.pass().await?;
        let mut handled = 0;
        // Taken one at a time and handled at once: the demo is the only consumer, and a
        // crash here would lose only demo data.
        let started = Instant::now();
        // Up to 16 at once, as `run` consumes with its prefetch (messages about the same
        // referral still wait for each other).
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(body) = q.take(&pas.inbound_queue).await? {
            let permit = limit.clone().acquire_owned().await?;
            let inbound = app.inbound().clone();
            tasks.spawn(async move {
                let r = inbound.handle(&body, chrono::Utc::now()).await;
                drop(permit);
                r
            });
            handled += 1;
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        out.handled += handled;
        out.handling += started.elapsed();
        app.inbound().retry_due(chrono::Utc::now()).await?;
        let more = app.drain(5).await?;
        out.pas += answered.clone();
        if answered.received == 0 && handled == 0 && more.report.published == 0 {
            break;
        }
    }
    q.close().await;
    simulated_pas.close().await;
    count_inbound(app, &mut out).await?;
    Ok(out)
}

/// [`close_the_loop`] over MLLP: the PAS simulator sends its decisions to an MLLP listener
/// of the bridge's (as `[inbound] mllp_listen` runs it), each answered on the connection.
async fn close_the_loop_mllp(
    app: &App,
    pas: &pas_sim::mllp::MllpPas,
) -> anyhow::Result<LoopSummary> {
    use crate::mllp::listener::{self, ListenerSettings};
    let settings = ListenerSettings {
        listen: "127.0.0.1:0".parse()?,
        max_connections: 4,
        idle_timeout: Duration::from_secs(60),
        max_frame: listener::MAX_FRAME,
        reply_within: Duration::from_secs(60),
        tls: None,
    };
    let bound = listener::bind(&settings).await?;
    let addr = bound.local_addr()?;
    let stop = Shutdown::new();
    let server = tokio::spawn(listener::serve(
        bound,
        None,
        app.inbound().clone(),
        settings,
        stop.clone(),
    ));
    // MLLP: one message in flight on the connection.
    let mut out = LoopSummary {
        at_once: 1,
        ..LoopSummary::default()
    };
    for _ in 0..10 {
        out.rounds += 1;
        let started = Instant::now();
        let answered = pas.send_decisions(addr).await?;
        let handled = answered.accepted + answered.rejected + answered.pending;
        out.handled += handled;
        out.handling += started.elapsed();
        app.inbound().retry_due(chrono::Utc::now()).await?;
        let more = app.drain(5).await?;
        out.pas += answered.clone();
        if handled == 0 && more.report.published == 0 {
            break;
        }
    }
    stop.trigger();
    server.await?;
    count_inbound(app, &mut out).await?;
    Ok(out)
}

/// The inbound outcomes and replies, from the store, into `out`.
async fn count_inbound(app: &App, out: &mut LoopSummary) -> anyhow::Result<()> {
    let mut replied = std::collections::BTreeMap::<String, i64>::new();
    let mut by_action = std::collections::BTreeMap::<String, i64>::new();
    for (status, action, reply, n) in app.shared().store.inbound_counts().await? {
        if let Some(r) = reply {
            *replied.entry(r).or_default() += n;
        }
        match status {
            InboundStatus::Done => {
                *by_action.entry(action.unwrap_or_default()).or_default() += n;
            }
            InboundStatus::NoAction => out.no_action += n,
            InboundStatus::NeedsAction => out.needs_action += n,
            InboundStatus::DeadLettered => out.dead_lettered += n,
            _ => {}
        }
    }
    out.by_action = by_action.into_iter().collect();
    out.replied = replied.into_iter().collect();
    Ok(())
}

fn print_loop(l: &LoopSummary) {
    let p = &l.pas;
    println!(
        "  PAS answered:         {} referrals ({} commit ACKs; {} accepted, {} rejected, {} pending)",
        p.accepted + p.rejected + p.pending,
        p.acked,
        p.accepted,
        p.rejected,
        p.pending
    );
    let count = |name: &str| {
        l.by_action
            .iter()
            .find(|(a, _)| a == name)
            .map_or(0, |(_, n)| *n)
    };
    println!("  accepted (A013):      {}", count("accept"));
    println!(
        "  review outcomes (A028): {}",
        count("record_review_outcome")
    );
    println!("  rejected (A014):      {}", count("reject"));
    println!(
        "  cancel-action-later (A022): {}",
        count("cancel_action_later")
    );
    println!("  no action (ACKs, pending): {}", l.no_action);
    println!("  needs action in e-RS: {}", l.needs_action);
    let replies: Vec<String> = l.replied.iter().map(|(c, n)| format!("{c}={n}")).collect();
    println!("  replied to the PAS:   {}", replies.join(" "));
    println!("  dead-lettered:        {}", l.dead_lettered);
    let secs = l.handling.as_secs_f64();
    println!(
        "  inbound handled:      {} PAS messages in {:.1}s ({:.0}/s, {} at a time)",
        l.handled,
        secs,
        if secs > 0.0 {
            l.handled as f64 / secs
        } else {
            0.0
        },
        l.at_once
    );
    println!("  loop rounds:          {}", l.rounds);
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
    let mllp_pas = match args.transport {
        DemoTransport::Mllp => Some(
            pas_sim::mllp::MllpPas::start(pas_sim::Mix::default())
                .await
                .context("cannot start the pas simulator's mllp listener")?,
        ),
        DemoTransport::Amqp => None,
    };
    let mut text = demo_config(args, &sim.fhir_base(), &db);
    if let Some(pas) = &mllp_pas {
        text.push_str(&format!(
            "[transport]\nto_pas = \"mllp\"\n[transport.mllp]\naddress = \"{}\"\n",
            pas.address()
        ));
    }
    let cfg = config::load_str("<demo>", &text, &MapEnv::default())?;
    // A fresh token per run, for the dashboard and API of `--monitor`.
    let token = uuid::Uuid::new_v4().simple().to_string();
    let env = MapEnv::from_pairs([(DEMO_TOKEN_ENV, token.as_str())]);
    let shutdown = Shutdown::new();
    let app = App::build_with_env(&cfg, std::sync::Arc::new(env), shutdown.clone())
        .await
        .context("cannot start the bridge")?;
    let server = match args.monitor {
        Some(_) => app.serve_monitor().await?,
        None => None,
    };
    let progress = super::progress::Progress::start(&app.shared().events, "demo");
    let summary = app.drain(50).await;
    let looped = match (&summary, args.no_pas_sim, &mllp_pas) {
        (Ok(_), false, None) => Some(close_the_loop(&app, args).await),
        (Ok(_), false, Some(pas)) => Some(close_the_loop_mllp(&app, pas).await),
        _ => None,
    };
    progress.finish();
    let stats = reqwest::get(format!("{}/_admin/stats", sim.base_url()))
        .await
        .and_then(|r| r.error_for_status());
    let stats: serde_json::Value = match stats {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let summary = summary;
    let looped = looped.transpose();
    if let Ok(summary) = &summary {
        println!(
            "ers-bridge demo: {} seeded + {} generated referrals",
            count_seed(&args.seed_dir),
            args.generate
        );
        print_summary(summary, Some(&stats), started.elapsed());
        match &mllp_pas {
            None => println!(
                "  published to:         exchange {p}.to-pas, queue {p}.pas.referrals",
                p = args.queue_prefix
            ),
            Some(pas) => println!(
                "  sent to:              mllp://{} (the PAS simulator; no broker)",
                pas.address()
            ),
        }
        if let Ok(Some(l)) = &looped {
            print_loop(l);
        }
    }
    if let (Some(addr), true) = (args.monitor, server.is_some()) {
        println!("monitor:  http://{addr}/#token={token}   (API token: {token})");
        println!("          http://{addr}/metrics   http://{addr}/health/ready");
        if args.keep_running {
            println!("serving until Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    shutdown.trigger();
    if let Some(s) = server {
        let _ = s.await;
    }
    app.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let summary = summary?;
    looped?;
    let r = &summary.report;
    Ok(r.failed == 0 && r.worklist_errors == 0 && r.worklist_refused == 0 && r.published > 0)
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
    if r.worklist_refused > 0 {
        println!(
            "  worklists refused:    {} (e-RS refuses them for good: fix the [[poll]] entries; see the log)",
            r.worklist_refused
        );
    }
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
         [store]\nurl = {}\n[mappings]\ndir = {}\n[pipeline]\nconcurrency = {}\n\
         [monitor]\nlisten = {}\n[[monitor.tokens]]\nname = \"demo\"\ntoken_env = {}\n",
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
        q(&args
            .monitor
            .map_or("127.0.0.1:0".to_string(), |a| a.to_string())),
        q(DEMO_TOKEN_ENV),
    );
    for s in DEMO_SERVICES {
        text.push_str(&format!(
            "[[poll]]\nservice = \"{s}\"\nlists = [\"referrals-for-review\", \"appointment-slot-issues\"]\ninterval_secs = 60\n"
        ));
    }
    text
}
