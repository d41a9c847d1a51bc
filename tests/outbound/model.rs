//! A model-based test of the inbound half (issue 19): proptest draws a sequence of
//! commands (a new PAS decision, sometimes with a second copy or another decision about the
//! same referral in flight at once; a resend of an earlier message with the same MSH-10; an
//! earlier decision under a new MSH-10; the referrer changing a referral after the PAS got
//! its REF; a poll publishing REFs; e-RS losing the next write's response or answering
//! every write 423 until the faults are cleared; the retries due ten minutes on, alone or
//! beside a copy of an earlier message; a restart of the bridge on the same store) and runs
//! it against one harness (the real pipeline, RabbitMQ and the e-RS simulator over HTTP).
//! After each command no applied e-RS write may be one the PAS did not ask for, a second
//! one of its kind on a referral, or one on a referral the referrer changed since the PAS
//! last got it. After the sequence the faults are cleared and the retries run until none is
//! due; then every MSH-10 sent has a final record and at least one reply, every reply to
//! one MSH-10 is the same bytes (so the same MSA-1, the one the store recorded), each
//! outcome that answers the PAS sent exactly one reply, and a record done as an e-RS action
//! has that write applied in e-RS. Two bridges on one store are left out: the per-UBRN claim
//! is still in memory (docs/monitoring.md, "Not yet").
//!
//! Six cases of up to twelve commands by default (a case takes about a third of a second).
//! A longer search: `PROPTEST_CASES=200 cargo test --test outbound model -- --nocapture`;
//! `MODEL_STEPS=30` draws longer sequences; `MODEL_TRACE=1` prints what happened in every
//! case (commands, outcomes, e-RS writes). Failures are not persisted to a file: a sequence
//! that finds a bug is kept here as a plain regression test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ers_bridge::amqp::QueueClient;
use ers_bridge::app::{App, Shutdown};
use ers_bridge::hl7::{read_inbound, ControlId};
use ers_bridge::pipeline::inbound::Handled;
use ers_bridge::store::InboundStatus;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

use crate::helpers::{Harness, AMQP_URL};
use crate::inbound::{rri, seeded, write_calls};

/// The referrals the PAS decides on: booked into a directly and an indirectly bookable
/// service, deferred to the provider, awaiting triage.
const UBRNS: [&str; 4] = [
    "000000070001",
    "000000070002",
    "000000070003",
    "000000070013",
];

/// What one case may take before it counts as hung.
const CASE_LIMIT: Duration = Duration::from_secs(180);

/// A PAS decision (RF1-1 and RF1-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Accept,
    Reject,
    ReturnAdvice,
    BookLater,
    Rebook,
    Pending,
}

impl Kind {
    /// RF1-1 and RF1-10 of the RRI.
    fn fields(self) -> (&'static str, &'static str) {
        match self {
            Kind::Accept => ("A^Accepted^HL70283", ""),
            Kind::Reject => ("R^Rejected^HL70283", "WRONGSVC^Wrong service"),
            Kind::ReturnAdvice => ("R^Rejected^HL70283", "RETURN_ADVICE^Return with advice"),
            Kind::BookLater => ("A^Accepted^HL70283", "BOOK_LATER^Accept, book later"),
            Kind::Rebook => ("R^Rejected^HL70283", "REBOOK^Rebook"),
            Kind::Pending => ("P^Pending^HL70283", ""),
        }
    }

    /// Whether an applied write `op` (with A028's review outcome) can carry this decision
    /// under `mappings/inbound.toml`, whatever the referral's state.
    fn could_write(self, op: &str, outcome: Option<&str>) -> bool {
        const BOOK_LATER: Option<&str> = Some("ACCEPT_REFER_BOOK_LATER");
        const RETURN: Option<&str> = Some("RETURN_TO_REFERRER_WITH_ADVICE");
        match (self, op) {
            (Kind::Accept, "A013") | (Kind::Reject, "A014") | (Kind::Rebook, "A022") => true,
            (Kind::Accept | Kind::BookLater, "A028") => outcome == BOOK_LATER,
            (Kind::Reject | Kind::ReturnAdvice | Kind::Rebook, "A028") => outcome == RETURN,
            _ => false,
        }
    }
}

/// A second copy of a new decision, handled at the same time as the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Twin {
    None,
    /// The same bytes (a broker redelivery, a PAS resend before our reply).
    SameId,
    /// The same decision under another MSH-10.
    NewId,
    /// Another decision about the same referral, under another MSH-10.
    Other(Kind),
}

/// One step of the PAS, the referrer, e-RS or the operator.
#[derive(Debug, Clone)]
enum Cmd {
    /// A new decision about `UBRNS[ubrn]` under a fresh MSH-10.
    Decide {
        ubrn: usize,
        kind: Kind,
        twin: Twin,
    },
    /// An earlier message again, same MSH-10 and bytes.
    Resend(Index),
    /// An earlier message's decision under a new MSH-10.
    Reissue(Index),
    /// The referrer changes the letter or the priority (a new version).
    Change {
        ubrn: usize,
        letter: bool,
    },
    /// A new version with nothing a clinician reads changed (bookkeeping): a decision on
    /// the earlier version may still be written.
    Touch(usize),
    /// A worklist poll: REFs for changed referrals reach the PAS.
    Poll,
    /// e-RS applies the next write and loses its response (502).
    LoseNextResponse,
    /// e-RS answers every write 423 until the faults are cleared.
    Locked,
    ClearFaults,
    /// The retries due ten minutes on.
    Retries,
    /// The retries due ten minutes on while an earlier message arrives again at the same
    /// time (the consumer and the retry loop run side by side): with its MSH-10, or (when
    /// `new_id`) its decision under a new one.
    RetriesAlongside {
        which: Index,
        new_id: bool,
    },
    /// The bridge closes and a new one opens on the same store.
    Restart,
}

fn kind() -> impl Strategy<Value = Kind> {
    proptest::sample::select(vec![
        Kind::Accept,
        Kind::Reject,
        Kind::ReturnAdvice,
        Kind::BookLater,
        Kind::Rebook,
        Kind::Pending,
    ])
}

fn twin() -> impl Strategy<Value = Twin> {
    prop_oneof![
        6 => Just(Twin::None),
        1 => Just(Twin::SameId),
        1 => Just(Twin::NewId),
        1 => kind().prop_map(Twin::Other),
    ]
}

fn command() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        6 => (0..UBRNS.len(), kind(), twin())
            .prop_map(|(ubrn, kind, twin)| Cmd::Decide { ubrn, kind, twin }),
        2 => any::<Index>().prop_map(Cmd::Resend),
        2 => any::<Index>().prop_map(Cmd::Reissue),
        2 => (0..UBRNS.len(), any::<bool>()).prop_map(|(ubrn, letter)| Cmd::Change { ubrn, letter }),
        1 => (0..UBRNS.len()).prop_map(Cmd::Touch),
        2 => Just(Cmd::Poll),
        1 => Just(Cmd::LoseNextResponse),
        1 => Just(Cmd::Locked),
        1 => Just(Cmd::ClearFaults),
        2 => Just(Cmd::Retries),
        1 => (any::<Index>(), any::<bool>())
            .prop_map(|(which, new_id)| Cmd::RetriesAlongside { which, new_id }),
        1 => Just(Cmd::Restart),
    ]
}

/// The longest sequence: `MODEL_STEPS`, default 12.
fn steps() -> usize {
    std::env::var("MODEL_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

/// `PROPTEST_CASES` cases (default 6), a short shrink: every case runs a whole harness.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    ProptestConfig {
        cases,
        max_shrink_iters: 20,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_inbound_half_keeps_its_invariants_under_any_sequence(
        cmds in proptest::collection::vec(command(), 1..=steps())
    ) {
        let result = run_blocking(&cmds);
        if let Err(e) = result {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// Runs one case on a runtime of its own (proptest's closure is synchronous).
fn run_blocking(cmds: &[Cmd]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let started = std::time::Instant::now();
    let result = rt.block_on(async {
        tokio::time::timeout(CASE_LIMIT, run_case(cmds))
            .await
            .unwrap_or_else(|_| Err(format!("the case did not end within {CASE_LIMIT:?}")))
    });
    eprintln!(
        "model: {} commands, {} in {:.1?}",
        cmds.len(),
        if result.is_ok() { "passed" } else { "failed" },
        started.elapsed()
    );
    result
}

/// One case: a fresh harness, the commands, the settling retries, the invariants, and the
/// harness cleaned up whatever the outcome.
async fn run_case(cmds: &[Cmd]) -> Result<(), String> {
    let (h, app) = seeded(false).await;
    let acks = match QueueClient::connect(AMQP_URL).await {
        Ok(q) => q,
        Err(e) => {
            app.close().await;
            h.cleanup().await;
            return Err(format!("connecting to rabbitmq: {e}"));
        }
    };
    let mut run = Run {
        h,
        app,
        acks,
        clock: Utc::now(),
        sent: Vec::new(),
        next_id: 0,
        published: [false; UBRNS.len()],
        stale: [false; UBRNS.len()],
        seen_priority: Default::default(),
        letter_since: [false; UBRNS.len()],
        calls_seen: 0,
        applied: BTreeSet::new(),
        reply_bearing: 0,
        replies: Vec::new(),
        trace: Vec::new(),
    };
    let result = run.go(cmds).await;
    let Run {
        h,
        app,
        acks,
        trace,
        ..
    } = run;
    app.close().await;
    acks.close().await;
    h.cleanup().await;
    if std::env::var_os("MODEL_TRACE").is_some() {
        eprintln!("model trace:\n  {}", trace.join("\n  "));
    }
    result.map_err(|e| format!("{e}\nwhat happened:\n  {}", trace.join("\n  ")))
}

/// A message the PAS sent (the first copy of each MSH-10).
struct Sent {
    id: String,
    ubrn: usize,
    kind: Kind,
    bytes: Vec<u8>,
}

/// The system under test and the model of what the PAS, the referrer and e-RS did.
struct Run {
    h: Harness,
    app: App,
    /// Reads the PAS's reply queue.
    acks: QueueClient,
    /// The pipeline's `now`: a second per command, ten minutes per round of retries.
    clock: DateTime<Utc>,
    sent: Vec<Sent>,
    next_id: u32,
    /// Whether the PAS got a REF for the referral.
    published: [bool; UBRNS.len()],
    /// Whether what a clinician reads changed since the last REF the PAS got: the letter,
    /// or a priority other than the one that REF carried (RF1-2.4).
    stale: [bool; UBRNS.len()],
    /// The priority of the last REF the PAS got.
    seen_priority: [String; UBRNS.len()],
    /// Whether the letter changed since that REF.
    letter_since: [bool; UBRNS.len()],
    /// Write calls in the simulator's log already checked.
    calls_seen: usize,
    /// (referral, operation) of every applied write.
    applied: BTreeSet<(usize, String)>,
    /// Outcomes that send the PAS a reply.
    reply_bearing: usize,
    /// Every reply the PAS got, as sent.
    replies: Vec<Vec<u8>>,
    trace: Vec<String>,
}

impl Run {
    async fn go(&mut self, cmds: &[Cmd]) -> Result<(), String> {
        self.poll().await?;
        for (n, cmd) in cmds.iter().enumerate() {
            self.clock += chrono::Duration::seconds(1);
            self.trace.push(format!("{n}: {cmd:?}"));
            self.step(cmd).await?;
            self.check_writes().await?;
            self.take_replies().await?;
        }
        self.settle().await?;
        self.take_replies().await?;
        self.check_replies_and_records().await
    }

    async fn step(&mut self, cmd: &Cmd) -> Result<(), String> {
        match cmd {
            Cmd::Decide { ubrn, kind, twin } => {
                let id = self.fresh_id();
                let (status, reason) = kind.fields();
                let bytes = rri(&id, status, UBRNS[*ubrn], reason, "Decided in clinic");
                self.remember(&id, *ubrn, *kind, &bytes);
                match twin {
                    Twin::None => self.handle(&bytes).await,
                    Twin::SameId => self.handle_two(&bytes, &bytes).await,
                    Twin::NewId => {
                        let other = self.fresh_id();
                        let copy = with_control_id(&bytes, &id, &other);
                        self.remember(&other, *ubrn, *kind, &copy);
                        self.handle_two(&bytes, &copy).await
                    }
                    Twin::Other(other_kind) => {
                        let other = self.fresh_id();
                        let (status, reason) = other_kind.fields();
                        let copy = rri(&other, status, UBRNS[*ubrn], reason, "Decided in clinic");
                        self.remember(&other, *ubrn, *other_kind, &copy);
                        self.handle_two(&bytes, &copy).await
                    }
                }
            }
            Cmd::Resend(i) => {
                if self.sent.is_empty() {
                    self.trace.push("   nothing sent yet".into());
                    return Ok(());
                }
                let bytes = self.sent[i.index(self.sent.len())].bytes.clone();
                self.handle(&bytes).await
            }
            Cmd::Reissue(i) => {
                if self.sent.is_empty() {
                    self.trace.push("   nothing sent yet".into());
                    return Ok(());
                }
                let earlier = &self.sent[i.index(self.sent.len())];
                let (from, ubrn, kind, earlier) = (
                    earlier.id.clone(),
                    earlier.ubrn,
                    earlier.kind,
                    earlier.bytes.clone(),
                );
                let id = self.fresh_id();
                let bytes = with_control_id(&earlier, &from, &id);
                self.remember(&id, ubrn, kind, &bytes);
                self.handle(&bytes).await
            }
            Cmd::Change { ubrn, letter } => {
                // A change a clinician would see: the letter, or a priority other than the
                // referral's (a priority set to the one it has is only a new version, which
                // the bridge rightly writes over).
                let change = if *letter {
                    json!({"letter_changed": true})
                } else {
                    let now = self.h.referral(UBRNS[*ubrn]).await;
                    let current = ers_bridge::fhir::relevant::RelevantFacts::of_json(&now)
                        .and_then(|f| f.priority)
                        .unwrap_or_default();
                    let next = if current == "URGENT" {
                        "ROUTINE"
                    } else {
                        "URGENT"
                    };
                    json!({"priority": next})
                };
                let got = self
                    .h
                    .admin(&format!("referrals/{}/change", UBRNS[*ubrn]), change)
                    .await;
                self.trace
                    .push(format!("   now version {}", got["version"]));
                // Two priority changes can bring back the priority the PAS saw: then only
                // the letter, if it changed, makes the referral differ from that REF.
                self.letter_since[*ubrn] |= *letter;
                if self.published[*ubrn] {
                    self.stale[*ubrn] = self.letter_since[*ubrn]
                        || got["priority"].as_str() != Some(self.seen_priority[*ubrn].as_str());
                }
                Ok(())
            }
            Cmd::Touch(ubrn) => {
                let got = self
                    .h
                    .admin(
                        &format!("referrals/{}/change", UBRNS[*ubrn]),
                        json!({"touch": true}),
                    )
                    .await;
                self.trace
                    .push(format!("   now version {} (bookkeeping)", got["version"]));
                Ok(())
            }
            Cmd::Poll => self.poll().await,
            Cmd::LoseNextResponse => {
                self.h
                    .admin("faults", json!({"lose_write_responses": 1}))
                    .await;
                Ok(())
            }
            Cmd::Locked => {
                self.h.admin("faults", json!({"locked_rate": 1.0})).await;
                Ok(())
            }
            Cmd::ClearFaults => {
                self.h.admin("faults", json!({})).await;
                Ok(())
            }
            Cmd::Retries => self.retries().await.map(|_| ()),
            Cmd::RetriesAlongside { which, new_id } => {
                if self.sent.is_empty() {
                    return self.retries().await.map(|_| ());
                }
                let earlier = &self.sent[which.index(self.sent.len())];
                let (from, ubrn, kind, mut bytes) = (
                    earlier.id.clone(),
                    earlier.ubrn,
                    earlier.kind,
                    earlier.bytes.clone(),
                );
                if *new_id {
                    let id = self.fresh_id();
                    bytes = with_control_id(&bytes, &from, &id);
                    self.remember(&id, ubrn, kind, &bytes);
                }
                self.clock += chrono::Duration::minutes(10);
                let inbound = self.app.inbound().clone();
                let (retried, copy) = tokio::join!(
                    inbound.retry_due(self.clock),
                    inbound.handle(&bytes, self.clock)
                );
                self.retried(retried)?;
                self.handled(copy)
            }
            Cmd::Restart => {
                self.app.close().await;
                self.app = self.h.app(Shutdown::new()).await;
                Ok(())
            }
        }
    }

    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("PASMOD{:04}", self.next_id)
    }

    fn remember(&mut self, id: &str, ubrn: usize, kind: Kind, bytes: &[u8]) {
        self.sent.push(Sent {
            id: id.to_string(),
            ubrn,
            kind,
            bytes: bytes.to_vec(),
        });
    }

    /// Handles one message now.
    async fn handle(&mut self, bytes: &[u8]) -> Result<(), String> {
        let got = self.app.inbound().handle(bytes, self.clock).await;
        self.handled(got)
    }

    /// Handles two messages at once.
    async fn handle_two(&mut self, a: &[u8], b: &[u8]) -> Result<(), String> {
        let inbound = self.app.inbound().clone();
        let (x, y) = tokio::join!(inbound.handle(a, self.clock), inbound.handle(b, self.clock));
        self.handled(x)?;
        self.handled(y)
    }

    fn handled(
        &mut self,
        got: Result<Handled, ers_bridge::pipeline::PipelineError>,
    ) -> Result<(), String> {
        let handled = got.map_err(|e| format!("handle failed: {e}"))?;
        self.trace.push(format!("   -> {handled:?}"));
        match &handled {
            Handled::Done { .. } | Handled::NoAction { .. } | Handled::NeedsAction { .. } => {
                self.reply_bearing += 1;
            }
            Handled::Duplicate { status } if status.is_final() => self.reply_bearing += 1,
            Handled::Duplicate { .. } | Handled::RetryScheduled { .. } => {}
            Handled::IdReused { .. } | Handled::DeadLettered { .. } => {
                return Err(format!(
                    "a well-formed message under an MSH-10 never used for another body: {handled:?}"
                ))
            }
        }
        Ok(())
    }

    /// The retries due ten minutes on; returns how many ran.
    async fn retries(&mut self) -> Result<usize, String> {
        self.clock += chrono::Duration::minutes(10);
        let done = self.app.inbound().retry_due(self.clock).await;
        self.retried(done)
    }

    fn retried(
        &mut self,
        done: Result<Vec<Handled>, ers_bridge::pipeline::PipelineError>,
    ) -> Result<usize, String> {
        let done = done.map_err(|e| format!("retry_due failed: {e}"))?;
        self.trace.push(format!("   retries -> {done:?}"));
        for handled in &done {
            // A retry that found its message finished meanwhile sends nothing again.
            if matches!(
                handled,
                Handled::Done { .. } | Handled::NoAction { .. } | Handled::NeedsAction { .. }
            ) {
                self.reply_bearing += 1;
            }
        }
        Ok(done.len())
    }

    /// A worklist poll: a referral whose REF reaches the PAS is no longer stale.
    async fn poll(&mut self) -> Result<(), String> {
        self.app
            .drain(10)
            .await
            .map_err(|e| format!("drain failed: {e}"))?;
        let mut got = Vec::new();
        for m in self.h.take_messages().await {
            if !m.kind.starts_with("REF") {
                continue;
            }
            if let Some(u) = UBRNS.iter().position(|x| *x == m.ubrn()) {
                self.published[u] = true;
                self.stale[u] = false;
                self.letter_since[u] = false;
                self.seen_priority[u] = m
                    .message
                    .segment("RF1")
                    .map(|rf1| rf1.comp(2, 4).to_string())
                    .unwrap_or_default();
                got.push(format!("{} {}", m.kind, &UBRNS[u][7..]));
            }
        }
        self.trace.push(format!("   REFs to the PAS: {got:?}"));
        Ok(())
    }

    /// Invariant 1, on the writes e-RS applied since the last check: each carries a
    /// decision the PAS sent about that referral, is the first of its operation on it, and
    /// is not made on a referral the referrer changed after the last REF the PAS got.
    async fn check_writes(&mut self) -> Result<(), String> {
        let calls = write_calls(&self.h).await;
        for c in calls.iter().skip(self.calls_seen) {
            self.trace.push(format!(
                "   e-RS {} {} if-match {} -> {}{}",
                c["operation"].as_str().unwrap_or("?"),
                c["ubrn"].as_str().unwrap_or("?"),
                c["if_match"].as_str().unwrap_or("-"),
                c["status"],
                if c["applied"] == true { " applied" } else { "" }
            ));
            if c["applied"] != true {
                continue;
            }
            let ubrn = c["ubrn"].as_str().unwrap_or("");
            let Some(u) = UBRNS.iter().position(|x| *x == ubrn) else {
                return Err(format!("a write on a referral the PAS never named: {c}"));
            };
            let op = c["operation"].as_str().unwrap_or("").to_string();
            let outcome = review_outcome(&c["body"]);
            if !self
                .sent
                .iter()
                .any(|s| s.ubrn == u && s.kind.could_write(&op, outcome.as_deref()))
            {
                return Err(format!(
                    "{op} ({outcome:?}) applied on {ubrn}, which no PAS decision asked for"
                ));
            }
            if !self.applied.insert((u, op.clone())) {
                return Err(format!("a second applied {op} on {ubrn}"));
            }
            if self.stale[u] {
                return Err(format!(
                    "{op} applied on {ubrn} after the referrer changed it, before the PAS got the new version"
                ));
            }
        }
        self.calls_seen = calls.len();
        Ok(())
    }

    /// Clears the faults and runs the retries until none is due (bounded).
    async fn settle(&mut self) -> Result<(), String> {
        self.trace.push("settle: faults cleared".into());
        self.h.admin("faults", json!({})).await;
        for _ in 0..30 {
            let ran = self.retries().await?;
            self.check_writes().await?;
            if ran == 0 {
                return Ok(());
            }
        }
        Err("retries still due after 30 rounds".into())
    }

    async fn take_replies(&mut self) -> Result<(), String> {
        let queue = format!("{}-acks", self.h.prefix);
        while let Some(body) = self
            .acks
            .take(&queue)
            .await
            .map_err(|e| format!("reading the replies: {e}"))?
        {
            self.replies.push(body);
        }
        Ok(())
    }

    /// Invariants 2 and 3.
    async fn check_replies_and_records(&mut self) -> Result<(), String> {
        let mut by_id: BTreeMap<String, Vec<&Vec<u8>>> = BTreeMap::new();
        for body in &self.replies {
            let ack =
                read_inbound(body, 1 << 20).map_err(|e| format!("a reply that is not hl7: {e}"))?;
            let id = ack
                .acked_control_id
                .ok_or("a reply without MSA-2")?
                .to_string();
            by_id.entry(id).or_default().push(body);
        }
        if self.replies.len() != self.reply_bearing {
            return Err(format!(
                "{} replies for {} outcomes that answer the PAS",
                self.replies.len(),
                self.reply_bearing
            ));
        }
        let sent: BTreeSet<&str> = self.sent.iter().map(|s| s.id.as_str()).collect();
        if let Some(stray) = by_id.keys().find(|id| !sent.contains(id.as_str())) {
            return Err(format!("a reply to {stray}, which the PAS never sent"));
        }
        let store = self.app.outbound().store();
        for s in &self.sent {
            let Some(replies) = by_id.get(&s.id) else {
                return Err(format!("{} got no reply", s.id));
            };
            if replies.iter().any(|r| *r != replies[0]) {
                let texts: Vec<_> = replies.iter().map(|r| String::from_utf8_lossy(r)).collect();
                return Err(format!("{} got different replies: {texts:#?}", s.id));
            }
            let code = read_inbound(replies[0], 1 << 20)
                .ok()
                .and_then(|a| a.ack_code)
                .map(|c| c.as_str().to_string());
            let id = ControlId::parse(&s.id).map_err(|e| e.to_string())?;
            let row = store
                .inbound(&id)
                .await
                .map_err(|e| format!("reading {}: {e}", s.id))?
                .ok_or_else(|| format!("{} has no record", s.id))?;
            if !row.status.is_final() {
                return Err(format!(
                    "{} is left {:?} after the retries ran",
                    s.id, row.status
                ));
            }
            // An AA saying the action is applied (done now, found applied, or a resend of
            // an applied decision) is backed by that write applied in e-RS.
            let op = match row.action.as_deref() {
                Some("accept") => Some("A013"),
                Some("reject") => Some("A014"),
                Some("cancel_action_later") => Some("A022"),
                Some("record_review_outcome") => Some("A028"),
                _ => None,
            };
            if let Some(op) = op.filter(|_| row.status == InboundStatus::Done) {
                if !self.applied.contains(&(s.ubrn, op.to_string())) {
                    return Err(format!(
                        "{} is done as {op} on {}, which e-RS never applied",
                        s.id, UBRNS[s.ubrn]
                    ));
                }
            }
            if row.reply_code != code {
                return Err(format!(
                    "{}: the store says {:?}, the PAS got {code:?}",
                    s.id, row.reply_code
                ));
            }
            self.trace.push(format!(
                "{} ({}): {:?} {code:?}",
                s.id,
                &UBRNS[s.ubrn][7..],
                row.status
            ));
        }
        Ok(())
    }
}

/// The RRI `bytes` under another MSH-10 (a resend the PAS makes after losing our ACK).
fn with_control_id(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    String::from_utf8(bytes.to_vec())
        .expect("the model's RRIs are text")
        .replacen(from, to, 1)
        .into_bytes()
}

/// A028's `reviewOutcome` code in a write's body.
fn review_outcome(body: &Value) -> Option<String> {
    body["parameter"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "reviewOutcome")?["valueCoding"]["code"]
        .as_str()
        .map(str::to_string)
}

/// Found by the model (a fault of the model): "change the priority to URGENT" on a
/// referral that is already URGENT is only a new version, which the bridge writes over
/// (docs/inbound.md, "The version decided on"); the model now changes it to another
/// priority, and this sequence must end with the book-later refused.
#[test]
fn regression_a_priority_change_before_a_book_later_on_a_deferred_referral() {
    run_blocking(&[
        Cmd::Change {
            ubrn: 2,
            letter: false,
        },
        Cmd::Decide {
            ubrn: 2,
            kind: Kind::BookLater,
            twin: Twin::None,
        },
    ])
    .unwrap();
}

/// Found by the model (a fault of the model): two priority changes bring back the
/// priority the PAS saw, so the referral reads as the REF did and the accept is written
/// (docs/inbound.md, "The version decided on"); the model now compares with what the REF
/// carried.
#[test]
fn regression_two_priority_changes_that_cancel_out_before_an_accept() {
    run_blocking(&[
        Cmd::Change {
            ubrn: 0,
            letter: false,
        },
        Cmd::Change {
            ubrn: 0,
            letter: false,
        },
        Cmd::Decide {
            ubrn: 0,
            kind: Kind::Accept,
            twin: Twin::None,
        },
    ])
    .unwrap();
}
