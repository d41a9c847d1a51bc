//! The chaos run, short version (issue 21; `bench/chaos.sh` runs it longer): the whole loop
//! as separate processes (the e-RS simulator over HTTP, `ers-bridge run`, the test playing
//! the PAS on the local RabbitMQ), one bridge SIGKILLed 20 times at seeded random moments
//! and restarted on the same store, on SQLite and on PostgreSQL, with an e-RS fault mix
//! (5% 500, 2% 429, 1% 503 with `Retry-After`, latency spikes up to 800 ms, ten writes
//! applied with their response lost) for the first part of the run (25 s, and until a
//! third of the referrals reached the PAS). Checked on what the
//! outside world saw: every referral published, copies only under the same MSH-10, every
//! decision answered the same way each time and applied once (the simulator's write log:
//! none twice, none missing), and the app's rate limit never exceeded (the simulator's
//! per-second log). One line per store sums it up.

use std::time::{Duration, Instant};

use crate::helpers::StoreKind;
use crate::world::{self, Cluster, Pas, Rng};
use crate::SERIAL;

/// e-RS calls per second the bridge may make (and the simulator's limit).
const LIMIT: u32 = 120;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bridge_killed_twenty_times_amid_e_rs_faults_on_sqlite_and_postgres() {
    let _one = SERIAL.lock().await;
    for store in [StoreKind::Sqlite, StoreKind::Postgres] {
        chaos_run(store).await;
    }
}

async fn chaos_run(store: StoreKind) {
    let n = env_or("CHAOS_N", 600) as usize;
    let kills_wanted = env_or("CHAOS_KILLS", 20) as usize;
    let fault_secs = env_or("CHAOS_FAULT_SECS", 25);
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis() as u64);
    eprintln!("chaos run on {store:?}: seed {seed} (CHAOS_SEED={seed} repeats the kill schedule)");
    let mut rng = Rng(seed | 1);
    let mut c = Cluster::start_on(store, n, LIMIT, &["solo"]).await;
    let mut pas = Pas::new(&c.h).await;
    c.h.admin(
        "faults",
        serde_json::json!({
            "error_500_rate": 0.05,
            "error_429_rate": 0.02,
            "error_503_rate": 0.01,
            "retry_after_secs": 1,
            "latency_jitter_ms": 800,
            "lose_write_responses": 10,
        }),
    )
    .await;
    let started = Instant::now();
    let mut faults_on = true;
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(800 + rng.below(1500));
    let deadline = Instant::now() + Duration::from_secs(env_or("CHAOS_TIMEOUT_SECS", 240));
    loop {
        pas.round(&c.h, &mut rng).await;
        // The faults last `fault_secs` and until a third of the referrals reached the PAS,
        // so a bridge slow to start (PostgreSQL: migrations, joining) still meets them.
        if faults_on
            && started.elapsed() >= Duration::from_secs(fault_secs)
            && pas.refs.len() >= n / 3
        {
            c.h.admin("faults", serde_json::json!({})).await;
            faults_on = false;
        }
        if kills < kills_wanted && Instant::now() >= next_kill {
            c.kill(0);
            kills += 1;
            tokio::time::sleep(Duration::from_millis(100 + rng.below(700))).await;
            c.restart(0);
            next_kill = Instant::now() + Duration::from_millis(1000 + rng.below(2500));
        }
        if kills >= kills_wanted && !faults_on && pas.refs.len() >= n && pas.all_answered() {
            break;
        }
        if Instant::now() >= deadline {
            let dead = dead_letters(&c).await;
            let log = c.log(0);
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .rev()
                .take(40)
                .collect();
            let unanswered: Vec<(&String, &String)> = pas
                .decided
                .iter()
                .filter(|(_, (cid, _))| !pas.replies.contains_key(cid))
                .map(|(u, (cid, _))| (u, cid))
                .collect();
            for (ubrn, _) in &unanswered {
                let t = c.api(0, &format!("/api/referrals/{ubrn}/timeline")).await;
                eprintln!("timeline of {ubrn}: {t:#}");
            }
            eprintln!("unanswered {unanswered:?}\nstatus:\n{}", c.status());
            panic!(
                "{store:?}: not done in time: {} of {n} referrals sent to the PAS, {} of {} \
                 decisions answered, {kills} kills (seed {seed}); dead letters {dead:?}; \
                 last warnings (newest first):\n{}",
                pas.refs.len(),
                pas.answered(),
                pas.decided.len(),
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // A last look for stragglers (a copy published just before the end).
    tokio::time::sleep(Duration::from_secs(2)).await;
    pas.round(&c.h, &mut rng).await;
    c.stop_all();

    let (copies, accepted) = world::check_exactly_once(&pas, &c.h, n).await;
    let busiest = world::busiest_second_within(&c.h, LIMIT).await;
    let stats = c.h.stats().await;
    let lost_responses = world::write_calls(&c.h)
        .await
        .iter()
        .filter(|w| w["applied"] == true && w["status"] == 502)
        .count();
    let injected = |code: &str| stats["by_status"][code].as_u64().unwrap_or(0);
    eprintln!(
        "chaos {store:?} (seed {seed}): {n} referrals, {} messages ({copies} copies under the \
         same MSH-10, 0 under two), {} decisions, {accepted} applied once, 0 twice, 0 missing, \
         one answer per decision MSH-10; {kills} kills; faults for {fault_secs} s and a third of the referrals: {} 500s, \
         {} 503s, {} 429s ({} from the rate limit), {lost_responses} writes with the response \
         lost; busiest second {busiest} of {LIMIT} calls; {:.0} s",
        pas.messages.len(),
        pas.decided.len(),
        injected("500"),
        injected("503"),
        injected("429"),
        stats["rate_limited"].as_u64().unwrap_or(0),
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(kills, kills_wanted);
    assert_eq!(
        stats["rate_limited"].as_u64().unwrap_or(0),
        0,
        "{store:?}: the bridge went over its rate limit"
    );
    c.cleanup().await;
}

/// What the dead-letter queue holds: each message's id and why it is there (the bridge's
/// `x-ers-error`, or the broker's `x-first-death-reason`).
async fn dead_letters(c: &Cluster) -> Vec<(String, String)> {
    let conn = lapin::Connection::connect(crate::helpers::AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    let queue = format!("{}-dlq", c.h.prefix);
    while let Ok(Some(m)) = ch
        .basic_get(
            queue.as_str().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
    {
        let headers = m.delivery.properties.headers().clone().unwrap_or_default();
        let text = |k: &str| match headers.inner().get(k) {
            Some(lapin::types::AMQPValue::LongString(s)) => {
                Some(String::from_utf8_lossy(s.as_bytes()).to_string())
            }
            _ => None,
        };
        let why = text("x-ers-error")
            .or_else(|| text("x-first-death-reason"))
            .unwrap_or_else(|| "no reason".into());
        let id = m
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        out.push((id, why));
    }
    let _ = conn.close(200, "done".into()).await;
    out
}
