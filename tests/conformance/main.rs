//! Conformance by an outside oracle: hl7apy (a strict third-party HL7 v2 library, run by
//! `validate_hl7.py` from the venv `scripts/dev.sh setup` installs) validates every golden
//! message in `samples/hl7v2/` and every message a demo run publishes to RabbitMQ.
//!
//! `deploy` checks the monitoring files with Prometheus's `promtool` the same way.
//!
//! The interpreter is `$HL7APY_PYTHON`, else `.venv-hl7apy/bin/python`; without either the
//! test fails and says how to install it (it never passes by checking nothing).

#[path = "../common/mod.rs"]
mod common;
mod deploy;

use std::path::{Path, PathBuf};
use std::process::Command;

use lapin::options::BasicGetOptions;

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn root(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/")).join(rel)
}

fn python() -> PathBuf {
    let from_env = std::env::var_os("HL7APY_PYTHON").map(PathBuf::from);
    let venv = root(".venv-hl7apy/bin/python");
    from_env
        .filter(|p| p.is_file())
        .or_else(|| venv.is_file().then_some(venv))
        .expect(
            "hl7apy is not installed: run `scripts/dev.sh setup` (or set HL7APY_PYTHON to a \
             python with hl7apy)",
        )
}

/// Runs the validator on `files`; returns its report, failing the test on any finding.
fn validate(files: &[PathBuf]) -> String {
    assert!(!files.is_empty(), "nothing to validate");
    let out = Command::new(python())
        .arg(root("tests/conformance/validate_hl7.py"))
        .args(files)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "hl7apy refused messages:\n{}\n{}",
        report
            .lines()
            .filter(|l| l.starts_with("FAIL"))
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        report.lines().filter(|l| l.starts_with("OK ")).count(),
        files.len()
    );
    report
}

fn hl7_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hl7_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "hl7") {
            out.push(path);
        }
    }
}

#[test]
fn every_golden_message_passes_the_strict_validator() {
    let mut files = Vec::new();
    hl7_files(&root("samples/hl7v2"), &mut files);
    assert!(files.len() >= 30, "only {} goldens", files.len());
    validate(&files);
}

/// Runs the validator on one message; returns (exit code, report).
fn validate_one(dir: &Path, name: &str, text: &str) -> (Option<i32>, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(python())
        .arg(root("tests/conformance/validate_hl7.py"))
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The validator is strict: a message it must refuse is refused (so a pass means
/// something), and embedded data is held to its version's datatype: ED.5 is ST (199
/// characters) in v2.4 and TX (65,536) in v2.5.1.
#[test]
fn the_validator_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    // RF1-6 (the referral's id) is required; an NTE before RF1 is out of order.
    let broken = "MSH|^~\\&|A|B|C|D|20240115103000||REF^I12^REF_I12|1|P|2.5.1\rNTE||O|x\rRF1|P\r";
    let (code, report) = validate_one(dir.path(), "broken.hl7", broken);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.starts_with("FAIL"), "{report}");

    let small = "JVBERi0xLjQKJXN5bnRoZXRpYyByZWZlcnJhbCBsZXR0ZXIK";
    let v24 = std::fs::read_to_string(root("samples/hl7v2/booked-dbs.hl7")).unwrap();
    let v251 = std::fs::read_to_string(root("samples/hl7v2/v251/booked-dbs.hl7")).unwrap();
    assert!(v24.contains(small) && v251.contains(small));
    let with_data = |text: &str, n: usize| text.replace(small, &"A".repeat(n));
    for (name, text, ok) in [
        ("v24-199.hl7", with_data(&v24, 199), true),
        ("v24-200.hl7", with_data(&v24, 200), false),
        ("v251-65536.hl7", with_data(&v251, 65_536), true),
        ("v251-65537.hl7", with_data(&v251, 65_537), false),
    ] {
        let (code, report) = validate_one(dir.path(), name, &text);
        assert_eq!(code, Some(if ok { 0 } else { 1 }), "{name}: {report}");
        if !ok {
            assert!(report.contains("MaxLengthReached"), "{name}: {report}");
        }
    }
}

/// A demo run (the default mapping set, seeded and generated referrals, attachments
/// fetched from the simulator) publishes only messages the validator accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_a_demo_publishes_passes_the_strict_validator() {
    let prefix = format!("conf-{}", uuid::Uuid::new_v4().simple());
    let out = tokio::task::spawn_blocking({
        let prefix = prefix.clone();
        move || {
            common::bridge()
                .env("RUST_LOG", "warn")
                .args([
                    "demo",
                    "--generate",
                    "20",
                    "--no-pas-sim",
                    "--queue-prefix",
                    &prefix,
                ])
                .args(["--amqp-url", AMQP_URL])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let queue = format!("{prefix}.pas.referrals");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let path = dir.path().join(format!("{}.hl7", files.len()));
        std::fs::write(&path, &m.delivery.data).unwrap();
        files.push(path);
    }
    common::delete_demo_topology(&ch, &prefix).await;
    common::assert_success(&out);
    // 20 generated plus the 6 seeded referrals on a provider worklist.
    assert_eq!(files.len(), 26, "published messages");
    let report = validate(&files);
    assert!(report.lines().all(|l| l.starts_with("OK ")), "{report}");
}
