//! Contract: every official example request under
//! `../shared/ers-api/examples/stu3/*/requests/` is accepted by a fresh simulator, and the
//! response has the structure (resource type, profile, extension URLs, key codes) of the
//! matching official example response.

use std::{collections::BTreeSet, path::Path};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// Where an example request goes: (path, If-Match UBRN kind, role, expected response file).
struct Target {
    path: String,
    /// `Some(("referral"|"advice", ubrn))` when the call needs `If-Match` of that resource.
    version_of: Option<(&'static str, &'static str)>,
    role: &'static str,
    response: String,
    status: StatusCode,
}

fn target(op: &str, name: &str) -> Target {
    let stem = name.trim_end_matches(".json");
    let referral = |ubrn: &'static str, action: &str| Target {
        path: format!("ReferralRequest/{ubrn}/{action}"),
        version_of: Some(("referral", ubrn)),
        role: SPC,
        response: format!("{op}/responses/{name}"),
        status: StatusCode::OK,
    };
    match op {
        "rejectReferral" => {
            let ibs = stem.ends_with("Ibs");
            let mut t = referral(
                if ibs { "000000070002" } else { "000000070001" },
                "$ers.rejectReferral",
            );
            t.response = format!(
                "{op}/responses/ExampleResponse{}.json",
                if ibs { "Ibs" } else { "Dbs" }
            );
            t
        }
        "cancelAppointmentActionLater" => referral(
            if stem.ends_with("IBS") {
                "000000070002"
            } else {
                "000000070001"
            },
            "$ers.cancelAppointmentActionLater",
        ),
        "recordTriageOutcome" => referral("000000070013", "$ers.recordReviewOutcome"),
        "sendAdviceAndGuidanceResponse" => Target {
            path: "CommunicationRequest/000000080000/$ers.sendCommunicationToRequester".into(),
            version_of: Some(("advice", "000000080000")),
            role: SPC,
            response: format!("{op}/responses/{name}"),
            status: StatusCode::OK,
        },
        "convertAdviceAndGuidanceToReferral" => Target {
            path: "ReferralRequest/$ers.createFromCommunicationRequestActionLater".into(),
            version_of: None,
            role: SPC,
            response: format!("{op}/responses/{name}"),
            status: StatusCode::CREATED,
        },
        "retrieveWorklist" => {
            let list = stem.replace("Minimal", "").replace("Filtering", "Filtered");
            let referrer = !matches!(
                list.as_str(),
                "ReferralsForReview"
                    | "AppointmentSlotIssues"
                    | "FilteredByService"
                    | "FilteredBySpecialty"
                    | "FilteredByClinician"
            );
            Target {
                path: "ReferralRequest/$ers.fetchworklist".into(),
                version_of: None,
                role: if referrer { "REFERRING_CLINICIAN" } else { SPC },
                response: format!("{op}/responses/{list}.json"),
                status: StatusCode::OK,
            }
        }
        "retrieveAdviceAndGuidanceWorklist" => Target {
            path: "CommunicationRequest/$ers.fetchworklist".into(),
            version_of: None,
            role: SPC,
            response: format!("{op}/responses/AdviceAndGuidanceRequests.json"),
            status: StatusCode::OK,
        },
        other => panic!("no contract mapping for example operation {other}"),
    }
}

fn load(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ext_urls(v: &Value) -> BTreeSet<String> {
    v["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["url"].as_str().map(str::to_owned))
        .collect()
}

fn sub_names(entry: &Value) -> BTreeSet<String> {
    entry["extension"][0]["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["url"].as_str().map(str::to_owned))
        .collect()
}

/// Compares the structure of `actual` with the official example `expected`.
fn assert_same_structure(actual: &Value, expected: &Value, siblings: &[Value], what: &str) {
    assert_eq!(
        actual["resourceType"], expected["resourceType"],
        "{what}: resourceType"
    );
    if !expected["meta"]["profile"].is_null() {
        assert_eq!(
            actual["meta"]["profile"], expected["meta"]["profile"],
            "{what}: profile"
        );
    }
    match expected["resourceType"].as_str().unwrap() {
        "ReferralRequest" => {
            let key = [
                "Extension-eRS-ReferralState-1",
                "Extension-eRS-ReferralPriority-1",
                "Extension-eRS-ReferralShortlist-1",
                "Extension-eRS-Commissioning-Rule-Org-1",
            ];
            let a = ext_urls(actual);
            let e = ext_urls(expected);
            for k in key {
                let url = format!("https://fhir.nhs.uk/STU3/StructureDefinition/{k}");
                assert_eq!(a.contains(&url), e.contains(&url), "{what}: extension {k}");
            }
            let unknown: Vec<_> = a
                .iter()
                .filter(|u| {
                    !u.starts_with("https://fhir.nhs.uk/STU3/StructureDefinition/Extension-eRS-")
                })
                .collect();
            assert!(
                unknown.is_empty(),
                "{what}: unexpected extensions {unknown:?}"
            );
            assert_eq!(
                state_of(actual),
                state_of(expected),
                "{what}: state and reason"
            );
            for field in ["status", "intent", "subject", "identifier", "meta"] {
                assert!(!actual[field].is_null(), "{what}: {field}");
            }
            if !expected["specialty"].is_null() {
                assert!(!actual["specialty"].is_null(), "{what}: specialty");
            }
            assert!(actual["meta"]["versionId"].is_string(), "{what}: versionId");
            let types = |v: &Value| -> BTreeSet<String> {
                v["contained"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| c["resourceType"].as_str().unwrap().to_owned())
                    .collect()
            };
            let (ta, te) = (types(actual), types(expected));
            for t in ["List", "Parameters", "Appointment"] {
                assert_eq!(ta.contains(t), te.contains(t), "{what}: contained {t}");
            }
        }
        "List" => {
            assert_eq!(actual["status"], expected["status"], "{what}: status");
            assert_eq!(actual["mode"], expected["mode"], "{what}: mode");
            let entries = actual["entry"].as_array().unwrap();
            let expected_entries = expected["entry"].as_array().unwrap();
            let item_url = expected_entries[0]["extension"][0]["url"].clone();
            // Optional sub-extensions vary by item, so the rule is taken over every
            // example item of this kind: names in all of them are required, names in
            // none of them are unknown.
            let family: Vec<Value> = siblings
                .iter()
                .flat_map(|s| s["entry"].as_array().cloned().unwrap_or_default())
                .filter(|e| e["extension"][0]["url"] == item_url)
                .collect();
            let allowed: BTreeSet<String> = family.iter().flat_map(sub_names).collect();
            let required: BTreeSet<String> = family
                .iter()
                .map(sub_names)
                .reduce(|a, b| a.intersection(&b).cloned().collect())
                .unwrap_or_default();
            for entry in entries {
                assert_eq!(
                    entry["extension"][0]["url"], item_url,
                    "{what}: item extension url"
                );
                let names = sub_names(entry);
                let missing: Vec<_> = required.difference(&names).collect();
                assert!(missing.is_empty(), "{what}: item lacks {missing:?}");
                let extra: Vec<_> = names.difference(&allowed).collect();
                assert!(extra.is_empty(), "{what}: item has unknown {extra:?}");
                let prefix = expected_entries[0]["item"]["reference"]
                    .as_str()
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap();
                assert!(
                    entry["item"]["reference"]
                        .as_str()
                        .unwrap()
                        .starts_with(prefix),
                    "{what}: item reference"
                );
            }
            if expected["contained"].is_array() && !entries.is_empty() {
                assert!(
                    actual["contained"].is_array(),
                    "{what}: contained Patient/Practitioner"
                );
            }
        }
        "Parameters" => {
            let names = |v: &Value| -> Vec<String> {
                v["parameter"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            };
            assert_eq!(names(actual), names(expected), "{what}: parameter names");
            for (a, e) in actual["parameter"]
                .as_array()
                .unwrap()
                .iter()
                .zip(expected["parameter"].as_array().unwrap())
            {
                let (a, e) = (&a["resource"], &e["resource"]);
                assert_eq!(
                    a["resourceType"], e["resourceType"],
                    "{what}: parameter resource"
                );
                assert_eq!(
                    a["meta"]["profile"], e["meta"]["profile"],
                    "{what}: parameter profile"
                );
                assert_eq!(
                    a["category"][0]["coding"][0]["code"], e["category"][0]["coding"][0]["code"],
                    "{what}: category"
                );
                assert_eq!(ext_urls(a), ext_urls(e), "{what}: extension urls");
            }
        }
        "CommunicationRequest" => {
            assert_eq!(
                ext_urls(actual),
                ext_urls(expected),
                "{what}: extension urls"
            );
            for field in [
                "status",
                "category",
                "subject",
                "recipient",
                "sender",
                "requester",
                "identifier",
            ] {
                assert_eq!(
                    actual[field].is_null(),
                    expected[field].is_null(),
                    "{what}: {field}"
                );
            }
            assert!(actual["meta"]["versionId"].is_string(), "{what}: versionId");
        }
        "CodeSystem" => {
            for field in ["id", "url", "content", "property"] {
                assert_eq!(actual[field], expected[field], "{what}: {field}");
            }
        }
        "Bundle" => {
            assert_eq!(actual["type"], expected["type"], "{what}: type");
            assert_eq!(actual["link"][0]["relation"], "self", "{what}: self link");
            let types = |v: &Value| -> BTreeSet<String> {
                v["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["resource"]["resourceType"].as_str().unwrap().to_owned())
                    .collect()
            };
            let (ta, te) = (types(actual), types(expected));
            assert!(
                ta.is_subset(&te),
                "{what}: entry types {ta:?} not in {te:?}"
            );
            for e in actual["entry"].as_array().unwrap() {
                let rt = e["resource"]["resourceType"].as_str().unwrap();
                let model = expected["entry"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["resource"]["resourceType"] == rt)
                    .unwrap();
                assert_eq!(
                    e["resource"]["meta"]["profile"], model["resource"]["meta"]["profile"],
                    "{what}: {rt} profile"
                );
                assert_eq!(
                    ext_urls(&e["resource"]),
                    ext_urls(&model["resource"]),
                    "{what}: {rt} extensions"
                );
            }
        }
        other => panic!("{what}: no structure rule for {other}"),
    }
}

#[tokio::test]
async fn official_example_requests_are_accepted_with_matching_response_structure() {
    let root = examples_dir();
    let mut checked = 0;
    let mut ops: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("requests").is_dir())
        .collect();
    ops.sort();
    for op_dir in ops {
        let op = op_dir.file_name().unwrap().to_str().unwrap().to_owned();
        let mut files: Vec<_> = std::fs::read_dir(op_dir.join("requests"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().unwrap().to_str().unwrap().to_owned();
            let what = format!("{op}/{name}");
            let mut body = load(&file);
            let target = target(&op, &name);
            let t = spawn().await;
            if op == "convertAdviceAndGuidanceToReferral" {
                let v = t.advice_version("000000080000").await;
                for p in body["parameter"].as_array_mut().unwrap() {
                    if p["name"] == "createFrom" {
                        p["valueReference"]["reference"] =
                            format!("CommunicationRequest/000000080000/_history/{v}").into();
                    }
                }
            }
            let if_match = match target.version_of {
                Some(("referral", u)) => Some(if_match(t.version(u).await)),
                Some((_, u)) => Some(if_match(t.advice_version(u).await)),
                None => None,
            };
            let mut req = t
                .user_as(reqwest::Method::POST, &target.path, target.role)
                .header("Content-Type", "application/fhir+json")
                .header("X-Correlation-ID", "contract")
                .json(&body);
            if let Some(m) = &if_match {
                req = req.header("If-Match", m);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), target.status, "{what}");
            assert_eq!(resp.headers()["x-correlation-id"], "contract", "{what}");
            assert!(resp.headers().contains_key("x-request-id"), "{what}");
            let actual: Value = resp.json().await.unwrap();
            let expected_path = root.join(&target.response);
            let expected = load(&expected_path);
            let siblings: Vec<Value> = std::fs::read_dir(expected_path.parent().unwrap())
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .filter_map(|p| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok())
                .collect();
            assert_same_structure(&actual, &expected, &siblings, &what);
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} example requests found");
}

#[tokio::test]
async fn reads_have_the_structure_of_the_official_examples() {
    let root = examples_dir();
    let t = spawn().await;
    let reads = [
        (
            "ReferralRequest/000000070000",
            "retrieveReferralRequest/responses/Unbooked.json",
        ),
        (
            "ReferralRequest/000000070001",
            "retrieveReferralRequest/responses/BookedDBS.json",
        ),
        (
            "ReferralRequest/000000070002",
            "retrieveReferralRequest/responses/BookedIBS.json",
        ),
        (
            "ReferralRequest/000000070003",
            "retrieveReferralRequest/responses/DeferredToProvider.json",
        ),
        (
            "ReferralRequest/000000070004",
            "retrieveReferralRequest/responses/ConvertedFromAdviceAndGuidance.json",
        ),
        (
            "ReferralRequest/000000070005",
            "retrieveReferralRequest/responses/WithRelatedReferral.json",
        ),
        (
            "ReferralRequest/000000070011",
            "retrieveReferralRequest/responses/WithAdditionalRequirements.json",
        ),
        (
            "ReferralRequest/000000070012",
            "retrieveReferralRequest/responses/WithUnavailableAttachments.json",
        ),
        (
            "CommunicationRequest/000000080000",
            "retrieveAdviceAndGuidanceRequest/responses/MinimalExample.json",
        ),
        (
            "CommunicationRequest/000000080001",
            "retrieveAdviceAndGuidanceRequest/responses/WithAttachmentFileReference.json",
        ),
        (
            "CommunicationRequest/000000080002",
            "retrieveAdviceAndGuidanceRequest/responses/WithUnavailableAttachments.json",
        ),
        (
            "CodeSystem/PRIORITY",
            "getCodeSystem/responses/PriorityCodeSystem.json",
        ),
        (
            "CodeSystem/SPECIALTY",
            "getCodeSystem/responses/SpecialtyCodeSystem.json",
        ),
        (
            "CodeSystem/CLINIC-TYPE",
            "getCodeSystem/responses/ClinicTypeCodeSystem.json",
        ),
        (
            "CodeSystem/REFERRAL-CANCELLATION-REASON",
            "getCodeSystem/responses/ReferralCancellationReasonCodeSystem.json",
        ),
        (
            "CodeSystem/APPOINTMENT-NON-ATTENDANCE-REASON",
            "getCodeSystem/responses/AppointmentNonAttendanceReasonCodeSystem.json",
        ),
        (
            "Task?focus=ReferralRequest/000000070013/_history/5&intent=proposal&status=ready",
            "availableActionsForUserList/WithRecordReviewOutcome.json",
        ),
        (
            "Communication?based-on=CommunicationRequest/000000080000/_history/5",
            "retrieveAdviceAndGuidanceConversation/OneMessageEachWay.json",
        ),
    ];
    for (path, example) in reads {
        let (status, actual) = t.get_json(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {actual}");
        let expected = load(&root.join(example));
        assert_same_structure(&actual, &expected, &[], path);
    }
}
