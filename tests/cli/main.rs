//! Black-box tests of the `ers-bridge` binary's command line: exit codes and messages that
//! operators and scripts depend on.

use std::process::Command;

fn bridge() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ers-bridge"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    // Overrides from the developer's shell must not leak into these tests.
    for (k, _) in std::env::vars() {
        if k.starts_with("ERS_BRIDGE__") {
            cmd.env_remove(k);
        }
    }
    cmd
}

#[test]
fn validate_accepts_the_sample_config() {
    let out = bridge()
        .args(["validate", "--config", "samples/config/ers-bridge.toml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok (auth mode none, 1 polled service(s))"),
        "{stdout}"
    );
}

#[test]
fn validate_exits_64_with_file_key_and_reason() {
    let out = bridge()
        .args([
            "validate",
            "--config",
            "tests/fixtures/config/budget.wrong.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tests/fixtures/config/budget.wrong.toml:13: key `poll[0].interval_secs`"),
        "{stderr}"
    );
}

#[test]
fn validate_applies_environment_overrides() {
    let out = bridge()
        .args(["validate", "--config", "tests/fixtures/config/minimal.toml"])
        .env("ERS_BRIDGE__ERS__BASE_URL", "ftp://example")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key `ers.base_url`: must be an http or https url"),
        "{stderr}"
    );
}

#[test]
fn json_log_format_is_accepted() {
    let out = bridge()
        .args([
            "--log-format",
            "json",
            "validate",
            "--config",
            "tests/fixtures/config/minimal.toml",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
}
