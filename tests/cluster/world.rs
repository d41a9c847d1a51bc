//! The cluster tests' world: the harness (simulator, broker topology, a PostgreSQL
//! database), the bridge processes, the PAS the test plays, and readers of the
//! simulator's logs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use ers_bridge::amqp::QueueClient;

use crate::helpers::{Harness, Opts, StoreKind, AMQP_URL};

/// The monitor API token of every node.
const TOKEN: &str = "cluster-test-token";

/// A small seeded generator (xorshift64): the kill schedule repeats with the seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One bridge process slot: its instance id, monitor port and log file; the process
/// when running.
pub struct Node {
    pub id: String,
    pub monitor: u16,
    pub log: PathBuf,
    /// Where the running process's lines start in the log.
    log_from: usize,
    pub child: Option<Child>,
}

/// The bridges and their world.
pub struct Cluster {
    pub h: Harness,
    pub config: PathBuf,
    pub nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wall-clock milliseconds (the simulator's poll log uses the same clock).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Cluster {
    /// `n` referrals in the simulator, the app's e-RS limit `limit` (the simulator refuses
    /// more from the app), worklists polled every 2 s, leases of 4 s renewed every second,
    /// and one running bridge per id.
    pub async fn start(n: usize, limit: u32, ids: &[&str]) -> Self {
        Self::start_on(StoreKind::Postgres, n, limit, ids).await
    }

    /// [`Cluster::start`] on a chosen store (SQLite: one instance only).
    pub async fn start_on(store: StoreKind, n: usize, limit: u32, ids: &[&str]) -> Self {
        Self::start_with(store, n, limit, ids, AMQP_URL).await
    }

    /// [`Cluster::start_on`] with the bridges on the broker at `amqp_url`.
    pub async fn start_with(
        store: StoreKind,
        n: usize,
        limit: u32,
        ids: &[&str],
        amqp_url: &'static str,
    ) -> Self {
        let h = Harness::start(Opts {
            generate: n,
            store,
            client_rate: limit,
            sim_rate: limit,
            amqp_url,
            ..Opts::default()
        })
        .await;
        let text = h
            .config_text
            .replace("interval_secs = 60", "interval_secs = 2")
            + "[cluster]\nlease_ttl_secs = 4\nheartbeat_ms = 1000\n[alerts]\nevaluate_secs = 2\n\
               [[monitor.tokens]]\nname = \"cluster-test\"\ntoken_env = \"ERS_CLUSTER_TEST_TOKEN\"\n";
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, text).unwrap();
        let nodes = ids
            .iter()
            .map(|id| Node {
                id: id.to_string(),
                monitor: free_port(),
                log: dir.path().join(format!("{id}.log")),
                log_from: 0,
                child: None,
            })
            .collect();
        let mut c = Self {
            h,
            config,
            nodes,
            dir,
        };
        for i in 0..c.nodes.len() {
            c.restart(i);
        }
        c
    }

    pub fn log_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Starts node `i` (again), its log appended to.
    pub fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.log_from = std::fs::metadata(&node.log).map_or(0, |m| m.len() as usize);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = crate::common::bridge()
            .env(
                "RUST_LOG",
                "warn,ers_bridge::cluster=info,ers_bridge::pipeline::outbound::schedule=info",
            )
            .env("NO_COLOR", "1")
            .env("ERS_BRIDGE__CLUSTER__INSTANCE_ID", &node.id)
            .env("ERS_CLUSTER_TEST_TOKEN", TOKEN)
            .env(
                "ERS_BRIDGE__MONITOR__LISTEN",
                format!("127.0.0.1:{}", node.monitor),
            )
            .args(["run", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    /// The running process's lease holder (`id#incarnation`), from its `joined the
    /// cluster` log line; empty when it has not joined yet (then it holds nothing).
    pub fn holder(&self, i: usize) -> String {
        let log = self.log(i);
        let mine = log.get(self.nodes[i].log_from..).unwrap_or("");
        mine.lines()
            .rev()
            .filter(|l| l.contains("joined the cluster"))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("holder="))
                    .map(str::to_string)
            })
            .next()
            .unwrap_or_default()
    }

    /// `GET path` of node `i`'s monitor API.
    pub async fn api(&self, i: usize, path: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.nodes[i].monitor))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `ers-bridge status` on the cluster's store.
    pub fn status(&self) -> String {
        let out = crate::common::bridge()
            .args(["status", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGKILL of node `i`: returns its holder and when it died.
    pub fn kill(&mut self, i: usize) -> (String, i64) {
        let holder = self.holder(i);
        let mut child = self.nodes[i].child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
        (holder, now_ms())
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`) to node `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.nodes[i].child.as_ref().expect("running").id();
        let ok = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Stops every node (SIGTERM, then SIGKILL after 20 s).
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_some() {
                self.signal(i, "TERM");
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while child.try_wait().unwrap().is_none() {
                    if std::time::Instant::now() > deadline {
                        let _ = child.kill();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.wait();
            }
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Every worklist an instance gave away of its own accord (its log's `worklist handed
    /// to another instance`): `(instance id, service, list, when in ms)`.
    pub fn hand_overs(&self) -> Vec<(String, String, String, i64)> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for line in self
                .log(i)
                .lines()
                .filter(|l| l.contains("worklist handed"))
            {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(&format!("{name}=")))
                        .unwrap_or("")
                        .trim_matches('"')
                        .to_string()
                };
                let at = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_millis())
                    .unwrap_or(0);
                out.push((node.id.clone(), field("service"), field("list"), at));
            }
        }
        out
    }

    pub async fn cleanup(mut self) {
        self.stop_all();
        self.h.cleanup().await;
    }
}

/// A test that fails leaves no bridge running.
impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One message the PAS received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub control_id: String,
    pub kind: String,
    pub ubrn: String,
    pub version: String,
}

/// The PAS the test plays: takes what the bridges publish, answers each referral's first
/// REF^I12 with one decision (an accept, every fifth a reject), resends that decision's
/// bytes when a copy of the REF^I12 arrives (a PAS retrying), and collects the bridges'
/// answers by MSH-10. It acks a REF only after its decision is confirmed on the inbound
/// queue, and rides out a broker restart (a round that fails is tried again on a new
/// connection; decisions not yet confirmed wait in its outbox). [`Pas::crash`] plays a
/// PAS process dying mid-round: the REFs it held unacked come back to it, and its
/// decisions (its own database) survive.
pub struct Pas {
    url: String,
    q: Option<QueueClient>,
    pas_queue: String,
    inbound: String,
    acks: String,
    /// Decisions to send, oldest first, until the broker confirms each.
    outbox: std::collections::VecDeque<Vec<u8>>,
    /// Rounds that failed on the broker (it was down).
    pub broker_errors: usize,
    pub crashes: usize,
    pub messages: Vec<Seen>,
    /// UBRNs with a REF^I12.
    pub refs: HashSet<String>,
    /// UBRN → (decision's MSH-10, its bytes).
    pub decided: BTreeMap<String, (String, Vec<u8>)>,
    /// Decision MSH-10 → the MSA-1 codes answered to it.
    pub replies: HashMap<String, HashSet<String>>,
}

impl Pas {
    /// On the local broker; waits (up to a minute) for the bridges to declare their queues.
    pub async fn new(h: &Harness) -> Self {
        Self::on(h, AMQP_URL).await
    }

    /// On the broker at `url`.
    pub async fn on(h: &Harness, url: &str) -> Self {
        let q = QueueClient::connect(url).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        for queue in [
            h.pas_queue(),
            format!("{}-in", h.prefix),
            format!("{}-acks", h.prefix),
        ] {
            while !q.queue_exists(&queue).await.unwrap() {
                assert!(std::time::Instant::now() < deadline, "no queue {queue}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Self {
            url: url.to_string(),
            q: Some(q),
            pas_queue: h.pas_queue(),
            inbound: format!("{}-in", h.prefix),
            acks: format!("{}-acks", h.prefix),
            outbox: Default::default(),
            broker_errors: 0,
            crashes: 0,
            messages: Vec::new(),
            refs: HashSet::new(),
            decided: BTreeMap::new(),
            replies: HashMap::new(),
        }
    }

    pub fn answered(&self) -> usize {
        self.decided
            .values()
            .filter(|(cid, _)| self.replies.contains_key(cid))
            .count()
    }

    pub fn all_answered(&self) -> bool {
        self.answered() == self.decided.len()
    }

    /// Takes everything now published and answered, and decides on each new referral.
    pub async fn round(&mut self, rng: &mut Rng) {
        if self.try_round(rng, None).await.is_err() {
            self.broker_errors += 1;
            self.q = None;
        }
    }

    /// A PAS that dies mid-round: it takes what is published, handles the first `after`
    /// (its decisions sent), and goes away with every REF it took unacked; it comes back
    /// on a new connection at the next round. Counted only when it held something (`true`).
    pub async fn crash(&mut self, rng: &mut Rng, after: usize) -> bool {
        let held = self.try_round(rng, Some(after)).await.unwrap_or(0) > 0;
        if let Some(q) = self.q.take() {
            drop(q); // no close handshake: the broker sees the connection die
        }
        if held {
            self.crashes += 1;
        }
        held
    }

    async fn try_round(
        &mut self,
        rng: &mut Rng,
        crash_after: Option<usize>,
    ) -> Result<usize, ers_bridge::amqp::AmqpError> {
        if self.q.as_ref().is_none_or(|q| !q.is_connected()) {
            self.q = None;
            self.q = Some(QueueClient::connect(&self.url).await?);
        }
        let q = self.q.as_ref().expect("connected");
        let mut taken = Vec::new();
        while taken.len() < 500 {
            match q.take_unacked(&self.pas_queue).await? {
                Some(t) => taken.push(t),
                None => break,
            }
        }
        let handled = crash_after.map_or(taken.len(), |k| k.min(taken.len()));
        for t in &taken[..handled] {
            let props = &t.properties;
            let header = |name: &str| {
                props
                    .headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let kind = props.kind.clone().unwrap_or_default();
            let ubrn = if kind.starts_with("REF") {
                let msg = ers_bridge::hl7::read(&t.body).expect("every message parses");
                msg.segment("RF1").expect("RF1").comp(6, 1).to_string()
            } else {
                String::new()
            };
            self.messages.push(Seen {
                control_id: props.message_id.clone().unwrap_or_default(),
                kind: kind.clone(),
                ubrn: ubrn.clone(),
                version: header("x-ers-version"),
            });
            if kind != "REF^I12" {
                continue;
            }
            self.refs.insert(ubrn.clone());
            match self.decided.get(&ubrn) {
                // A copy: the PAS sends its decision again, byte for byte.
                Some((_, bytes)) => self.outbox.push_back(bytes.clone()),
                None => {
                    let cid = format!("CL{:08}", self.decided.len());
                    let status = if rng.below(5) == 0 {
                        "R^Rejected^HL70283"
                    } else {
                        "A^Accepted^HL70283"
                    };
                    let reason = if status.starts_with('R') {
                        "^^^Clinically inappropriate"
                    } else {
                        ""
                    };
                    let acked = props.message_id.clone().unwrap_or_default();
                    let bytes = rri(&cid, status, &ubrn, &acked, reason);
                    self.decided.insert(ubrn, (cid, bytes.clone()));
                    self.outbox.push_back(bytes);
                }
            }
        }
        while let Some(bytes) = self.outbox.front() {
            q.send(&self.inbound, bytes).await?;
            self.outbox.pop_front();
        }
        let held = taken.len();
        if crash_after.is_some() {
            return Ok(held);
        }
        for t in taken {
            t.ack().await?;
        }
        while let Some(body) = q.take(&self.acks).await? {
            let Ok(msg) = ers_bridge::hl7::read(&body) else {
                continue;
            };
            if let Some(msa) = msg.segment("MSA") {
                self.replies
                    .entry(msa.comp(2, 1).to_string())
                    .or_default()
                    .insert(msa.comp(1, 1).to_string());
            }
        }
        Ok(held)
    }
}

/// A PAS decision on `ubrn`, acknowledging the REF `acked`.
fn rri(control_id: &str, status: &str, ubrn: &str, acked: &str, reason: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116091500||RRI^I12^RRI_I12|{control_id}|P|2.4|||AL|NE\r\
         MSA|AA|{acked}\r\
         RF1|{status}||||O^Outpatient^HL70284|{ubrn}^UBRN|20240116091500|||{reason}\r\
         PID|1||9912003888^^^NHS^NH||^^^^^^U\r\
         NTE|1|L|cluster test\r"
    )
    .into_bytes()
}

async fn admin_get(h: &Harness, path: &str) -> serde_json::Value {
    reqwest::get(format!("{}/_admin/{path}", h.sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The simulator's log of write calls.
pub async fn write_calls(h: &Harness) -> Vec<serde_json::Value> {
    admin_get(h, "calls")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Requests the simulator received, per second since it started.
pub async fn requests_per_second(h: &Harness) -> BTreeMap<u64, u64> {
    admin_get(h, "requests")
        .await
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["second"].as_u64().unwrap(), r["count"].as_u64().unwrap()))
        .collect()
}

/// One worklist call the simulator received, with the instance that made it.
#[derive(Debug, Clone)]
pub struct Poll {
    pub started_ms: i64,
    pub ended_ms: i64,
    pub service: String,
    pub list: String,
    /// `id#incarnation`, from the `User-Agent`.
    pub holder: String,
}

pub async fn polls(h: &Harness) -> Vec<Poll> {
    admin_get(h, "polls")
        .await
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let agent = p["agent"].as_str().unwrap_or("");
            let holder = agent
                .split_once('(')
                .and_then(|(_, rest)| rest.strip_suffix(')'))
                .unwrap_or(agent)
                .to_string();
            Poll {
                started_ms: p["started_ms"].as_i64().unwrap(),
                ended_ms: p["ended_ms"].as_i64().unwrap(),
                service: p["service"].as_str().unwrap_or("").into(),
                list: p["list"].as_str().unwrap_or("").into(),
                holder,
            }
        })
        .collect()
}

/// What the PAS and e-RS saw, checked: every referral reached the PAS; a (referral,
/// version, message type) has one MSH-10 however many copies came; every decision was
/// answered the same way each time, and applied in e-RS exactly once when answered AA
/// and never when refused. Returns (copies under an MSH-10 already seen, decisions
/// applied).
/// The busiest second the simulator counted, asserted within `limit` (the app's e-RS rate
/// limit held, summed over every instance).
pub async fn busiest_second_within(h: &Harness, limit: u32) -> u64 {
    let per_second = requests_per_second(h).await;
    let busiest = per_second.values().copied().max().unwrap_or(0);
    assert!(
        busiest <= u64::from(limit),
        "{busiest} e-RS calls in one second (limit {limit}): {per_second:?}"
    );
    busiest
}

pub async fn check_exactly_once(pas: &Pas, h: &Harness, n: usize) -> (usize, usize) {
    assert_eq!(pas.refs.len(), n, "referrals with a REF^I12");
    let mut ids: HashMap<(String, String, String), HashSet<String>> = HashMap::new();
    for m in &pas.messages {
        ids.entry((m.ubrn.clone(), m.version.clone(), m.kind.clone()))
            .or_default()
            .insert(m.control_id.clone());
    }
    let split: Vec<_> = ids.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        split.is_empty(),
        "a message published under two MSH-10s: {split:?}"
    );
    let copies = pas.messages.len() - ids.len();
    let mut applied: HashMap<String, usize> = HashMap::new();
    for w in write_calls(h).await.iter().filter(|w| w["applied"] == true) {
        *applied
            .entry(w["ubrn"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    let twice: Vec<_> = applied.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
    let mut accepted = 0;
    for (ubrn, (cid, _)) in &pas.decided {
        let codes = pas.replies.get(cid).expect("every decision answered");
        assert_eq!(codes.len(), 1, "{cid}: different answers {codes:?}");
        let code = codes.iter().next().expect("answered");
        let writes = applied.get(ubrn).copied().unwrap_or(0);
        if code == "AA" {
            assert_eq!(writes, 1, "{ubrn}: AA but {writes} applied writes");
            accepted += 1;
        } else {
            assert_eq!(writes, 0, "{ubrn}: {code} but {writes} applied writes");
        }
    }
    (copies, accepted)
}

/// What the bridge's store holds at the end of a run: inbound messages by status, replies
/// still owed to the PAS, and parked referrals with their reasons.
pub struct Tally {
    pub inbound: BTreeMap<String, i64>,
    pub replies_owed: i64,
    pub parked: Vec<String>,
    pub needs_action: Vec<String>,
}

impl Tally {
    pub fn line(&self) -> String {
        format!(
            "store: inbound {:?}, {} replies owed, {} parked, {} needs action",
            self.inbound,
            self.replies_owed,
            self.parked.len(),
            self.needs_action.len()
        )
    }

    /// Nothing in a non-final state, and every needs-action or parked item has a reason.
    pub fn assert_final(&self) {
        for open in ["received", "intent", "retry"] {
            assert_eq!(
                self.inbound.get(open).copied().unwrap_or(0),
                0,
                "inbound messages left {open}: {}",
                self.line()
            );
        }
        assert_eq!(self.replies_owed, 0, "replies owed: {}", self.line());
        for why in self.parked.iter().chain(&self.needs_action) {
            assert!(
                !why.trim().is_empty(),
                "an item without a reason: {}",
                self.line()
            );
        }
    }
}

/// The [`Tally`] of the harness's store (the bridges stopped); the reasons of the PAS's
/// decisions that need a person.
pub async fn store_tally(h: &Harness, pas: &Pas) -> Tally {
    let store = ers_bridge::store::Store::connect(&h.config().store.url)
        .await
        .unwrap();
    let mut inbound = BTreeMap::new();
    for (status, _, _, n) in store.inbound_counts().await.unwrap() {
        *inbound.entry(status.as_str().to_string()).or_default() += n;
    }
    let replies_owed = store.inbound_replies_owed().await.unwrap();
    let parked = store
        .parked()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.reason)
        .collect();
    let mut needs_action = Vec::new();
    for (cid, _) in pas.decided.values() {
        let id = ers_bridge::hl7::ControlId::parse(cid).unwrap();
        let r = store
            .inbound(&id)
            .await
            .unwrap()
            .expect("every decision stored");
        if r.status == ers_bridge::store::InboundStatus::NeedsAction {
            needs_action.push(r.detail.unwrap_or_default());
        }
    }
    store.close().await;
    Tally {
        inbound,
        replies_owed,
        parked,
        needs_action,
    }
}
