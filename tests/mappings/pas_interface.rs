//! Every PAS message in `samples/pas/` conforms to docs/pas-interface.md, except the
//! samples the document names as deliberately non-conforming, which fail it for the
//! reason it gives. The profile's code tables agree with `mappings/inbound.toml` and the
//! CSV it references, and the document lists every code and every sample.

use std::collections::BTreeSet;

use ers_bridge::hl7::read::DEFAULT_MAX_BYTES;
use ers_bridge::hl7::{read, read_inbound, Inbound, Message};

use super::root;

/// MSH-9.1 the bridge accepts from a PAS (§2).
const MESSAGE_TYPES: [&str; 2] = ["ACK", "RRI"];
/// MSH-12 (§2.1).
const VERSIONS: [&str; 2] = ["2.4", "2.5.1"];
/// MSH-18, first repetition (§2.1).
const CHARSETS: [&str; 5] = ["", "UNICODE UTF-8", "UTF-8", "ASCII", "8859/1"];
/// MSA-1, table 0008 (§2.2).
const ACK_CODES: [&str; 6] = ["CA", "CE", "CR", "AA", "AE", "AR"];
/// RF1-1, table 0283 (§2.3).
const STATUSES: [&str; 4] = ["A", "R", "P", "E"];
/// RF1-10 decision codes (§2.3).
const DECISION_REASONS: [&str; 5] = [
    "RETURN_ADVICE",
    "BOOK_LATER",
    "REBOOK",
    "AG_ADVICE",
    "AG_CONVERT",
];
/// RF1-10 rejection reasons and their e-RS codes (§2.3, the CSV).
const REJECTION_REASONS: [(&str, &str); 5] = [
    ("INFO", "FURTHER_INFORMATION_REQUIRED"),
    ("NOTREQ", "OUTPATIENT_APPT_NOT_REQUIRED"),
    ("WRONGSVC", "SERVICE_INAPPROPRIATE"),
    ("PREREQ", "SERVICE_PREREQUISITES_NOT_COMPLETE"),
    ("OTHER", "OTHER"),
];

/// RF1-2.1 priorities and their e-RS codes (§2.3, `mappings/tables/priority.csv`); RF1-2.4
/// may carry the e-RS code itself.
const PRIORITIES: [(&str, &str); 3] = [("R", "ROUTINE"), ("A", "URGENT"), ("W", "TWO_WEEK_WAIT")];

/// The samples the document names as deliberately non-conforming, with a word of the
/// violation the check must report.
const NON_CONFORMING: [(&str, &str); 3] = [
    ("unreadable-truncated", "unreadable"),
    ("rri-accepted-without-ubrn", "UBRN"),
    ("rri-rejected-unknown-reason", "RF1-10"),
];

/// §6: each sample and the decision its `.expected.json` holds.
const EXAMPLES: [(&str, &str); 24] = [
    ("ack-commit-ca", "no_action"),
    ("ack-application-aa", "no_action"),
    ("ack-error-v24", "review"),
    ("ack-error-v251", "review"),
    ("ack-reject-ar", "review"),
    ("rri-accepted", "accept"),
    ("rri-accepted-no-msh93-zsegment", "accept"),
    ("rri-accepted-not-booked", "accept"),
    ("rri-rejected", "reject"),
    ("rri-cancel-action-later", "cancel_action_later"),
    ("rri-cancel-action-later-ibs", "cancel_action_later"),
    ("rri-triage-book-later", "record_review_outcome"),
    ("rri-triage-return-advice", "record_review_outcome"),
    ("rri-reject-dbs", "reject"),
    ("rri-reject-ibs", "reject"),
    ("rri-triage-return-no-action", "record_review_outcome"),
    ("rri-triage-book-later-urgent", "record_review_outcome"),
    ("rri-pending", "no_action"),
    ("rri-expired", "review"),
    ("rri-ag-advice", "advice_response"),
    ("rri-ag-convert", "convert_advice"),
    ("rri-accepted-without-ubrn", "review"),
    ("rri-rejected-unknown-reason", "review"),
    ("unreadable-truncated", "review"),
];

fn sample_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root("samples/pas"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hl7"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The profile's violations for one message's bytes (empty: conforming).
fn violations(bytes: &[u8]) -> Vec<String> {
    let (message, msg) = match read(bytes).map_err(|e| e.to_string()).and_then(|m| {
        read_inbound(bytes, DEFAULT_MAX_BYTES)
            .map(|i| (m, i))
            .map_err(|e| e.to_string())
    }) {
        Ok(read) => read,
        Err(e) => return vec![format!("unreadable: {e}")],
    };
    let mut out = msh_violations(&message, &msg);
    match msg.message_type.as_str() {
        "ACK" => out.extend(ack_violations(&msg)),
        "RRI" => out.extend(rri_violations(&msg)),
        _ => {}
    }
    out
}

fn msh_violations(message: &Message, msg: &Inbound) -> Vec<String> {
    let mut out = Vec::new();
    let msh = message.segment("MSH").expect("the reader requires MSH");
    if !MESSAGE_TYPES.contains(&msg.message_type.as_str()) {
        out.push(format!("MSH-9.1 {:?} is not ACK or RRI", msg.message_type));
    }
    if msg.event.is_empty() {
        out.push("MSH-9.2 event is missing".into());
    }
    if msg.message_type == "RRI" && msg.event != "I12" {
        out.push(format!("MSH-9.2 {:?} is not I12 for an RRI", msg.event));
    }
    let structure = msh.comp(9, 3);
    if !["", "ACK", "RRI_I12"].contains(&structure) {
        out.push(format!("MSH-9.3 {structure:?} is not ACK or RRI_I12"));
    }
    if msg.control_id.as_str().len() > 20 {
        out.push("MSH-10 is longer than 20 characters".into());
    }
    if !VERSIONS.contains(&msg.version.as_str()) {
        out.push(format!("MSH-12 {:?} is not 2.4 or 2.5.1", msg.version));
    }
    if !CHARSETS.contains(&msh.comp(18, 1)) {
        out.push(format!(
            "MSH-18 {:?} is not a supported charset",
            msh.comp(18, 1)
        ));
    }
    out
}

fn ack_violations(msg: &Inbound) -> Vec<String> {
    let mut out = Vec::new();
    match msg.ack_code {
        Some(code) if ACK_CODES.contains(&code.as_str()) => {}
        other => out.push(format!("MSA-1 {other:?} is not in table 0008")),
    }
    match &msg.acked_control_id {
        Some(cid) if cid.outbound_parts().is_some() => {}
        other => out.push(format!("MSA-2 {other:?} does not name a message of ours")),
    }
    out
}

fn rri_violations(msg: &Inbound) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(code) = msg.ack_code {
        if code.as_str() != "AA" {
            out.push(format!("MSA-1 {} on an RRI (send AA)", code.as_str()));
        }
    }
    let Some(rri) = &msg.referral else {
        return vec!["RF1 is missing".into()];
    };
    if !STATUSES.contains(&rri.status.as_str()) {
        out.push(format!("RF1-1 {:?} is not in table 0283", rri.status));
    }
    let from_msa = msg
        .acked_control_id
        .as_ref()
        .and_then(|c| c.outbound_parts())
        .map(|(u, ..)| u);
    match (&rri.ubrn, &from_msa) {
        (None, None) => out.push("no UBRN in RF1-6, RF1-11 or MSA-2".into()),
        (Some(a), Some(b)) if a != b => out.push(format!("RF1 UBRN {a} differs from MSA-2's {b}")),
        _ => {}
    }
    let priority_known = rri.priority.is_empty()
        || PRIORITIES
            .iter()
            .any(|(local, code)| *local == rri.priority || *code == rri.priority_code);
    if !priority_known {
        out.push(format!(
            "RF1-2 {:?} is not a priority of §2.3",
            rri.priority
        ));
    }
    if rri.observations > 0 {
        out.push("OBX on an RRI: documents are not carried with a decision".into());
    }
    if rri.status == "R" {
        let known = rri.reasons.iter().any(|r| {
            DECISION_REASONS.contains(&r.as_str())
                || REJECTION_REASONS.iter().any(|(code, _)| code == r)
        });
        if !known {
            out.push(format!(
                "RF1-10 {:?}: no decision or rejection reason code for RF1-1 R",
                rri.reasons
            ));
        }
    }
    out
}

#[test]
fn every_pas_sample_conforms_to_the_profile_except_those_named() {
    let names = sample_names();
    assert!(
        names.len() >= 20,
        "samples/pas/ has {} messages",
        names.len()
    );
    for name in &names {
        let bytes = std::fs::read(root(&format!("samples/pas/{name}.hl7"))).unwrap();
        let found = violations(&bytes);
        match NON_CONFORMING.iter().find(|(n, _)| n == name) {
            Some((_, why)) => assert!(
                found.iter().any(|v| v.contains(why)),
                "{name} is documented as non-conforming ({why}), found {found:?}"
            ),
            None => assert!(found.is_empty(), "{name} does not conform: {found:?}"),
        }
    }
}

#[test]
fn every_sample_is_a_documented_example_with_its_decision() {
    let names = sample_names();
    let documented: BTreeSet<&str> = EXAMPLES.iter().map(|(n, _)| *n).collect();
    let present: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        present, documented,
        "samples/pas/ and the document's §6 differ"
    );
    let doc = std::fs::read_to_string(root("docs/pas-interface.md")).unwrap();
    for (name, action) in EXAMPLES {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "{name} missing from §6"
        );
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root(&format!("samples/pas/{name}.expected.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(expected["action"], action, "{name}");
    }
    for (name, _) in NON_CONFORMING {
        assert!(
            doc.lines()
                .any(|l| l.starts_with(&format!("| `{name}` |")) && l.contains("deliberately")),
            "{name} is not named as deliberately non-conforming in the document"
        );
    }
}

/// The (code, local) rows of the CSV table `name` that mappings/inbound.toml declares.
fn table_rows(toml: &toml::Value, name: &str) -> BTreeSet<(String, String)> {
    let csv_path = toml["tables"][name].as_str().unwrap();
    let csv = std::fs::read_to_string(root(&format!("mappings/{csv_path}"))).unwrap();
    csv.lines()
        .skip(1)
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split(',');
            (f.next().unwrap().into(), f.next().unwrap().into())
        })
        .collect()
}

#[test]
fn the_profile_code_tables_are_the_configured_ones() {
    // The rejection table is the CSV that mappings/inbound.toml references.
    let toml: toml::Value =
        toml::from_str(&std::fs::read_to_string(root("mappings/inbound.toml")).unwrap()).unwrap();
    let rows = table_rows(&toml, "rejection_reasons");
    let documented: BTreeSet<(String, String)> = REJECTION_REASONS
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(rows, documented);
    // RF1-2 is read back through the priority table the REF used.
    let rows: BTreeSet<(String, String)> = table_rows(&toml, "priority")
        .into_iter()
        .map(|(code, local)| (local, code))
        .collect();
    let documented: BTreeSet<(String, String)> = PRIORITIES
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(rows, documented);

    // Every code a rule matches on is in the profile.
    let mut reasons = BTreeSet::new();
    for rule in toml["rule"].as_array().unwrap() {
        let list = |key: &str| -> Vec<String> {
            rule.get(key)
                .and_then(|v| v.as_array())
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        for m in list("message") {
            assert!(MESSAGE_TYPES.contains(&m.as_str()), "message {m}");
        }
        for a in list("ack") {
            assert!(ACK_CODES.contains(&a.as_str()), "ack {a}");
        }
        for s in list("status") {
            assert!(STATUSES.contains(&s.as_str()), "status {s}");
        }
        reasons.extend(list("reason"));
    }
    let profile: BTreeSet<String> = DECISION_REASONS.iter().map(|s| s.to_string()).collect();
    assert_eq!(reasons, profile, "RF1-10 decision codes");

    // And the document lists each code in a table row.
    let doc = std::fs::read_to_string(root("docs/pas-interface.md")).unwrap();
    for code in DECISION_REASONS
        .iter()
        .chain(REJECTION_REASONS.iter().map(|(c, _)| c))
        .chain(REJECTION_REASONS.iter().map(|(_, e)| e))
    {
        assert!(
            doc.contains(&format!("| `{code}` |")),
            "{code} missing from the document"
        );
    }
}

#[test]
fn the_document_is_linked() {
    for file in ["README.md", "docs/inbound.md"] {
        let text = std::fs::read_to_string(root(file)).unwrap();
        assert!(text.contains("pas-interface.md"), "{file} does not link it");
    }
}
