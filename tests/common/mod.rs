//! Helpers shared by the test binaries that run the `ers-bridge` binary itself (`cli`,
//! `mappings`, `ers_client`); each includes this file with `#[path = "../common/mod.rs"]`.

#![allow(dead_code)]

use std::process::{Command, Output};

/// The `ers-bridge` binary, run from the crate root. Configuration from the developer's
/// shell (`ERS_BRIDGE_CONFIG`, `ERS_BRIDGE__*` overrides) must not leak into the tests.
pub fn bridge() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ers-bridge"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ERS_BRIDGE") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Asserts that a run succeeded (showing its output otherwise); returns the stdout.
pub fn assert_success(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Asserts that a run exited with `code` and said `needle` on stderr; returns the stderr.
pub fn assert_exit(out: &Output, code: i32, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    stderr
}

/// Deletes the queues and exchanges `ers-bridge demo --queue-prefix PREFIX` declared.
pub async fn delete_demo_topology(ch: &lapin::Channel, prefix: &str) {
    for q in ["pas.referrals", "pas.acks", "from-pas", "dead-letter"] {
        let _ = ch
            .queue_delete(
                format!("{prefix}.{q}").as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    for x in ["to-pas", "dead-letter"] {
        let _ = ch
            .exchange_delete(
                format!("{prefix}.{x}").as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
}

/// Every file of a sample folder (relative to the crate root) but its `*.md`, by name,
/// sorted.
pub fn sample_files(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = format!("{}/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        out.push((
            path.file_name().unwrap().to_string_lossy().to_string(),
            std::fs::read(&path).unwrap(),
        ));
    }
    out.sort();
    out
}
