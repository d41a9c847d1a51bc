//! Property tests: escaping round-trips any string; the writer's output re-parses to the
//! same fields; any generated referral either maps with RF1-6 = its UBRN and PID-3 = its
//! NHS number, or fails with a named error, never a panic. Case counts stay modest so the
//! suite is fast.

use std::sync::OnceLock;

use ers_bridge::hl7::{escape, normalise, read, Delimiters, Message, Segment};
use ers_bridge::mapping::{
    compile_file, compile_str, ApplyInput, Attachments, CompiledMapping, MappingError, Rendered,
};
use proptest::prelude::*;
use serde_json::Value;

use super::root;

/// 64 cases per property by default; `PROPTEST_CASES=5000` runs a deeper search once.
pub fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Text with delimiters, escapes, line breaks and non-ASCII characters over-represented.
fn tricky_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => proptest::char::any(),
            2 => proptest::sample::select(vec!['|', '^', '~', '\\', '&', '\r', '\n', 'é', 'ë', 'X', '.', '#']),
        ],
        0..24,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn segment_id() -> impl Strategy<Value = String> {
    proptest::sample::select(vec!["PID", "PRD", "RF1", "NTE", "OBX", "ZZ1"])
        .prop_map(str::to_string)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn escaping_round_trips_any_string(s in tricky_text()) {
        let d = Delimiters::default();
        let encoded = escape::encode(&s, &d);
        prop_assert!(!encoded.contains(['|', '^', '~', '&', '\r', '\n']));
        prop_assert_eq!(escape::decode(&encoded, &d), s);
    }

    #[test]
    fn decoding_never_panics(s in tricky_text()) {
        let _ = escape::decode(&s, &Delimiters::default());
    }

    #[test]
    fn written_messages_re_read_to_the_same_fields(
        segs in proptest::collection::vec(
            (segment_id(), proptest::collection::vec((1usize..6, 1usize..3, 1usize..4, 1usize..3, tricky_text()), 0..6)),
            0..5,
        )
    ) {
        let mut msg = Message::new(Delimiters::default());
        let mut msh = Segment::new("MSH");
        msh.set(1, 1, 1, 1, "|");
        msh.set(2, 1, 1, 1, "^~\\&");
        msh.set(9, 1, 1, 1, "REF");
        msh.set(18, 1, 1, 1, "UNICODE UTF-8");
        msg.segments.push(msh);
        for (id, sets) in segs {
            let mut seg = Segment::new(&id);
            // A segment needs at least one field to be written and read back.
            seg.set(1, 1, 1, 1, "1");
            for (f, r, c, s, v) in sets {
                seg.set(f, r, c, s, &v);
            }
            msg.segments.push(seg);
        }
        normalise(&mut msg);
        let bytes = msg.encode().unwrap();
        let back = read(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut with_msh = b"MSH|^~\\&|".to_vec();
        with_msh.extend_from_slice(&bytes);
        let _ = read(&bytes);
        let _ = read(&with_msh);
        let _ = ers_bridge::hl7::read_inbound(&with_msh, 1 << 20);
    }

    #[test]
    fn generated_referrals_map_or_fail_with_a_named_error(
        ubrn in prop_oneof![4 => "[0-9]{12}", 1 => "[0-9a-z]{0,14}"],
        nhs in prop_oneof![3 => valid_nhs_number(), 1 => "[0-9]{10}", 1 => "[0-9 ]{0,12}"],
        drop_subject in proptest::bool::weighted(0.1),
        priority in proptest::sample::select(vec!["ROUTINE", "URGENT", "TWO_WEEK_WAIT", "SOMETHING_ELSE"]),
        title in tricky_text(),
        version in "[0-9]{1,3}",
    ) {
        let mut referral = template().clone();
        referral["id"] = Value::String(ubrn.clone());
        referral["meta"]["versionId"] = Value::String(version);
        if drop_subject {
            referral.as_object_mut().unwrap().remove("subject");
        } else {
            referral["subject"]["identifier"]["value"] = Value::String(nhs.clone());
        }
        set_priority(&mut referral, priority);
        if let Some(doc) = referral["contained"].as_array_mut().unwrap().iter_mut().find(|c| c["resourceType"] == "DocumentReference") {
            doc["content"][0]["attachment"]["title"] = Value::String(title);
        }
        let m = mapping();
        let result = m.control_id_for(&referral).and_then(|control_id| {
            m.render(&ApplyInput {
                referral: &referral,
                control_id: &control_id,
                timestamp: chrono::DateTime::parse_from_rfc3339("2024-01-15T10:30:00+00:00").unwrap(),
                attachments: &Attachments::new(),
                attachment_errors: &Default::default(),
            })
        });
        match result {
            Ok((rendered, _)) => {
                let msg = &rendered.message;
                prop_assert_eq!(msg.segment("RF1").unwrap().comp(6, 1), ubrn.as_str());
                let pid = msg.segment("PID").unwrap();
                prop_assert_eq!(pid.comp(3, 1), nhs.as_str());
                prop_assert_eq!(pid.comp(3, 5), "NH");
            }
            Err(e) => {
                let named = match &e {
                    MappingError::Missing { field, name } | MappingError::Eval { field, name, .. } => !field.is_empty() && !name.is_empty(),
                    MappingError::Write(_) => true,
                    _ => false,
                };
                prop_assert!(named, "unnamed error {e:?}");
            }
        }
    }
}

fn valid_nhs_number() -> impl Strategy<Value = String> {
    proptest::collection::vec(0u32..10, 9).prop_filter_map("check digit 10", |d| {
        let sum: u32 = d.iter().enumerate().map(|(i, x)| x * (10 - i as u32)).sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => return None,
            n => n,
        };
        Some(
            d.iter()
                .chain(std::iter::once(&check))
                .map(|x| x.to_string())
                .collect(),
        )
    })
}

fn set_priority(referral: &mut Value, code: &str) {
    for ext in referral["extension"].as_array_mut().unwrap() {
        if ext["url"]
            .as_str()
            .unwrap_or("")
            .ends_with("ReferralPriority-1")
        {
            ext["valueCodeableConcept"]["coding"][0]["code"] = Value::String(code.to_string());
        }
    }
}

fn template() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| {
        let text = std::fs::read_to_string(root("samples/fhir/referrals/unbooked.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

fn mapping() -> &'static CompiledMapping {
    static M: OnceLock<CompiledMapping> = OnceLock::new();
    M.get_or_init(|| compile_file(&root("mappings/ref_i12.v24.toml")).unwrap())
}

/// Applies `m` to `referral` at the golden timestamp, without fetched attachments (the
/// control id must derive).
fn apply(m: &CompiledMapping, referral: &Value) -> Result<Rendered, MappingError> {
    let control_id = m.control_id_for(referral).unwrap();
    m.apply(&ApplyInput {
        referral,
        control_id: &control_id,
        timestamp: chrono::DateTime::parse_from_rfc3339("2024-01-15T10:30:00+00:00").unwrap(),
        attachments: &Attachments::new(),
        attachment_errors: &Default::default(),
    })
}

#[test]
fn a_missing_nhs_number_is_a_named_error() {
    let mut referral = template().clone();
    referral.as_object_mut().unwrap().remove("subject");
    let e = apply(mapping(), &referral).unwrap_err();
    assert_eq!(e.to_string(), "PID-3.1 (NHS number): required data missing");
    referral["subject"] = serde_json::json!({"identifier": {"system": "http://fhir.nhs.net/Id/nhs-number", "value": "9434765918"}});
    let e = apply(mapping(), &referral).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PID-3.1 (NHS number): nhs number fails the modulus 11 check"
    );
}

#[test]
fn lookup_misses_are_warned_and_counted() {
    let mut referral = template().clone();
    set_priority(&mut referral, "NOT_A_PRIORITY");
    let m = compile_file(&root("mappings/ref_i12.v24.toml")).unwrap();
    let rendered = apply(&m, &referral).unwrap();
    assert!(
        rendered
            .warnings
            .iter()
            .any(|w| w == "table priority has no entry for \"NOT_A_PRIORITY\""),
        "{:?}",
        rendered.warnings
    );
    assert!(
        rendered
            .warnings
            .iter()
            .any(|w| w == "RF1-2.1 (priority): no value"),
        "{:?}",
        rendered.warnings
    );
    // Each miss is reported once, with its table and code, for the pipeline's miss counter
    // and the store's list of codes to add.
    let miss = ("priority".to_string(), "NOT_A_PRIORITY".to_string());
    assert_eq!(rendered.lookup_misses, [miss.clone(), miss]);
    // Unfetched attachments go by reference (OBX RP), not silently dropped.
    let obx = rendered.message.segment("OBX").unwrap();
    assert_eq!(obx.comp(2, 1), "RP");
}

/// Named expressions (`[let]`): written once, used as `%name` in any expression, one
/// using another, pasted where used (inside a `for_each` their paths start at the item);
/// a name that leads back to itself, or one that is a built-in variable, is refused naming
/// its line.
#[test]
fn named_expressions_are_written_once_and_used_anywhere() {
    let head =
        "version = 1\nmessage = \"REF^I12^REF_I12\"\nhl7_version = \"2.4\"\ncharset = \"8859/1\"\n";
    let text = format!(
        "{head}[let]\nnhs_id = \"subject.identifier.where(system = 'http://fhir.nhs.net/Id/nhs-number')\"\n\
         nhs = \"%nhs_id.value.first()\"\nkind = \"contentType\"\n\
         [[segment]]\nid = \"MSH\"\n\
         [[segment]]\nid = \"PID\"\n[[segment.set]]\nat = \"3.1\"\nexpr = \"%nhs\"\n\
         [[segment.set]]\nat = \"3.4\"\nexpr = \"iif(%nhs.exists(), 'NHS')\"\n\
         [[segment]]\nid = \"OBX\"\nfor_each = \"contained.where(resourceType = 'DocumentReference').content.attachment\"\n\
         [[segment.set]]\nat = \"2\"\nexpr = \"%kind\"\n"
    );
    let m = compile_str("lets.toml", &text, &root("mappings")).unwrap();
    let mut referral = template().clone();
    referral["subject"] = serde_json::json!({"identifier": [{"system": "http://fhir.nhs.net/Id/nhs-number", "value": "9434765919"}]});
    let r = apply(&m, &referral).unwrap();
    let pid = r.message.segment("PID").unwrap();
    assert_eq!(pid.comp(3, 1), "9434765919");
    assert_eq!(pid.comp(3, 4), "NHS");
    let kinds: Vec<String> = r
        .message
        .segments
        .iter()
        .filter(|s| s.id == "OBX")
        .map(|s| s.comp(2, 1).to_string())
        .collect();
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| !k.is_empty()),
        "{kinds:?}"
    );

    let cyclic = format!("{head}[let]\na = \"%b.x\"\nb = \"%a\"\n[[segment]]\nid = \"MSH\"\n");
    let e = compile_str("c.toml", &cyclic, &root("mappings"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("c.toml:6: let.a: uses itself: %a -> %b -> %a"),
        "{e}"
    );
    let shadow = format!("{head}[let]\nindex = \"id\"\n[[segment]]\nid = \"MSH\"\n");
    let e = compile_str("s.toml", &shadow, &root("mappings"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("let.index") && e.contains("built-in variable"),
        "{e}"
    );
    let unknown = format!(
        "{head}[[segment]]\nid = \"MSH\"\n[[segment]]\nid = \"PID\"\n[[segment.set]]\nat = \"3.1\"\nexpr = \"%nope\"\n"
    );
    let e = compile_str("u.toml", &unknown, &root("mappings"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown variable %nope"), "{e}");
}
