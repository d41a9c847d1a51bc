//! The inbound decision table (HL7V2.md §6): which ACK / RRI content means which bridge
//! action. The rules live in a mapping file (`mappings/inbound.toml`), not in code; the
//! first rule whose conditions all match decides. No match, or an action that needs data
//! the message lacks (a UBRN, a rejection code), becomes [`Action::Review`], never a drop.
//!
//! ```toml
//! version = 1
//! [tables]
//! rejection_reasons = "tables/pas_rejection_reasons.csv"
//! [[rule]]
//! name = "rri accepted"
//! message = ["RRI"]   # MSH-9.1; omitted = any
//! ack = ["AA"]        # MSA-1; omitted = any
//! status = ["A"]      # RF1-1; omitted = any
//! reason = []         # RF1-10.1, any repetition; omitted or empty = any
//! ers_state = []      # the referral's e-RS state (A005), read before deciding; omitted = any
//! action = "accept"
//! ```
//!
//! `ers_state` conditions need the referral: offline (`test-mappings`, `decide`) a rule
//! with one matches only when the state is given.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::tables::{Table, Tables};
use super::{line_of, toml_error, MappingError};
use crate::fhir::requests::ReviewOutcome;
use crate::hl7::{Inbound, Ubrn};

/// What the bridge should do about one inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// A013 accept.
    Accept { ubrn: Ubrn },
    /// A014 reject, with the e-RS rejection reason from the code table.
    Reject {
        ubrn: Ubrn,
        reason_code: String,
        comments: String,
        appointment_cancelled_in_pas: bool,
    },
    /// A022 cancel appointment, action later; `appointment_cancelled_in_pas` as for A014
    /// (required by e-RS for an indirectly bookable service); `priority` the e-RS code of
    /// the PAS's RF1-2, sent only when the PAS gave one.
    CancelActionLater {
        ubrn: Ubrn,
        comments: String,
        appointment_cancelled_in_pas: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<String>,
    },
    /// A028 record review outcome; `priority` (`reviewPriority`) as for A022.
    RecordReviewOutcome {
        ubrn: Ubrn,
        #[serde(serialize_with = "review_outcome_code")]
        outcome: ReviewOutcome,
        comments: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<String>,
    },
    /// A026 A&G response.
    AdviceResponse { ubrn: Ubrn, comments: String },
    /// A027 convert A&G to a referral.
    ConvertAdvice { ubrn: Ubrn, comments: String },
    /// Nothing to do in e-RS (e.g. a commit ACK).
    NoAction { why: String },
    /// A person must look at it; `fault` names the part of the message at fault, when it is
    /// the message's (the AE's ERR location and table 0357 code).
    Review {
        why: String,
        #[serde(skip)]
        fault: Option<Fault>,
    },
}

/// The part of a PAS message a refusal is about: ERR-2 (2.5.1) / ERR-1 (2.4) location and
/// the HL7 table 0357 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub segment: &'static str,
    pub field: usize,
    /// `101` required field missing, `102` data type error, `103` table value not found,
    /// ...
    pub code: &'static str,
}

impl Action {
    /// A review with no fault in the message (a business outcome a person must handle).
    pub fn review(why: impl Into<String>) -> Self {
        Action::Review {
            why: why.into(),
            fault: None,
        }
    }

    /// A review caused by `segment`-`field` of the message, with its table 0357 code.
    pub fn review_at(
        why: impl Into<String>,
        segment: &'static str,
        field: usize,
        code: &'static str,
    ) -> Self {
        Action::Review {
            why: why.into(),
            fault: Some(Fault {
                segment,
                field,
                code,
            }),
        }
    }
}

/// The decision table's priority table (`[tables] priority`, e-RS code -> RF1-2.1 local
/// code): RF1-2 on an RRI is read back through it.
pub const PRIORITY_TABLE: &str = "priority";

/// The e-RS priority codes (`eRS-Priority-1`).
const ERS_PRIORITIES: [&str; 3] = ["ROUTINE", "URGENT", "TWO_WEEK_WAIT"];

/// The kinds of action a rule may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Accept,
    Reject,
    CancelActionLater,
    RecordReviewOutcome,
    AdviceResponse,
    ConvertAdvice,
    NoAction,
    Review,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    version: Spanned<u32>,
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    tables: BTreeMap<String, Spanned<String>>,
    #[serde(rename = "rule")]
    rules: Vec<Spanned<Rule>>,
}

/// One row of the decision table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub message: Vec<String>,
    #[serde(default)]
    pub ack: Vec<String>,
    #[serde(default)]
    pub status: Vec<String>,
    #[serde(default)]
    pub reason: Vec<String>,
    /// The referral's e-RS state (`BOOKED`, `AWAITING_TRIAGE`, `DEFERRED_TO_PROVIDER`, ...).
    #[serde(default)]
    pub ers_state: Vec<String>,
    pub action: ActionKind,
    /// For `record_review_outcome`: `RETURN_TO_REFERRER_WITH_ADVICE` or
    /// `ACCEPT_REFER_BOOK_LATER`, as written in the file.
    pub outcome: Option<String>,
    /// `outcome`, parsed when the table is compiled.
    #[serde(skip)]
    pub review_outcome: Option<ReviewOutcome>,
    /// For `reject` and `cancel_action_later`: whether the PAS has already cancelled the
    /// appointment (sent as `appointmentCancelledInPAS`, which e-RS requires for an
    /// indirectly bookable service). Absent means false.
    pub appointment_cancelled_in_pas: Option<bool>,
    /// For `reject`: the table mapping RF1-10 reasons to e-RS rejection codes.
    pub reason_table: Option<String>,
    /// For `no_action` / `review`: the explanation shown to people.
    pub why: Option<String>,
}

/// A compiled decision table.
#[derive(Debug)]
pub struct DecisionTable {
    pub file: String,
    pub rules: Vec<Rule>,
    pub tables: Tables,
}

impl DecisionTable {
    pub fn load(path: &Path) -> Result<Self, MappingError> {
        let (file, text) = super::read_text(path)?;
        Self::parse(&file, &text, path.parent().unwrap_or(Path::new(".")))
    }

    pub fn parse(file: &str, text: &str, base: &Path) -> Result<Self, MappingError> {
        let spec: FileSpec = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let err = |start: usize, field: &str, reason: String| MappingError::Invalid {
            file: file.to_string(),
            line: Some(line_of(text, start)),
            field: field.to_string(),
            reason,
        };
        if *spec.version.get_ref() != 1 {
            return Err(err(
                spec.version.span().start,
                "version",
                "only version 1 is supported".into(),
            ));
        }
        let mut tables = Tables::default();
        for (name, rel) in &spec.tables {
            let table = Table::load(&base.join(rel.get_ref())).map_err(|e| match e {
                MappingError::Io { reason, .. } => {
                    err(rel.span().start, &format!("tables.{name}"), reason)
                }
                other => other,
            })?;
            tables.insert(name, table);
        }
        let mut rules = Vec::new();
        for spanned in spec.rules {
            let start = spanned.span().start;
            let mut rule = spanned.into_inner();
            rule.review_outcome = rule.outcome.as_deref().and_then(|o| o.parse().ok());
            // A key the rule's action does not use would be silently ignored: refuse it.
            if let Some((key, used_by)) = unused_key(&rule) {
                let used_by: Vec<_> = used_by.iter().map(|k| k.name()).collect();
                return Err(err(
                    start,
                    key,
                    format!(
                        "rule {:?}: action {} does not use {key} (only {} do)",
                        rule.name,
                        rule.action.name(),
                        used_by.join(", ")
                    ),
                ));
            }
            if rule.action == ActionKind::RecordReviewOutcome && rule.review_outcome.is_none() {
                return Err(err(start, "outcome", format!("rule {:?}: record_review_outcome needs outcome RETURN_TO_REFERRER_WITH_ADVICE or ACCEPT_REFER_BOOK_LATER", rule.name)));
            }
            if rule.action == ActionKind::Reject {
                let t = rule.reason_table.as_deref().unwrap_or("");
                if !tables.contains(t) {
                    return Err(err(
                        start,
                        "reason_table",
                        format!(
                            "rule {:?}: reject needs reason_table naming a declared table",
                            rule.name
                        ),
                    ));
                }
            }
            rules.push(rule);
        }
        Ok(Self {
            file: file.to_string(),
            rules,
            tables,
        })
    }

    /// Decides the action for one inbound message without the referral's facts: rules
    /// with an `ers_state` condition do not match.
    pub fn decide(&self, msg: &Inbound) -> Action {
        self.decide_with(msg, None)
    }

    /// The first rule whose conditions all match, if any (what `decide_with` applies).
    pub fn matching_rule(&self, msg: &Inbound, ers_state: Option<&str>) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            matches_message(r, msg)
                && (r.ers_state.is_empty()
                    || ers_state.is_some_and(|s| r.ers_state.iter().any(|x| x == s)))
        })
    }

    /// Whether the decision for `msg` can depend on the referral's e-RS state (a rule with
    /// an `ers_state` condition matches it otherwise), so the referral must be read first.
    pub fn depends_on_state(&self, msg: &Inbound) -> bool {
        self.rules
            .iter()
            .any(|r| !r.ers_state.is_empty() && matches_message(r, msg))
    }

    /// Decides the action for one inbound message, given the referral's e-RS state when it
    /// was read.
    pub fn decide_with(&self, msg: &Inbound, ers_state: Option<&str>) -> Action {
        let referral = msg.referral.as_ref();
        let status = referral.map_or("", |r| r.status.as_str());
        let reasons: &[String] = referral.map_or(&[], |r| &r.reasons);
        let ack = msg.ack_code.map_or("", |a| a.as_str());
        let Some(rule) = self.matching_rule(msg, ers_state) else {
            let why = format!(
                "no rule matches {} {} ack {ack:?} status {status:?}",
                msg.message_type, msg.event
            );
            return match referral {
                Some(_) => Action::review_at(why, "RF1", 1, "103"),
                None => Action::review(why),
            };
        };
        let why = || {
            let mut why = rule.why.clone().unwrap_or_else(|| rule.name.clone());
            if !msg.ack_text.is_empty() {
                why.push_str(&format!("; MSA-3: {}", msg.ack_text));
            }
            for e in &msg.errors {
                why.push_str(
                    format!("; ERR {} {} {} {}", e.location, e.code, e.text, e.message).trim_end(),
                );
            }
            why
        };
        let ubrn = referral.and_then(|r| r.ubrn.clone()).or_else(|| {
            msg.acked_control_id
                .as_ref()
                .and_then(|c| c.outbound_parts())
                .map(|(u, ..)| u)
        });
        let comments = referral
            .map(|r| {
                if r.comments.is_empty() {
                    r.reason_texts.join("; ")
                } else {
                    r.comments.clone()
                }
            })
            .unwrap_or_default();
        let needs_ubrn = !matches!(rule.action, ActionKind::NoAction | ActionKind::Review);
        let Some(ubrn) = ubrn.filter(|_| needs_ubrn) else {
            return match rule.action {
                ActionKind::NoAction => Action::NoAction { why: why() },
                ActionKind::Review => Action::review(why()),
                _ => Action::review_at(
                    format!(
                        "rule {:?} needs a UBRN, but RF1-6, RF1-11 and MSA-2 have none",
                        rule.name
                    ),
                    "RF1",
                    6,
                    "101",
                ),
            };
        };
        // RF1-2, for the actions that carry a priority (A022, A028): never guessed.
        let carries_priority = matches!(
            rule.action,
            ActionKind::CancelActionLater | ActionKind::RecordReviewOutcome
        );
        let priority = match self.priority(referral.filter(|_| carries_priority)) {
            Ok(p) => p,
            Err(why) => return Action::review_at(why, "RF1", 2, "103"),
        };
        // A PAS document attached to its decision (an OBX) is not carried: said, never
        // dropped.
        let obx = referral.map_or(0, |r| r.observations);
        if obx > 0 && !matches!(rule.action, ActionKind::NoAction | ActionKind::Review) {
            return Action::review_at(
                format!(
                    "the decision carries {obx} OBX segment(s) (a document or observation); \
                     this bridge does not upload documents with a decision (A020): send the \
                     decision without them, and the document through e-RS"
                ),
                "OBX",
                5,
                "207",
            );
        }
        match rule.action {
            ActionKind::Accept => Action::Accept { ubrn },
            ActionKind::Reject => {
                let table = rule.reason_table.as_deref().unwrap_or("");
                // Every RF1-10 repetition is tried, in order, until one maps.
                match reasons
                    .iter()
                    .find_map(|r| self.tables.lookup(table, r))
                {
                    Some(code) => Action::Reject {
                        ubrn,
                        reason_code: code.to_string(),
                        comments,
                        appointment_cancelled_in_pas: rule
                            .appointment_cancelled_in_pas
                            .unwrap_or(false),
                    },
                    None => Action::review_at(
                        format!(
                            "rule {:?}: table {table} has no e-RS rejection code for any PAS reason in RF1-10 ({})",
                            rule.name,
                            reasons.join(", ")
                        ),
                        "RF1",
                        10,
                        "103",
                    ),
                }
            }
            ActionKind::CancelActionLater => Action::CancelActionLater {
                ubrn,
                comments,
                appointment_cancelled_in_pas: rule.appointment_cancelled_in_pas.unwrap_or(false),
                priority,
            },
            ActionKind::RecordReviewOutcome => match rule.review_outcome {
                Some(outcome) => Action::RecordReviewOutcome {
                    ubrn,
                    outcome,
                    comments,
                    priority,
                },
                // Compiling refuses such a rule; a table built by hand still cannot act.
                None => Action::review(format!("rule {:?}: no review outcome", rule.name)),
            },
            ActionKind::AdviceResponse => Action::AdviceResponse { ubrn, comments },
            ActionKind::ConvertAdvice => Action::ConvertAdvice { ubrn, comments },
            ActionKind::NoAction => Action::NoAction { why: why() },
            ActionKind::Review => Action::review(why()),
        }
    }

    /// The e-RS priority the PAS gave in RF1-2: RF1-2.4 when it is an e-RS code (the
    /// bridge's REF sends it there), else RF1-2.1 read back through the priority table.
    /// `Ok(None)` when RF1-2 is empty; an error names a value that maps to nothing.
    fn priority(
        &self,
        referral: Option<&crate::hl7::RriReferral>,
    ) -> Result<Option<String>, String> {
        let Some(r) = referral else { return Ok(None) };
        if ERS_PRIORITIES.contains(&r.priority_code.as_str()) {
            return Ok(Some(r.priority_code.clone()));
        }
        if r.priority.is_empty() {
            return Ok(None);
        }
        if !self.tables.contains(PRIORITY_TABLE) {
            return Err(format!(
                "RF1-2 gives priority {:?} but the decision table declares no [tables] {PRIORITY_TABLE} to read it",
                r.priority
            ));
        }
        self.tables
            .reverse_lookup(PRIORITY_TABLE, &r.priority)
            .map(|code| Some(code.to_string()))
            .ok_or_else(|| {
                format!(
                    "RF1-2 priority {:?} is not in table {PRIORITY_TABLE} (R, A, W for the default table)",
                    r.priority
                )
            })
    }
}

impl Action {
    /// The kind of action, without its data.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Accept { .. } => ActionKind::Accept,
            Action::Reject { .. } => ActionKind::Reject,
            Action::CancelActionLater { .. } => ActionKind::CancelActionLater,
            Action::RecordReviewOutcome { .. } => ActionKind::RecordReviewOutcome,
            Action::AdviceResponse { .. } => ActionKind::AdviceResponse,
            Action::ConvertAdvice { .. } => ActionKind::ConvertAdvice,
            Action::NoAction { .. } => ActionKind::NoAction,
            Action::Review { .. } => ActionKind::Review,
        }
    }
}

impl ActionKind {
    /// The name as the decision table writes it (and the store records it).
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Accept => "accept",
            ActionKind::Reject => "reject",
            ActionKind::CancelActionLater => "cancel_action_later",
            ActionKind::RecordReviewOutcome => "record_review_outcome",
            ActionKind::AdviceResponse => "advice_response",
            ActionKind::ConvertAdvice => "convert_advice",
            ActionKind::NoAction => "no_action",
            ActionKind::Review => "review",
        }
    }

    /// The e-RS operation the action calls, if any.
    pub fn operation(self) -> Option<crate::ers::capability::Operation> {
        use crate::ers::capability::Operation;
        Some(match self {
            ActionKind::Accept => Operation::A013,
            ActionKind::Reject => Operation::A014,
            ActionKind::CancelActionLater => Operation::A022,
            ActionKind::RecordReviewOutcome => Operation::A028,
            ActionKind::AdviceResponse => Operation::A026,
            ActionKind::ConvertAdvice => Operation::A027,
            ActionKind::NoAction | ActionKind::Review => return None,
        })
    }
}

/// The first key `rule` sets that its action does not use, with the actions that use it.
fn unused_key(rule: &Rule) -> Option<(&'static str, &'static [ActionKind])> {
    use ActionKind::*;
    let keys: [(&'static str, bool, &'static [ActionKind]); 4] = [
        ("outcome", rule.outcome.is_some(), &[RecordReviewOutcome]),
        ("reason_table", rule.reason_table.is_some(), &[Reject]),
        (
            "appointment_cancelled_in_pas",
            rule.appointment_cancelled_in_pas.is_some(),
            &[Reject, CancelActionLater],
        ),
        ("why", rule.why.is_some(), &[NoAction, Review]),
    ];
    keys.into_iter()
        .find(|(_, set, used_by)| *set && !used_by.contains(&rule.action))
        .map(|(key, _, used_by)| (key, used_by))
}

/// Whether `rule`'s conditions on the message itself (MSH-9, MSA-1, RF1-1, RF1-10) hold.
fn matches_message(rule: &Rule, msg: &Inbound) -> bool {
    let referral = msg.referral.as_ref();
    let status = referral.map_or("", |r| r.status.as_str());
    let reasons: &[String] = referral.map_or(&[], |r| &r.reasons);
    let ack = msg.ack_code.map_or("", |a| a.as_str());
    let any = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
    any(&rule.message, &msg.message_type)
        && any(&rule.ack, ack)
        && any(&rule.status, status)
        && (rule.reason.is_empty() || reasons.iter().any(|x| rule.reason.contains(x)))
}

/// Serialises a review outcome as its e-RS code (the decision reports and samples show it).
fn review_outcome_code<S: serde::Serializer>(o: &ReviewOutcome, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(o.code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::{ack::summarise, read};

    fn table(rules: &str) -> Result<DecisionTable, MappingError> {
        let text = format!(
            "version = 1\n[tables]\nreasons = \"tables/pas_rejection_reasons.csv\"\n{rules}"
        );
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        DecisionTable::parse("t.toml", &text, &base)
    }

    fn inbound(text: &str) -> Inbound {
        summarise(&read(text.replace('\n', "\r").as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn first_matching_rule_decides_and_ubrn_falls_back_to_msa_2() {
        let t = table(
            "[[rule]]\nname = \"acc\"\nmessage = [\"RRI\"]\nstatus = [\"A\"]\naction = \"accept\"\n\
             [[rule]]\nname = \"any ack\"\nmessage = [\"ACK\"]\naction = \"accept\"\n",
        )
        .unwrap();
        let rri = inbound("MSH|^~\\&|PAS||||2024||RRI^I12|X1|P|2.4\nRF1|A|||||000000070000^UBRN\n");
        assert_eq!(
            t.decide(&rri),
            Action::Accept {
                ubrn: Ubrn::parse("000000070000").unwrap()
            }
        );
        let ack = inbound("MSH|^~\\&|PAS||||2024||ACK^I12|X2|P|2.4\nMSA|AA|E000000070009-I12-3\n");
        assert_eq!(
            t.decide(&ack),
            Action::Accept {
                ubrn: Ubrn::parse("000000070009").unwrap()
            }
        );
        let other =
            inbound("MSH|^~\\&|PAS||||2024||RRI^I12|X3|P|2.4\nRF1|P|||||000000070000^UBRN\n");
        assert!(matches!(t.decide(&other), Action::Review { .. }));
    }

    #[test]
    fn rules_are_checked_when_loaded() {
        let e = table("[[rule]]\nname = \"r\"\naction = \"record_review_outcome\"\n").unwrap_err();
        assert!(e.to_string().contains("needs outcome"), "{e}");
        let e = table("[[rule]]\nname = \"r\"\naction = \"reject\"\n").unwrap_err();
        assert!(e.to_string().contains("reject needs reason_table"), "{e}");
        let e = table("[[rule]]\nname = \"r\"\naction = \"explode\"\n").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:"), "{e}");
        let e =
            table("[[rule]]\nname = \"r\"\naction = \"accept\"\nstatsu = [\"A\"]\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `statsu`"), "{e}");
    }

    /// A key the rule's action would ignore is refused, naming the key and the actions
    /// that use it; the same key on an action that uses it is accepted.
    #[test]
    fn keys_the_action_does_not_use_are_refused() {
        for (lines, key) in [
            (
                "action = \"accept\"\nappointment_cancelled_in_pas = true",
                "appointment_cancelled_in_pas",
            ),
            (
                "action = \"record_review_outcome\"\noutcome = \"ACCEPT_REFER_BOOK_LATER\"\nappointment_cancelled_in_pas = false",
                "appointment_cancelled_in_pas",
            ),
            (
                "action = \"cancel_action_later\"\nreason_table = \"reasons\"",
                "reason_table",
            ),
            ("action = \"accept\"\nwhy = \"because\"", "why"),
            (
                "action = \"reject\"\nreason_table = \"reasons\"\noutcome = \"ACCEPT_REFER_BOOK_LATER\"",
                "outcome",
            ),
        ] {
            let e = table(&format!("[[rule]]\nname = \"r\"\n{lines}\n")).unwrap_err();
            assert!(
                e.to_string().contains(&format!("does not use {key}")),
                "{lines}: {e}"
            );
        }
        let e = table(
            "[[rule]]\nname = \"r\"\naction = \"accept\"\nappointment_cancelled_in_pas = true\n",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("t.toml:"), "{text}");
        assert!(
            text.ends_with(": appointment_cancelled_in_pas: rule \"r\": action accept does not use appointment_cancelled_in_pas (only reject, cancel_action_later do)"),
            "{text}"
        );
        for ok in [
            "action = \"cancel_action_later\"\nappointment_cancelled_in_pas = true",
            "action = \"reject\"\nreason_table = \"reasons\"\nappointment_cancelled_in_pas = true",
            "action = \"no_action\"\nwhy = \"nothing to do\"",
        ] {
            table(&format!("[[rule]]\nname = \"r\"\n{ok}\n"))
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    /// A022's rule value is carried in the action, as A014's is.
    #[test]
    fn cancel_action_later_carries_the_rules_pas_flag() {
        let rule = |flag: &str| {
            table(&format!(
                "[[rule]]\nname = \"c\"\nmessage = [\"RRI\"]\naction = \"cancel_action_later\"\n{flag}\n"
            ))
            .unwrap()
        };
        let rri = inbound(
            "MSH|^~\\&|PAS||||2024||RRI^I12|X1|P|2.4\nRF1|R|||||000000070002^UBRN||||REBOOK\nNTE|1|L|Please contact patient to rebook\n",
        );
        let ubrn = Ubrn::parse("000000070002").unwrap();
        for (flag, want) in [("appointment_cancelled_in_pas = true", true), ("", false)] {
            assert_eq!(
                rule(flag).decide(&rri),
                Action::CancelActionLater {
                    ubrn: ubrn.clone(),
                    comments: "Please contact patient to rebook".into(),
                    appointment_cancelled_in_pas: want,
                    priority: None,
                },
                "{flag:?}"
            );
        }
    }

    /// RF1-2 reaches A022 and A028 as an e-RS priority: RF1-2.4 when it is an e-RS code,
    /// else RF1-2.1 read back through the priority table; a value the table lacks is a
    /// review naming RF1-2 (table 0357 103), never a guess; no RF1-2, no priority.
    #[test]
    fn rf1_2_is_read_back_through_the_priority_table() {
        let table = DecisionTable::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/inbound.toml"),
        )
        .unwrap();
        let msg = |rf1_2: &str| {
            inbound(&format!(
                "MSH|^~\\&|PAS||||2024||RRI^I12|X1|P|2.4\nRF1|A|{rf1_2}||||000000070003^UBRN||||BOOK_LATER\nNTE|1|L|ok\n"
            ))
        };
        let priority = |a: Action| match a {
            Action::RecordReviewOutcome { priority, .. } => priority,
            other => panic!("{other:?}"),
        };
        assert_eq!(priority(table.decide(&msg("A"))).as_deref(), Some("URGENT"));
        assert_eq!(
            priority(table.decide(&msg("W^Two week wait"))).as_deref(),
            Some("TWO_WEEK_WAIT")
        );
        assert_eq!(
            priority(table.decide(&msg("X^^^ROUTINE"))).as_deref(),
            Some("ROUTINE")
        );
        assert_eq!(priority(table.decide(&msg(""))), None);
        match table.decide(&msg("Q")) {
            Action::Review { why, fault } => {
                assert!(why.contains("RF1-2"), "{why}");
                assert_eq!(
                    fault,
                    Some(Fault {
                        segment: "RF1",
                        field: 2,
                        code: "103"
                    })
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// A document attached to a decision (OBX) is not carried: a review naming OBX-5,
    /// never a write without it.
    #[test]
    fn a_decision_with_an_obx_is_a_review_naming_it() {
        let table = DecisionTable::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/inbound.toml"),
        )
        .unwrap();
        let msg = inbound(
            "MSH|^~\\&|PAS||||2024||RRI^I12|X1|P|2.4\nRF1|A|||||000000070001^UBRN\nOBX|1|ED|LETTER^Triage letter||^application^pdf^Base64^JVBERi0=\n",
        );
        match table.decide(&msg) {
            Action::Review { why, fault } => {
                assert!(why.contains("OBX"), "{why}");
                assert_eq!(fault.map(|f| (f.segment, f.field)), Some(("OBX", 5)));
            }
            other => panic!("{other:?}"),
        }
    }
}
