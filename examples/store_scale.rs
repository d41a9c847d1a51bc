//! How the monitoring queries scale (issue 12's numbers): fills a store with `--messages`
//! stored messages (a tenth of them PAS messages, the rest published REF^I12/I13 with a
//! 2 KB payload, one to three per referral, spread over 30 days), then times 1,000 random
//! referral timelines and 1,000 filtered searches (type and a one-day window, newest first,
//! 50 per page; and inbound by status) and prints p50/p99 of each, the time of the store
//! read each alert evaluation makes (`Store::facts`), and the time to render `/metrics`
//! (the whole handler: an encode) with every family populated. Then it measures retention pruning while the
//! pipeline writes: the latency of the pipeline's group commit (10 referral versions with
//! their messages, as the recorder writes them) over 2,000 commits, first alone, then while
//! every stored payload is pruned as the retention job does (`Store::prune_gently`: batches
//! of 100, resting twice each batch's time, then `Store::reclaim_gently`),
//! and the file size before and after (SQLite). Run on SQLite and on PostgreSQL:
//!
//! ```sh
//! cargo run --release --example store_scale -- --store sqlite:///tmp/scale.db --messages 1000000
//! createdb -h 127.0.0.1 -U postgres scale   # trust auth
//! cargo run --release --example store_scale -- --store postgres://postgres@127.0.0.1/scale --messages 1000000
//! ```

use std::time::Instant;

use anyhow::Context;
use ers_bridge::events::{ErsCallFinished, Events, InboundHandled, Published};
use ers_bridge::ids::{ControlId, Ubrn, Version};
use ers_bridge::store::{Ending, PublishedMessage, SearchFilter, Store, VersionRecord};
use rand::{Rng, SeedableRng};

const DAY_MS: i64 = 86_400_000;

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} queries)",
        pct(&ms, 0.5),
        pct(&ms, 0.99),
        ms.last().copied().unwrap_or(0.0),
        ms.len()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut store_url = "sqlite:///tmp/ers-bridge-scale.db".to_string();
    let mut messages = 1_000_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().context("flag needs a value")?;
        match a.as_str() {
            "--store" => store_url = v,
            "--messages" => messages = v.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let store = Store::connect(&store_url.clone().into()).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let payload = format!("MSH|^~\\&|ERS_BRIDGE|{}", "x".repeat(2000));
    let end = chrono::Utc::now().timestamp_millis();
    let start = end - 30 * DAY_MS;
    let outbound = messages - messages / 10;
    let referrals = outbound / 2;

    let t = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    let mut written = 0usize;
    let mut n = 0u64;
    while written < outbound {
        n += 1;
        let ubrn = Ubrn::parse(&format!("{:012}", 200_000_000 + n))?;
        let versions = rng.random_range(1..=3u32).min((outbound - written) as u32);
        for v in 1..=versions {
            let version = Version::new(v);
            let event = if v == 1 { "I12" } else { "I13" };
            let at = start + rng.random_range(0..30 * DAY_MS);
            batch.push(VersionRecord {
                ubrn: ubrn.clone(),
                version,
                messages: vec![PublishedMessage {
                    control_id: ControlId::outbound(&ubrn, version, event)?,
                    ubrn: ubrn.clone(),
                    version,
                    message_type: format!("REF^{event}"),
                    routing_key: format!("scale.REF.{event}"),
                    hl7: Some(payload.clone()),
                    confirmed_at_ms: at,
                }],
                now_ms: at,
                facts: None,
                fence: None,
            });
            written += 1;
        }
        if batch.len() >= 1000 {
            store.record_versions_published(&batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.record_versions_published(&batch).await?;
    }
    let inbound = messages - outbound;
    for i in 0..inbound {
        let cid = ControlId::parse(&format!("SCALE{i:09}"))?;
        let ubrn = Ubrn::parse(&format!("{:012}", 200_000_001 + (i as u64 % n)))?;
        let at = start + rng.random_range(0..30 * DAY_MS);
        store.inbound_begin(&cid, "RRI^I12", &payload, at).await?;
        let end = if i % 50 == 0 {
            Ending::NeedsAction {
                ubrn: Some(&ubrn),
                why: "ok",
            }
        } else {
            Ending::Done {
                ubrn: &ubrn,
                action: "accept",
                detail: "ok",
            }
        };
        store.inbound_end(&cid, &end, None, at).await?;
    }
    println!(
        "filled {messages} messages ({outbound} out over {n} referrals, {inbound} in) in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let _ = referrals;
    if store_url.starts_with("postgres") {
        // What autovacuum does soon after a bulk load; without it the planner has no
        // statistics for the search's index.
        let t = Instant::now();
        sqlx::query("ANALYZE").execute(store.pool()).await?;
        println!("analyzed in {:.1} s", t.elapsed().as_secs_f64());
    }

    let mut timeline = Vec::new();
    for _ in 0..1000 {
        let ubrn = Ubrn::parse(&format!("{:012}", 200_000_001 + rng.random_range(0..n)))?;
        let t = Instant::now();
        let stages = store.timeline(&ubrn).await?;
        timeline.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(!stages.is_empty(), "{ubrn} has no stages");
    }
    summary("timeline by UBRN", timeline);

    let mut search = Vec::new();
    for _ in 0..1000 {
        let from = start + rng.random_range(0..29 * DAY_MS);
        let t = Instant::now();
        let page = store
            .search(&SearchFilter {
                direction: Some("out".into()),
                message_type: Some("REF^I13".into()),
                from_ms: Some(from),
                to_ms: Some(from + DAY_MS),
                limit: Some(50),
                ..Default::default()
            })
            .await?;
        search.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(page.items.len() == 50, "a day holds more than 50");
    }
    summary(
        "search: REF^I13 in a one-day window, first page of 50",
        search,
    );

    let mut deep = Vec::new();
    let mut after = None;
    for _ in 0..200 {
        let t = Instant::now();
        let page = store
            .search(&SearchFilter {
                direction: Some("in".into()),
                status: Some("needs-action".into()),
                after: after.clone(),
                limit: Some(50),
                ..Default::default()
            })
            .await?;
        deep.push(t.elapsed().as_secs_f64() * 1000.0);
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    summary(
        "search: inbound needs-action, paging through every page",
        deep,
    );

    // What each alert evaluation reads (every `[alerts] evaluate_secs`).
    let mut facts = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        std::hint::black_box(store.facts(end).await?);
        facts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    summary("store facts for the gauges and alerts", facts);

    let events = Events::new();
    for i in 0..10_000u32 {
        events.emit(ErsCallFinished {
            operation: ["A005", "A008", "A013", "A042"][i as usize % 4],
            status: Some([200, 200, 422, 503][i as usize % 4]),
            latency: std::time::Duration::from_millis(u64::from(i % 700)),
        });
    }
    let ubrn = Ubrn::parse("000000070001")?;
    for t in ["REF^I12", "REF^I13", "REF^I14", "ADT^A28"] {
        events.emit(Published {
            ubrn: ubrn.clone(),
            version: Version::new(1),
            control_id: ControlId::parse("X")?,
            message_type: t.into(),
        });
    }
    for outcome in [
        "done",
        "no_action",
        "needs_action",
        "retry",
        "duplicate",
        "dead_lettered",
    ] {
        events.emit(InboundHandled {
            control_id: None,
            ubrn: None,
            kind: "rri",
            outcome,
            took: std::time::Duration::from_millis(3),
        });
    }
    let mut render = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        let text = events.encode();
        render.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(text);
    }
    summary("/metrics encode", render);

    // Group commits alone, then beside the pruning of every payload.
    let commit = |store: Store, base: u64| async move {
        let mut lat = Vec::new();
        for c in 0..2000u64 {
            let mut batch = Vec::with_capacity(10);
            for k in 0..10u64 {
                let ubrn = Ubrn::parse(&format!("{:012}", base + c * 10 + k)).unwrap();
                let version = Version::new(1);
                batch.push(VersionRecord {
                    ubrn: ubrn.clone(),
                    version,
                    messages: vec![PublishedMessage {
                        control_id: ControlId::outbound(&ubrn, version, "I12").unwrap(),
                        ubrn,
                        version,
                        message_type: "REF^I12".into(),
                        routing_key: "scale.REF.I12".into(),
                        hl7: Some("MSH|^~\\&|new".into()),
                        confirmed_at_ms: chrono::Utc::now().timestamp_millis(),
                    }],
                    now_ms: chrono::Utc::now().timestamp_millis(),
                    facts: None,
                    fence: None,
                });
            }
            let t = Instant::now();
            store.record_versions_published(&batch).await.unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        lat
    };
    let size = || {
        store_url
            .strip_prefix("sqlite://")
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    };
    summary(
        "group commit of 10 versions, no pruning",
        commit(store.clone(), 900_000_000).await,
    );
    let before = size();
    let pruning = {
        let store = store.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let total = store
                .prune_gently(
                    start + 31 * DAY_MS,
                    100,
                    std::time::Duration::from_millis(20),
                    || false,
                )
                .await
                .unwrap();
            let pruned_in = t.elapsed().as_secs_f64();
            // As the retention job gives the space back: vacuum steps of about 4 ms.
            let pages = store
                .reclaim_gently(10_000, std::time::Duration::from_millis(20), || false)
                .await
                .unwrap();
            (
                total,
                pruned_in,
                pages,
                t.elapsed().as_secs_f64() - pruned_in,
            )
        })
    };
    let during = commit(store.clone(), 910_000_000).await;
    let still_pruning = !pruning.is_finished();
    let (pruned, took, pages, reclaim_took) = pruning.await?;
    summary(
        &format!(
            "group commit of 10 versions while pruning ({})",
            if still_pruning {
                "pruning outlasted the 2,000 commits"
            } else {
                "pruning finished first"
            }
        ),
        during,
    );
    println!(
        "pruned {pruned} payloads in {took:.0} s; gave back {pages} pages in {reclaim_took:.1} s; \
         file {:.0} MB -> {:.0} MB",
        before as f64 / 1e6,
        size() as f64 / 1e6
    );
    store.close().await;
    Ok(())
}
