//! Retention beside the running pipeline (issue 12's number): the pipeline's publish latency
//! (`VersionPublished::took`: a referral version's first publish to its messages recorded in
//! the store) while the retention job prunes `--payloads` expired payloads, against the same
//! run before the pruning starts. One process: the e-RS simulator with `--backlog` generated
//! referrals, and the bridge's `run` at `--rate` e-RS calls per second on a store that
//! already holds the expired payloads (2 KB each, as a REF^I12). After `--baseline-secs` of
//! publishing it prunes them all as the retention job does (`Store::prune_gently`: batches
//! of 100, resting twice each batch's time; then `Store::reclaim_gently`: vacuum steps of
//! about 4 ms), and reports p50/p99/max of the publish latency in each window, and the store
//! file's size before and after (SQLite).
//!
//! ```sh
//! cargo run --release --example prune_pipeline -- --store sqlite:///tmp/prune.db --payloads 1000000
//! createdb -h 127.0.0.1 -U postgres prune   # trust auth
//! cargo run --release --example prune_pipeline -- --store postgres://postgres@127.0.0.1/prune
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use ers_bridge::events::Event;
use ers_bridge::store::Store;

#[path = "support/bridge.rs"]
mod bridge;
use bridge::{percentile, Bench, Setup};

struct Args {
    store: String,
    payloads: i64,
    backlog: usize,
    rate: u32,
    baseline_secs: u64,
    batch: u32,
    reclaim_pages: u32,
    amqp: String,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        store: "sqlite:///tmp/ers-bridge-prune.db".into(),
        payloads: 1_000_000,
        backlog: 6000,
        rate: 60,
        baseline_secs: 40,
        batch: 100,
        reclaim_pages: 10_000,
        amqp: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--store" => a.store = value,
            "--payloads" => a.payloads = value.parse()?,
            "--backlog" => a.backlog = value.parse()?,
            "--rate" => a.rate = value.parse()?,
            "--baseline-secs" => a.baseline_secs = value.parse()?,
            "--batch" => a.batch = value.parse()?,
            "--reclaim-pages" => a.reclaim_pages = value.parse()?,
            "--amqp" => a.amqp = value,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// Stores `n` payloads of 2 KB, stored 1..=n ms after `base_ms`, in statements of 10,000
/// rows.
async fn fill(store: &Store, n: i64, base_ms: i64, postgres: bool) -> anyhow::Result<()> {
    let body = format!("MSH|^~\\&|ERS_BRIDGE|{}", "x".repeat(2000));
    let sql = if postgres {
        "INSERT INTO payloads (kind, ref_id, stored_at_ms, body) SELECT 'out', 'FILL' || x, $4 + x, $3 \
         FROM generate_series($1::bigint, $2::bigint) x"
    } else {
        "WITH RECURSIVE c(x) AS (SELECT $1 UNION ALL SELECT x + 1 FROM c WHERE x < $2) \
         INSERT INTO payloads (kind, ref_id, stored_at_ms, body) SELECT 'out', 'FILL' || x, $4 + x, $3 FROM c"
    };
    let mut from = 1;
    while from <= n {
        let to = (from + 9_999).min(n);
        sqlx::query(sql)
            .bind(from)
            .bind(to)
            .bind(&body)
            .bind(base_ms)
            .execute(store.pool())
            .await?;
        from = to + 1;
    }
    Ok(())
}

fn summary(name: &str, mut ms: Vec<f64>) -> f64 {
    if ms.is_empty() {
        println!("{name}: no versions published");
        return 0.0;
    }
    ms.sort_by(f64::total_cmp);
    let p99 = percentile(&ms, 0.99);
    println!(
        "{name}: p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms ({} versions)",
        percentile(&ms, 0.5),
        ms[ms.len() - 1],
        ms.len()
    );
    p99
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Quiet by default; `RUST_LOG=ers_bridge::store=debug` shows each vacuum step's time.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    ers_bridge::telemetry::init(ers_bridge::telemetry::LogFormat::Pretty);
    let a = args()?;
    let postgres = a.store.starts_with("postgres");
    let file = a.store.strip_prefix("sqlite://").map(str::to_string);
    if let Some(f) = &file {
        let _ = std::fs::remove_file(f);
        let _ = std::fs::remove_file(format!("{f}-wal"));
    }
    let size = || {
        file.as_ref()
            .and_then(|f| std::fs::metadata(f).ok())
            .map_or(0, |m| m.len())
    };
    let t = Instant::now();
    let store = Store::connect(&a.store.clone().into()).await?;
    // Sixty days old: expired for the 30-day cut-off this run prunes with, but inside the
    // bridge's own default retention (90 days), so its hourly job leaves them to us.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let day_ms = 86_400_000;
    fill(&store, a.payloads, now_ms - 60 * day_ms, postgres).await?;
    if postgres {
        sqlx::query("ANALYZE").execute(store.pool()).await?;
    }
    store.reclaim_space(0).await?;
    store.close().await;
    println!(
        "stored {} expired payloads in {:.0} s; file {:.0} MB",
        a.payloads,
        t.elapsed().as_secs_f64(),
        size() as f64 / 1e6
    );

    let bench = Bench::start(Setup {
        backlog: a.backlog,
        rate: a.rate,
        amqp: &a.amqp,
        store_url: &a.store,
    })
    .await?;
    let mut events = bench.shared.events.subscribe();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let collected = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut lagged = 0;
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(Event::VersionPublished(v)) => {
                        out.push((Instant::now(), v.took.as_secs_f64() * 1000.0));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => lagged += n,
                    Err(_) => break,
                },
                _ = &mut stopped => break,
            }
        }
        (out, lagged)
    });
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.baseline_secs)).await;

    let store = bench.shared.store.clone();
    let prune_started = Instant::now();
    let pruned = store
        .prune_gently(
            now_ms - 30 * day_ms,
            a.batch,
            Duration::from_millis(20),
            || false,
        )
        .await?;
    let pruned_in = prune_started.elapsed().as_secs_f64();
    let reclaim_started = Instant::now();
    let pages = store
        .reclaim_gently(a.reclaim_pages, Duration::from_millis(20), || false)
        .await?;
    let prune_ended = Instant::now();
    let _ = stop.send(());
    let (all, lagged) = collected.await?;
    bench.finish().await?;

    // The first 5 s are the first worklist polls and connections: left out of both windows.
    let warm = started + Duration::from_secs(5);
    let before: Vec<f64> = all
        .iter()
        .filter(|(at, _)| *at >= warm && *at < prune_started)
        .map(|(_, ms)| *ms)
        .collect();
    let window = |from: Instant, to: Instant| -> Vec<f64> {
        all.iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, ms)| *ms)
            .collect()
    };
    let p99_before = summary("publish latency before pruning", before);
    let p99_during = summary(
        "publish latency while pruning and giving the space back",
        window(prune_started, prune_ended),
    );
    summary(
        "  of which while deleting payloads",
        window(prune_started, reclaim_started),
    );
    summary(
        "  of which while giving the space back",
        window(reclaim_started, prune_ended),
    );
    println!(
        "pruned {pruned} payloads in {pruned_in:.0} s, gave back {pages} pages in {:.1} s; \
         p99 while pruning / before: {:.2}x; {} versions published in all ({} referrals still \
         waiting; {lagged} events missed); file {:.0} MB at the end",
        (prune_ended - prune_started).as_secs_f64() - pruned_in,
        if p99_before > 0.0 {
            p99_during / p99_before
        } else {
            0.0
        },
        all.len(),
        a.backlog.saturating_sub(all.len()),
        size() as f64 / 1e6
    );
    Ok(())
}
