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

/// Decision rules the auth mode cannot perform are reported: app-restricted may write only
/// A013 and A028, so reject, cancel-action-later and the A&G answers become needs-action.
#[test]
fn validate_reports_decisions_the_auth_mode_cannot_perform() {
    let out = bridge()
        .args([
            "validate",
            "--config",
            "tests/fixtures/config/app-restricted.toml",
        ])
        .output()
        .unwrap();
    let stdout = assert_success(&out);
    for (rule, op) in [
        ("rejected", "A014"),
        ("appointment cancelled, action later", "A022"),
        ("advice and guidance answered", "A026"),
    ] {
        assert!(
            stdout.contains(&format!("warning: decision rule {rule:?} needs {op}")),
            "{rule}: {stdout}"
        );
    }
    assert!(!stdout.contains("needs A013"), "{stdout}");
    assert!(!stdout.contains("needs A028"), "{stdout}");
    let none = bridge()
        .args(["validate", "--config", "samples/config/ers-bridge.toml"])
        .output()
        .unwrap();
    assert!(!assert_success(&none).contains("decision rule"));
}

/// `search --status` takes only statuses that exist: a typo is a usage error naming the
/// possible values, never an empty result that looks like "nothing found".
#[test]
fn search_refuses_a_status_that_does_not_exist() {
    let out = bridge()
        .args(["search", "--status", "bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs-action") && err.contains("confirmed"),
        "{err}"
    );
}

/// SQLite is for one instance: a second `run` on the same store file is refused at once
/// (exit 64) naming the file and what to do instead, while the first keeps it; once the
/// first has gone, the file can be used again. `validate` says the same of a SQLite
/// store.
#[test]
fn a_second_run_on_one_sqlite_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("one.db");
    let run = || {
        let mut cmd = bridge();
        cmd.args(["run", "--config", "tests/fixtures/config/minimal.toml"])
            .env(
                "ERS_BRIDGE__STORE__URL",
                format!("sqlite://{}", db.display()),
            )
            .env("ERS_BRIDGE__MONITOR__ENABLED", "false")
            .env("ERS_BRIDGE__INBOUND__ENABLED", "false")
            .env("RUST_LOG", "error");
        cmd
    };
    let mut first = run()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first holds the lock once its lock file exists (taken before anything else).
    let lock = dir.path().join("one.db.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !lock.exists() {
        assert!(std::time::Instant::now() < deadline, "no lock file");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run keeps running"
    );
    let second = run().output().unwrap();
    let err = assert_exit(
        &second,
        64,
        "another ers-bridge run is using the sqlite store",
    );
    assert!(
        err.contains("postgresql") && err.contains("docs/ha.md"),
        "{err}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // Released with the process, however it ended.
    let mut again = run()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        again.try_wait().unwrap().is_none(),
        "a run after the first died must start"
    );
    again.kill().unwrap();
    again.wait().unwrap();

    let out = bridge()
        .args(["validate", "--config", "tests/fixtures/config/minimal.toml"])
        .output()
        .unwrap();
    let stdout = assert_success(&out);
    assert!(
        stdout.contains("store: sqlite: one instance only") && stdout.contains("postgresql"),
        "{stdout}"
    );
}
