//! A PAS simulator for tests and the demo: it plays the hospital system on RabbitMQ. For
//! each REF^I12 on the PAS queue it sends a commit ACK (`CA`, MSA-2 = the REF's MSH-10)
//! and then an RRI^I12 with a decision to the bridge's inbound queue, as a PAS interface
//! engine would. The decision is drawn deterministically from the UBRN with the configured
//! mix (accept, reject with a reason and a comment, pending), so a run is reproducible.
//! It talks to the broker only; it never calls e-RS or the bridge.
//!
//! Like a real PAS interface it never reuses a message control id: every message gets a
//! new MSH-10 ([`ControlIds`]: a random id per simulator instance and a sequence that
//! lives as long as the instance), unique across passes and restarts. A [`PasSim`] keeps
//! its connection between passes; [`PasSim::run`] waits for the broker and for the
//! bridge's queues (a simulator started before the bridge waits for it to declare them),
//! and reconnects after a broker restart instead of stopping. A REF is acked on the PAS
//! queue only after its answers are confirmed, so a connection lost in between gets it
//! delivered again and answered anew (under new MSH-10s, as a PAS resends).
//!
//! [`mllp`] plays the same PAS over MLLP (no broker): REFs on its listener, decisions sent
//! to the bridge's.

pub mod mllp;

use std::time::Duration;

use crate::amqp::{AmqpError, QueueClient};
use crate::backoff::Backoff;
use crate::hl7::{read, Message};
use crate::runtime::Shutdown;

/// How the simulated PAS decides, in percent (the rest is accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub reject_pct: u8,
    pub pending_pct: u8,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            reject_pct: 20,
            pending_pct: 10,
        }
    }
}

/// Misbehaviours a real PAS interface shows; each applies to every fifth referral answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Fault {
    /// The RRI sent twice with the same MSH-10 (a redelivery).
    Duplicate,
    /// The RRI sent again under a new MSH-10 (a resend).
    Resend,
    /// A body that is not HL7 at all.
    Garbage,
    /// RF1-6 names another UBRN than the message MSA-2 acknowledges.
    WrongUbrn,
    /// Segments separated by LF instead of CR.
    Lf,
    /// The commit ACK is an AE with an ERR.
    Ae,
    /// NTE text with escaped delimiters and non-ASCII characters.
    Escaped,
}

/// Where the simulated PAS reads and writes.
#[derive(Debug, Clone)]
pub struct PasSimConfig {
    pub amqp_url: String,
    /// The bridge's outbound queue (REF/ADT to the PAS).
    pub pas_queue: String,
    /// The bridge's inbound queue (the PAS's ACKs and RRIs), published to directly.
    pub inbound_queue: String,
    pub mix: Mix,
    pub faults: Vec<Fault>,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasSimReport {
    /// Referral messages taken from the PAS queue.
    pub received: usize,
    /// Commit ACKs sent.
    pub acked: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub pending: usize,
    /// Faulty extras sent (duplicates, resends, garbage).
    pub faulty: usize,
}

impl std::ops::AddAssign for PasSimReport {
    fn add_assign(&mut self, o: Self) {
        self.received += o.received;
        self.acked += o.acked;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.pending += o.pending;
        self.faulty += o.faulty;
    }
}

/// Errors of the PAS simulator (broker only). Both may pass: [`PasSim::run`] waits them
/// out.
#[derive(Debug, thiserror::Error)]
pub enum PasSimError {
    /// The broker could not be reached, or the connection was lost.
    #[error("pas simulator: {0}")]
    Broker(#[from] AmqpError),
    /// A queue the bridge declares does not exist (yet).
    #[error("pas simulator: queue `{queue}` does not exist (has the bridge declared it?)")]
    QueueMissing { queue: String },
    /// A broker operation got no answer in time: the connection is taken as lost.
    #[error("pas simulator: {what} got no answer from the broker within {timeout_ms} ms")]
    Stalled { what: &'static str, timeout_ms: u64 },
}

/// How long a connect may take before the pass fails (and is retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one broker operation of a pass may take. A connection cut mid-operation can
/// leave its future pending for good (seen in CI: a pass waited forever after a broker
/// restart), so every operation is bounded and a stall drops the connection like an error.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// `fut`, or [`PasSimError::Stalled`] after [`OPERATION_TIMEOUT`].
async fn within<T>(
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, AmqpError>>,
) -> Result<T, PasSimError> {
    match tokio::time::timeout(OPERATION_TIMEOUT, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(PasSimError::Stalled {
            what,
            timeout_ms: OPERATION_TIMEOUT.as_millis() as u64,
        }),
    }
}

/// The waits between passes that failed (broker away, queues missing).
const RECONNECT: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(5),
};

/// The MSH-10s of one simulator instance: a kind letter (`C` commit ACK, `R` RRI, `S` an
/// RRI resent), the instance's random run id (8 base-36 characters) and a sequence number
/// (11 digits): 20 characters, MSH-10's limit in v2.4. The sequence lives as long as the
/// instance, so passes never repeat an id; a restart draws a new run id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlIds {
    run: String,
    last: u64,
}

impl ControlIds {
    /// Ids under a fresh random run id.
    pub fn new() -> Self {
        Self::with_run(rand::random::<u64>())
    }

    /// Ids under the run id made from `seed` (tests).
    pub fn with_run(seed: u64) -> Self {
        const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut n = seed;
        let run = (0..8)
            .map(|_| {
                let d = DIGITS[(n % 36) as usize] as char;
                n /= 36;
                d
            })
            .collect();
        Self { run, last: 0 }
    }

    /// The next id, for a message of `kind`.
    pub fn next(&mut self, kind: char) -> String {
        self.last += 1;
        format!("{kind}{}{:011}", self.run, self.last)
    }
}

impl Default for ControlIds {
    fn default() -> Self {
        Self::new()
    }
}

/// A simulated PAS: its configuration, its control ids, how many referrals it answered
/// (faults fall on every fifth) and its broker connection, kept between passes.
pub struct PasSim {
    cfg: PasSimConfig,
    ids: ControlIds,
    answered: u64,
    client: Option<QueueClient>,
}

impl std::fmt::Debug for PasSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasSim")
            .field("pas_queue", &self.cfg.pas_queue)
            .field("inbound_queue", &self.cfg.inbound_queue)
            .field("answered", &self.answered)
            .field("connected", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl PasSim {
    /// A simulator that connects on its first pass.
    pub fn new(cfg: PasSimConfig) -> Self {
        Self {
            cfg,
            ids: ControlIds::new(),
            answered: 0,
            client: None,
        }
    }

    /// One pass: takes every message now on the PAS queue and answers each REF^I12;
    /// returns when the queue is empty. (Re)connects first when needed; an error drops the
    /// connection, so the next pass starts on a new one.
    pub async fn pass(&mut self) -> Result<PasSimReport, PasSimError> {
        if !self.client.as_ref().is_some_and(QueueClient::is_connected) {
            self.client = None;
            let connect =
                QueueClient::connect_named(&self.cfg.amqp_url, Some("ers-bridge pas-sim"));
            let client = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| AmqpError::ConnectTimeout {
                    timeout_ms: CONNECT_TIMEOUT.as_millis() as u64,
                })??;
            self.client = Some(client);
        }
        let result = self.answer_queue().await;
        if result.is_err() {
            if let Some(old) = self.client.take() {
                tokio::spawn(old.close());
            }
        }
        result
    }

    async fn answer_queue(&mut self) -> Result<PasSimReport, PasSimError> {
        let Self {
            cfg,
            ids,
            answered,
            client,
        } = self;
        let q = client.as_ref().expect("connected by pass");
        for queue in [&cfg.pas_queue, &cfg.inbound_queue] {
            if !within("checking a queue", q.queue_exists(queue)).await? {
                return Err(PasSimError::QueueMissing {
                    queue: queue.clone(),
                });
            }
        }
        let mut report = PasSimReport::default();
        while let Some(taken) = within("taking a message", q.take_unacked(&cfg.pas_queue)).await? {
            report.received += 1;
            let out = match read(&taken.body) {
                Ok(msg) if msg.message_type().0 == "REF" && msg.message_type().1 == "I12" => {
                    *answered += 1;
                    answers(&msg, *answered, ids, cfg.mix, &cfg.faults)
                }
                _ => Vec::new(),
            };
            for (text, counted) in out {
                within(
                    "a confirmed send",
                    q.send(&cfg.inbound_queue, text.as_bytes()),
                )
                .await?;
                match counted {
                    Answer::Ack => report.acked += 1,
                    Answer::Accept => report.accepted += 1,
                    Answer::Reject => report.rejected += 1,
                    Answer::Pending => report.pending += 1,
                    Answer::Faulty => report.faulty += 1,
                }
            }
            within("an ack", taken.ack()).await?;
        }
        Ok(report)
    }

    /// Passes every `every` until `shutdown` (with `once`, until the first pass that
    /// succeeds), calling `on_pass` with each pass's report. A broker that is away or
    /// restarting and queues the bridge has not declared yet are waited out with backoff
    /// (logged once per outage), never a reason to stop.
    pub async fn run(
        &mut self,
        every: Duration,
        once: bool,
        shutdown: &Shutdown,
        mut on_pass: impl FnMut(&PasSimReport),
    ) {
        let mut failures: u32 = 0;
        loop {
            let passed = tokio::select! {
                biased;
                () = shutdown.wait() => return,
                r = self.pass() => r,
            };
            let wait = match passed {
                Ok(report) => {
                    if failures > 0 {
                        tracing::info!(
                            failed_passes = failures,
                            "pas simulator connected to the broker and its queues"
                        );
                        failures = 0;
                    }
                    on_pass(&report);
                    if once {
                        return;
                    }
                    every
                }
                Err(e) => {
                    failures += 1;
                    let wait = RECONNECT.delay_random(failures);
                    if failures == 1 {
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "pas simulator waiting for the broker or its queues");
                    } else {
                        tracing::debug!(error = %e, attempt = failures, retry_in_ms = wait.as_millis() as u64, "pas simulator still waiting");
                    }
                    wait
                }
            };
            tokio::select! {
                biased;
                () = shutdown.wait() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Closes the broker connection.
    pub async fn close(mut self) {
        if let Some(q) = self.client.take() {
            q.close().await;
        }
    }
}

/// One pass with a new simulator (its own run id, so its MSH-10s are new too): takes every
/// message now on the PAS queue and answers each REF^I12. Returns when the queue is empty.
pub async fn answer_all(cfg: &PasSimConfig) -> Result<PasSimReport, PasSimError> {
    let mut sim = PasSim::new(cfg.clone());
    let report = sim.pass().await;
    sim.close().await;
    report
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ack,
    Accept,
    Reject,
    Pending,
    Faulty,
}

/// The commit ACK and the RRI for one REF^I12 (the `n`th answered), with the faults that
/// fall on it; each message with a new id from `ids` (a duplicate repeats its RRI's).
fn answers(
    msg: &Message,
    n: u64,
    ids: &mut ControlIds,
    mix: Mix,
    faults: &[Fault],
) -> Vec<(String, Answer)> {
    let on = |f: Fault| n.is_multiple_of(5) && faults.contains(&f);
    let msh = msg.segment("MSH");
    let their_id = msh.map(|m| m.comp(10, 1).to_string()).unwrap_or_default();
    let version = msh.map(|m| m.comp(12, 1).to_string()).unwrap_or_default();
    let ubrn = msg
        .segment("RF1")
        .map(|r| r.comp(6, 1).to_string())
        .unwrap_or_default();
    let header = |kind: &str, id: String| {
        format!(
            "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116090000||{kind}|{id}|P|{version}|||AL|NE\r"
        )
    };
    let ack_header = header("ACK^I12^ACK", ids.next('C'));
    let ack = if on(Fault::Ae) {
        format!(
            "{ack_header}MSA|AE|{their_id}|Patient not found\rERR|PID^1^3^204&Unknown key identifier&HL70357\r"
        )
    } else {
        format!("{ack_header}MSA|CA|{their_id}\r")
    };
    let roll = ubrn
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 100;
    let (status, reason, note, answer) = if roll < u32::from(mix.pending_pct) {
        (
            "P^Pending^HL70283",
            "",
            "Under review by the consultant",
            Answer::Pending,
        )
    } else if roll < u32::from(mix.pending_pct) + u32::from(mix.reject_pct) {
        (
            "R^Rejected^HL70283",
            "WRONGSVC^Wrong service",
            "Please refer to the community service",
            Answer::Reject,
        )
    } else {
        (
            "A^Accepted^HL70283",
            "",
            "Accepted for clinic",
            Answer::Accept,
        )
    };
    let note = if on(Fault::Escaped) {
        "Seen by Dr O\\T\\Brien \\F\\ team, café clinic \\S\\ room 2"
    } else {
        note
    };
    let rf1_ubrn = if on(Fault::WrongUbrn) {
        "999999999999".to_string()
    } else {
        ubrn.clone()
    };
    let rri = |id: String| {
        format!(
            "{}MSA|AA|{their_id}\rRF1|{status}||||O^Outpatient^HL70284|{rf1_ubrn}^UBRN|20240116090000|||{reason}\rNTE|1|L|{note}\r",
            header("RRI^I12^RRI_I12", id)
        )
    };
    let sep = |text: String| {
        if on(Fault::Lf) {
            text.replace('\r', "\n")
        } else {
            text
        }
    };
    let rri_id = ids.next('R');
    let mut out = vec![(ack, Answer::Ack), (sep(rri(rri_id.clone())), answer)];
    if on(Fault::Duplicate) {
        out.push((sep(rri(rri_id)), Answer::Faulty));
    }
    if on(Fault::Resend) {
        out.push((sep(rri(ids.next('S'))), Answer::Faulty));
    }
    if on(Fault::Garbage) {
        out.push(("this is not an HL7 message".to_string(), Answer::Faulty));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::read_inbound;

    #[test]
    fn answers_a_ref_with_a_commit_ack_and_an_rri_about_its_ubrn() {
        let r = "MSH|^~\\&|ERS_BRIDGE|RXX|PAS|RXX|20240115103000+0000||REF^I12^REF_I12|000000070001I1200005|P|2.5.1\rRF1|P|||||000000070001^UBRN\r";
        let msg = read(r.as_bytes()).unwrap();
        let mut ids = ControlIds::new();
        let out = answers(&msg, 1, &mut ids, Mix::default(), &[]);
        assert_eq!(out.len(), 2);
        let ack = read_inbound(out[0].0.as_bytes(), 1 << 20).unwrap();
        assert_eq!(ack.ack_code.unwrap().as_str(), "CA");
        assert_eq!(
            ack.acked_control_id.unwrap().as_str(),
            "000000070001I1200005"
        );
        let rri = read_inbound(out[1].0.as_bytes(), 1 << 20).unwrap();
        assert_eq!(rri.message_type, "RRI");
        assert_eq!(rri.referral.unwrap().ubrn.unwrap().as_str(), "000000070001");
        // Deterministic: the same UBRN always gets the same decision.
        assert_eq!(
            answers(&msg, 1, &mut ids, Mix::default(), &[])[1].1,
            out[1].1
        );
    }

    fn control_id(text: &str) -> String {
        read_inbound(text.as_bytes(), 1 << 20)
            .unwrap()
            .control_id
            .to_string()
    }

    /// Every message gets its own MSH-10, 20 characters at most, also when the same REF is
    /// answered again (a later pass) and under another instance (a restart).
    #[test]
    fn control_ids_never_repeat_across_passes_and_restarts() {
        let r = "MSH|^~\\&|ERS_BRIDGE|RXX|PAS|RXX|20240115103000+0000||REF^I12^REF_I12|000000070001I1200005|P|2.5.1\rRF1|P|||||000000070001^UBRN\r";
        let msg = read(r.as_bytes()).unwrap();
        let mut seen = std::collections::HashSet::new();
        for seed in [1, 2] {
            let mut ids = ControlIds::with_run(seed);
            for n in 1..=3 {
                for (text, _) in answers(&msg, n, &mut ids, Mix::default(), &[]) {
                    let id = control_id(&text);
                    assert!(id.len() <= 20, "{id}");
                    assert!(seen.insert(id.clone()), "{id} sent twice");
                }
            }
        }
        assert_eq!(seen.len(), 12);
        assert_ne!(
            ControlIds::with_run(1).next('R'),
            ControlIds::with_run(2).next('R')
        );
        assert_eq!(ControlIds::with_run(0).next('R'), "R0000000000000000001");
    }

    #[test]
    fn faults_fall_on_every_fifth_referral() {
        let r = "MSH|^~\\&|ERS_BRIDGE|RXX|PAS|RXX|20240115103000+0000||REF^I12^REF_I12|000000070001I1200005|P|2.5.1\rRF1|P|||||000000070001^UBRN\r";
        let msg = read(r.as_bytes()).unwrap();
        let all = [
            Fault::Duplicate,
            Fault::Resend,
            Fault::Garbage,
            Fault::WrongUbrn,
            Fault::Lf,
            Fault::Ae,
            Fault::Escaped,
        ];
        let mut ids = ControlIds::new();
        assert_eq!(answers(&msg, 4, &mut ids, Mix::default(), &all).len(), 2);
        let out = answers(&msg, 5, &mut ids, Mix::default(), &all);
        assert_eq!(out.len(), 5, "ack, rri, duplicate, resend, garbage");
        let ack = read_inbound(out[0].0.as_bytes(), 1 << 20).unwrap();
        assert_eq!(ack.ack_code.unwrap().as_str(), "AE");
        assert!(!out[1].0.contains('\r'), "LF separators");
        let rri = read_inbound(out[1].0.as_bytes(), 1 << 20).unwrap();
        let referral = rri.referral.unwrap();
        assert_eq!(referral.ubrn.unwrap().as_str(), "999999999999");
        assert!(
            referral
                .comments
                .contains("O&Brien | team, café clinic ^ room 2"),
            "{}",
            referral.comments
        );
        assert_eq!(out[2].0, out[1].0, "a duplicate has the same MSH-10");
        assert_ne!(
            control_id(&out[3].0),
            control_id(&out[1].0),
            "a resend has a new MSH-10"
        );
        assert!(read_inbound(out[4].0.as_bytes(), 1 << 20).is_err());
    }
}
