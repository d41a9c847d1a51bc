//! Several bridges on one store (issue 23, docs/ha.md): real `ers-bridge run` processes
//! on one PostgreSQL database, the e-RS simulator over HTTP and the local RabbitMQ, the
//! test playing the PAS (a decision per referral, copies of some). Instances are killed
//! with SIGKILL at seeded random moments and restarted, or stopped with SIGSTOP past their
//! leases; the invariants are checked on what the outside world saw: the PAS queue, the
//! simulator's write log, its per-second request counts and its log of worklist calls.
//!
//! Its own test binary: the runs load this 2-core machine, and the tests here run one at
//! a time (`SERIAL`).

#[path = "../common/broker.rs"]
mod broker;
#[path = "../common/certs.rs"]
mod certs;
#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../outbound/helpers.rs"]
mod helpers;

mod chaos;
mod leases;
mod pas_process;
mod pause;
mod tls;
mod world;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use world::{Cluster, Pas, Rng};

/// The app's e-RS calls per second, for all instances together (and the simulator's
/// limit).
const LIMIT: u32 = 120;

/// One cluster test at a time: each loads the whole machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_killed_at_random_do_everything_once() {
    let _one = SERIAL.lock().await;
    let n = 1000;
    let seed = std::env::var("CLUSTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis() as u64);
    eprintln!("cluster test seed {seed} (CLUSTER_SEED={seed} repeats the kill schedule)");
    let mut rng = Rng(seed | 1);
    let mut c = Cluster::start(n, LIMIT, &["node-1", "node-2", "node-3"]).await;
    let mut pas = Pas::new(&c.h).await;

    // Kills at random moments while the work flows, each instance restarted after a
    // moment; the PAS keeps answering throughout.
    let mut kills: Vec<(String, i64)> = Vec::new();
    let mut next_kill = Instant::now() + Duration::from_millis(1500 + rng.below(2000));
    let deadline = Instant::now() + Duration::from_secs(420);
    loop {
        pas.round(&mut rng).await;
        if kills.len() < 12 && Instant::now() >= next_kill {
            let i = rng.below(3) as usize;
            let holder_at = c.kill(i);
            kills.push(holder_at);
            tokio::time::sleep(Duration::from_millis(200 + rng.below(800))).await;
            c.restart(i);
            next_kill = Instant::now() + Duration::from_millis(1000 + rng.below(2500));
        }
        if kills.len() >= 10 && pas.refs.len() >= n && pas.all_answered() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not done in time: {} of {n} referrals sent to the PAS, {} of {} decisions answered \
             (seed {seed}); logs in {}",
            pas.refs.len(),
            pas.answered(),
            pas.decided.len(),
            c.log_dir().display()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // A last look for stragglers (a copy published just before the end).
    tokio::time::sleep(Duration::from_secs(2)).await;
    pas.round(&mut rng).await;

    // Seen as a cluster: every instance live, every worklist and the alert job led by a
    // live one (within a lease time of the last kill), the same from the API and from
    // `status`.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = c.api(0, "/api/cluster").await;
        let live: Vec<&serde_json::Value> = view["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["live"] == true)
            .collect();
        let led: Vec<&str> = live
            .iter()
            .flat_map(|i| i["leases"].as_array().unwrap().iter())
            .filter_map(|l| l.as_str())
            .collect();
        let polls = led.iter().filter(|l| l.starts_with("poll:")).count();
        // 6 services x 2 lists, each led by one live instance.
        if live.len() == 3 && polls == 12 && led.contains(&"job:alerts") {
            break;
        }
        assert!(Instant::now() < deadline, "not seen as a cluster: {view:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = c.status();
    assert!(status.contains("instances   3 live"), "{status}");
    c.stop_all();

    // 1-2. Every referral reached the PAS under one MSH-10 per message; every decision
    //      answered, applied once when AA, never when refused.
    let (copies, accepted) = world::check_exactly_once(&pas, &c.h, n).await;

    // 3. The app's rate limit held across the instances, second by second.
    let busiest = world::busiest_second_within(&c.h, LIMIT).await;

    // 4. One poller per list at a time: a list changes hands only after its poller was
    //    killed or gave it away (the lists are shared out), and two instances never poll
    //    it at once.
    let hand_overs = c.hand_overs();
    let polls = world::polls(&c.h).await;
    let mut by_list: BTreeMap<(String, String), Vec<&world::Poll>> = BTreeMap::new();
    for p in &polls {
        by_list
            .entry((p.service.clone(), p.list.clone()))
            .or_default()
            .push(p);
    }
    let mut failovers = Vec::new();
    let mut handovers = 0;
    let mut given_away = 0;
    for (list, ps) in &mut by_list {
        ps.sort_by_key(|p| p.started_ms);
        for w in ps.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a.holder == b.holder {
                continue;
            }
            handovers += 1;
            assert!(
                b.started_ms >= a.ended_ms,
                "{list:?} polled by {} and {} at once",
                a.holder,
                b.holder
            );
            let killed = kills
                .iter()
                .find(|(h, at)| *h == a.holder && *at >= a.started_ms && *at <= b.started_ms);
            if let Some((_, at)) = killed {
                failovers.push(b.started_ms - at);
                continue;
            }
            let given = hand_overs.iter().any(|(id, service, name, at)| {
                a.holder.starts_with(&format!("{id}#"))
                    && (service, name) == (&list.0, &list.1)
                    && *at >= a.started_ms
                    && *at <= b.started_ms
            });
            assert!(
                given,
                "{list:?} went from {} to {} with no kill or hand-over between: {ps:?}; \
                 kills {kills:?}; hand-overs {hand_overs:?}",
                a.holder, b.holder
            );
            given_away += 1;
        }
    }
    failovers.sort_unstable();
    let max_failover = failovers.last().copied().unwrap_or(0);
    // Every list is taken up again after its poller dies: within a lease (4 s), the
    // heartbeat and the poll interval (2 s) in most cases, and after the new holder's
    // current pass when it is busy. The bound is generous because this 2-core machine also
    // runs three bridges, the simulator, RabbitMQ, PostgreSQL and the test's PAS: a CI run
    // saw one list wait 16.4 s (the others at most 9.8 s). Typical figures are printed
    // below and kept in docs/ha.md.
    assert!(
        max_failover <= 30_000,
        "a list waited {max_failover} ms for a new poller: {failovers:?}"
    );
    eprintln!(
        "cluster run (seed {seed}): {n} referrals, {} messages ({copies} copies under the same \
         MSH-10), {} decisions ({accepted} applied), {} kills, {handovers} poller handovers \
         ({given_away} given away to share the lists), \
         failover median {} ms max {max_failover} ms, busiest second {busiest} of {LIMIT} calls",
        pas.messages.len(),
        pas.decided.len(),
        kills.len(),
        failovers.get(failovers.len() / 2).copied().unwrap_or(0),
    );
    assert!(kills.len() >= 10);
    c.cleanup().await;
}
