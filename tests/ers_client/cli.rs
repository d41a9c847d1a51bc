//! The operator CLI (`ers-bridge ers ...`, `ers-bridge check`) against a local recording server: JSON on
//! stdout, e-RS error code and diagnostics on stderr, exit codes.

use std::process::Output;

use crate::common::{assert_exit, assert_success};
use crate::helpers::{config_toml, example_json, fhir, RecordingServer};

async fn bridge(config: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = crate::common::bridge();
    cmd.env("ERS_BRIDGE_CONFIG", config)
        .env("RUST_LOG", "warn")
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn write_config(dir: &tempfile::TempDir, base: &str) -> std::path::PathBuf {
    let path = dir.path().join("ers-bridge.toml");
    std::fs::write(
        &path,
        config_toml(base, "[ers.retry]\nmax_attempts = 1", "mode = \"none\""),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn referral_worklist_and_check_print_json() {
    let server = RecordingServer::spawn(|s, _| crate::wire::canned(s)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(&dir, &server.base());

    let out = bridge(&cfg, &["ers", "referral", "000000070001"]).await;
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["resourceType"], "ReferralRequest");
    assert_eq!(v["id"], "000000070001");
    assert!(String::from_utf8_lossy(&out.stderr).contains("version: 6"));

    let out = bridge(
        &cfg,
        &[
            "ers",
            "worklist",
            "--list",
            "referrals-for-review",
            "--service",
            "21012",
        ],
    )
    .await;
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["resourceType"], "List");
    let sent = server
        .seen()
        .into_iter()
        .find(|s| s.path.ends_with("$ers.fetchworklist"))
        .unwrap();
    assert_eq!(
        sent.json()["parameter"][1]["valueIdentifier"]["value"],
        "21012"
    );

    let pdf = dir.path().join("cri.pdf");
    let out = bridge(
        &cfg,
        &[
            "ers",
            "clinical-info",
            "000000070001",
            "--out",
            pdf.to_str().unwrap(),
        ],
    )
    .await;
    assert_success(&out);
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF"));

    let out = bridge(&cfg, &["check"]).await;
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("read reference data PRIORITY"), "{stdout}");
    assert!(
        stdout.contains("ok: broker amqp://127.0.0.1:5672/%2f accepted the credentials"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok: store sqlite://ers-bridge.db"),
        "{stdout}"
    );
}

/// `check` opens the store too, changing nothing: a PostgreSQL server that is not there and
/// a SQLite file that could not be created are each named (exit 69), with the setting to fix, while e-RS and
/// the broker are still reported on their own lines.
#[tokio::test(flavor = "multi_thread")]
async fn check_names_a_store_that_cannot_be_used() {
    let server = RecordingServer::spawn(|s, _| crate::wire::canned(s)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ers-bridge.toml");
    let base = config_toml(
        &server.base(),
        "[ers.retry]\nmax_attempts = 1",
        "mode = \"none\"",
    );
    std::fs::write(
        &path,
        base.clone() + "[store]\nurl = \"postgres://bridge:s3cret-pw@127.0.0.1:1/ers\"\n",
    )
    .unwrap();
    let out = bridge(&path, &["check"]).await;
    let err = assert_exit(&out, 69, "error: store postgres://bridge@127.0.0.1:1/ers");
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(err.contains("[store] url"), "{err}");
    assert!(!err.contains("s3cret-pw"), "no password: {err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("read reference data PRIORITY"), "{stdout}");
    assert!(stdout.contains("ok: broker"), "{stdout}");

    // A SQLite file in a directory that does not exist: `run` could not create it.
    let url = format!("sqlite://{}/no-such-dir/ers.db", dir.path().display());
    std::fs::write(&path, base + &format!("[store]\nurl = \"{url}\"\n")).unwrap();
    let out = bridge(&path, &["check"]).await;
    let err = assert_exit(&out, 69, "error: store sqlite://");
    assert!(err.contains("cannot create files beside it"), "{err}");
}

/// A wrong broker password is reported by `check` as what it is (exit 69, the broker and
/// the setting named, the password never shown), not left for `run` to treat as an
/// outage; e-RS is still checked and reported on its own line.
#[tokio::test(flavor = "multi_thread")]
async fn check_reports_a_broker_that_refuses_the_credentials() {
    let server = RecordingServer::spawn(|s, _| crate::wire::canned(s)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ers-bridge.toml");
    std::fs::write(
        &path,
        config_toml(
            &server.base(),
            "[ers.retry]\nmax_attempts = 1",
            "mode = \"none\"",
        ) + "[amqp]\nurl = \"amqp://guest:not-the-password@127.0.0.1:5672/%2f\"\n",
    )
    .unwrap();
    let out = bridge(&path, &["check"]).await;
    let err = assert_exit(&out, 69, "error: broker amqp://guest@127.0.0.1:5672");
    assert!(err.contains("[amqp] url"), "{err}");
    assert!(!err.contains("not-the-password"), "no password: {err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("read reference data PRIORITY"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_show_the_ers_code_and_exit_non_zero() {
    let server = RecordingServer::spawn(|s, _| {
        if s.path.contains("/CodeSystem/") {
            crate::helpers::example_reply(
                "stu3/getCodeSystem/responses/AppointmentCancellationReasonCodeSystem.json",
                None,
            )
        } else {
            fhir(422, example_json("stu3/STU3-OperationOutcome.json"), None)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(&dir, &server.base());
    let out = bridge(&cfg, &["ers", "accept", "000000070001", "--version", "5"]).await;
    let err = assert_exit(&out, 1, "e-rs code:      UNEXPECTED_FIELD");
    assert!(err.contains("unknown parameter name"), "{err}");

    // The reason is checked against A004 before anything is written.
    let out = bridge(
        &cfg,
        &[
            "ers",
            "reject",
            "000000070001",
            "--version",
            "5",
            "--reason",
            "NOPE",
        ],
    )
    .await;
    assert_exit(&out, 1, "SERVICE_INAPPROPRIATE");
    assert!(!server
        .seen()
        .iter()
        .any(|s| s.path.ends_with("$ers.rejectReferral")));

    // A valid reason: the system is echoed exactly as A004 gave it.
    let out = bridge(
        &cfg,
        &[
            "ers",
            "reject",
            "000000070001",
            "--version",
            "5",
            "--reason",
            "SERVICE_INAPPROPRIATE",
            "--comments",
            "c",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let sent = server
        .seen()
        .into_iter()
        .find(|s| s.path.ends_with("$ers.rejectReferral"))
        .unwrap();
    assert_eq!(
        sent.json()["parameter"][0]["valueCoding"]["system"],
        "_baseurl_/STU3/CodeSystem/APPOINTMENT-CANCELLATION-REASON"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_config_is_a_usage_error() {
    let out = bridge(
        std::path::Path::new("/nonexistent/ers-bridge.toml"),
        &["ers", "referral", "000000070001"],
    )
    .await;
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test(flavor = "multi_thread")]
async fn app_restricted_reject_is_refused_before_anything_is_sent() {
    let server = RecordingServer::spawn(|s, _| crate::wire::canned(s)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.toml");
    let auth = format!(
        "mode = \"app-restricted\"\napi_key = \"k\"\nprivate_key_file = \"{}\"\nkid = \"kid\"",
        crate::helpers::jwt_key("private.pem")
    );
    std::fs::write(&path, config_toml(&server.base(), "", &auth)).unwrap();
    let out = bridge(
        &path,
        &[
            "ers",
            "reject",
            "000000070001",
            "--version",
            "5",
            "--reason",
            "OTHER",
            "--comments",
            "c",
        ],
    )
    .await;
    assert_exit(
        &out,
        1,
        "A014 (reject referral) is not allowed in app-restricted mode",
    );
    assert!(server.seen().is_empty(), "nothing may be sent");
}

/// `decide` prints the e-RS body as the exact bytes the client sends for the same decision
/// (with `resourceType: Parameters`), and that body is the official A022 example for an
/// indirectly bookable service (the default rule sends `appointmentCancelledInPAS`).
#[tokio::test(flavor = "multi_thread")]
async fn decide_prints_exactly_the_bytes_the_client_sends() {
    let mut cmd = crate::common::bridge();
    cmd.args([
        "decide",
        "--input",
        "samples/pas/rri-cancel-action-later.hl7",
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = assert_success(&out);
    let mut lines = stdout.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with("request body"))
        .unwrap_or_else(|| panic!("no request body: {stdout}"));
    let printed = lines.next().expect("the body follows its heading");

    let server = RecordingServer::spawn(|s, _| crate::wire::canned(s)).await;
    let c = crate::helpers::client(
        &config_toml(&server.base(), "", "mode = \"none\""),
        ers_bridge::config::MapEnv::default(),
    );
    c.cancel_action_later(
        &crate::helpers::ubrn("000000070005"),
        crate::helpers::ver(5),
        &ers_bridge::fhir::requests::CancelAppointmentActionLater {
            comments: "Please contact patient to rebook".into(),
            priority: None,
            appointment_cancelled_in_pas: Some(true),
            attachments: vec![],
        },
    )
    .await
    .unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        printed,
        String::from_utf8_lossy(&seen[0].body),
        "decide printed other bytes than the client sends"
    );
    let body: serde_json::Value = serde_json::from_str(printed).unwrap();
    assert_eq!(body["resourceType"], "Parameters");
    assert_eq!(
        body,
        example_json("stu3/cancelAppointmentActionLater/requests/MinimalExampleIBS.json")
    );
}
