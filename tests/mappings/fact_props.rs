//! Property: for generated referrals (any state, priority, appointment or none, pathway
//! start, additional requirements, a related referral, and free text full of `|^~\&`, CR
//! and LF in every text element the mapping copies), every fact in the FHIR JSON is at its
//! field in the published v2.5.1 message read back with the guarded reader, and no text
//! changes the message's structure (the segment sequence is exactly the expected one).

use std::sync::OnceLock;

use ers_bridge::hl7::read;
use ers_bridge::mapping::{compile_file, ApplyInput, Attachments, CompiledMapping};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::root;

const SD: &str = "https://fhir.nhs.uk/STU3/StructureDefinition/";

fn mapping() -> &'static CompiledMapping {
    static M: OnceLock<CompiledMapping> = OnceLock::new();
    M.get_or_init(|| compile_file(&root("mappings/ref_i12.v251.toml")).unwrap())
}

fn template() -> Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| {
        let text = std::fs::read_to_string(root("samples/fhir/referrals/unbooked.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
    .clone()
}

/// Text with delimiters, escapes and line breaks over-represented (non-empty, so the
/// mapping's `default()` does not fall back).
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => proptest::char::range('a', 'z'),
            1 => proptest::char::any(),
            3 => proptest::sample::select(vec!['|', '^', '~', '\\', '&', '\r', '\n', 'é', ' ']),
        ],
        1..20,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// (FHIR instant, HL7 TS) for a second in 2000-2039.
fn instant() -> impl Strategy<Value = Instant> {
    (
        2000u32..2040,
        1u32..13,
        1u32..29,
        0u32..24,
        0u32..60,
        0u32..60,
    )
        .prop_map(|(y, mo, d, h, mi, s)| {
            (
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.000Z"),
                format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}+0000"),
            )
        })
}

const STATES: [&str; 6] = [
    "NOT_BOOKED",
    "BOOKED",
    "AWAITING_TRIAGE",
    "DEFERRED_TO_PROVIDER",
    "TRIAGED_PROVIDER_TO_ACTION",
    "REJECTED",
];
const REQUIREMENTS: [&str; 3] = ["INTERPRETER", "ADVOCACY", "TRANSPORT"];

/// (FHIR text, HL7 TS) of one instant.
type Instant = (String, String);

#[derive(Debug, Clone)]
struct Case {
    state: &'static str,
    comments: String,
    priority: (&'static str, &'static str),
    /// Start, end and comment of a booked appointment.
    appointment: Option<(Instant, Instant, String)>,
    pathway_start: Instant,
    requirements: Vec<(&'static str, String)>,
    related: Option<String>,
    title: String,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::sample::select(STATES.to_vec()),
        text(),
        proptest::sample::select(vec![
            ("ROUTINE", "R"),
            ("URGENT", "A"),
            ("TWO_WEEK_WAIT", "W"),
        ]),
        proptest::option::of((instant(), instant(), text())),
        instant(),
        proptest::sample::subsequence(REQUIREMENTS.to_vec(), 0..=3),
        proptest::collection::vec(text(), 3),
        proptest::option::of("[0-9]{12}"),
        text(),
    )
        .prop_map(
            |(
                state,
                comments,
                priority,
                appointment,
                pathway_start,
                req,
                displays,
                related,
                title,
            )| {
                Case {
                    state,
                    comments,
                    priority,
                    appointment,
                    pathway_start,
                    requirements: req.into_iter().zip(displays).collect(),
                    related,
                    title,
                }
            },
        )
}

fn referral(c: &Case) -> Value {
    let mut r = template();
    let ext = r["extension"].as_array_mut().unwrap();
    for e in ext.iter_mut() {
        let url = e["url"].as_str().unwrap().to_string();
        if url.ends_with("ReferralPriority-1") {
            e["valueCodeableConcept"]["coding"][0]["code"] = json!(c.priority.0);
        }
        if url.ends_with("ReferralState-1") {
            e["extension"] = json!([
                {"url": "state", "valueCoding": {"code": c.state}},
                {"url": "comments", "valueString": c.comments},
            ]);
        }
    }
    ext.push(json!({"url": format!("{SD}Extension-eRS-eReferralPathwayStart-1"), "valueInstant": c.pathway_start.0}));
    for (code, display) in &c.requirements {
        ext.push(
            json!({"url": format!("{SD}Extension-eRS-PatientAdditionalRequirement-1"),
            "valueCoding": {"code": code, "display": display}}),
        );
    }
    let contained = r["contained"].as_array_mut().unwrap();
    for d in contained.iter_mut() {
        if d["resourceType"] == "DocumentReference" {
            d["content"][0]["attachment"]["title"] = json!(c.title);
        }
    }
    if let Some(((start, _), (end, _), comment)) = &c.appointment {
        contained.push(json!({"resourceType": "Appointment", "id": "appointment",
            "status": "booked", "start": start, "end": end, "comment": comment}));
    }
    if let Some(u) = &c.related {
        r["supportingInfo"]
            .as_array_mut()
            .unwrap()
            .push(json!({"reference": format!("ReferralRequest/{u}")}));
    }
    r
}

proptest! {
    #![proptest_config(super::props::config())]

    #[test]
    fn every_fact_in_the_referral_is_at_its_field_and_text_never_breaks_the_structure(c in case()) {
        let r = referral(&c);
        let m = mapping();
        let control_id = m.control_id_for(&r).unwrap();
        let (_, bytes) = m
            .render(&ApplyInput {
                referral: &r,
                control_id: &control_id,
                timestamp: chrono::DateTime::parse_from_rfc3339("2024-01-15T10:30:00+00:00").unwrap(),
                attachments: &Attachments::new(),
                attachment_errors: &Default::default(),
            })
            .unwrap();
        let msg = read(&bytes).unwrap();

        // The structure: exactly these segments, in this order.
        let mut expected = vec!["MSH", "RF1", "PRD", "PRD", "PID", "OBR", "OBX", "NTE", "PV1"];
        if c.appointment.is_some() {
            expected.push("PV2");
        }
        expected.push("NTE"); // the state
        if c.appointment.is_some() {
            expected.push("NTE");
        }
        expected.extend(c.requirements.iter().map(|_| "NTE"));
        if c.related.is_some() {
            expected.push("NTE");
        }
        let ids: Vec<&str> = msg.segments.iter().map(|s| s.id.as_str()).collect();
        prop_assert_eq!(ids, expected);

        let rf1 = msg.segment("RF1").unwrap();
        prop_assert_eq!(rf1.comp(6, 1), "000000070000");
        prop_assert_eq!(rf1.comp(2, 1), c.priority.1);
        prop_assert_eq!(rf1.comp(2, 4), c.priority.0);
        prop_assert_eq!(rf1.comp(1, 4), c.state);
        prop_assert_eq!(rf1.comp(7, 1), c.pathway_start.1.as_str());
        prop_assert_eq!(msg.segment("PID").unwrap().comp(3, 1), "9912003888");
        prop_assert_eq!(msg.segment("OBR").unwrap().comp(4, 2), c.title.as_str());
        prop_assert_eq!(msg.segment("OBX").unwrap().comp(3, 2), c.title.as_str());

        let notes: Vec<_> = msg.segments_named("NTE").skip(1).collect();
        let state = notes[0].comp(3, 1);
        prop_assert!(state.contains(c.state) && state.ends_with(&format!("; comments: {}", c.comments)), "{:?}", state);
        let mut next = 1;
        if let Some(((_, start), (_, end), comment)) = &c.appointment {
            let pv2 = msg.segment("PV2").unwrap();
            prop_assert_eq!(pv2.comp(8, 1), start.as_str());
            prop_assert_eq!(pv2.comp(9, 1), end.as_str());
            let want = format!("; comment: {}", comment);
            prop_assert!(notes[next].comp(3, 1).ends_with(&want), "{:?}", notes[next].comp(3, 1));
            next += 1;
        }
        for (code, display) in &c.requirements {
            prop_assert_eq!(notes[next].get(4, 1, 4, 1), *code);
            prop_assert_eq!(notes[next].get(4, 1, 5, 1), display.as_str());
            next += 1;
        }
        if let Some(u) = &c.related {
            prop_assert_eq!(notes[next].get(4, 1, 4, 1), "RELATED_REFERRAL");
            prop_assert!(notes[next].comp(3, 1).contains(u.as_str()));
        }
    }
}
