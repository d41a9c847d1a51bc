//! `ers-bridge ers <operation>`: one subcommand per e-RS operation, with the configured auth,
//! for integration teams troubleshooting a live connection. Prints the FHIR JSON on stdout
//! (or saves a binary with `--out`); logs, with correlation and request ids, go to stderr.
//! Errors print the e-RS error code and diagnostics and exit 1 (64 for configuration).

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use crate::config::{self, ProcessEnv};
use crate::ers::{rejection_input, Binary, ErsClient, ErsError, RefDataCache};
use crate::fhir::{
    requests::{
        Assigned, CancelAppointmentActionLater, ConvertAdviceToReferral, FetchWorklist,
        GuidanceOutcome, GuidanceRecommendation, Priority, RecordReviewOutcome, ReviewOutcome,
        SendAdviceResponse,
    },
    worklist::ListSelector,
    Coding, FhirResource,
};
use crate::ids::{Ubrn, Version};

/// Arguments of `ers`.
#[derive(Debug, Args)]
pub struct ErsArgs {
    /// The configuration file (or set ERS_BRIDGE_CONFIG).
    #[arg(long, short, env = "ERS_BRIDGE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub op: ErsOp,
}

/// The worklists, as named on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListArg {
    ReferralsForReview,
    AppointmentSlotIssues,
    RejectedTriageResponse,
    AssessmentReturnedCancelledDna,
    AwaitingBooking,
    LettersOutstanding,
}

impl From<ListArg> for ListSelector {
    fn from(l: ListArg) -> Self {
        match l {
            ListArg::ReferralsForReview => ListSelector::ReferralsForReview,
            ListArg::AppointmentSlotIssues => ListSelector::AppointmentSlotIssues,
            ListArg::RejectedTriageResponse => ListSelector::RejectedTriageResponse,
            ListArg::AssessmentReturnedCancelledDna => ListSelector::AssessmentReturnedCancelledDna,
            ListArg::AwaitingBooking => ListSelector::AwaitingBooking,
            ListArg::LettersOutstanding => ListSelector::LettersOutstanding,
        }
    }
}

/// One subcommand per operation.
#[derive(Debug, Subcommand)]
pub enum ErsOp {
    /// A008: fetch a referral worklist.
    Worklist {
        #[arg(long, value_enum)]
        list: ListArg,
        /// e-RS service id (mandatory in app-restricted mode).
        #[arg(long)]
        service: Option<String>,
        /// Specialty code (e.g. CARDIOLOGY); its system is taken from A004 SPECIALTY.
        #[arg(long, conflicts_with = "specialty_not_assigned")]
        specialty: Option<String>,
        #[arg(long)]
        specialty_not_assigned: bool,
        /// SDS user id of the assigned clinician.
        #[arg(long, conflicts_with = "clinician_not_assigned")]
        clinician: Option<String>,
        #[arg(long)]
        clinician_not_assigned: bool,
        /// ODS code of a location.
        #[arg(long)]
        location: Option<String>,
    },
    /// A005: retrieve a referral.
    Referral {
        ubrn: Ubrn,
        /// Check this is the latest version (`_history`).
        #[arg(long)]
        version: Option<Version>,
    },
    /// A042 (or A006 with --stu3): download an attachment.
    Attachment {
        id: String,
        #[arg(long)]
        out: PathBuf,
        /// Use the deprecated STU3 endpoint (A006, files up to 5 MB).
        #[arg(long)]
        stu3: bool,
    },
    /// A007: download the clinical information PDF.
    ClinicalInfo {
        ubrn: Ubrn,
        #[arg(long)]
        out: PathBuf,
    },
    /// A004: reference data, e.g. SPECIALTY or APPOINTMENT-CANCELLATION-REASON.
    ReferenceData { code_system: String },
    /// A013: accept a referral.
    Accept {
        ubrn: Ubrn,
        #[arg(long)]
        version: Version,
    },
    /// A014: reject a referral; the reason is checked against A004 rejection reasons.
    Reject {
        ubrn: Ubrn,
        #[arg(long)]
        version: Version,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        comments: Option<String>,
        /// Mandatory for indirectly bookable services.
        #[arg(long)]
        appointment_cancelled_in_pas: Option<bool>,
    },
    /// A022: cancel the appointment, action later.
    CancelActionLater {
        ubrn: Ubrn,
        #[arg(long)]
        version: Version,
        #[arg(long)]
        comments: String,
        #[arg(long)]
        priority: Option<Priority>,
        #[arg(long)]
        appointment_cancelled_in_pas: Option<bool>,
    },
    /// A028: record a triage outcome (RETURN_TO_REFERRER_WITH_ADVICE | ACCEPT_REFER_BOOK_LATER).
    RecordOutcome {
        ubrn: Ubrn,
        #[arg(long)]
        version: Version,
        #[arg(long)]
        outcome: ReviewOutcome,
        #[arg(long)]
        comments: String,
        #[arg(long)]
        priority: Option<Priority>,
    },
    /// A029: actions available on a referral version.
    AvailableActions {
        ubrn: Ubrn,
        #[arg(long)]
        version: Version,
    },
    /// A023: the A&G requests worklist.
    AgWorklist {
        #[arg(long)]
        service: Option<String>,
    },
    /// A024: an A&G request.
    AgRequest {
        ubrn: Ubrn,
        #[arg(long)]
        version: Option<Version>,
    },
    /// A025: the A&G conversation.
    AgConversation {
        ubrn: Ubrn,
        #[arg(long)]
        version: Version,
    },
    /// A026: respond to an A&G request.
    AgRespond {
        ubrn: Ubrn,
        #[arg(long)]
        version: Version,
        #[arg(long)]
        outcome: GuidanceOutcome,
        /// Required with RETURN_TO_REFERRER_WITH_ADVICE.
        #[arg(long)]
        recommendation: Option<GuidanceRecommendation>,
        #[arg(long)]
        guidance: String,
        #[arg(long)]
        priority: Priority,
    },
    /// A027: convert an A&G request to a referral.
    AgConvert {
        ubrn: Ubrn,
        #[arg(long)]
        version: Version,
        #[arg(long)]
        guidance: String,
        #[arg(long)]
        priority: Priority,
        #[arg(long)]
        review_comments: String,
    },
}

/// Runs `ers <op>`.
pub fn run(args: ErsArgs) -> ExitCode {
    let (client, rt) = match client_and_runtime(args.config.as_deref()) {
        Ok(both) => both,
        Err(code) => return code,
    };
    rt.block_on(async {
        let result = execute(&client, args.op).await;
        if let Err(e) = client.shutdown().await {
            eprintln!("warning: {e}");
        }
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report(&e);
                ExitCode::FAILURE
            }
        }
    })
}

/// Loads the configuration and builds the client (shared with `check`).
pub(crate) fn build_client(path: Option<&std::path::Path>) -> anyhow::Result<ErsClient> {
    let path = path.context("no configuration: pass --config FILE or set ERS_BRIDGE_CONFIG")?;
    let cfg = config::load(path, &ProcessEnv)?;
    Ok(ErsClient::new(&cfg.ers, Arc::new(ProcessEnv))?)
}

/// The client (a configuration error prints and gives exit code 64) and the tokio runtime
/// (failing gives exit code 1).
pub(crate) fn client_and_runtime(
    path: Option<&std::path::Path>,
) -> Result<(ErsClient, tokio::runtime::Runtime), ExitCode> {
    let client = build_client(path).map_err(|e| {
        eprintln!("error: {}", super::explain(e.as_ref()));
        ExitCode::from(super::EX_USAGE)
    })?;
    let rt = super::runtime().map_err(|e| {
        eprintln!("error: {}", super::explain(e.as_ref()));
        ExitCode::FAILURE
    })?;
    Ok((client, rt))
}

/// Prints an error with its e-RS code and diagnostics on stderr.
pub(crate) fn report(e: &anyhow::Error) {
    eprintln!("error: {}", super::explain(e.as_ref()));
    if let Some(ers) = e.downcast_ref::<ErsError>() {
        if let Some(api) = ers.api() {
            detail("http status", api.status);
            detail("e-rs code", api.ers_code.as_deref().unwrap_or("-"));
            detail("issue type", api.issue_code.as_deref().unwrap_or("-"));
            detail("diagnostics", api.diagnostics.as_deref().unwrap_or("-"));
            detail("correlation id", &api.correlation_id);
            detail("request id", api.request_id.as_deref().unwrap_or("-"));
        }
        detail("retryable", if ers.is_retryable() { "yes" } else { "no" });
    }
}

/// One indented `label: value` line of [`report`], values aligned in one column.
fn detail(label: &str, value: impl std::fmt::Display) {
    eprintln!("  {:<16}{value}", format!("{label}:"));
}

fn print_json(v: &impl FhirResource) -> anyhow::Result<()> {
    use std::io::Write as _;
    let text = serde_json::to_string_pretty(&v.to_json())?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        // `ers-bridge ers ... | head` closes the pipe early: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn print_versioned<T: FhirResource>(v: &crate::ers::Versioned<T>) -> anyhow::Result<()> {
    if let Some(n) = v.version {
        eprintln!("version: {n}");
    }
    print_json(&v.resource)
}

fn save(bin: &Binary, out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::write(out, &bin.bytes).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "saved {} bytes ({}{}) to {}",
        bin.bytes.len(),
        bin.content_type.as_deref().unwrap_or("unknown type"),
        bin.filename
            .as_deref()
            .map(|f| format!(", sent as {f}"))
            .unwrap_or_default(),
        out.display()
    );
    Ok(())
}

/// The code system URL of a dynamic code system (echoed back exactly, as e-RS expects).
async fn code_system(client: &ErsClient, ty: &str) -> anyhow::Result<crate::fhir::CodeSystem> {
    Ok(client.reference_data(ty).await?)
}

async fn execute(c: &ErsClient, op: ErsOp) -> anyhow::Result<()> {
    match op {
        ErsOp::Worklist {
            list,
            service,
            specialty,
            specialty_not_assigned,
            clinician,
            clinician_not_assigned,
            location,
        } => {
            let mut req = FetchWorklist::new(list.into());
            req.service = service;
            req.location = location;
            req.clinician = match (clinician, clinician_not_assigned) {
                (Some(id), _) => Some(Assigned::Assigned(id)),
                (None, true) => Some(Assigned::NotAssigned),
                (None, false) => None,
            };
            req.specialty = match (specialty, specialty_not_assigned) {
                (Some(code), _) => {
                    let cs = code_system(c, "SPECIALTY").await?;
                    let system = cs.url.clone().context("A004 SPECIALTY has no url")?;
                    if cs.concept(&code).is_none() {
                        eprintln!("warning: {code} is not in A004 SPECIALTY; sending it anyway");
                    }
                    Some(Assigned::Assigned(Coding::new(system, code)))
                }
                (None, true) => Some(Assigned::NotAssigned),
                (None, false) => None,
            };
            let list = c.worklist(&req).await?;
            eprintln!("{} item(s)", list.entry.len());
            print_json(&list)
        }
        ErsOp::Referral { ubrn, version } => print_versioned(&c.referral(&ubrn, version).await?),
        ErsOp::Attachment { id, out, stu3 } => {
            let bin = if stu3 {
                c.attachment_stu3(&id).await?
            } else {
                c.attachment(&id).await?
            };
            save(&bin, &out)
        }
        ErsOp::ClinicalInfo { ubrn, out } => save(&c.clinical_info(&ubrn).await?, &out),
        ErsOp::ReferenceData { code_system: ty } => print_json(&code_system(c, &ty).await?),
        ErsOp::Accept { ubrn, version } => print_versioned(&c.accept(&ubrn, version).await?),
        ErsOp::Reject {
            ubrn,
            version,
            reason,
            comments,
            appointment_cancelled_in_pas,
        } => {
            let refdata = RefDataCache::new();
            let input = rejection_input(
                c,
                &refdata,
                &reason,
                comments,
                appointment_cancelled_in_pas,
                chrono::Utc::now(),
            )
            .await?;
            print_versioned(&c.reject(&ubrn, version, &input).await?)
        }
        ErsOp::CancelActionLater {
            ubrn,
            version,
            comments,
            priority,
            appointment_cancelled_in_pas,
        } => {
            let input = CancelAppointmentActionLater {
                comments,
                priority,
                appointment_cancelled_in_pas,
                attachments: vec![],
            };
            print_versioned(&c.cancel_action_later(&ubrn, version, &input).await?)
        }
        ErsOp::RecordOutcome {
            ubrn,
            version,
            outcome,
            comments,
            priority,
        } => {
            let input = RecordReviewOutcome {
                outcome,
                comments,
                priority,
                attachments: vec![],
            };
            print_versioned(&c.record_review_outcome(&ubrn, version, &input).await?)
        }
        ErsOp::AvailableActions { ubrn, version } => {
            let b = c.available_actions(&ubrn, version).await?;
            eprintln!("actions: {}", b.task_codes().join(", "));
            print_json(&b)
        }
        ErsOp::AgWorklist { service } => print_json(&c.advice_worklist(service.as_deref()).await?),
        ErsOp::AgRequest { ubrn, version } => {
            print_versioned(&c.advice_request(&ubrn, version).await?)
        }
        ErsOp::AgConversation { ubrn, version } => {
            print_json(&c.advice_conversation(&ubrn, version).await?)
        }
        ErsOp::AgRespond {
            ubrn,
            version,
            outcome,
            recommendation,
            guidance,
            priority,
        } => {
            let input = SendAdviceResponse {
                outcome,
                recommendation,
                guidance,
                updated_priority: priority,
                attachments: vec![],
            };
            print_json(&c.send_advice_response(&ubrn, version, &input).await?)
        }
        ErsOp::AgConvert {
            ubrn,
            version,
            guidance,
            priority,
            review_comments,
        } => {
            let input = ConvertAdviceToReferral {
                ubrn,
                version,
                guidance,
                new_priority: priority,
                review_comments,
                guidance_attachments: vec![],
                review_attachments: vec![],
            };
            print_versioned(&c.convert_advice(&input).await?)
        }
    }
}
