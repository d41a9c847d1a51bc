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

/// The NHS numbers in the seeded referrals (`samples/fhir`): the patients of the demo.
fn seeded_nhs_numbers() -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut dirs = vec![std::path::PathBuf::from("samples/fhir")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&p).unwrap();
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                collect_nhs_numbers(&v, &mut out);
            }
        }
    }
    out
}

fn collect_nhs_numbers(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("system").and_then(|s| s.as_str()) == Some("http://fhir.nhs.net/Id/nhs-number")
            {
                if let Some(n) = m.get("value").and_then(|s| s.as_str()) {
                    out.insert(n.to_string());
                }
            }
            m.values().for_each(|x| collect_nhs_numbers(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_nhs_numbers(x, out)),
        _ => {}
    }
}

/// The whole loop (`demo`: e-RS simulator, bridge, PAS simulator over RabbitMQ, every
/// decision the PAS makes) with JSON logs at debug: no line at info or above carries an NHS
/// number of the run's patients or any part of a message body (HL7 segments, FHIR
/// resources), and neither does stdout; at debug the same numbers may appear only in the
/// lines the bridge marks as debug. Patient data in logs is a reportable incident in the
/// NHS (issue 21).
#[test]
fn the_whole_loop_logs_no_patient_data_at_info() {
    let numbers = seeded_nhs_numbers();
    assert!(!numbers.is_empty(), "{numbers:?}");
    // The detector recognises a real-format number (the seeded patient's).
    assert!(numbers.iter().all(|n| nhs_check_digit_ok(n)), "{numbers:?}");
    let prefix = format!("leak-{}", std::process::id());
    let out = bridge()
        .args([
            "--log-format",
            "json",
            "demo",
            "--generate",
            "20",
            "--queue-prefix",
            &prefix,
        ])
        .env(
            "RUST_LOG",
            "debug,lapin=off,sqlx=off,hyper=off,h2=off,reqwest=off",
        )
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    delete_demo_topology(&prefix);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let mut info_lines = 0;
    let mut debug_lines = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a json log line ({e}): {line}"));
        let level = v["level"].as_str().unwrap_or("");
        if matches!(level, "DEBUG" | "TRACE") {
            debug_lines += 1;
            continue;
        }
        info_lines += 1;
        assert_no_patient_data(&numbers, line);
    }
    assert_no_patient_data(&numbers, &stdout);
    // Quiet by default: a handful of lines at info (each checked above); the lines per
    // message, per poll and per e-RS call are at debug.
    assert!(
        info_lines >= 3,
        "the demo logged {info_lines} lines at info"
    );
    assert!(
        stderr.contains("\"message published\""),
        "the per-message lines are at debug"
    );
    assert!(
        debug_lines > info_lines,
        "debug was on: {debug_lines} debug lines"
    );
}

fn assert_no_patient_data(numbers: &std::collections::BTreeSet<String>, text: &str) {
    for n in numbers {
        assert!(!text.contains(n.as_str()), "an nhs number at info: {text}");
    }
    // The generated patients' numbers: 10 digits in the synthetic 999 range with a valid
    // check digit, anywhere in the text.
    for run in text.split(|c: char| !c.is_ascii_digit()) {
        assert!(
            !(run.len() == 10 && run.starts_with("999") && nhs_check_digit_ok(run)),
            "a generated nhs number ({run}) at info: {text}"
        );
    }
    for marker in [
        "MSH|",
        "PID|",
        "RF1|",
        "PRD|",
        "OBX|",
        "\"resourceType\"",
        "MSH^",
    ] {
        assert!(
            !text.contains(marker),
            "a message body ({marker}) at info: {text}"
        );
    }
}

/// Removes what `demo --queue-prefix prefix` declared on the local broker.
fn delete_demo_topology(prefix: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let Ok(conn) =
            lapin::Connection::connect("amqp://127.0.0.1:5672/%2f", Default::default()).await
        else {
            return;
        };
        let ch = conn.create_channel().await.unwrap();
        common::delete_demo_topology(&ch, prefix).await;
        let _ = conn.close(200, "done".into()).await;
    });
}

/// The NHS number's modulus-11 check digit.
fn nhs_check_digit_ok(n: &str) -> bool {
    let d: Vec<u32> = n.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() != 10 {
        return false;
    }
    let sum: u32 = d[..9].iter().zip((2..=10).rev()).map(|(a, w)| a * w).sum();
    let check = 11 - sum % 11;
    let check = if check == 11 { 0 } else { check };
    check != 10 && check == d[9]
}

/// A table of wrong configurations: `validate` exits 64 and names the file, the line and
/// the key of each, with the reason (issue 21).
#[test]
fn every_kind_of_wrong_configuration_names_file_line_and_key() {
    const HEAD: &str = "[ers]\nbase_url = \"http://127.0.0.1:8080/referrals/FHIR\"\n";
    const NONE: &str = "[ers.auth]\nmode = \"none\"\n";
    let app = |key: &str| {
        format!(
            "[ers.auth]\nmode = \"app-restricted\"\napi_key = \"k\"\nkid = \"kid\"\nprivate_key_file = \"{key}\"\n"
        )
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "unknown key",
            format!("{HEAD}rate_limt_per_sec = 5\n{NONE}"),
            "3: key `ers.rate_limt_per_sec`",
            "unknown field",
        ),
        (
            "wrong type",
            format!("{HEAD}rate_limit_per_sec = \"ten\"\n{NONE}"),
            "3: key `ers.rate_limit_per_sec`",
            "invalid type",
        ),
        (
            "impossible schedule",
            format!("{HEAD}{NONE}[[poll]]\nservice = \"21012\"\nlists = [\"referrals-for-review\"]\ninterval_secs = 0\n"),
            "8: key `poll[0].interval_secs`",
            "must be above 0",
        ),
        (
            "schedule over the daily budget",
            format!(
                "{HEAD}{}[[poll]]\nservice = \"21012\"\nlists = [\"referrals-for-review\"]\ninterval_secs = 60\n",
                app("tests/fixtures/jwt/private.pem")
            ),
            "key `poll[0].interval_secs`",
            "budget",
        ),
        (
            "unreadable key file",
            format!("{HEAD}{}", app("/nonexistent/jwt.pem")),
            "7: key `ers.auth.private_key_file`",
            "cannot read /nonexistent/jwt.pem",
        ),
        (
            "bad e-rs url",
            format!("[ers]\nbase_url = \"ftp://example\"\n{NONE}"),
            "2: key `ers.base_url`",
            "http or https",
        ),
        (
            "plain http to a real host",
            format!("[ers]\nbase_url = \"http://api.service.nhs.uk/referrals/FHIR\"\n{NONE}"),
            "2: key `ers.base_url`",
            "https only",
        ),
        (
            "bad webhook url",
            format!("{HEAD}{NONE}[alerts]\nwebhook_url = \"not a url\"\n"),
            "6: key `alerts.webhook_url`",
            "http or https",
        ),
        (
            "a client certificate without its key",
            format!("{HEAD}{NONE}[amqp]\ntls_client_cert_file = \"tests/fixtures/jwt/public.pem\"\n"),
            "6: key `amqp.tls_client_cert_file`",
            "needs both",
        ),
        (
            "an unreadable amqp ca file",
            format!("{HEAD}{NONE}[amqp]\ntls_ca_file = \"/nonexistent/ca.pem\"\n"),
            "6: key `amqp.tls_ca_file`",
            "cannot read /nonexistent/ca.pem",
        ),
        (
            "no inbound byte budget",
            format!("{HEAD}{NONE}[amqp]\ninbound_bytes_in_flight_mib = 0\n"),
            "6: key `amqp.inbound_bytes_in_flight_mib`",
            "between 1 and 4096",
        ),
        (
            "bad listen address",
            format!("{HEAD}{NONE}[inbound]\nmllp_listen = \"here\"\n"),
            "key `inbound.mllp_listen`",
            "",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, text, place, reason) in cases {
        let path = dir.path().join(format!("{}.toml", what.replace(' ', "-")));
        std::fs::write(&path, &text).unwrap();
        let out = bridge()
            .args(["validate", "--config", path.to_str().unwrap()])
            .env_remove("ERS_BRIDGE_CONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{what}: {err}");
        // A place starting with a line number follows the file name: `<file>:<line>: key`.
        let want = if place.starts_with(|c: char| c.is_ascii_digit()) {
            format!("{}:{place}", path.display())
        } else {
            place.to_string()
        };
        assert!(err.contains(&want), "{what}: expected `{want}` in {err}");
        assert!(
            err.contains(path.to_str().unwrap()),
            "{what}: the file is named: {err}"
        );
        assert!(err.contains(reason), "{what}: expected `{reason}` in {err}");
    }
}

/// On a terminal (a pseudo-terminal made by util-linux `script`), `demo` shows a progress
/// line counting what went to and came from the PAS, cleared before the summary; piped, as
/// in every other test here, it shows none.
#[test]
fn the_demo_shows_progress_on_a_terminal() {
    let prefix = format!("progress-{}", std::process::id());
    let command = format!(
        "{} demo --generate 60 --queue-prefix {prefix}",
        env!("CARGO_BIN_EXE_ers-bridge")
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "warn")
        .env_remove("ERS_BRIDGE_CONFIG")
        .output()
        .expect("util-linux script runs the demo on a pseudo-terminal");
    delete_demo_topology(&prefix);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("demo: ") && text.contains("to the PAS, ") && text.contains(" e-RS calls"),
        "a progress line: {text}"
    );
    assert!(text.contains("referrals published:"), "the summary: {text}");
}
