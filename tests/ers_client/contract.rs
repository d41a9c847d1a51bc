//! Contract: for the inputs of each official example request, the body the client builds
//! equals that file as JSON (the official sandbox compares bodies exactly); and every
//! official example response parses into the typed resources.

use chrono::DateTime;
use ers_bridge::fhir::{
    requests::{
        Assigned, AttachmentRef, CancelAppointmentActionLater, ConvertAdviceToReferral,
        FetchWorklist, GuidanceOutcome, GuidanceRecommendation, Priority, RecordReviewOutcome,
        RejectReferral, ReviewOutcome, SendAdviceResponse,
    },
    worklist::ListSelector,
    Coding, Parameters, Resource,
};

use crate::helpers::{example_json, ubrn, ver};

fn body(p: Parameters) -> serde_json::Value {
    serde_json::to_value(Resource::from(p)).unwrap()
}

fn assert_body(rel: &str, p: Parameters) {
    let expected = example_json(&format!("stu3/{rel}"));
    let actual = body(p);
    assert_eq!(
        actual,
        expected,
        "{rel}\nactual:   {}\nexpected: {}",
        serde_json::to_string(&actual).unwrap(),
        serde_json::to_string(&expected).unwrap()
    );
}

fn att(id: &str, description: &str, indexed: &str) -> AttachmentRef {
    AttachmentRef {
        binary_id: id.into(),
        description: Some(description.into()),
        indexed: DateTime::parse_from_rfc3339(indexed).unwrap(),
    }
}

#[test]
fn worklist_requests_match_examples() {
    let dir = "retrieveWorklist/requests";
    for (file, list) in [
        (
            "MinimalReferralsForReview",
            ListSelector::ReferralsForReview,
        ),
        (
            "MinimalAppointmentSlotIssues",
            ListSelector::AppointmentSlotIssues,
        ),
        (
            "MinimalRejectedTriageResponse",
            ListSelector::RejectedTriageResponse,
        ),
        (
            "MinimalAssessmentReturnedCancelledDna",
            ListSelector::AssessmentReturnedCancelledDna,
        ),
        ("MinimalAwaitingBooking", ListSelector::AwaitingBooking),
        (
            "MinimalLettersOutstanding",
            ListSelector::LettersOutstanding,
        ),
    ] {
        assert_body(
            &format!("{dir}/{file}.json"),
            FetchWorklist::new(list).to_parameters(),
        );
    }
    let mut by_service = FetchWorklist::new(ListSelector::ReferralsForReview);
    by_service.service = Some("21012".into());
    assert_body(
        &format!("{dir}/FilteringByService.json"),
        by_service.to_parameters(),
    );

    let mut by_specialty = FetchWorklist::new(ListSelector::ReferralsForReview);
    by_specialty.specialty = Some(Assigned::Assigned(Coding::new(
        "_baseUrl_/STU3/CodeSystem/SPECIALTY",
        "CARDIOLOGY",
    )));
    assert_body(
        &format!("{dir}/FilteringBySpecialty.json"),
        by_specialty.to_parameters(),
    );

    let mut by_clinician = FetchWorklist::new(ListSelector::ReferralsForReview);
    by_clinician.clinician = Some(Assigned::Assigned("021600556514".into()));
    assert_body(
        &format!("{dir}/FilteringByClinician.json"),
        by_clinician.to_parameters(),
    );

    assert_body(
        "retrieveAdviceAndGuidanceWorklist/requests/MinimalAdviceAndGuidanceRequests.json",
        FetchWorklist::new(ListSelector::AdviceAndGuidanceRequests).to_parameters(),
    );
}

#[test]
fn reject_requests_match_examples() {
    let reason = |code: &str| {
        Coding::new(
            "_baseurl_/STU3/CodeSystem/APPOINTMENT-CANCELLATION-REASON",
            code,
        )
    };
    let dbs = RejectReferral {
        reason: reason("SERVICE_INAPPROPRIATE"),
        comments: Some("This is a short comment".into()),
        appointment_cancelled_in_pas: None,
    };
    assert_body(
        "rejectReferral/requests/BasicExampleDbs.json",
        dbs.to_parameters().unwrap(),
    );
    let ibs = RejectReferral {
        reason: reason("OTHER"),
        comments: Some("This is a short comment".into()),
        appointment_cancelled_in_pas: Some(true),
    };
    assert_body(
        "rejectReferral/requests/BasicExampleIbs.json",
        ibs.to_parameters().unwrap(),
    );
}

#[test]
fn cancel_action_later_requests_match_examples() {
    let dir = "cancelAppointmentActionLater/requests";
    let base = CancelAppointmentActionLater {
        comments: "Please contact patient to rebook".into(),
        priority: None,
        appointment_cancelled_in_pas: None,
        attachments: vec![],
    };
    assert_body(
        &format!("{dir}/MinimalExampleDBS.json"),
        base.to_parameters().unwrap(),
    );
    let ibs = CancelAppointmentActionLater {
        appointment_cancelled_in_pas: Some(true),
        ..base.clone()
    };
    assert_body(
        &format!("{dir}/MinimalExampleIBS.json"),
        ibs.to_parameters().unwrap(),
    );
    let with_files = CancelAppointmentActionLater {
        priority: Some(Priority::Urgent),
        attachments: vec![
            att(
                "b2b22a7e-b3e9-4625-8d2c-00507bfdffb5",
                "My first provider attachment",
                "2021-11-03T14:29:41.988+00:00",
            ),
            att(
                "857b901d-1491-47d3-90e2-6c9f13f744dc",
                "My second provider attachment",
                "2021-11-03T14:29:41.988+00:00",
            ),
        ],
        ..base
    };
    assert_body(
        &format!("{dir}/PriorityChangeAndWithAttachmentsDBS.json"),
        with_files.to_parameters().unwrap(),
    );
}

#[test]
fn record_review_outcome_requests_match_examples() {
    let dir = "recordTriageOutcome/requests";
    let accept = RecordReviewOutcome {
        outcome: ReviewOutcome::AcceptReferBookLater,
        comments: "Urgent action needed. To be booked ASAP".into(),
        priority: Some(Priority::Urgent),
        attachments: vec![],
    };
    assert_body(
        &format!("{dir}/AcceptReferBookLater.json"),
        accept.to_parameters().unwrap(),
    );
    let ret = RecordReviewOutcome {
        outcome: ReviewOutcome::ReturnToReferrerWithAdvice,
        comments: "Condition not serious. No further action needed".into(),
        priority: None,
        attachments: vec![],
    };
    assert_body(
        &format!("{dir}/ReturnToReferrerWithAdvice.json"),
        ret.to_parameters().unwrap(),
    );
    let with_file = RecordReviewOutcome {
        outcome: ReviewOutcome::ReturnToReferrerWithAdvice,
        comments: "Condition not serious. See attached document".into(),
        priority: None,
        attachments: vec![att(
            "a7c98bb4-c0d0-4094-b26d-8dbd1677edc8",
            "Condition details",
            "2021-10-07T15:00:41.239Z",
        )],
    };
    assert_body(
        &format!("{dir}/AttachmentIncluded.json"),
        with_file.to_parameters().unwrap(),
    );
}

#[test]
fn advice_response_requests_match_examples() {
    let dir = "sendAdviceAndGuidanceResponse/requests";
    let with_file = SendAdviceResponse {
        outcome: GuidanceOutcome::ReturnToReferrerWithAdvice,
        recommendation: Some(GuidanceRecommendation::Other),
        guidance: "Advise treatment as in attached document".into(),
        updated_priority: Priority::Routine,
        attachments: vec![att(
            "19eb7224-dff3-4730-a5cb-67eac811f1a5",
            "Treatment Specification",
            "2021-09-29T13:22:35.335+00:00",
        )],
    };
    assert_body(
        &format!("{dir}/AttachmentIncluded.json"),
        with_file.to_parameters().unwrap(),
    );
    let further = SendAdviceResponse {
        outcome: GuidanceOutcome::RequireFurtherInformation,
        recommendation: None,
        guidance: "Please supply me with xxx test results".into(),
        updated_priority: Priority::TwoWeekWait,
        attachments: vec![],
    };
    assert_body(
        &format!("{dir}/RequireFurtherInformation.json"),
        further.to_parameters().unwrap(),
    );
    let advice = SendAdviceResponse {
        outcome: GuidanceOutcome::ReturnToReferrerWithAdvice,
        recommendation: Some(GuidanceRecommendation::AdviceOnlyNoReferralRecommended),
        guidance: "No evidence of serious problem: patient can be advised to xxx".into(),
        updated_priority: Priority::Routine,
        attachments: vec![],
    };
    assert_body(
        &format!("{dir}/ReturnToReferrerWithAdvice.json"),
        advice.to_parameters().unwrap(),
    );
}

#[test]
fn convert_advice_requests_match_examples() {
    let dir = "convertAdviceAndGuidanceToReferral/requests";
    let plain = ConvertAdviceToReferral {
        ubrn: ubrn("000000070000"),
        version: ver(3),
        guidance: "I have converted this to send the patient to one of our services".into(),
        new_priority: Priority::Routine,
        review_comments: "Refer this patient to our 'xxx' service please as soon as possible"
            .into(),
        guidance_attachments: vec![],
        review_attachments: vec![],
    };
    assert_body(
        &format!("{dir}/NoAttachments.json"),
        plain.to_parameters().unwrap(),
    );
    let with_files = ConvertAdviceToReferral {
        guidance: "Patient booked into our service. See attachment for best initial medication"
            .into(),
        review_comments:
            "Book patient to 'xxx' service to include attached file as referral letter".into(),
        guidance_attachments: vec![att(
            "badaf6fc-90f4-411d-999f-04ccd79fa166",
            "Initial medication",
            "2021-10-01T14:06:14.915+00:00",
        )],
        review_attachments: vec![att(
            "38dc19ab-893f-47ca-8db0-2d0a07c0e387",
            "Referral letter",
            "2021-10-01T14:06:14.919+00:00",
        )],
        ..plain
    };
    assert_body(
        &format!("{dir}/WithAttachments.json"),
        with_files.to_parameters().unwrap(),
    );
}

/// Every JSON example response (and the samples) parses as its resource type.
#[test]
fn every_example_response_parses() {
    let root = crate::helpers::example("stu3");
    let mut n = 0;
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        let mut files = vec![];
        if dir.is_dir() {
            let resp = dir.join("responses");
            let d = if resp.is_dir() { resp } else { dir.clone() };
            for f in std::fs::read_dir(d).unwrap() {
                files.push(f.unwrap().path());
            }
        } else {
            files.push(dir.clone());
        }
        for f in files
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "json"))
        {
            let text = std::fs::read_to_string(&f).unwrap();
            let r: Resource =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(
                !matches!(r, Resource::Other(_)),
                "{} parsed as an unknown resource",
                f.display()
            );
            n += 1;
        }
    }
    assert!(n >= 50, "only {n} examples found");
}

#[test]
fn referral_accessors_read_the_extensions() {
    use ers_bridge::fhir::ReferralRequest;
    let r: ReferralRequest = serde_json::from_value(example_json(
        "stu3/retrieveReferralRequest/responses/BookedDBS.json",
    ))
    .unwrap();
    assert_eq!(r.ubrn(), Some("000000070001"));
    assert_eq!(r.version(), Some(ers_bridge::ids::Version::new(5)));
    assert_eq!(r.state().unwrap().code(), "BOOKED");
    assert_eq!(r.priority(), Some("ROUTINE"));
    // valueInstant in this example.
    assert_eq!(r.pathway_start(), Some("2024-05-08T09:54:23.167Z"));
    assert_eq!(r.nhs_number(), Some("9912003888"));
    assert_eq!(r.appointment().unwrap().status.as_deref(), Some("booked"));
    let att = r.attachments().next().unwrap().attachment().unwrap();
    assert_eq!(
        att.url.as_deref().and_then(ers_bridge::ers::binary_id_of),
        Some("719f6045-e791-4029-8e0f-1201c02b0a55")
    );
    assert_eq!(att.availability(), Some("AVAILABLE"));

    let rejected: ReferralRequest = serde_json::from_value(example_json(
        "stu3/rejectReferral/responses/ExampleResponseIbs.json",
    ))
    .unwrap();
    assert_eq!(rejected.state().unwrap().code(), "REJECTED");
    assert!(rejected.state_reason().is_some());
}

/// The poller's lean read (each entry flattened as it is parsed) gives exactly the items
/// of the typed list, for every official worklist example.
#[test]
fn the_lean_worklist_read_gives_the_typed_lists_items() {
    use ers_bridge::fhir::worklist::WorklistItems;
    use ers_bridge::fhir::List;
    let mut examples: Vec<String> = [
        "AppointmentSlotIssues",
        "AssessmentReturnedCancelledDna",
        "AwaitingBooking",
        "FilteredByClinician",
        "FilteredByService",
        "FilteredBySpecialty",
        "LettersOutstanding",
        "ReferralsForReview",
        "RejectedTriageResponse",
    ]
    .iter()
    .map(|n| format!("stu3/retrieveWorklist/responses/{n}.json"))
    .collect();
    examples.push(
        "stu3/retrieveAdviceAndGuidanceWorklist/responses/AdviceAndGuidanceRequests.json".into(),
    );
    for rel in examples {
        let json = example_json(&rel);
        let typed: List = serde_json::from_value(json.clone()).unwrap();
        let lean: WorklistItems = serde_json::from_value(json).unwrap();
        let expected = typed.worklist_items();
        assert!(!expected.is_empty(), "{rel}");
        assert_eq!(lean.into_items(), expected, "{rel}");
    }
}

#[test]
fn worklist_items_and_rejection_reasons() {
    use ers_bridge::fhir::{CodeSystem, List};
    let l: List = serde_json::from_value(example_json(
        "stu3/retrieveWorklist/responses/ReferralsForReview.json",
    ))
    .unwrap();
    let items = l.worklist_items();
    assert!(!items.is_empty());
    assert_eq!(items[0].ubrn, "000000070002");
    assert_eq!(items[0].version, Some(7));
    assert_eq!(items[0].service.as_deref(), Some("11012"));
    let ag: List = serde_json::from_value(example_json(
        "stu3/retrieveAdviceAndGuidanceWorklist/responses/AdviceAndGuidanceRequests.json",
    ))
    .unwrap();
    let it = &ag.worklist_items()[0];
    assert_eq!(
        (it.resource_type.as_str(), it.version),
        ("CommunicationRequest", Some(10))
    );

    let cs: CodeSystem = serde_json::from_value(example_json(
        "stu3/getCodeSystem/responses/AppointmentCancellationReasonCodeSystem.json",
    ))
    .unwrap();
    let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let codes: Vec<_> = cs
        .rejection_reasons(now)
        .iter()
        .map(|c| c.code.as_str())
        .collect();
    assert!(codes.contains(&"SERVICE_INAPPROPRIATE"), "{codes:?}");
    assert!(
        !codes.contains(&"ADDITIONAL_REQ_NOT_AVAILABLE"),
        "{codes:?}"
    );
}
