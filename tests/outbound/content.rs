//! What the pipeline adds to a message beyond the mapping's offline output: the A004
//! display of a specialty e-RS sends only as a code (RF1-3.5).

use ers_bridge::app::Shutdown;
use serde_json::{json, Value};

use crate::helpers::{Harness, Opts};

/// `unbooked` (its specialty is only the search criteria's bare code) as a new referral
/// awaiting triage, so it is on a provider worklist, with the given specialty code.
fn bare_specialty_referral(ubrn: &str, specialty: &str) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/fhir/referrals/unbooked.json"
    ))
    .unwrap();
    let mut referral: Value = serde_json::from_str(&text).unwrap();
    referral["id"] = json!(ubrn);
    for ext in referral["extension"].as_array_mut().unwrap() {
        if ext["url"].as_str().unwrap().ends_with("ReferralState-1") {
            ext["extension"][0]["valueCoding"]["code"] = json!("AWAITING_TRIAGE");
        }
    }
    for c in referral["contained"].as_array_mut().unwrap() {
        if c["resourceType"] == "Parameters" {
            for p in c["parameter"].as_array_mut().unwrap() {
                if p["name"] == "specialty" {
                    p["valueCoding"]["code"] = json!(specialty);
                }
            }
        }
    }
    referral
}

/// A bare specialty code A004 knows is named with A004's display in RF1-3.5; one A004
/// does not know (the simulator serves the official example code system, which lacks
/// CARDIOLOGY) stays the code, and the referral is not held back for a label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_specialty_code_is_named_from_a004() {
    let h = Harness::start(Opts::default()).await;
    h.admin(
        "referrals",
        bare_specialty_referral("000000079998", "ALLERGY"),
    )
    .await;
    h.admin(
        "referrals",
        bare_specialty_referral("000000079999", "CARDIOLOGY"),
    )
    .await;

    let app = h.app(Shutdown::new()).await;
    let summary = app.drain(10).await.expect("drain");
    assert!(summary.parked.is_empty(), "{:?}", summary.parked);
    let msgs = h.take_messages().await;
    let rf1_3 = |ubrn: &str| {
        let m = msgs
            .iter()
            .find(|m| m.ubrn() == ubrn)
            .unwrap_or_else(|| panic!("{ubrn} was not published"));
        let rf1 = m.message.segment("RF1").unwrap();
        (rf1.comp(3, 4).to_string(), rf1.comp(3, 5).to_string())
    };
    assert_eq!(rf1_3("000000079998").1, "Allergy", "the A004 display");
    assert_eq!(
        rf1_3("000000079999"),
        ("320".to_string(), "CARDIOLOGY".to_string()),
        "unknown to A004: the code, with the PAS's local code in RF1-3.4"
    );
    app.close().await;
    h.cleanup().await;
}

/// A referral whose only letter e-RS will not release (VALIDATION_FAILED) gets the A007
/// clinical summary as its letter (`clinical_info_when_no_letter`, on by default), and
/// the failed attachment keeps its note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_without_a_letter_carries_the_clinical_summary() {
    let h = Harness::start(Opts::default()).await;
    let mut referral = bare_specialty_referral("000000079997", "CARDIOLOGY");
    for c in referral["contained"].as_array_mut().unwrap() {
        if c["resourceType"] == "DocumentReference" {
            c["content"][0]["attachment"]["extension"][0]["valueCoding"]["code"] =
                json!("VALIDATION_FAILED");
        }
    }
    h.admin("referrals", referral).await;

    let app = h.app(Shutdown::new()).await;
    let summary = app.drain(10).await.expect("drain");
    assert!(summary.parked.is_empty(), "{:?}", summary.parked);
    let msgs = h.take_messages().await;
    let m = msgs
        .iter()
        .find(|m| m.ubrn() == "000000079997")
        .expect("published");
    let summary_obx = m
        .message
        .segments_named("OBX")
        .find(|o| o.comp(4, 1) == "clinical-info")
        .expect("the clinical summary is in the message");
    assert_eq!(summary_obx.comp(2, 1), "ED");
    assert_eq!(summary_obx.comp(3, 1), "CLINICAL_INFORMATION");
    assert!(m
        .message
        .segments_named("NTE")
        .any(|n| n.comp(3, 1).contains("VALIDATION_FAILED")));
    assert!(
        !m.message
            .segments_named("NTE")
            .any(|n| n.get(4, 1, 4, 1) == "NO_LETTER"),
        "the summary is the letter"
    );
    assert_eq!(h.stats().await["by_operation"]["A007"], 1);
    app.close().await;
    h.cleanup().await;
}
