//! The referral content of an RRI^I12 (return referral information): RF1 status, UBRN,
//! reasons, NTE comments, the patient's NHS number and the providers named in PRD.
//!
//! Reading is tolerant: missing parts are empty, and deciding what is missing is the
//! decision table's job (`mapping::inbound`), which sends such messages to review.

use serde::Serialize;

use super::ack::Redacted;
use super::message::Message;
use crate::ids::{NhsNumber, Ubrn};

/// What an RRI says about a referral. `Debug` shows the codes and identifiers but not the
/// NHS number or the free text (reason texts, NTE comments).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct RriReferral {
    /// RF1-1.1 (table 0283: A, R, P, E).
    pub status: String,
    /// RF1-6, else the RF1-11 repetition, whose namespace (component 2) is `UBRN` and whose
    /// id is 12 digits: a PAS-local referral number is never taken for a UBRN.
    pub ubrn: Option<Ubrn>,
    /// RF1-2.1, the PAS's priority (table 0280, or the local code the bridge's REF sent).
    pub priority: String,
    /// RF1-2.4, the alternate identifier: the e-RS priority code when the PAS echoes it.
    pub priority_code: String,
    /// How many OBX segments the message carries (documents or observations, which the
    /// bridge does not send to e-RS with a decision).
    pub observations: usize,
    /// RF1-10 repetitions with a code, component 1 (the PAS's reason codes).
    pub reasons: Vec<String>,
    /// Their texts (component 2), aligned with `reasons` by repetition ("" when absent).
    pub reason_texts: Vec<String>,
    /// NTE-3 of every NTE, joined with line feeds.
    pub comments: String,
    /// The PID-3 repetition typed `NH`, when present and valid.
    #[serde(skip)]
    pub nhs_number: Option<NhsNumber>,
    /// PRD-1.1 role and PRD-7.1 identifier of each PRD.
    pub providers: Vec<(String, String)>,
}

impl std::fmt::Debug for RriReferral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let texts: Vec<_> = self.reason_texts.iter().map(|t| Redacted(t)).collect();
        f.debug_struct("RriReferral")
            .field("status", &self.status)
            .field("priority", &self.priority)
            .field("priority_code", &self.priority_code)
            .field("observations", &self.observations)
            .field("ubrn", &self.ubrn)
            .field("reasons", &self.reasons)
            .field("reason_texts", &texts)
            .field("comments", &Redacted(&self.comments))
            .field("nhs_number", &self.nhs_number)
            .field("providers", &self.providers)
            .finish()
    }
}

impl RriReferral {
    pub fn read(msg: &Message) -> Self {
        let rf1 = msg.segment("RF1");
        let get = |f: usize, r: usize, c: usize| rf1.map_or("", |s| s.get(f, r, c, 1));
        let ubrn_in = |field: usize| {
            let reps = rf1.map_or(0, |s| s.repetitions(field));
            (1..=reps)
                .filter(|&r| get(field, r, 2) == "UBRN")
                .find_map(|r| Ubrn::parse(get(field, r, 1)).ok())
        };
        let ubrn = ubrn_in(6).or_else(|| ubrn_in(11));
        let reps10 = rf1.map_or(0, |s| s.repetitions(10));
        let (reasons, reason_texts) = (1..=reps10)
            .filter(|&r| !get(10, r, 1).is_empty())
            .map(|r| (get(10, r, 1).to_string(), get(10, r, 2).to_string()))
            .unzip();
        let comments = msg
            .segments_named("NTE")
            .flat_map(|n| (1..=n.repetitions(3)).map(move |r| n.get(3, r, 1, 1).to_string()))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let nhs_number = msg.segment("PID").and_then(|pid| {
            (1..=pid.repetitions(3))
                .find(|&r| pid.get(3, r, 5, 1) == "NH")
                .and_then(|r| NhsNumber::parse(pid.get(3, r, 1, 1)).ok())
        });
        let providers = msg
            .segments_named("PRD")
            .map(|p| (p.comp(1, 1).to_string(), p.comp(7, 1).to_string()))
            .collect();
        Self {
            status: get(1, 1, 1).to_string(),
            priority: get(2, 1, 1).to_string(),
            priority_code: get(2, 1, 4).to_string(),
            observations: msg.segments_named("OBX").count(),
            ubrn,
            reasons,
            reason_texts,
            comments,
            nhs_number,
            providers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::read::read;

    #[test]
    fn reads_the_worked_example() {
        let m = "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116091500||RRI^I12^RRI_I12|PAS-778899|P|2.4|||AL|NE\rMSA|AA|E000000070000-I12-1\rRF1|A^Accepted^HL70283||||O^Outpatient^HL70284|000000070000^UBRN|20240116091500\rPRD|RT^Referred to provider^HL70286|SMITH^ALAN^^^DR|||||C1234567^GMC\rPID|1||9434765919^^^NHS^NH~RXX1234567^^^RXX^MR||SMITH^JOHN\rNTE|1|L|Accepted for cardiology clinic\rNTE|2|L|Second line\r";
        let r = RriReferral::read(&read(m.as_bytes()).unwrap());
        assert_eq!(r.status, "A");
        assert_eq!(r.ubrn.unwrap().as_str(), "000000070000");
        assert_eq!(r.comments, "Accepted for cardiology clinic\nSecond line");
        assert_eq!(r.nhs_number.unwrap().as_str(), "9434765919");
        assert_eq!(
            r.providers,
            vec![("RT".to_string(), "C1234567".to_string())]
        );
    }

    #[test]
    fn debug_hides_patient_data() {
        let m = "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116091500||RRI^I12^RRI_I12|PAS-778899|P|2.4\rMSA|AA|E000000070000-I12-1|Patient JOHN SMITH 9434765919 seen\rRF1|R||||||||X1^Patient SMITH declined|000000070000^UBRN\rPID|1||9434765919^^^NHS^NH||SMITH^JOHN\rNTE|1|L|Mr Smith, 9434765919, prefers mornings\r";
        let msg = read(m.as_bytes()).unwrap();
        let inbound = crate::hl7::read_inbound(m.as_bytes(), 1 << 20).unwrap();
        for shown in [
            format!("{:?}", RriReferral::read(&msg)),
            format!("{inbound:?}"),
            format!("{msg:?}"),
        ] {
            for secret in [
                "9434765919",
                "SMITH",
                "Smith",
                "JOHN",
                "mornings",
                "declined",
            ] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
        assert!(
            format!("{inbound:?}").contains("000000070000"),
            "ids stay visible"
        );
    }

    #[test]
    fn a_ubrn_needs_its_namespace_and_12_digits_and_reason_texts_stay_aligned() {
        let bare = "MSH|^~\\&|PAS\rRF1|A|||||000000070001\r";
        assert_eq!(
            RriReferral::read(&read(bare.as_bytes()).unwrap()).ubrn,
            None
        );
        let local = "MSH|^~\\&|PAS\rRF1|A|||||12345^UBRN\r";
        assert_eq!(
            RriReferral::read(&read(local.as_bytes()).unwrap()).ubrn,
            None
        );
        let m = "MSH|^~\\&|PAS\rRF1|R|||||000000070001^UBRN||||X1~Y2^Second~^orphan text\r";
        let r = RriReferral::read(&read(m.as_bytes()).unwrap());
        assert_eq!(r.reasons, ["X1", "Y2"]);
        assert_eq!(r.reason_texts, ["", "Second"]);
    }

    #[test]
    fn falls_back_to_rf1_11_for_the_ubrn() {
        let m = "MSH|^~\\&|PAS\rRF1|R|||||LOCAL1^PAS||||X1^Not ours~Y2|999^ZZ~000000070001^UBRN\r";
        let r = RriReferral::read(&read(m.as_bytes()).unwrap());
        assert_eq!(r.ubrn.unwrap().as_str(), "000000070001");
        assert_eq!(r.reasons, vec!["X1", "Y2"]);
    }
}
