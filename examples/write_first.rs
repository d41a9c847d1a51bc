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

use std::time::Duration;

use anyhow::Context;
use ers_bridge::amqp::QueueClient;

#[path = "support/bridge.rs"]
mod bridge;
use bridge::{percentile, Bench, Setup};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("store.db").display());
    let bench = Bench::start(Setup {
        backlog: a.backlog,
        rate: a.rate,
        amqp: &a.amqp,
        store_url: &store_url,
    })
    .await?;
    let (sim, prefix, store) = (&bench.sim, bench.prefix.clone(), bench.shared.store.clone());
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
    bench.finish().await?;
    queue.close().await;
    Ok(())
}
