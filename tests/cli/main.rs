//! Black-box tests of the `ers-bridge` binary's command line: exit codes and messages that
//! operators and scripts depend on.

#[path = "../common/mod.rs"]
mod common;

use common::{assert_exit, assert_success, bridge};

#[test]
fn validate_accepts_the_sample_config() {
    let out = bridge()
        .args(["validate", "--config", "samples/config/ers-bridge.toml"])
        .output()
        .unwrap();
    let stdout = assert_success(&out);
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
    assert_exit(
        &out,
        64,
        "tests/fixtures/config/budget.wrong.toml:13: key `poll[0].interval_secs`",
    );
}

#[test]
fn validate_applies_environment_overrides() {
    let out = bridge()
        .args(["validate", "--config", "tests/fixtures/config/minimal.toml"])
        .env("ERS_BRIDGE__ERS__BASE_URL", "ftp://example")
        .output()
        .unwrap();
    assert_exit(&out, 64, "key `ers.base_url`: must be an http or https url");
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
