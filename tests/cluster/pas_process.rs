//! The chaos run with the PAS as its own process (issue 21): the e-RS simulator over HTTP,
//! `ers-bridge run`, and `ers-bridge pas-sim` (the product's PAS simulator, with its
//! redelivery and resend faults on every fifth referral) on the local RabbitMQ. The PAS
//! process is SIGKILLed at seeded random moments and restarted, mid-answer as it happens
//! (a REF it took but had not acked comes back to it and is answered anew under new
//! MSH-10s, as a PAS resends); the bridge is killed too, and e-RS loses some write
//! responses. Checked from the store and the simulator's write log, since the PAS here
//! keeps no books: every referral published and answered; each referral written in e-RS
//! once when its decision was accept or reject and never when pending, however many
//! copies and resends came; nothing left non-final, no reply owed, no dead letter. On
//! SQLite, then on PostgreSQL.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ers_bridge::store::{InboundStatus, Store};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::helpers::{StoreKind, AMQP_URL};
use crate::world::{self, Cluster, Rng};
use crate::SERIAL;

const LIMIT: u32 = 120;

/// `ers-bridge pas-sim` on the cluster's configuration, its output appended to a log.
struct PasProcess {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl PasProcess {
    fn start(c: &Cluster) -> Self {
        let mut p = Self {
            child: None,
            log: c.log_dir().join("pas-sim.log"),
        };
        p.restart(c);
        p
    }

    fn restart(&mut self, c: &Cluster) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = crate::common::bridge()
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .args(["pas-sim", "--every-ms", "100", "--fault", "duplicate"])
            .args(["--fault", "resend", "--config"])
            .arg(&c.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for PasProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Messages waiting on `queue`.
async fn depth(ch: &lapin::Channel, queue: &str) -> u32 {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map(|q| q.message_count())
    .unwrap_or(u32::MAX)
}

/// The UBRNs with a REF^I12 confirmed, each with its inbound records.
async fn decided(store: &Store) -> BTreeMap<String, Vec<ers_bridge::store::InboundRecord>> {
    let mut out = BTreeMap::new();
    for m in store.published_messages(1_000_000).await.unwrap() {
        if m.message_type == "REF^I12" && !out.contains_key(m.ubrn.as_str()) {
            let records = store.inbound_for(&m.ubrn).await.unwrap();
            out.insert(m.ubrn.to_string(), records);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pas_simulator_process_killed_and_restarted_loses_nothing() {
    let _one = SERIAL.lock().await;
    for store in [StoreKind::Sqlite, StoreKind::Postgres] {
        pas_process_run(store).await;
    }
}

async fn pas_process_run(store_kind: StoreKind) {
    let n = std::env::var("CHAOS_PAS_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200usize);
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis() as u64);
    eprintln!(
        "pas process chaos on {store_kind:?}: seed {seed} (CHAOS_SEED={seed} repeats the kill \
         schedule)"
    );
    let mut rng = Rng(seed | 1);
    let mut c = Cluster::start_with(store_kind, n, LIMIT, &["solo"], AMQP_URL).await;
    c.h.admin("faults", serde_json::json!({"lose_write_responses": 5}))
        .await;
    let mut pas = PasProcess::start(&c);
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let (pas_queue, inbound_queue) = (c.h.pas_queue(), format!("{}-in", c.h.prefix));
    let store = Store::connect(&c.h.config().store.url).await.unwrap();

    let (pas_kills_wanted, kills_wanted) = (8, 3);
    let (mut pas_kills, mut kills) = (0, 0);
    let mut next_pas_kill = Instant::now() + Duration::from_millis(500 + rng.below(1500));
    let mut next_kill = Instant::now() + Duration::from_millis(2000 + rng.below(3000));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    loop {
        if pas_kills < pas_kills_wanted && Instant::now() >= next_pas_kill {
            pas.kill();
            pas_kills += 1;
            tokio::time::sleep(Duration::from_millis(100 + rng.below(500))).await;
            pas.restart(&c);
            next_pas_kill = Instant::now() + Duration::from_millis(500 + rng.below(2000));
        }
        if kills < kills_wanted && Instant::now() >= next_kill {
            c.kill(0);
            kills += 1;
            tokio::time::sleep(Duration::from_millis(100 + rng.below(700))).await;
            c.restart(0);
            next_kill = Instant::now() + Duration::from_millis(2000 + rng.below(4000));
        }
        if pas_kills == pas_kills_wanted && kills == kills_wanted {
            let queues_empty =
                depth(&ch, &pas_queue).await == 0 && depth(&ch, &inbound_queue).await == 0;
            let seen = decided(&store).await;
            let all_answered = seen.len() == n
                && seen.values().all(|records| {
                    records.iter().any(|r| r.message_type.starts_with("RRI"))
                        && records.iter().all(|r| {
                            !matches!(
                                r.status,
                                InboundStatus::Received
                                    | InboundStatus::Intent
                                    | InboundStatus::Retry
                            )
                        })
                });
            if queues_empty && all_answered {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{store_kind:?}: not done in time (seed {seed}): {} of {n} referrals published, {pas_kills} pas kills, \
             {kills} bridge kills; status:\n{}",
            decided(&store).await.len(),
            c.status()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    pas.kill();
    c.stop_all();

    // e-RS writes per referral, from the simulator's log.
    let mut applied: HashMap<String, usize> = HashMap::new();
    for w in world::write_calls(&c.h)
        .await
        .iter()
        .filter(|w| w["applied"] == true)
    {
        *applied
            .entry(w["ubrn"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    let seen = decided(&store).await;
    assert_eq!(seen.len(), n, "every referral published");
    let (mut written, mut pending, mut needs_action, mut rris) = (0, 0, Vec::new(), 0);
    for (ubrn, records) in &seen {
        let rri: Vec<_> = records
            .iter()
            .filter(|r| r.message_type.starts_with("RRI"))
            .collect();
        rris += rri.len();
        // Done with an action (accept, reject, or a review outcome for a deferred
        // referral): written; a pending RRI ends with no action.
        let wrote = rri
            .iter()
            .any(|r| r.status == InboundStatus::Done && r.action.is_some());
        let writes = applied.get(ubrn).copied().unwrap_or(0);
        for r in &rri {
            if r.status == InboundStatus::NeedsAction {
                let all: Vec<_> = records
                    .iter()
                    .map(|r| {
                        (
                            r.control_id.to_string(),
                            r.message_type.clone(),
                            r.received_at_ms,
                            r.status,
                            r.action.clone(),
                            r.detail.clone(),
                            r.decided_state.clone(),
                        )
                    })
                    .collect();
                needs_action.push(format!("{ubrn}: {all:#?}"));
            }
        }
        if wrote {
            assert_eq!(
                writes, 1,
                "{ubrn}: a decision to write, {writes} writes: {rri:?}"
            );
            written += 1;
        } else {
            assert_eq!(writes, 0, "{ubrn}: pending, yet {writes} writes: {rri:?}");
            pending += 1;
        }
    }
    let owed = store.inbound_replies_owed().await.unwrap();
    store.close().await;
    let dead = depth(&ch, &format!("{}-dlq", c.h.prefix)).await;
    eprintln!(
        "pas process chaos on {store_kind:?} (seed {seed}): {n} referrals published, {rris} RRIs stored \
         (copies and resends included), {written} written once in e-RS, {pending} pending, \
         0 written twice; {pas_kills} pas-sim kills, {kills} bridge kills; {} needs action; \
         {owed} replies owed; {dead} dead letters; {:.0} s",
        needs_action.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(needs_action.is_empty(), "needs action: {needs_action:?}");
    assert_eq!(owed, 0, "replies owed");
    assert_eq!(dead, 0, "dead letters");
    c.cleanup().await;
}
