//! `ers-bridge decide --input MSG.hl7 [--referral A005.json] [--table FILE]`: what the
//! bridge would do with one PAS message, offline (like `render` for the other direction):
//! the message as read, the decision rule that matches (with the referral's e-RS state
//! when `--referral` gives it), the action, and the e-RS request body it would send, as
//! the exact bytes the e-RS client sends. A rejection's reason coding system comes from
//! A004 at run time, so it is shown as a placeholder.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::fhir::requests::{CancelAppointmentActionLater, RecordReviewOutcome, RejectReferral};
use crate::fhir::{Coding, ReferralRequest};
use crate::hl7::read_inbound;
use crate::mapping::{Action, DecisionTable};

/// Arguments of `decide`.
#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// The PAS message (ER7, CR or LF separated).
    #[arg(long)]
    pub input: PathBuf,
    /// The referral as A005 returns it, for rules on its e-RS state.
    #[arg(long)]
    pub referral: Option<PathBuf>,
    /// The decision table.
    #[arg(long, default_value = "mappings/inbound.toml")]
    pub table: PathBuf,
}

/// Exit 0 with the decision on stdout, 64 for a bad table, 1 for an unreadable message.
pub fn run(args: &DecideArgs) -> ExitCode {
    let table = match DecisionTable::load(&args.table) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::EX_USAGE);
        }
    };
    match decide(args, &table) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", super::explain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn decide(args: &DecideArgs, table: &DecisionTable) -> anyhow::Result<String> {
    let bytes = std::fs::read(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let msg = read_inbound(&bytes, crate::hl7::read::DEFAULT_MAX_BYTES)
        .with_context(|| format!("{} is not a readable PAS message", args.input.display()))?;
    let referral: Option<ReferralRequest> = match &args.referral {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a referral", p.display()))?,
            )
        }
        None => None,
    };
    let state = referral
        .as_ref()
        .and_then(|r| r.state().map(|c| c.code().to_string()));
    let mut out = String::new();
    out.push_str(&format!(
        "message:  {}^{} {} (MSH-10 {})\n",
        msg.message_type, msg.event, msg.version, msg.control_id
    ));
    if let Some(a) = msg.ack_code {
        out.push_str(&format!(
            "ack:      MSA-1 {} of {}\n",
            a.as_str(),
            msg.acked_control_id
                .as_ref()
                .map_or("-".to_string(), |c| c.to_string())
        ));
    }
    if let Some(r) = &msg.referral {
        out.push_str(&format!(
            "referral: RF1-1 {} UBRN {} reasons [{}]\n",
            r.status,
            r.ubrn.as_ref().map_or("-".to_string(), |u| u.to_string()),
            r.reasons.join(", ")
        ));
    }
    out.push_str(&format!(
        "e-RS state: {}\n",
        state.as_deref().unwrap_or("unknown (give --referral)")
    ));
    let rule = table.matching_rule(&msg, state.as_deref());
    out.push_str(&format!(
        "rule:     {}\n",
        rule.map_or("none (review)".to_string(), |r| format!("{:?}", r.name))
    ));
    let action = table.decide_with(&msg, state.as_deref());
    out.push_str(&format!("action:   {}\n", serde_json::to_string(&action)?));
    if let Some(body) = request_body(&action)? {
        out.push_str("request body (the bytes sent, application/fhir+json):\n");
        out.push_str(&body);
        out.push('\n');
        if let Some(note) = body_note(&action) {
            out.push_str(note);
            out.push('\n');
        }
    }
    Ok(out)
}

/// What may differ at run time from the body shown.
fn body_note(action: &Action) -> Option<&'static str> {
    match action {
        Action::Reject { .. } => Some(
            "note: the rejection reason's system comes from A004 at run time; appointmentCancelledInPAS is sent as the rule says, and a 422 FIELD_NOT_PERMITTED / VALUE_IS_REQUIRED from e-RS is followed by one call without / with it",
        ),
        Action::CancelActionLater { .. } => Some(
            "note: appointmentCancelledInPAS is sent as the rule says, and a 422 FIELD_NOT_PERMITTED / VALUE_IS_REQUIRED from e-RS is followed by one call without / with it",
        ),
        _ => None,
    }
}

/// The exact bytes of the e-RS request body the action sends, if it has one (what the
/// e-RS client sends: [`crate::ers::request_body_bytes`]).
fn request_body(action: &Action) -> anyhow::Result<Option<String>> {
    let to_json = |p: Result<crate::fhir::Parameters, String>| -> anyhow::Result<_> {
        let p = p.map_err(|reason| anyhow::anyhow!("the body would be refused: {reason}"))?;
        Ok(Some(crate::ers::request_body_bytes(p)?))
    };
    match action {
        Action::Reject {
            reason_code,
            comments,
            appointment_cancelled_in_pas,
            ..
        } => to_json(
            RejectReferral {
                reason: Coding::new(
                    "<APPOINTMENT-CANCELLATION-REASON system from A004>",
                    reason_code.clone(),
                ),
                comments: (!comments.is_empty()).then(|| comments.clone()),
                appointment_cancelled_in_pas: appointment_cancelled_in_pas.then_some(true),
            }
            .to_parameters(),
        ),
        Action::CancelActionLater {
            comments,
            appointment_cancelled_in_pas,
            priority,
            ..
        } => to_json(
            CancelAppointmentActionLater {
                comments: comments.clone(),
                priority: priority.as_deref().and_then(|p| p.parse().ok()),
                appointment_cancelled_in_pas: appointment_cancelled_in_pas.then_some(true),
                attachments: Vec::new(),
            }
            .to_parameters(),
        ),
        Action::RecordReviewOutcome {
            outcome,
            comments,
            priority,
            ..
        } => to_json(
            RecordReviewOutcome {
                outcome: *outcome,
                comments: comments.clone(),
                priority: priority.as_deref().and_then(|p| p.parse().ok()),
                attachments: Vec::new(),
            }
            .to_parameters(),
        ),
        _ => Ok(None),
    }
}
