//! Facts, not bytes: for each sample referral, `samples/facts/<name>.toml` lists what a
//! booking clerk needs (taken from the FHIR JSON, not from our output), and this test
//! renders the referral with the default REF^I12 mappings (v2.4 and v2.5.1), encodes it as
//! it is published, reads it back with the guarded reader and finds each fact at the field
//! docs/mappings.md ("Where each fact is") names. The byte goldens are re-blessed only
//! after this passes.

use ers_bridge::hl7::message::{Message, Segment};
use ers_bridge::hl7::read::read;
use ers_bridge::mapping::samples::read_attachments;
use ers_bridge::mapping::{compile_file, ApplyInput};
use serde::Deserialize;

use super::root;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Facts {
    ubrn: String,
    nhs_number: String,
    priority: String,
    priority_ers: String,
    state: String,
    state_0283: String,
    state_reason: Option<String>,
    effective_date: Option<String>,
    appointment: Option<Appointment>,
    referrer_ods: String,
    referred_to_service: String,
    other_shortlisted_services: Vec<String>,
    additional_requirements: Vec<String>,
    related_ubrns: Vec<String>,
    letter_in_message: bool,
    #[serde(default)]
    attachment: Vec<AttachmentFact>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Appointment {
    start: String,
    end: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentFact {
    id: String,
    disposition: String,
}

/// The segments of a REF^I12 split the way its structure groups them: OBSERVATION groups
/// (OBR with the OBX and NTE after it) and the message-level NTEs after PV1/PV2.
struct Parts<'a> {
    observations: Vec<Vec<&'a Segment>>,
    message_notes: Vec<&'a Segment>,
}

fn parts(m: &Message) -> Parts<'_> {
    let mut observations: Vec<Vec<&Segment>> = Vec::new();
    let mut message_notes = Vec::new();
    let mut after_visit = false;
    for s in &m.segments {
        match s.id.as_str() {
            "OBR" => observations.push(vec![s]),
            "PV1" | "PV2" => after_visit = true,
            "OBX" | "NTE" if !after_visit && !observations.is_empty() => {
                observations.last_mut().unwrap().push(s)
            }
            "NTE" if after_visit => message_notes.push(s),
            "NTE" => panic!("an NTE outside an observation group and before PV1"),
            _ => {}
        }
    }
    Parts {
        observations,
        message_notes,
    }
}

/// The message-level note whose NTE-4.4 (the e-RS code of the comment type) is `code`.
fn notes_coded<'a>(p: &'a Parts<'_>, code: &str) -> Vec<&'a Segment> {
    p.message_notes
        .iter()
        .copied()
        .filter(|n| n.get(4, 1, 4, 1) == code)
        .collect()
}

fn check(name: &str, mapping: &str, facts: &Facts) {
    let m = compile_file(&root(&format!("mappings/{mapping}"))).unwrap();
    let text =
        std::fs::read_to_string(root(&format!("samples/fhir/referrals/{name}.json"))).unwrap();
    let referral: serde_json::Value = serde_json::from_str(&text).unwrap();
    let attachments = read_attachments(&root("samples/attachments")).unwrap();
    let control_id = m.control_id_for(&referral).unwrap();
    let (_, bytes) = m
        .render(&ApplyInput {
            referral: &referral,
            control_id: &control_id,
            timestamp: chrono::DateTime::parse_from_rfc3339("2024-01-15T10:30:00+00:00").unwrap(),
            attachments: &attachments,
            attachment_errors: &Default::default(),
        })
        .unwrap();
    let msg = read(&bytes).unwrap_or_else(|e| panic!("{name} {mapping}: {e}"));
    let at = format!("{name} ({mapping})");
    let seg = |id: &str| {
        msg.segment(id)
            .unwrap_or_else(|| panic!("{at}: no {id} segment"))
    };

    let rf1 = seg("RF1");
    assert_eq!(rf1.comp(6, 1), facts.ubrn, "{at}: RF1-6.1 ubrn");
    assert_eq!(rf1.comp(6, 2), "UBRN", "{at}: RF1-6.2");
    assert_eq!(rf1.comp(11, 1), facts.ubrn, "{at}: RF1-11.1 ubrn");
    assert_eq!(seg("PID").comp(3, 1), facts.nhs_number, "{at}: PID-3.1");
    assert_eq!(seg("PID").comp(3, 4), "NHS", "{at}: PID-3.4");
    assert_eq!(rf1.comp(2, 1), facts.priority, "{at}: RF1-2.1 priority");
    assert_eq!(rf1.comp(2, 4), facts.priority_ers, "{at}: RF1-2.4");
    assert_eq!(
        rf1.comp(1, 1),
        facts.state_0283,
        "{at}: RF1-1.1 (table 0283)"
    );
    assert_eq!(rf1.comp(1, 4), facts.state, "{at}: RF1-1.4 e-RS state");
    assert_eq!(rf1.comp(1, 6), "99ERS", "{at}: RF1-1.6");
    assert_eq!(
        rf1.comp(7, 1),
        facts.effective_date.as_deref().unwrap_or(""),
        "{at}: RF1-7 effective date (never the render time)"
    );
    assert_ne!(rf1.comp(7, 1), "20240115103000+0000", "{at}: RF1-7");

    let rp = msg
        .segments_named("PRD")
        .find(|p| p.comp(1, 1) == "RP")
        .unwrap_or_else(|| panic!("{at}: no PRD(RP)"));
    assert_eq!(
        rp.get(7, 1, 1, 1),
        facts.referrer_ods,
        "{at}: PRD(RP)-7[1].1 (never an empty first repetition)"
    );
    assert_eq!(rp.get(7, 1, 2, 1), "ODS", "{at}: PRD(RP)-7[1].2");

    let rt: Vec<&Segment> = msg
        .segments_named("PRD")
        .filter(|p| p.comp(1, 1) == "RT")
        .collect();
    assert_eq!(
        rt[0].comp(7, 1),
        facts.referred_to_service,
        "{at}: PRD(RT)-7"
    );
    assert_eq!(
        rt[0].comp(1, 4) == "BOOKED",
        facts.appointment.is_some(),
        "{at}: PRD(RT)-1.4 BOOKED"
    );
    let others: Vec<&str> = rt[1..].iter().map(|p| p.comp(7, 1)).collect();
    assert_eq!(
        others, facts.other_shortlisted_services,
        "{at}: other shortlisted"
    );
    assert!(
        rt[1..].iter().all(|p| p.comp(1, 4) == "SHORTLISTED"),
        "{at}: PRD-1.4 SHORTLISTED"
    );

    match &facts.appointment {
        Some(a) => {
            let pv2 = seg("PV2");
            assert_eq!(pv2.comp(8, 1), a.start, "{at}: PV2-8 appointment start");
            assert_eq!(pv2.comp(9, 1), a.end, "{at}: PV2-9 appointment end");
        }
        None => assert!(msg.segment("PV2").is_none(), "{at}: PV2 without a booking"),
    }
    assert_eq!(seg("PV1").comp(2, 1), "O", "{at}: PV1-2");

    let p = parts(&msg);
    // The state note carries the reason code in NTE-4.4 when e-RS gives one.
    let state_note = p
        .message_notes
        .iter()
        .find(|n| n.comp(3, 1).starts_with("e-RS state: "))
        .unwrap_or_else(|| panic!("{at}: no state note"));
    assert_eq!(
        state_note.get(4, 1, 4, 1),
        facts.state_reason.as_deref().unwrap_or(""),
        "{at}: state reason in NTE-4.4"
    );
    assert_eq!(
        notes_coded(&p, "APPOINTMENT").len(),
        usize::from(facts.appointment.is_some()),
        "{at}: appointment note"
    );
    let requirements: Vec<&str> = p
        .message_notes
        .iter()
        .filter(|n| n.comp(4, 1) == "PI")
        .map(|n| n.get(4, 1, 4, 1))
        .collect();
    assert_eq!(
        requirements, facts.additional_requirements,
        "{at}: additional requirements"
    );
    let related: Vec<&Segment> = notes_coded(&p, "RELATED_REFERRAL");
    assert_eq!(
        related.len(),
        facts.related_ubrns.len(),
        "{at}: related referrals"
    );
    for (note, ubrn) in related.iter().zip(&facts.related_ubrns) {
        assert!(
            note.comp(3, 1).contains(ubrn.as_str()),
            "{at}: related {ubrn}"
        );
        assert_eq!(
            note.comp(3, 1)
                .contains("letter is on the related referral"),
            !facts.letter_in_message,
            "{at}: where the letter is"
        );
    }
    assert_eq!(
        notes_coded(&p, "NO_LETTER").len(),
        usize::from(!facts.letter_in_message),
        "{at}: the no-letter note"
    );

    assert_eq!(
        p.observations.len(),
        facts.attachment.len(),
        "{at}: one OBR per attachment"
    );
    for (i, (group, want)) in p.observations.iter().zip(&facts.attachment).enumerate() {
        let obr = group[0];
        assert_eq!(
            obr.comp(2, 1),
            format!("{}-{}", facts.ubrn, i + 1),
            "{at}: OBR-2 placer number distinct per group"
        );
        let obx = group.iter().find(|s| s.id == "OBX");
        let disposition = match obx {
            Some(o) if o.comp(2, 1) == "ED" => {
                assert!(
                    !o.get(5, 1, 5, 1).is_empty(),
                    "{at}: ED data for {}",
                    want.id
                );
                "embedded"
            }
            Some(o) if o.comp(2, 1) == "RP" => "reference",
            Some(o) => panic!("{at}: OBX-2 {}", o.comp(2, 1)),
            None => {
                let why = group.iter().find(|s| s.id == "NTE");
                assert!(
                    why.is_some_and(|n| n.comp(3, 1).contains("not available")),
                    "{at}: attachment {} left out without a note",
                    want.id
                );
                "unavailable"
            }
        };
        if let Some(o) = obx {
            assert_eq!(o.comp(4, 1), want.id, "{at}: OBX-4 attachment id");
            assert_eq!(o.comp(3, 3), "99ERS", "{at}: OBX-3.3");
        }
        assert_eq!(
            disposition, want.disposition,
            "{at}: attachment {}",
            want.id
        );
    }
}

#[test]
fn every_sample_carries_its_facts_at_their_fields() {
    let dir = root("samples/facts");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let facts: Facts = toml::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for mapping in ["ref_i12.v24.toml", "ref_i12.v251.toml"] {
            check(&name, mapping, &facts);
        }
        checked += 1;
    }
    let referrals = std::fs::read_dir(root("samples/fhir/referrals"))
        .unwrap()
        .count();
    assert_eq!(checked, referrals, "a sample referral has no facts file");
}

/// When e-RS names the requester, the organisation comes from `onBehalfOf` (source
/// REQUESTER) in PRD(RP)-7's first repetition and the practitioner's SDS id follows.
#[test]
fn a_named_requester_gives_the_referring_organisation_and_practitioner() {
    let m = compile_file(&root("mappings/ref_i12.v251.toml")).unwrap();
    let text = std::fs::read_to_string(root("samples/fhir/referrals/booked-dbs.json")).unwrap();
    let mut referral: serde_json::Value = serde_json::from_str(&text).unwrap();
    referral["requester"] = serde_json::json!({
        "agent": {"identifier": {"system": "http://fhir.nhs.net/Id/sds-user-id", "value": "021600556514"}},
        "onBehalfOf": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "B86001"}}
    });
    let control_id = m.control_id_for(&referral).unwrap();
    let (_, bytes) = m
        .render(&ApplyInput {
            referral: &referral,
            control_id: &control_id,
            timestamp: chrono::DateTime::parse_from_rfc3339("2024-01-15T10:30:00+00:00").unwrap(),
            attachments: &Default::default(),
            attachment_errors: &Default::default(),
        })
        .unwrap();
    let msg = read(&bytes).unwrap();
    let rp = msg
        .segments_named("PRD")
        .find(|p| p.comp(1, 1) == "RP")
        .unwrap();
    assert_eq!(
        (rp.get(7, 1, 1, 1), rp.get(7, 1, 2, 1), rp.get(7, 1, 3, 1)),
        ("B86001", "ODS", "REQUESTER")
    );
    assert_eq!(
        (rp.get(7, 2, 1, 1), rp.get(7, 2, 2, 1)),
        ("021600556514", "SDS")
    );
}

/// REF^I14 says what happened: RF1-1 E (table 0283) with the e-RS state, and a message
/// note with the cancellation reason (its code in NTE-4.4) and the canceller's comments.
#[test]
fn a_cancellation_carries_its_reason_and_comments() {
    for mapping in ["ref_i14.v24.toml", "ref_i14.v251.toml"] {
        let m = compile_file(&root(&format!("mappings/{mapping}"))).unwrap();
        let text = std::fs::read_to_string(root("samples/fhir/cancelled/cancelled-referral.json"))
            .unwrap();
        let referral: serde_json::Value = serde_json::from_str(&text).unwrap();
        let control_id = m.control_id_for(&referral).unwrap();
        assert_eq!(control_id.as_str(), "000000070000I1400006");
        let (_, bytes) = m
            .render(&ApplyInput {
                referral: &referral,
                control_id: &control_id,
                timestamp: chrono::DateTime::parse_from_rfc3339("2024-01-15T10:30:00+00:00")
                    .unwrap(),
                attachments: &Default::default(),
                attachment_errors: &Default::default(),
            })
            .unwrap();
        let msg = read(&bytes).unwrap();
        let rf1 = msg.segment("RF1").unwrap();
        assert_eq!(rf1.comp(1, 1), "E", "{mapping}: RF1-1.1");
        assert_eq!(rf1.comp(1, 4), "CANCELLED_REFERRAL", "{mapping}: RF1-1.4");
        assert!(
            msg.segment("OBR").is_none(),
            "{mapping}: no attachments in an I14"
        );
        let p = parts(&msg);
        let note = p
            .message_notes
            .iter()
            .find(|n| n.comp(3, 1).starts_with("e-RS state: "))
            .unwrap();
        assert_eq!(note.get(4, 1, 4, 1), "BOOKED_CLINICAL_NEED", "{mapping}");
        let text = note.comp(3, 1);
        assert!(
            text.contains("Booked more urgently due to clinical need"),
            "{text}"
        );
        assert!(
            text.contains("Patient moved away; referred locally instead"),
            "{text}"
        );
    }
}

/// v2.5.1 embeds an attachment up to 49,152 bytes (65,536 base64 characters, the TX limit
/// of ED.5) and sends a larger one by reference with a note saying why.
#[test]
fn v251_embeds_up_to_the_tx_limit_and_says_why_it_did_not() {
    let m = compile_file(&root("mappings/ref_i12.v251.toml")).unwrap();
    let text = std::fs::read_to_string(root("samples/fhir/referrals/booked-dbs.json")).unwrap();
    let referral: serde_json::Value = serde_json::from_str(&text).unwrap();
    let control_id = m.control_id_for(&referral).unwrap();
    for (size, embedded) in [(49_152, true), (49_153, false)] {
        let attachments = [("80000".to_string(), vec![b'%'; size])]
            .into_iter()
            .collect();
        let (_, bytes) = m
            .render(&ApplyInput {
                referral: &referral,
                control_id: &control_id,
                timestamp: chrono::DateTime::parse_from_rfc3339("2024-01-15T10:30:00+00:00")
                    .unwrap(),
                attachments: &attachments,
                attachment_errors: &Default::default(),
            })
            .unwrap();
        let msg = read(&bytes).unwrap();
        let obx = msg.segment("OBX").unwrap();
        let p = parts(&msg);
        let note = p.observations[0].iter().find(|s| s.id == "NTE");
        if embedded {
            assert_eq!(obx.comp(2, 1), "ED", "{size}");
            assert_eq!(obx.get(5, 1, 5, 1).len(), 65_536, "{size}");
            assert!(note.is_none(), "{size}");
        } else {
            assert_eq!(obx.comp(2, 1), "RP", "{size}");
            let note = note.expect("a note saying why the letter is not embedded");
            assert!(
                note.comp(3, 1).contains("not embedded"),
                "{}",
                note.comp(3, 1)
            );
            assert!(note.comp(3, 1).contains("Binary/"), "{}", note.comp(3, 1));
        }
    }
}
