//! What goes on the wire, captured on a local recording server: the method and path of every operation,
//! `X-Correlation-ID`, `If-Match`, content type, query strings, the A042 redirect (no
//! credentials to the object store) and size caps. The per-mode auth headers are in
//! `auth_modes`.

use std::collections::HashMap;

use axum::{http::StatusCode, response::IntoResponse};
use ers_bridge::{
    config::MapEnv,
    ers::{ErsClient, ErsError, Operation},
    fhir::{
        requests::{
            CancelAppointmentActionLater, ConvertAdviceToReferral, FetchWorklist, GuidanceOutcome,
            Priority, RecordReviewOutcome, RejectReferral, ReviewOutcome, SendAdviceResponse,
        },
        worklist::ListSelector,
        Coding,
    },
};

use crate::helpers::{
    client, config_toml, example_json, example_reply, fhir, ubrn, ver, RecordingServer, Seen,
};

/// Answers every e-RS path with a plausible official example.
pub(crate) fn canned(s: &Seen) -> axum::response::Response {
    let p = s.path.as_str();
    let ex = |rel: &str, etag| example_reply(&format!("stu3/{rel}"), etag);
    if p.contains("/CodeSystem/") {
        ex("getCodeSystem/responses/SpecialtyCodeSystem.json", None)
    } else if p.ends_with("$ers.fetchworklist") && p.contains("CommunicationRequest") {
        ex(
            "retrieveAdviceAndGuidanceWorklist/responses/AdviceAndGuidanceRequests.json",
            None,
        )
    } else if p.ends_with("$ers.fetchworklist") {
        ex("retrieveWorklist/responses/ReferralsForReview.json", None)
    } else if p.ends_with("$ers.generateCRI") || p.contains("/Binary/") {
        (
            [
                ("content-type", "application/pdf"),
                ("content-disposition", "attachment; filename=\"x.pdf\""),
            ],
            "%PDF-1.4 synthetic",
        )
            .into_response()
    } else if p.ends_with("$ers.sendCommunicationToRequester") {
        ex(
            "sendAdviceAndGuidanceResponse/responses/RequireFurtherInformation.json",
            None,
        )
    } else if p.contains("createFromCommunicationRequestActionLater") {
        ex(
            "convertAdviceAndGuidanceToReferral/responses/NoAttachments.json",
            None,
        )
    } else if p.contains("ReferralRequest/") {
        ex("retrieveReferralRequest/responses/BookedDBS.json", Some(6))
    } else if p.contains("CommunicationRequest/") {
        ex(
            "retrieveAdviceAndGuidanceRequest/responses/MinimalExample.json",
            Some(5),
        )
    } else if p.ends_with("/Communication") {
        ex(
            "retrieveAdviceAndGuidanceConversation/OneMessageEachWay.json",
            None,
        )
    } else if p.ends_with("/Task") {
        ex(
            "availableActionsForUserList/WithRecordReviewOutcome.json",
            None,
        )
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// Calls every provider operation once; returns (operation, result is ok).
pub(crate) async fn call_everything(c: &ErsClient) -> Vec<(Operation, Result<(), ErsError>)> {
    let u = "000000070001";
    let reason = Coding::new(
        "_baseurl_/STU3/CodeSystem/APPOINTMENT-CANCELLATION-REASON",
        "OTHER",
    );
    let mut wl = FetchWorklist::new(ListSelector::ReferralsForReview);
    wl.service = Some("21012".into());
    vec![
        (
            Operation::A004,
            c.reference_data("SPECIALTY").await.map(drop),
        ),
        (
            Operation::A005,
            c.referral(&ubrn(u), Some(ver(6))).await.map(drop),
        ),
        (
            Operation::A006,
            c.attachment_stu3("att-70000-70001").await.map(drop),
        ),
        (Operation::A007, c.clinical_info(&ubrn(u)).await.map(drop)),
        (Operation::A008, c.worklist(&wl).await.map(drop)),
        (Operation::A013, c.accept(&ubrn(u), ver(6)).await.map(drop)),
        (
            Operation::A014,
            c.reject(
                &ubrn(u),
                ver(6),
                &RejectReferral {
                    reason,
                    comments: Some("c".into()),
                    appointment_cancelled_in_pas: None,
                },
            )
            .await
            .map(drop),
        ),
        (
            Operation::A022,
            c.cancel_action_later(
                &ubrn(u),
                ver(6),
                &CancelAppointmentActionLater {
                    comments: "c".into(),
                    priority: None,
                    appointment_cancelled_in_pas: Some(true),
                    attachments: vec![],
                },
            )
            .await
            .map(drop),
        ),
        (Operation::A023, c.advice_worklist(None).await.map(drop)),
        (
            Operation::A024,
            c.advice_request(&ubrn(u), None).await.map(drop),
        ),
        (
            Operation::A025,
            c.advice_conversation(&ubrn(u), ver(5)).await.map(drop),
        ),
        (
            Operation::A026,
            c.send_advice_response(
                &ubrn(u),
                ver(5),
                &SendAdviceResponse {
                    outcome: GuidanceOutcome::RequireFurtherInformation,
                    recommendation: None,
                    guidance: "g".into(),
                    updated_priority: Priority::Routine,
                    attachments: vec![],
                },
            )
            .await
            .map(drop),
        ),
        (
            Operation::A027,
            c.convert_advice(&ConvertAdviceToReferral {
                ubrn: ubrn(u),
                version: ver(5),
                guidance: "g".into(),
                new_priority: Priority::Routine,
                review_comments: "r".into(),
                guidance_attachments: vec![],
                review_attachments: vec![],
            })
            .await
            .map(drop),
        ),
        (
            Operation::A028,
            c.record_review_outcome(
                &ubrn(u),
                ver(6),
                &RecordReviewOutcome {
                    outcome: ReviewOutcome::AcceptReferBookLater,
                    comments: "c".into(),
                    priority: None,
                    attachments: vec![],
                },
            )
            .await
            .map(drop),
        ),
        (
            Operation::A029,
            c.available_actions(&ubrn(u), ver(6)).await.map(drop),
        ),
        (
            Operation::A042,
            c.attachment("c5d2d200-7613-4a4a-9b0d-5ab1d6e0e5a1")
                .await
                .map(drop),
        ),
    ]
}

pub(crate) fn expected_paths(prefix: &str) -> HashMap<Operation, (&'static str, String)> {
    let u = "000000070001";
    let s = |rest: String| format!("{prefix}/{rest}");
    HashMap::from([
        (Operation::A004, ("GET", s("CodeSystem/SPECIALTY".into()))),
        (
            Operation::A005,
            ("GET", s(format!("ReferralRequest/{u}/_history/6"))),
        ),
        (Operation::A006, ("GET", s("Binary/att-70000-70001".into()))),
        (
            Operation::A007,
            ("POST", s(format!("ReferralRequest/{u}/$ers.generateCRI"))),
        ),
        (
            Operation::A008,
            ("POST", s("ReferralRequest/$ers.fetchworklist".into())),
        ),
        (
            Operation::A013,
            (
                "POST",
                s(format!("ReferralRequest/{u}/$ers.acceptReferral")),
            ),
        ),
        (
            Operation::A014,
            (
                "POST",
                s(format!("ReferralRequest/{u}/$ers.rejectReferral")),
            ),
        ),
        (
            Operation::A023,
            ("POST", s("CommunicationRequest/$ers.fetchworklist".into())),
        ),
        (
            Operation::A024,
            ("GET", s(format!("CommunicationRequest/{u}"))),
        ),
        (Operation::A025, ("GET", s("Communication".into()))),
        (
            Operation::A026,
            (
                "POST",
                s(format!(
                    "CommunicationRequest/{u}/$ers.sendCommunicationToRequester"
                )),
            ),
        ),
        (
            Operation::A027,
            (
                "POST",
                s("ReferralRequest/$ers.createFromCommunicationRequestActionLater".into()),
            ),
        ),
        (
            Operation::A028,
            (
                "POST",
                s(format!("ReferralRequest/{u}/$ers.recordReviewOutcome")),
            ),
        ),
        (Operation::A029, ("GET", s("Task".into()))),
    ])
}

#[tokio::test]
async fn every_operation_has_its_path_method_and_headers() {
    let server = RecordingServer::spawn(|s, _| canned(s)).await;
    let c = client(
        &config_toml(&server.base(), "", "mode = \"none\""),
        MapEnv::default(),
    );
    let results = call_everything(&c).await;
    for (op, r) in &results {
        assert!(
            r.is_ok(),
            "{op}: {:?}",
            r.as_ref().err().map(ToString::to_string)
        );
    }
    let seen = server.seen();
    let paths = expected_paths("/referrals/FHIR/STU3");
    for (op, (method, path)) in &paths {
        let hit = seen
            .iter()
            .find(|s| &s.path == path)
            .unwrap_or_else(|| panic!("{op}: no request to {path}"));
        assert_eq!(hit.method.as_str(), *method, "{op}");
        let cid = hit.header("x-correlation-id").unwrap();
        assert!(
            uuid::Uuid::parse_str(cid).is_ok(),
            "{op}: correlation id {cid}"
        );
        assert!(hit.header("authorization").is_none());
        let writes_with_if_match = [
            Operation::A013,
            Operation::A014,
            Operation::A026,
            Operation::A028,
        ];
        if writes_with_if_match.contains(op) {
            let v = if *op == Operation::A026 { 5 } else { 6 };
            assert_eq!(
                hit.header("if-match"),
                Some(format!("W/\"{v}\"").as_str()),
                "{op}"
            );
        } else {
            assert_eq!(hit.header("if-match"), None, "{op}");
        }
        if !hit.body.is_empty() {
            assert_eq!(
                hit.header("content-type"),
                Some("application/fhir+json"),
                "{op}"
            );
        }
    }
    let a022 = seen
        .iter()
        .find(|s| s.path.ends_with("$ers.cancelAppointmentActionLater"))
        .unwrap();
    assert_eq!(a022.header("if-match"), Some("W/\"6\""));
    let a025 = seen
        .iter()
        .find(|s| s.path.ends_with("/Communication"))
        .unwrap();
    let q = a025.query.as_deref().unwrap();
    assert!(
        q.starts_with("based-on=CommunicationRequest%2F000000070001%2F_history%2F5"),
        "{q}"
    );
    assert_eq!(q.matches("_include=").count(), 3, "{q}");
    let a029 = seen.iter().find(|s| s.path.ends_with("/Task")).unwrap();
    assert_eq!(
        a029.query.as_deref(),
        Some("focus=ReferralRequest%2F000000070001%2F_history%2F6&intent=proposal&status=ready")
    );
    // Correlation ids are fresh per call.
    let ids: std::collections::HashSet<_> = seen
        .iter()
        .filter_map(|s| s.header("x-correlation-id"))
        .collect();
    assert_eq!(ids.len(), seen.len());
}

#[tokio::test]
async fn a_given_correlation_id_is_sent_and_reported() {
    let server = RecordingServer::spawn(|_, _| {
        fhir(422, example_json("stu3/STU3-OperationOutcome.json"), None)
    })
    .await;
    let c = client(
        &config_toml(&server.base(), "", "mode = \"none\""),
        MapEnv::default(),
    );
    let id = uuid::Uuid::new_v4();
    let err = c
        .with_correlation_id(id)
        .referral(&ubrn("000000070001"), None)
        .await
        .unwrap_err();
    assert_eq!(
        server.seen()[0].header("x-correlation-id"),
        Some(id.to_string().as_str())
    );
    let api = err.api().unwrap();
    assert_eq!(api.correlation_id, id.to_string());
    assert_eq!(api.request_id.as_deref(), Some("server-request-1"));
    assert_eq!(api.ers_code.as_deref(), Some("UNEXPECTED_FIELD"));
}

#[tokio::test]
async fn attachment_redirect_sends_no_credentials_to_the_object_store() {
    let store = RecordingServer::spawn(|_, _| {
        ([("content-type", "application/pdf")], vec![7u8; 4096]).into_response()
    })
    .await;
    let store_url = format!("http://{}/ObjectStore/d497bbe3", store.addr);
    let api = RecordingServer::spawn(move |_, _| {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", store_url.clone())],
            "",
        )
            .into_response()
    })
    .await;
    let auth = "mode = \"user-restricted\"\ntoken_env = \"T\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN\"\nods_code = \"R69\"";
    let c = client(
        &config_toml(&api.base(), "max_attachment_bytes = 5000", auth),
        MapEnv::from_pairs([("T", "secret-bearer")]),
    );
    let bin = c
        .attachment("c5d2d200-7613-4a4a-9b0d-5ab1d6e0e5a1")
        .await
        .unwrap();
    assert_eq!(bin.bytes.len(), 4096);
    assert_eq!(bin.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(
        api.seen()[0].path,
        "/referrals/FHIR/R4/Binary/c5d2d200-7613-4a4a-9b0d-5ab1d6e0e5a1"
    );
    assert_eq!(
        api.seen()[0].header("authorization"),
        Some("Bearer secret-bearer")
    );
    let s = &store.seen()[0];
    for (name, _) in s.headers.iter() {
        let n = name.as_str();
        assert!(
            !(n == "authorization"
                || n.starts_with("nhsd-")
                || n == "x-correlation-id"
                || n == "xapi_asid"),
            "{n} sent to the object store"
        );
    }
    // Over the cap: refused.
    let small = client(
        &config_toml(&api.base(), "max_attachment_bytes = 1000", auth),
        MapEnv::from_pairs([("T", "secret-bearer")]),
    );
    let e = small
        .attachment("c5d2d200-7613-4a4a-9b0d-5ab1d6e0e5a1")
        .await
        .unwrap_err();
    assert!(matches!(e, ErsError::TooLarge { limit: 1000, .. }), "{e}");
}

#[tokio::test]
async fn worklists_above_the_size_cap_are_refused() {
    let server = RecordingServer::spawn(|s, _| canned(s)).await;
    let c = client(
        &config_toml(
            &server.base(),
            "max_worklist_bytes = 1000",
            "mode = \"none\"",
        ),
        MapEnv::default(),
    );
    let e = c
        .worklist(&FetchWorklist::new(ListSelector::ReferralsForReview))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ErsError::TooLarge {
                operation: Operation::A008,
                ..
            }
        ),
        "{e}"
    );
    assert!(!e.is_retryable());
}
