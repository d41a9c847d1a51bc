//! `ers-bridge validate --config FILE`: parse and check the configuration, then compile
//! every mapping file in `[mappings] dir` and load the inbound decision table, and read the
//! key files the e-RS client needs at start, without any IO beyond reading files.

use std::{path::PathBuf, process::ExitCode};

use crate::config::{self, ProcessEnv};
use crate::mapping::{compile_file, DecisionTable, MappingError};

/// Arguments of `validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Runs `validate`: prints `ok` and exits 0, or prints the error and exits 64.
pub fn run(args: &ValidateArgs) -> ExitCode {
    let cfg = match config::load(&args.config, &ProcessEnv) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::EX_USAGE);
        }
    };
    // The files read at start (keys, certificates): opened now, so a wrong path is found
    // here with its line, not by `run`; then the e-RS client reads its own (a key that is
    // not a key). Nothing is sent.
    if let Err(e) = config::check_files(&args.config, &ProcessEnv) {
        eprintln!("error: {e}");
        return ExitCode::from(super::EX_USAGE);
    }
    if let Err(e) = crate::ers::ErsClient::new(&cfg.ers, std::sync::Arc::new(ProcessEnv)) {
        eprintln!("error: {}: {e}", args.config.display());
        return ExitCode::from(super::EX_USAGE);
    }
    println!(
        "{}: ok (auth mode {}, {} polled service(s))",
        args.config.display(),
        cfg.ers.auth.mode_name(),
        cfg.poll.len()
    );
    println!("{}", store_note(&cfg));
    match check_mappings(&cfg.mappings) {
        Ok(n) => {
            println!(
                "{}: ok ({n} mapping file(s) compiled)",
                cfg.mappings.dir.display()
            );
            for w in mapping_warnings(&cfg.mappings)
                .into_iter()
                .chain(decision_warnings(&cfg))
            {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(super::EX_USAGE)
        }
    }
}

/// What the store allows: one instance on SQLite, several on PostgreSQL (docs/ha.md).
fn store_note(cfg: &config::Config) -> String {
    let url = secrecy::ExposeSecret::expose_secret(&cfg.store.url);
    if url.starts_with("postgres") {
        format!(
            "store: postgresql: several instances may share it (this one is {:?}; give each its own [cluster] instance_id)",
            cfg.cluster.instance_id
        )
    } else {
        "store: sqlite: one instance only (a second run on the same file is refused); \
         high availability needs a postgresql store (docs/ha.md)"
            .to_string()
    }
}

/// Compiles every `*.toml` in the mappings folder (the decision table as such, the
/// sample manifest skipped) and checks the configured files exist. Returns the count.
pub fn check_mappings(m: &config::MappingFiles) -> Result<usize, MappingError> {
    let io = |e: std::io::Error| MappingError::io(m.dir.display(), &e);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&m.dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let inbound = m.dir.join(&m.inbound);
    let mut count = 0;
    for file in &files {
        if file.file_name().is_some_and(|n| n == "samples.toml") {
            continue;
        }
        if *file == inbound {
            DecisionTable::load(file)?;
        } else {
            compile_file(file)?;
        }
        count += 1;
    }
    let mut configured = m.outbound_files();
    configured.push(("inbound", inbound));
    for (key, path) in configured {
        if !path.is_file() {
            return Err(MappingError::Invalid {
                file: "config".into(),
                line: None,
                field: format!("mappings.{key}"),
                reason: format!("{} does not exist", path.display()),
            });
        }
    }
    Ok(count)
}

/// Decision rules whose e-RS operation the configured auth mode may not perform: their
/// decisions will become needs-action records. Call after [`check_mappings`] succeeded.
pub fn decision_warnings(cfg: &config::Config) -> Vec<String> {
    use crate::ers::capability::AuthMode;
    let mode = match cfg.ers.auth.mode_name() {
        "app-restricted" => AuthMode::AppRestricted,
        "user-restricted" => AuthMode::UserRestricted,
        "legacy-session" => AuthMode::LegacySession,
        _ => AuthMode::None,
    };
    let Ok(table) = DecisionTable::load(&cfg.mappings.dir.join(&cfg.mappings.inbound)) else {
        return Vec::new();
    };
    table
        .rules
        .iter()
        .filter_map(|r| {
            let op = r.action.operation()?;
            (!op.allowed_in(mode)).then(|| {
                format!(
                    "decision rule {:?} needs {op}, which {} mode may not call: its decisions \
                     will become needs-action records (ers-bridge needs-action)",
                    r.name,
                    mode.name()
                )
            })
        })
        .collect()
}

/// Choices that are valid but that a PAS team should know the cost of: a patient mapping
/// (e-RS gives no demographics) and a v2.4 REF mapping that embeds attachments (ED.5 is ST
/// in v2.4, meant for under 200 characters; a strict v2.4 parser refuses a base64 letter).
/// Call after [`check_mappings`] succeeded.
pub fn mapping_warnings(m: &config::MappingFiles) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(patient) = &m.patient {
        out.push(format!(
            "mappings.patient = {patient:?}: e-RS gives no demographics, so the ADT message \
             carries only the NHS number (PID-3) and a name of type U; the PAS must look \
             the patient up by NHS number itself (docs/mappings.md, \"Patient messages\")"
        ));
    }
    // Paths from the referral that a STU3 ReferralRequest cannot have: a typo renders empty
    // without any error, so say so before it reaches a PAS.
    let patient = m.patient.clone().unwrap_or_default();
    for (key, file) in [
        ("new_referral", &m.new_referral),
        ("changed_referral", &m.changed_referral),
        ("cancelled_referral", &m.cancelled_referral),
        ("patient", &patient),
    ] {
        if file.is_empty() {
            continue;
        }
        let Ok(compiled) = compile_file(&m.dir.join(file)) else {
            continue;
        };
        for (field, member) in crate::mapping::stu3::unknown_members(&compiled) {
            out.push(format!(
                "mappings.{key} = {file:?}: {field} reads `{member}` from the referral, which \
                 a STU3 ReferralRequest does not have (a typo? it always renders empty)"
            ));
        }
    }
    for (key, file) in [
        ("new_referral", &m.new_referral),
        ("changed_referral", &m.changed_referral),
    ] {
        let Ok(compiled) = compile_file(&m.dir.join(file)) else {
            continue;
        };
        if compiled.hl7_version == "2.4" && compiled.max_inline_bytes > 0 {
            out.push(format!(
                "mappings.{key} = {file:?} is v2.4 and embeds attachments: OBX-5 ED data \
                 is ST in v2.4 (under 200 characters), so strict v2.4 parsers refuse an \
                 embedded letter; use the v2.5.1 file or attachment_max_inline_bytes = 0 \
                 (docs/mappings.md, \"Choosing v2.4\")"
            ));
        }
    }
    out
}
