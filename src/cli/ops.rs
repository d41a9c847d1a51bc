//! The operator commands that read (and, for `redrive`, act on) the store, for people
//! without the dashboard: `status` (one screen: flow, lists, alerts), `timeline UBRN`
//! (every stage of one referral), `search` (messages by direction, status, type, time and
//! control id, a page at a time) and `redrive ID` (send a dead letter back to the inbound
//! queue, once, recorded as the operator's action). They read the same store the bridge
//! writes, so they work while it runs.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::amqp::{Publisher, PublisherSettings};
use crate::config::Config;
use crate::ids::Ubrn;
use crate::monitor::actions;
use crate::store::{SearchFilter, Store};

/// The configuration file, shared by these commands.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The configuration file (or set ERS_BRIDGE_CONFIG).
    #[arg(long, short, env = "ERS_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Arguments of `timeline`.
#[derive(Debug, clap::Args)]
pub struct TimelineArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The referral.
    pub ubrn: Ubrn,
    /// Print the stored HL7 under each message.
    #[arg(long)]
    pub payloads: bool,
    /// One JSON object (`ubrn`, `stages`), for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// One JSON object with every list whole (not cut at ten), for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// `in` (from the PAS) or `out` (to the PAS).
    #[arg(long, value_parser = ["in", "out"])]
    pub direction: Option<String>,
    /// `confirmed` (to the PAS), or a PAS message's status: `received`, `intent`, `retry`,
    /// `done`, `no-action`, `needs-action`, `dead-lettered`, `resolved`. Anything else is
    /// a usage error (exit 2), never an empty result.
    #[arg(long, value_parser = [
        "confirmed", "received", "intent", "retry", "done", "no-action", "needs-action",
        "dead-lettered", "resolved",
    ])]
    pub status: Option<String>,
    /// e.g. `REF^I12`, `RRI^I12`.
    #[arg(long = "type")]
    pub message_type: Option<String>,
    #[arg(long)]
    pub control_id: Option<String>,
    #[arg(long)]
    pub ubrn: Option<String>,
    /// Only messages at or after this time: RFC 3339, or a duration before now (`1h`).
    #[arg(long)]
    pub since: Option<super::when::When>,
    /// Only messages before this time: RFC 3339, or a duration before now (`15m`).
    #[arg(long)]
    pub until: Option<super::when::When>,
    /// The cursor printed after the previous page.
    #[arg(long)]
    pub after: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// The page as one JSON object (`items`, `next`), for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `redrive`.
#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The dead letter's id (`ers-bridge status` lists them).
    pub id: String,
    /// Who is doing it, recorded with the re-drive.
    #[arg(long, default_value_t = whoami())]
    pub by: String,
}

pub(super) fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Loads the configuration, opens the store and runs `f`; errors print and exit 1.
fn with_store<F, Fut>(config: &ConfigArg, f: F) -> ExitCode
where
    F: FnOnce(Config, Store) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let cfg = match super::load_config(config.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = super::runtime().and_then(|rt| {
        rt.block_on(async {
            let store = Store::connect(&cfg.store.url)
                .await
                .context("cannot open the store")?;
            let out = f(cfg, store.clone()).await;
            store.close().await;
            out
        })
    });
    result.unwrap_or_else(|e| {
        eprintln!("error: {}", super::explain(e.as_ref()));
        ExitCode::FAILURE
    })
}

/// How many items of each list `status` shows.
const SHOWN: usize = 10;

/// The line under a list cut at [`SHOWN`]: how many more, and the command that lists them.
fn more(total: usize, command: &str) {
    if total > SHOWN {
        println!(
            "  ... {} more (newest shown first; `{command}` lists them all)",
            total - SHOWN
        );
    }
}

/// `ers-bridge status`.
/// The bridges on this store seen in the last hour: live or not, heartbeat age, and what
/// each holds (its worklists and jobs by name, its referral claims counted).
async fn print_instances(store: &crate::store::Store, live_ms: i64) -> anyhow::Result<()> {
    let instances = store.instances(3_600_000).await?;
    let leases = store.leases().await?;
    // As the rate limit counts them: a heartbeat within the lease time.
    let live =
        |i: &crate::store::InstanceRow| i.left_ms.is_none() && i.now_ms - i.heartbeat_ms < live_ms;
    println!(
        "instances   {} live ({} seen in the last hour)",
        instances.iter().filter(|i| live(i)).count(),
        instances.len()
    );
    for i in &instances {
        let held: Vec<&str> = leases
            .iter()
            .filter(|l| l.holder == i.holder)
            .map(|l| l.name.as_str())
            .collect();
        let claims = held.iter().filter(|n| n.starts_with("ubrn:")).count();
        let named: Vec<&str> = held
            .into_iter()
            .filter(|n| !n.starts_with("ubrn:"))
            .collect();
        let state = match (i.left_ms, live(i)) {
            (Some(_), _) => "stopped".to_string(),
            (None, true) => "live".to_string(),
            (None, false) => format!("silent {} s", (i.now_ms - i.heartbeat_ms) / 1000),
        };
        println!(
            "  {}  {}  pid {} on {}  heartbeat {} ms ago  claims {}  leads {}",
            i.holder,
            state,
            i.pid,
            i.host,
            i.now_ms - i.heartbeat_ms,
            claims,
            if named.is_empty() {
                "nothing".to_string()
            } else {
                named.join(", ")
            }
        );
    }
    Ok(())
}

pub fn status(args: &StatusArgs) -> ExitCode {
    if args.json {
        return with_store(&args.config, |_, store| async move {
            println!("{}", status_json(&store).await?);
            Ok(ExitCode::SUCCESS)
        });
    }
    with_store(&args.config, |cfg, store| async move {
        let live_ms = i64::try_from(
            cfg.cluster
                .lease_ttl
                .max(cfg.cluster.heartbeat * 3)
                .as_millis(),
        )
        .unwrap_or(15_000);
        let now = chrono::Utc::now().timestamp_millis();
        let f = store.flow(now).await?;
        println!(
            "flow        to the PAS: {} last hour, {} last day",
            f.out_last_hour, f.out_last_day
        );
        println!(
            "            from the PAS: {} last hour, {} last day",
            f.in_last_hour, f.in_last_day
        );
        match store.oldest_awaiting_decision_ms().await? {
            Some(t) => println!(
                "waiting     oldest referral without a PAS decision: published {}",
                when(t)
            ),
            None => println!("waiting     no referral is waiting for a PAS decision"),
        }
        print_instances(&store, live_ms).await?;
        let alerts = store.open_alerts().await?;
        println!("alerts      {} open", alerts.len());
        for a in &alerts {
            println!("  {}  since {}  {}", a.name, when(a.opened_at_ms), a.detail);
        }
        // Each list newest first (the newest is what the on-call can still act on), cut at
        // SHOWN with how many more there are and where to see them all.
        let needs = store.inbound_needing_action().await?;
        println!("needs action {}", needs.len());
        for r in needs.iter().rev().take(SHOWN) {
            println!(
                "  {}  {}  {}  {}",
                r.control_id,
                r.ubrn.as_ref().map(ToString::to_string).unwrap_or_default(),
                when(r.received_at_ms),
                r.detail.as_deref().unwrap_or("")
            );
        }
        more(needs.len(), "ers-bridge needs-action");
        let parked = store.parked().await?;
        println!("parked      {}", parked.len());
        for p in parked.iter().rev().take(SHOWN) {
            println!(
                "  {} v{}  {}  {}",
                p.ubrn,
                p.version,
                when(p.parked_at_ms),
                p.reason
            );
        }
        more(parked.len(), "ers-bridge parked");
        let dead: Vec<_> = store
            .dead_letters(100)
            .await?
            .into_iter()
            .filter(|d| d.redriven_at_ms.is_none())
            .collect();
        println!("dead letters {} not re-driven", dead.len());
        for d in dead.iter().take(SHOWN) {
            println!("  {}  {}  {}: {}", d.id, when(d.at_ms), d.reason, d.detail);
        }
        more(dead.len(), "GET /api/dead-letters");
        let (misses, total) = store.code_misses(SHOWN as i64).await?;
        println!("code-table misses {total} codes with no entry");
        for m in &misses {
            println!(
                "  {}  {:?}  {} times, last {}",
                m.table,
                m.code,
                m.count,
                when(m.last_ms)
            );
        }
        more(total as usize, "GET /api/code-misses");
        Ok(ExitCode::SUCCESS)
    })
}

/// `status --json`: the same facts, each list whole and newest first.
async fn status_json(store: &crate::store::Store) -> anyhow::Result<serde_json::Value> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut needs = store.inbound_needing_action().await?;
    needs.sort_by_key(|r| std::cmp::Reverse(r.received_at_ms));
    let mut parked = store.parked().await?;
    parked.reverse();
    let dead: Vec<_> = store
        .dead_letters(10_000)
        .await?
        .into_iter()
        .filter(|d| d.redriven_at_ms.is_none())
        .collect();
    let (misses, _) = store.code_misses(10_000).await?;
    Ok(serde_json::json!({
        "now_ms": now,
        "flow": store.flow(now).await?,
        "oldest_awaiting_decision_ms": store.oldest_awaiting_decision_ms().await?,
        "instances": store.instances(3_600_000).await?,
        "alerts": store.open_alerts().await?,
        "needs_action": needs.iter().map(crate::monitor::actions::needs_action_view).collect::<Vec<_>>(),
        "parked": parked
            .iter()
            .map(|p| serde_json::json!({"ubrn": p.ubrn.to_string(), "version": p.version.as_i64(),
                "reason": p.reason, "parked_at_ms": p.parked_at_ms}))
            .collect::<Vec<_>>(),
        "dead_letters": dead,
        "code_misses": misses,
    }))
}

/// `ers-bridge timeline UBRN`.
pub fn timeline(args: &TimelineArgs) -> ExitCode {
    let (ubrn, payloads, json) = (args.ubrn.clone(), args.payloads, args.json);
    with_store(&args.config, |_, store| async move {
        let mut stages = store.timeline(&ubrn).await?;
        if json {
            if !payloads {
                stages.iter_mut().for_each(|s| s.payload = None);
            }
            let code = if stages.is_empty() { 1 } else { 0 };
            let v = serde_json::json!({"ubrn": ubrn.to_string(), "stages": stages});
            println!("{v}");
            return Ok(ExitCode::from(code));
        }
        if stages.is_empty() {
            println!("nothing stored for {ubrn}");
            return Ok(ExitCode::from(1));
        }
        for s in stages {
            let msg = [s.message_type.as_deref(), s.control_id.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            println!(
                "{}  {:<13} {:<34} {}",
                when(s.at_ms),
                s.stage,
                msg,
                s.detail
            );
            if let (true, Some(p)) = (payloads, s.payload) {
                for seg in p.split(['\r', '\n']).filter(|l| !l.is_empty()) {
                    println!("      {seg}");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `ers-bridge search`.
pub fn search(args: &SearchArgs) -> ExitCode {
    let filter = SearchFilter {
        direction: args.direction.clone(),
        status: args.status.clone(),
        message_type: args.message_type.clone(),
        control_id: args.control_id.clone(),
        ubrn: args.ubrn.clone(),
        from_ms: args.since.map(|t| t.timestamp_millis()),
        to_ms: args.until.map(|t| t.timestamp_millis()),
        after: args.after.clone(),
        limit: Some(args.limit),
    };
    let json = args.json;
    with_store(&args.config, |_, store| async move {
        let page = store.search(&filter).await?;
        if json {
            println!("{}", serde_json::to_value(&page)?);
            return Ok(ExitCode::SUCCESS);
        }
        for m in &page.items {
            println!(
                "{}  {:<3} {:<9} {:<20} {:<12} {:<13} {}",
                when(m.at_ms),
                m.direction,
                m.message_type,
                m.control_id,
                m.ubrn.as_deref().unwrap_or("-"),
                m.status,
                m.detail.as_deref().unwrap_or("")
            );
        }
        match page.next {
            Some(n) => println!("more: --after {n}"),
            None => println!("({} messages, end of results)", page.items.len()),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `ers-bridge redrive ID`.
pub fn redrive(args: &RedriveArgs) -> ExitCode {
    let (id, by) = (args.id.clone(), args.by.clone());
    with_store(&args.config, |cfg, store| async move {
        let publisher = Publisher::new(PublisherSettings {
            urls: cfg.amqp.node_urls(),
            exchange: String::new(),
            confirm_timeout: std::time::Duration::from_millis(cfg.amqp.publish_timeout_ms),
            topology: None,
            tls: crate::amqp::AmqpTls::from_config(&cfg.amqp)?,
        });
        let now = chrono::Utc::now().timestamp_millis();
        let queue = &cfg.amqp.inbound_queue;
        let done = actions::redrive(&store, &publisher, queue, &id, &by, now).await;
        publisher.close().await;
        done?;
        println!("re-drove {id} to {queue} (recorded as {by})");
        Ok(ExitCode::SUCCESS)
    })
}
