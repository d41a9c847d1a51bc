//! The `render` and `test-mappings` commands as an integration team uses them.

use crate::common::{assert_exit, assert_success, bridge};

#[test]
fn render_prints_the_golden_message() {
    let out = bridge()
        .args([
            "render",
            "--mapping",
            "mappings/ref_i12.v24.toml",
            "--input",
            "samples/fhir/referrals/booked-dbs.json",
            "--attachments",
            "samples/attachments",
            "--timestamp",
            "2024-01-15T10:30:00+00:00",
        ])
        .output()
        .unwrap();
    assert_success(&out);
    let golden = std::fs::read(super::root("samples/hl7v2/booked-dbs.hl7")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&golden)
    );
}

/// `--wire` prints the published bytes: the readable output with CR for each newline, and
/// a message the guarded reader accepts.
#[test]
fn render_wire_prints_the_published_bytes() {
    let args = [
        "render",
        "--mapping",
        "mappings/ref_i12.v251.toml",
        "--input",
        "samples/fhir/referrals/booked-dbs.json",
        "--attachments",
        "samples/attachments",
        "--timestamp",
        "2024-01-15T10:30:00+00:00",
    ];
    let readable = bridge().args(args).output().unwrap();
    assert_success(&readable);
    let wire = bridge().args(args).arg("--wire").output().unwrap();
    assert_success(&wire);
    assert!(!wire.stdout.contains(&b'\n'), "no LF on the wire");
    let as_lines: Vec<u8> = wire
        .stdout
        .iter()
        .map(|&b| if b == b'\r' { b'\n' } else { b })
        .collect();
    assert_eq!(as_lines, readable.stdout);
    let msg = ers_bridge::hl7::read::read(&wire.stdout).unwrap();
    assert_eq!(msg.segment("RF1").unwrap().comp(6, 1), "000000070001");
}

#[test]
fn render_reports_a_bad_mapping_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "version = 1\nmessage = \"REF^I12^REF_I12\"\nhl7_version = \"2.4\"\ncharset = \"8859/1\"\ncolour = \"blue\"\n").unwrap();
    let out = bridge()
        .args([
            "render",
            "--mapping",
            bad.to_str().unwrap(),
            "--input",
            "samples/fhir/referrals/unbooked.json",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 64, "bad.toml:5: colour: unknown field `colour`");
}

#[test]
fn test_mappings_passes_on_the_default_set_and_shows_diffs() {
    let out = bridge().args(["test-mappings"]).output().unwrap();
    let stdout = assert_success(&out);
    assert!(stdout.contains(" 0 failed"), "{stdout}");

    // A manifest pointing at a wrong golden file shows the differing line.
    let dir = tempfile::tempdir().unwrap();
    let golden = dir.path().join("wrong.hl7");
    std::fs::write(&golden, "MSH|^~\\&|SOMETHING ELSE\n").unwrap();
    let manifest = dir.path().join("samples.toml");
    let mappings = super::root("mappings");
    std::fs::write(
        &manifest,
        format!(
            "version = 1\ntimestamp = \"2024-01-15T10:30:00+00:00\"\n[[case]]\nmapping = \"{}/ref_i14.v24.toml\"\ninput = \"{}/../samples/fhir/referrals/unbooked.json\"\nexpected = \"wrong.hl7\"\n",
            mappings.display(),
            mappings.display()
        ),
    )
    .unwrap();
    let out = bridge()
        .args(["test-mappings", "--manifest", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("MISMATCH wrong.hl7"), "{stdout}");
    assert!(stdout.contains("  - MSH|^~\\&|SOMETHING ELSE"), "{stdout}");
    assert!(stdout.contains("  + MSH|^~\\&|ERS_BRIDGE|RXX"), "{stdout}");
    // The differing fields by position, expected against actual.
    assert!(
        stdout.contains("    MSH-3: expected \"SOMETHING ELSE\", actual \"ERS_BRIDGE\""),
        "{stdout}"
    );
}

/// `test-mappings --config` renders with the trust's MSH-3..6: the default goldens then
/// differ in MSH-4 only, named by position; `--bless NAME` rewrites only that sample, and
/// a name that is no sample blesses nothing and says which names there are.
#[test]
fn test_mappings_renders_the_configured_header_and_blesses_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = super::root("");
    // A copy of the sample manifest and goldens, so blessing touches only the copy.
    let manifest = dir.path().join("samples.toml");
    let text = std::fs::read_to_string(root.join("mappings/samples.toml")).unwrap();
    // The mapping cases only (the inbound decisions have no header).
    let text = text.split("[[inbound]]").next().unwrap();
    let goldens = dir.path().join("goldens");
    std::fs::create_dir_all(&goldens).unwrap();
    let mut rewritten = String::new();
    for line in text.lines() {
        let key = ["expected", "mapping", "input", "attachments"]
            .into_iter()
            .find_map(|k| Some((k, line.strip_prefix(&format!("{k} = \""))?)));
        match key {
            // The goldens are copied, so blessing writes only the copies.
            Some(("expected", rest)) => {
                let rel = rest.trim_end_matches('"');
                let to = goldens.join(rel.trim_start_matches("../").replace('/', "_"));
                std::fs::copy(root.join("mappings").join(rel), &to).unwrap();
                rewritten.push_str(&format!("expected = {:?}\n", to.display().to_string()));
            }
            Some((k, rest)) => {
                let abs = root.join("mappings").join(rest.trim_end_matches('"'));
                rewritten.push_str(&format!("{k} = {:?}\n", abs.display().to_string()));
            }
            None => {
                rewritten.push_str(line);
                rewritten.push('\n');
            }
        }
    }
    std::fs::write(&manifest, rewritten).unwrap();
    let config = dir.path().join("trust.toml");
    std::fs::write(
        &config,
        "[ers]\nbase_url = \"http://127.0.0.1:8080/referrals/FHIR\"\n[ers.auth]\nmode = \"none\"\n[mappings]\nsending_facility = \"RAJ\"\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        bridge()
            .args(["test-mappings", "--manifest", manifest.to_str().unwrap()])
            .args(["--config", config.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("    MSH-4: expected \"RXX\", actual \"RAJ\""),
        "{stdout}"
    );
    let names: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("MISMATCH "))
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 2, "{stdout}");

    let out = run(&["--bless", "no-such-sample"]);
    assert_exit(&out, 64, "--bless names no sample");
    let out = run(&["--bless", &names[0]]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains(&format!("blessed  {}", names[0])),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("MISMATCH {}", names[1])),
        "only the one named: {stdout}"
    );
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains(&format!("ok       {}", names[0])),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("MISMATCH {}", names[1])),
        "{stdout}"
    );
}

#[test]
fn validate_compiles_every_mapping_and_names_the_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mappings, config) = mappings_copy(&dir);
    let out = bridge()
        .args(["validate", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = assert_success(&out);
    assert!(
        stdout.contains("ok (11 mapping file(s) compiled)"),
        "{stdout}"
    );
    assert!(!stdout.contains("warning"), "the defaults warn: {stdout}");

    // A patient mapping and a v2.4 REF mapping that embeds attachments are valid, with a
    // warning each saying what the PAS gets.
    let warned = dir.path().join("warned.toml");
    std::fs::write(
        &warned,
        format!(
            "[ers]\nbase_url = \"http://127.0.0.1:8080/referrals/FHIR\"\n[ers.auth]\nmode = \"none\"\n[mappings]\ndir = \"{}\"\nnew_referral = \"ref_i12.v24.toml\"\npatient = \"adt_a28.v251.toml\"\n",
            mappings.display()
        ),
    )
    .unwrap();
    let out = bridge()
        .args(["validate", "--config", warned.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = assert_success(&out);
    assert!(
        stdout.contains(
            "warning: mappings.patient = \"adt_a28.v251.toml\": e-RS gives no demographics"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "warning: mappings.new_referral = \"ref_i12.v24.toml\" is v2.4 and embeds attachments"
        ),
        "{stdout}"
    );

    std::fs::write(
        mappings.join("zz_broken.toml"),
        "version = 1\nmessage = \"REF^I12^REF_I12\"\nhl7_version = \"2.4\"\ncharset = \"8859/1\"\n[[segment]]\nid = \"MSH\"\n[[segment.set]]\nat = \"3\"\nexpr = \"first(\"\n",
    )
    .unwrap();
    let out = bridge()
        .args(["validate", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_exit(
        &out,
        64,
        "zz_broken.toml:9: expr: expression ends too early",
    );
}

/// `decide` shows the rule, the action and the e-RS body for a PAS message, offline; with
/// the referral it applies the rules on the e-RS state.
#[test]
fn decide_shows_rule_action_and_body() {
    let with_state = bridge()
        .args([
            "decide",
            "--input",
            "samples/pas/rri-triage-return-advice.hl7",
            "--referral",
            "samples/fhir/referrals/deferred-to-provider.json",
        ])
        .output()
        .unwrap();
    let out = assert_success(&with_state);
    assert!(out.contains("e-RS state: DEFERRED_TO_PROVIDER"), "{out}");
    assert!(
        out.contains("rule:     \"triage: return to referrer with advice\""),
        "{out}"
    );
    assert!(out.contains("\"reviewOutcome\""), "{out}");
    assert!(out.contains("\"RETURN_TO_REFERRER_WITH_ADVICE\""), "{out}");
    let accepted = bridge()
        .args(["decide", "--input", "samples/pas/rri-accepted.hl7"])
        .output()
        .unwrap();
    let out = assert_success(&accepted);
    assert!(out.contains("rule:     \"accepted\""), "{out}");
    assert!(out.contains("\"action\":\"accept\""), "{out}");
    assert!(!out.contains("request body"), "A013 has no body: {out}");
    let garbage = bridge()
        .args(["decide", "--input", "Cargo.toml"])
        .output()
        .unwrap();
    assert_eq!(garbage.status.code(), Some(1));
}

/// A copy of the default mappings folder and a configuration that uses it, for tests that
/// break one file.
fn mappings_copy(dir: &tempfile::TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let mappings = dir.path().join("mappings");
    std::fs::create_dir_all(mappings.join("tables")).unwrap();
    for sub in ["", "tables"] {
        for entry in std::fs::read_dir(super::root("mappings").join(sub)).unwrap() {
            let p = entry.unwrap().path();
            if p.is_file() && p.file_name().is_some_and(|n| n != "samples.toml") {
                std::fs::copy(&p, mappings.join(sub).join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[ers]\nbase_url = \"http://127.0.0.1:8080/referrals/FHIR\"\n[ers.auth]\nmode = \"none\"\n[mappings]\ndir = \"{}\"\n",
            mappings.display()
        ),
    )
    .unwrap();
    (mappings, config)
}

/// docs/mappings.md: the engine sets MSH-1/2, MSH-7, MSH-9, MSH-10, MSH-12 and MSH-18, and
/// a mapping cannot assign them. `validate` refuses one that does, naming the field (an
/// `at = "10"` once rendered `|P|` as the control id and validated ok).
#[test]
fn validate_refuses_a_mapping_that_assigns_a_field_the_engine_owns() {
    let dir = tempfile::tempdir().unwrap();
    let (mappings, config) = mappings_copy(&dir);
    let validate = || {
        bridge()
            .args(["validate", "--config", config.to_str().unwrap()])
            .output()
            .unwrap()
    };
    assert_success(&validate());
    let head = "version = 1\nmessage = \"REF^I12^REF_I12\"\nhl7_version = \"2.4\"\ncharset = \"8859/1\"\n[[segment]]\nid = \"MSH\"\n";
    for at in ["1", "2", "7", "9", "10", "10.1", "12", "18"] {
        std::fs::write(
            mappings.join("zz_owned.toml"),
            format!("{head}[[segment.set]]\nat = \"{at}\"\nvalue = \"P\"\n"),
        )
        .unwrap();
        let field = at.split('.').next().unwrap();
        assert_exit(
            &validate(),
            64,
            &format!("zz_owned.toml:8: at: MSH-{field} is owned by the engine"),
        );
    }
    // The fields a mapping owns (sender, receiver, processing id, ...) stay assignable.
    std::fs::write(
        mappings.join("zz_owned.toml"),
        format!("{head}[[segment.set]]\nat = \"11\"\nvalue = \"T\"\n"),
    )
    .unwrap();
    assert_success(&validate());
}

/// A decision rule's key its action does not use would be silently ignored, so `validate`
/// refuses it with the rule and the key; A022 uses `appointment_cancelled_in_pas`.
#[test]
fn validate_refuses_decision_rule_keys_the_action_does_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let (mappings, config) = mappings_copy(&dir);
    let default = std::fs::read_to_string(mappings.join("inbound.toml")).unwrap();
    assert!(
        default.contains("action = \"cancel_action_later\"\nappointment_cancelled_in_pas = true"),
        "the default A022 rule sends the flag"
    );
    let validate = || {
        bridge()
            .args(["validate", "--config", config.to_str().unwrap()])
            .output()
            .unwrap()
    };
    assert_success(&validate());
    for (rule, key) in [
        (
            "action = \"accept\"\nappointment_cancelled_in_pas = true",
            "appointment_cancelled_in_pas",
        ),
        (
            "action = \"cancel_action_later\"\nreason_table = \"rejection_reasons\"",
            "reason_table",
        ),
        ("action = \"accept\"\nwhy = \"looks fine\"", "why"),
        (
            "action = \"accept\"\noutcome = \"ACCEPT_REFER_BOOK_LATER\"",
            "outcome",
        ),
    ] {
        std::fs::write(
            mappings.join("inbound.toml"),
            format!("{default}\n[[rule]]\nname = \"extra\"\nmessage = [\"RRI\"]\n{rule}\n"),
        )
        .unwrap();
        let stderr = assert_exit(&validate(), 64, &format!("{key}: rule \"extra\": action"));
        assert!(
            stderr.contains(&format!("does not use {key}")),
            "{rule}: {stderr}"
        );
        assert!(stderr.contains("inbound.toml:"), "{stderr}");
    }
}

/// A path the referral cannot have (a typo renders empty, silently) is named by `validate`
/// as a warning: the mapping, the field and the member; the shipped set has none.
#[test]
fn validate_warns_about_a_path_a_referral_request_cannot_have() {
    let dir = tempfile::tempdir().unwrap();
    let (mappings, config) = mappings_copy(&dir);
    let file = mappings.join("ref_i12.v251.toml");
    let base = std::fs::read_to_string(mappings.join("ref_i12.v24.toml")).unwrap();
    // The v2.5.1 REF^I12 the config uses by default, with one typo in PID-3.1.
    let typo = base
        .replace("hl7_version = \"2.4\"", "hl7_version = \"2.5.1\"")
        .replacen("subject.identifier", "subjekt.identifier", 1);
    assert_ne!(typo, base);
    std::fs::write(&file, typo).unwrap();
    let out = bridge()
        .args(["validate", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = assert_success(&out);
    assert!(
        stdout.contains("warning: mappings.new_referral = \"ref_i12.v251.toml\": PID-3.1 (NHS number) reads `subjekt` from the referral, which a STU3 ReferralRequest does not have"),
        "{stdout}"
    );
}
