//! `ers-bridge render --mapping FILE --input REFERRAL.json [--attachments DIR] [--wire]`:
//! maps one referral offline and prints the HL7 with warnings on stderr: one segment per
//! line for reading, or with `--wire` the exact bytes published (CR after each segment,
//! in the mapping's charset). Both are the same message.
//! The control id is the deterministic one for the referral; the time is now unless
//! `--timestamp` fixes it.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

use crate::mapping::{compile_file, samples, ApplyInput, Attachments};

/// Arguments of `render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The mapping file, e.g. `mappings/ref_i12.v24.toml`.
    #[arg(long)]
    pub mapping: PathBuf,
    /// The ReferralRequest JSON (as A005 returns it).
    #[arg(long)]
    pub input: PathBuf,
    /// A folder of fetched attachments, each file named by its attachment id.
    #[arg(long)]
    pub attachments: Option<PathBuf>,
    /// MSH-7 as RFC 3339 (default: now), for reproducible output.
    #[arg(long)]
    pub timestamp: Option<String>,
    /// Print the bytes as published (segments end with CR, in the mapping's charset)
    /// instead of one segment per line.
    #[arg(long)]
    pub wire: bool,
}

/// Runs `render`: exit 0 with the message on stdout, 64 for a bad mapping, 1 when the
/// referral cannot be mapped.
pub fn run(args: &RenderArgs) -> ExitCode {
    let mapping = match compile_file(&args.mapping) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::EX_USAGE);
        }
    };
    match render(args, &mapping) {
        Ok(bytes) => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            match out.write_all(&bytes).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the message: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("error: {}", super::explain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn render(args: &RenderArgs, mapping: &crate::mapping::CompiledMapping) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let referral: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.input.display()))?;
    let attachments = match &args.attachments {
        Some(dir) => samples::read_attachments(dir)?,
        None => Attachments::new(),
    };
    let timestamp = match &args.timestamp {
        Some(t) => {
            chrono::DateTime::parse_from_rfc3339(t).context("--timestamp must be RFC 3339")?
        }
        None => chrono::Utc::now().fixed_offset(),
    };
    let control_id = mapping.control_id_for(&referral)?;
    let (rendered, bytes) = mapping.render(&ApplyInput {
        referral: &referral,
        control_id: &control_id,
        timestamp,
        attachments: &attachments,
        attachment_errors: &Default::default(),
    })?;
    for w in &rendered.warnings {
        eprintln!("warning: {w}");
    }
    Ok(if args.wire {
        bytes
    } else {
        samples::to_golden(&bytes)
    })
}
