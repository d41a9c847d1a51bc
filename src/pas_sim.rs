//! A PAS simulator for tests and the demo: it plays the hospital system on RabbitMQ. For
//! each REF^I12 on the PAS queue it sends a commit ACK (`CA`, MSA-2 = the REF's MSH-10)
//! and then an RRI^I12 with a decision to the bridge's inbound queue, as a PAS interface
//! engine would. The decision is drawn deterministically from the UBRN with the configured
//! mix (accept, reject with a reason and a comment, pending), so a run is reproducible.
//! It talks to the broker only; it never calls e-RS or the bridge.

use crate::amqp::{AmqpError, QueueClient};
use crate::hl7::{read, Message};

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

/// Errors of the PAS simulator (broker only).
#[derive(Debug, thiserror::Error)]
#[error("pas simulator: {0}")]
pub struct PasSimError(#[from] AmqpError);

/// Takes every message now on the PAS queue and answers each REF^I12. Returns when the
/// queue is empty.
pub async fn answer_all(cfg: &PasSimConfig) -> Result<PasSimReport, PasSimError> {
    let q = QueueClient::connect(&cfg.amqp_url).await?;
    let mut report = PasSimReport::default();
    let mut n = 0u64;
    while let Some(body) = q.take(&cfg.pas_queue).await? {
        report.received += 1;
        let Ok(msg) = read(&body) else {
            continue;
        };
        let (kind, event, _) = msg.message_type();
        if kind != "REF" || event != "I12" {
            continue;
        }
        n += 1;
        for (text, counted) in answers(&msg, n, cfg.mix, &cfg.faults) {
            q.send(&cfg.inbound_queue, text.as_bytes()).await?;
            match counted {
                Answer::Ack => report.acked += 1,
                Answer::Accept => report.accepted += 1,
                Answer::Reject => report.rejected += 1,
                Answer::Pending => report.pending += 1,
                Answer::Faulty => report.faulty += 1,
            }
        }
    }
    q.close().await;
    Ok(report)
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
/// fall on it.
fn answers(msg: &Message, n: u64, mix: Mix, faults: &[Fault]) -> Vec<(String, Answer)> {
    let on = |f: Fault| n % 5 == 0 && faults.contains(&f);
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
    let ack = if on(Fault::Ae) {
        format!(
            "{}MSA|AE|{their_id}|Patient not found\rERR|PID^1^3^204&Unknown key identifier&HL70357\r",
            header("ACK^I12^ACK", format!("PASCA{n:07}"))
        )
    } else {
        format!(
            "{}MSA|CA|{their_id}\r",
            header("ACK^I12^ACK", format!("PASCA{n:07}"))
        )
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
    let mut out = vec![
        (ack, Answer::Ack),
        (sep(rri(format!("PASRRI{n:07}"))), answer),
    ];
    if on(Fault::Duplicate) {
        out.push((sep(rri(format!("PASRRI{n:07}"))), Answer::Faulty));
    }
    if on(Fault::Resend) {
        out.push((sep(rri(format!("PASRSD{n:07}"))), Answer::Faulty));
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
        let out = answers(&msg, 1, Mix::default(), &[]);
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
        assert_eq!(answers(&msg, 1, Mix::default(), &[])[1].1, out[1].1);
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
        assert_eq!(answers(&msg, 4, Mix::default(), &all).len(), 2);
        let out = answers(&msg, 5, Mix::default(), &all);
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
        assert!(out[3].0.contains("PASRSD"), "a resend has a new MSH-10");
        assert!(read_inbound(out[4].0.as_bytes(), 1 << 20).is_err());
    }
}
