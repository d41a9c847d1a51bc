//! Synthetic referrals for load tests (`--generate N`): deterministic from a seed, with
//! valid NHS numbers (modulus 11, in the 999 test range), varied priorities, specialties,
//! services (directly and indirectly bookable) and states, and some attachments.

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

use super::state::{priority_coding, World, CS, SD};

/// First UBRN used for generated referrals.
const FIRST_UBRN: u64 = 100_000;

/// (service id, service name, specialty code, specialty display).
const SERVICES: &[(&str, &str, &str, &str)] = &[
    (
        "21012",
        "Good Cardiology Business Service",
        "CARDIOLOGY",
        "Cardiology",
    ),
    (
        "21013",
        "Allergy Clinic Indirect Business Service",
        "ALLERGY",
        "Allergy",
    ),
    (
        "21014",
        "Audiology Assessment Service",
        "AUDIOLOGICAL_MEDICINE",
        "Audiological Medicine",
    ),
    (
        "21015",
        "Adult Mental Health Triage Service",
        "ADULT_MENTAL_ILLNESS",
        "Adult Mental Illness",
    ),
];

/// Completes a 9-digit stem into a valid NHS number, if its check digit is not 10.
pub fn nhs_number(stem: u64) -> Option<String> {
    let digits: Vec<u32> = format!("{stem:09}")
        .chars()
        .filter_map(|c| c.to_digit(10))
        .collect();
    if digits.len() != 9 {
        return None;
    }
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| d * (10 - i as u32))
        .sum();
    let check = (11 - sum % 11) % 11;
    if check == 10 {
        return None;
    }
    Some(format!("{stem:09}{check}"))
}

/// Whether `s` is a 10-digit NHS number with a valid modulus-11 check digit.
pub fn is_valid_nhs_number(s: &str) -> bool {
    s.len() == 10
        && s.bytes().all(|b| b.is_ascii_digit())
        && s[..9].parse().ok().and_then(nhs_number).as_deref() == Some(s)
}

/// Adds `n` synthetic referrals to `world`, deterministically from `seed`.
pub fn add_synthetic(world: &mut World, n: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..n {
        let referral = synthetic(&mut rng, FIRST_UBRN + i as u64);
        if let Err(e) = world.insert_referral(referral) {
            tracing::warn!(error = %e, "generated referral rejected");
        }
    }
}

fn synthetic(rng: &mut StdRng, ubrn_n: u64) -> Value {
    let ubrn = format!("{ubrn_n:012}");
    let nhs = loop {
        if let Some(n) = nhs_number(999_000_000 + rng.random_range(0..1_000_000)) {
            break n;
        }
    };
    let (sid, sname, spec, spec_display) = SERVICES[rng.random_range(0..SERVICES.len())];
    let priority = ["ROUTINE", "ROUTINE", "URGENT", "TWO_WEEK_WAIT"][rng.random_range(0..4)];
    let state = match rng.random_range(0..10) {
        0..=5 => "BOOKED",
        6..=7 => "AWAITING_TRIAGE",
        _ => "DEFERRED_TO_PROVIDER",
    };
    let day = rng.random_range(1..=28);
    let created = format!("2026-10-{day:02}T09:{:02}:00.000Z", rng.random_range(0..60));
    let clinician = format!("0216005565{:02}", rng.random_range(10..40));
    let mut contained = vec![json!({
        "id": "shortlist",
        "meta": {"profile": [format!("{SD}eRS-Shortlist-List-1")]},
        "resourceType": "List",
        "status": "current",
        "mode": "snapshot",
        "entry": [{"item": {"identifier": {"system": "http://fhir.nhs.net/Id/ers-service", "value": sid}, "display": sname}}],
    })];
    let mut extension = vec![
        json!({"url": format!("{SD}Extension-eRS-ClinicalInfoFirstSubmitted-1"), "valueDateTime": created}),
        json!({"url": format!("{SD}Extension-eRS-eReferralPathwayStart-1"), "valueInstant": created}),
        json!({"url": format!("{SD}Extension-eRS-ReferralPriority-1"), "valueCodeableConcept": {"coding": [priority_coding(priority)]}}),
        json!({"url": format!("{SD}Extension-eRS-ReferralShortlist-1"), "valueReference": {"reference": "#shortlist"}}),
        json!({"url": format!("{SD}Extension-eRS-Commissioning-Rule-Org-1"), "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "R69"}}),
    ];
    let mut state_ext = vec![
        json!({"url": "state", "valueCoding": {"system": format!("{CS}eRS-ReferralState-1"), "code": state}}),
    ];
    if state == "DEFERRED_TO_PROVIDER" {
        state_ext.push(json!({"url": "reason", "valueCoding": {"system": format!("{CS}eRS-ReviewReason-1"), "code": "NO_SLOTS_AT_SERVICE"}}));
    }
    extension
        .push(json!({"url": format!("{SD}Extension-eRS-ReferralState-1"), "extension": state_ext}));
    if state == "BOOKED" {
        extension.insert(0, json!({"url": format!("{SD}Extension-eRS-Appointment-1"), "valueReference": {"reference": "#appointment"}}));
        contained.push(json!({
            "id": "appointment",
            "meta": {"versionId": "0", "profile": [format!("{SD}eRS-Appointment-1"), "https://fhir.hl7.org.uk/STU3/StructureDefinition/CareConnect-Appointment-1"]},
            "resourceType": "Appointment",
            "status": "booked",
            "start": format!("2026-12-{day:02}T10:30:00.000Z"),
            "end": format!("2026-12-{day:02}T10:45:00.000Z"),
            "created": created,
            "incomingReferral": [{"reference": format!("ReferralRequest/{ubrn}/_history/1")}],
            "participant": [
                {"actor": {"identifier": {"system": "http://fhir.nhs.net/Id/ers-service", "value": sid}, "display": sname}, "status": "accepted"},
                {"actor": {"identifier": {"system": "http://fhir.nhs.net/Id/nhs-number", "value": nhs}}, "status": "accepted"},
                {"type": {"coding": [{"system": "http://hl7.org/fhir/ValueSet/encounter-participant-type", "code": "CON"}]},
                 "actor": {"identifier": {"system": "http://fhir.nhs.net/Id/sds-user-id", "value": clinician}}, "status": "accepted"},
            ],
        }));
    }
    let mut supporting = Vec::new();
    for k in 0..rng.random_range(0..=2) {
        let binary = uuid::Uuid::from_u128(rng.random::<u128>());
        let (ct, title) = if rng.random_bool(0.7) {
            ("application/pdf", format!("referral-letter-{k}.pdf"))
        } else {
            ("text/plain", format!("clinical-notes-{k}.txt"))
        };
        let id = format!("DocumentReference-{}", 80_000 + k);
        supporting.push(json!({"reference": format!("#{id}")}));
        contained.push(json!({
            "id": id,
            "meta": {"profile": [format!("{SD}eRS-DocumentReference-1")]},
            "resourceType": "DocumentReference",
            "type": {"coding": [{"system": format!("{CS}eRS-AttachmentType-1"), "code": "REFERRER", "display": "Referrer"}]},
            "status": "current",
            "indexed": created,
            "description": title,
            "content": [{"attachment": {
                "id": format!("{}", 80_000 + k),
                "extension": [{"url": format!("{SD}Extension-eRS-AvailabilityStatus-1"),
                               "valueCoding": {"system": format!("{CS}eRS-AvailabilityStatus-1"), "code": "AVAILABLE"}}],
                "contentType": ct,
                "url": format!("Binary/{binary}"),
                "title": title,
                "creation": &created[..10],
            }}],
        }));
    }
    json!({
        "id": ubrn,
        "meta": {"versionId": "1", "profile": [format!("{SD}eRS-ReferralRequest-1")]},
        "resourceType": "ReferralRequest",
        "extension": extension,
        "contained": contained,
        "status": "active",
        "intent": "plan",
        "specialty": {"coding": [{"system": "_baseUrl_/STU3/CodeSystem/SPECIALTY", "code": spec, "display": spec_display}]},
        "subject": {"identifier": {"system": "http://fhir.nhs.net/Id/nhs-number", "value": nhs}},
        "supportingInfo": supporting,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/ers-request-id", "value": format!("r.{}", uuid::Uuid::from_u128(rng.random::<u128>()))}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_valid_number() {
        assert!(is_valid_nhs_number("9912003888"));
        assert!(!is_valid_nhs_number("9912003889"));
    }

    #[test]
    fn generation_is_deterministic_and_valid() {
        let mut a = World::default();
        let mut b = World::default();
        add_synthetic(&mut a, 25, 7);
        add_synthetic(&mut b, 25, 7);
        assert_eq!(a.referrals.len(), 25);
        for (u, r) in &a.referrals {
            assert_eq!(r.resource, b.referrals[u].resource);
            assert!(is_valid_nhs_number(r.nhs_number()), "{}", r.nhs_number());
        }
        assert!(!a.binaries.is_empty());
    }

    proptest! {
        #[test]
        fn generated_numbers_check(stem in 0u64..1_000_000_000) {
            if let Some(n) = nhs_number(stem) {
                prop_assert!(is_valid_nhs_number(&n));
            }
        }
    }
}
