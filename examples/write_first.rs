//! How long a PAS decision waits behind an outbound backlog when the e-RS rate limit is
//! the bottleneck (issue 11's "one rate limiter, writes first"). Runs in one process: the
//! e-RS simulator with `--backlog` generated referrals on its worklists, the bridge's `run`
//! (worklist pollers and inbound consumer) at `--rate` e-RS calls per second, and
//! `--decisions` RRI^I12 accepts sent to the inbound queue one every `--every-ms`, each
//! naming a generated referral. For each decision it reports the time from the RRI's
//! arrival on the queue to the start of its e-RS write (the simulator's call log; the
//! decision's A005 read, and A029 for a deferred referral, come before it), and how many
//! referrals were still unpublished when the last decision was written.
//!
//! ```sh
//! cargo run --release --example write_first -- --backlog 1000 --rate 10 --decisions 40
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ers_bridge::amqp::QueueClient;
use ers_bridge::app::{App, Shutdown};
use ers_bridge::config::{self, MapEnv};
use ers_bridge::simulator::{self, SimAuth, SimConfig};

const SERVICES: [&str; 7] = [
    "21012", "21013", "21014", "21015", "11016", "11010", "11014",
];

struct Args {
    backlog: usize,
    rate: u32,
    decisions: usize,
    every_ms: u64,
    amqp: String,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        backlog: 1000,
        rate: 10,
        decisions: 40,
        every_ms: 1500,
        amqp: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--backlog" => a.backlog = value.parse()?,
            "--rate" => a.rate = value.parse()?,
            "--decisions" => a.decisions = value.parse()?,
            "--every-ms" => a.every_ms = value.parse()?,
            "--amqp" => a.amqp = value,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn rri(n: usize, ubrn: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20261205091500||RRI^I12^RRI_I12|WF{n:08}|P|2.4|||AL|NE\r\
         RF1|A^Accepted^HL70283||||O^Outpatient^HL70284|{ubrn}^UBRN|20261205091500\r\
         NTE|1|L|Accepted at triage: clinic appointment to follow\r"
    )
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let sim = simulator::spawn(SimConfig {
        generate: a.backlog,
        auth: SimAuth {
            require_auth: false,
            ..SimAuth::default()
        },
        rate_limit_per_sec: 10_000,
        ..SimConfig::default()
    })
    .await?;
    let prefix = format!("bench-wf-{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir()?;
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut text = format!(
        "[ers]\nbase_url = {}\nrate_limit_per_sec = {}\n[ers.auth]\nmode = \"none\"\n\
         [amqp]\nurl = {}\ntenant = \"bench\"\nexchange = {}\npas_queue = {}\npas_ack_queue = {}\n\
         inbound_queue = {}\ndead_letter_exchange = {}\ndead_letter_queue = {}\n\
         [store]\nurl = {}\n[mappings]\ndir = {}\n[monitor]\nlisten = \"127.0.0.1:0\"\n[pipeline]\nconcurrency = 16\n",
        q(&sim.fhir_base()),
        a.rate,
        q(&a.amqp),
        q(&format!("{prefix}-x")),
        q(&format!("{prefix}-pas")),
        q(&format!("{prefix}-acks")),
        q(&format!("{prefix}-in")),
        q(&format!("{prefix}-dlx")),
        q(&format!("{prefix}-dlq")),
        q(&format!(
            "sqlite://{}",
            dir.path().join("store.db").display()
        )),
        q(concat!(env!("CARGO_MANIFEST_DIR"), "/mappings")),
    );
    for s in SERVICES {
        text.push_str(&format!(
            "[[poll]]\nservice = \"{s}\"\nlists = [\"referrals-for-review\", \"appointment-slot-issues\"]\ninterval_secs = 3600\n"
        ));
    }
    let cfg = config::load_str("<write_first>", &text, &MapEnv::default())?;
    let shutdown = Shutdown::new();
    let app = App::build_with_env(&cfg, Arc::new(MapEnv::default()), shutdown.clone()).await?;
    let store = app.shared().store.clone();
    let running = tokio::spawn(app.run_until_stopped());
    let queue = QueueClient::connect(&a.amqp).await?;

    // Let the backlog form: the pollers have read the worklists and queued the fetches.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut sent = Vec::new();
    for n in 0..a.decisions {
        let ubrn = format!("{:012}", 100_000 + n * (a.backlog / a.decisions).max(1));
        let at = chrono::Utc::now().timestamp_millis();
        queue
            .send(&format!("{prefix}-in"), rri(n, &ubrn).as_bytes())
            .await?;
        sent.push((ubrn, at));
        tokio::time::sleep(Duration::from_millis(a.every_ms)).await;
    }
    // Every decision's write in the simulator's log (give the last one 10 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let latencies = loop {
        let calls: serde_json::Value = reqwest::get(format!("{}/_admin/calls", sim.base_url()))
            .await?
            .json()
            .await?;
        let mut lat = Vec::new();
        for (ubrn, at) in &sent {
            if let Some(c) = calls
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["ubrn"] == ubrn.as_str())
            {
                lat.push(c["at_ms"].as_i64().unwrap_or(0) - at);
            }
        }
        if lat.len() == sent.len() || tokio::time::Instant::now() > deadline {
            break lat;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let published: i64 = store.published_counts().await?.iter().map(|(_, n)| n).sum();
    let requests: serde_json::Value = reqwest::get(format!("{}/_admin/requests", sim.base_url()))
        .await?
        .json()
        .await?;
    let busiest = requests
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["count"].as_u64())
        .max()
        .unwrap_or(0);
    let mut sorted = latencies.clone();
    sorted.sort_unstable();
    println!(
        "write_first: backlog {} referrals at {}/s; {} of {} decisions written; arrival -> e-RS write start: p50 {} ms, p99 {} ms, max {} ms; {} messages published meanwhile ({} referrals still waiting); busiest second {} e-RS requests",
        a.backlog,
        a.rate,
        latencies.len(),
        sent.len(),
        sorted.get(sorted.len() / 2).map_or(-1, |_| percentile(&sorted, 0.5)),
        if sorted.is_empty() { -1 } else { percentile(&sorted, 0.99) },
        sorted.last().copied().unwrap_or(-1),
        published,
        (a.backlog as i64 - published).max(0),
        busiest,
    );
    for (status, action, reply, n) in store.inbound_counts().await? {
        println!(
            "  pas messages {}: action {action:?}, reply {reply:?}: {n}",
            status.as_str()
        );
    }
    // The backlog is still being worked at the limit: stop without waiting for it.
    shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    let conn = lapin::Connection::connect(&a.amqp, Default::default()).await?;
    let ch = conn.create_channel().await?;
    for s in ["pas", "acks", "in", "dlq"] {
        let _ = ch
            .queue_delete(format!("{prefix}-{s}").as_str().into(), Default::default())
            .await;
    }
    for s in ["x", "dlx"] {
        let _ = ch
            .exchange_delete(format!("{prefix}-{s}").as_str().into(), Default::default())
            .await;
    }
    queue.close().await;
    Ok(())
}
