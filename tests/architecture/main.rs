//! The code map's rules that can be checked by reading the source (ARCHITECTURE.md,
//! "Invariants"; rust-analyzer's `tidy` tests are the model): which modules may use which
//! protocol crates, that the composition root (`app/`) is a dependency of nothing it
//! composes, that nothing in the bridge depends on the simulators, and that every module
//! opens with a `//!` paragraph. A failure names the file and the rule.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its path relative to the crate root.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            (rel, text)
        })
        .collect()
}

/// The code lines of a file: comments (line and doc) left out, so a rule is about what
/// the code uses, not what it mentions.
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Files that use `needle` in code but are not under one of `allowed` (path prefixes).
fn users_outside(needle: &str, allowed: &[&str]) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(path, text)| {
            code(text).contains(needle) && !allowed.iter().any(|a| path.starts_with(a))
        })
        .map(|(path, _)| path)
        .collect()
}

#[test]
fn only_the_protocol_modules_use_their_crates() {
    for (needle, allowed, why) in [
        ("lapin::", &["src/amqp/"][..], "only amqp/ imports lapin"),
        ("sqlx::", &["src/store/"][..], "only store/ imports sqlx"),
        (
            "hl7_parser::",
            &["src/hl7/"][..],
            "only hl7/ reads with hl7-parser",
        ),
        (
            "axum::",
            &["src/monitor/", "src/simulator/"][..],
            "only the monitor and the simulator serve HTTP",
        ),
        (
            "\"x-ers-",
            &["src/amqp/"][..],
            "only amqp/ names AMQP headers (the pipelines hand it typed messages, Hl7Out)",
        ),
        (
            "crate::amqp",
            &[
                "src/amqp/",
                "src/transport/",
                "src/app/",
                "src/cli/",
                "src/monitor/actions.rs",
                "src/pas_sim/",
            ][..],
            "the pipelines reach the PAS through transport::PasLink, never amqp/ itself \
             (the monitor only for a re-drive to the inbound queue)",
        ),
        (
            "reqwest::Client",
            &["src/ers/", "src/monitor/alerts.rs"][..],
            "only ers/ calls e-RS over HTTP (the alert webhooks are the one other client)",
        ),
    ] {
        let outside = users_outside(needle, allowed);
        assert!(outside.is_empty(), "{why}, but {outside:?} use {needle}");
    }
}

#[test]
fn the_composition_root_is_a_dependency_of_nothing_it_composes() {
    let outside = users_outside("crate::app", &["src/app/", "src/cli/", "src/main.rs"]);
    assert!(
        outside.is_empty(),
        "only app/ and cli/ may use app/ (the pipelines, the monitor and the PAS simulator \
         take runtime/): {outside:?}"
    );
    let holding = users_outside(
        "runtime::Shared",
        &["src/runtime/", "src/app/", "src/pipeline/"],
    );
    assert!(
        holding.is_empty(),
        "the monitor gets only the store, the events, the link to the PAS and an operations \
         handle, never the whole Shared: {holding:?}"
    );
    let outside = users_outside("crate::monitor", &["src/monitor/", "src/app/", "src/cli/"]);
    assert!(
        outside.is_empty(),
        "the pipelines and the store know nothing of the monitor: {outside:?}"
    );
}

#[test]
fn nothing_in_the_bridge_depends_on_the_simulators() {
    for needle in ["crate::simulator", "crate::pas_sim"] {
        let outside = users_outside(needle, &["src/simulator/", "src/pas_sim", "src/cli/"]);
        assert!(
            outside.is_empty(),
            "{needle} is used only by the CLI that starts it: {outside:?}"
        );
    }
}

#[test]
fn every_module_opens_with_what_it_is_for() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert!(missing.is_empty(), "no //! paragraph first: {missing:?}");
}
