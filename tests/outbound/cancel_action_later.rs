//! A022 (cancel appointment, action later) through the inbound pipeline against the
//! simulator over HTTP and the real RabbitMQ: the PAS samples for a directly and an
//! indirectly bookable service each end in one applied A022 whose body deep-equals the
//! official example request for that service type (as the official sandbox compares
//! them), with e-RS's 422 on `appointmentCancelledInPAS` followed by the one corrected
//! call; and an A022 whose response was lost is found applied, never sent twice.

use chrono::Utc;
use ers_bridge::hl7::AckCode;
use ers_bridge::pipeline::inbound::Handled;

use crate::inbound::{applied_writes, reply, rri, seeded};
use crate::official_bodies::{sample, the_applied_body};

/// An official A022 example request from `../shared/ers-api/examples/`.
fn official(name: &str) -> serde_json::Value {
    crate::official_bodies::official("cancelAppointmentActionLater", name)
}

/// The referral's state and state reason codes, as the simulator serves it.
async fn state_of(h: &crate::helpers::Harness, ubrn: &str) -> (String, String) {
    let r: ers_bridge::fhir::ReferralRequest =
        serde_json::from_value(h.referral(ubrn).await).unwrap();
    let code = |c: Option<&ers_bridge::fhir::Coding>| c.map(|c| c.code().to_string());
    (
        code(r.state()).unwrap_or_default(),
        code(r.state_reason()).unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a022_bodies_are_the_official_examples_for_dbs_and_ibs() {
    let (h, app) = seeded(false).await;
    // 70005 is booked into a directly bookable service, 70002 into an indirectly bookable
    // one. The default rule sends appointmentCancelledInPAS: the DBS referral's first call
    // is refused (FIELD_NOT_PERMITTED, nothing changed) and the corrected one applied.
    for (name, ubrn, example, calls) in [
        (
            "rri-cancel-action-later",
            "000000070005",
            "MinimalExampleDBS",
            2,
        ),
        (
            "rri-cancel-action-later-ibs",
            "000000070002",
            "MinimalExampleIBS",
            1,
        ),
    ] {
        let handled = app
            .inbound()
            .handle(&sample(name), Utc::now())
            .await
            .unwrap();
        assert_eq!(
            handled,
            Handled::Done {
                action: "cancel_action_later".into()
            },
            "{name}"
        );
        assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA), "{name}");
        let body = the_applied_body(&h, ("A022", ubrn), calls, name).await;
        assert_eq!(body, official(example), "{name}");
        assert_eq!(
            state_of(&h, ubrn).await,
            (
                "TRIAGED_PROVIDER_TO_ACTION".to_string(),
                "CANCEL_APPOINTMENT_ACTION_LATER".to_string()
            ),
            "{name}"
        );
    }
    app.close().await;
    h.cleanup().await;
}

/// e-RS applies the A022 but the response is lost (a 502): the retry from the store finds
/// the referral carrying the A022 review outcome and answers AA without a second write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a022_applied_with_its_response_lost_is_not_sent_twice() {
    let (h, app) = seeded(false).await;
    let msg = rri(
        "PASLOST022",
        "R^Rejected^HL70283",
        "000000070002",
        "REBOOK^Rebook",
        "Please contact patient to rebook",
    );
    let done = crate::inbound::lose_the_response_then_retry(&h, &app, &msg, "A022").await;
    assert_eq!(
        done,
        [Handled::Done {
            action: "cancel_action_later".into()
        }]
    );
    assert_eq!(
        applied_writes(&h, "A022").await,
        1,
        "still exactly one write"
    );
    app.close().await;
    h.cleanup().await;
}

/// The clinician's priority (RF1-2 `W`, read back through the priority table) reaches
/// A022 as its `priority`; the body otherwise stays the official one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pas_priority_reaches_a022() {
    let (h, app) = seeded(false).await;
    let msg = String::from_utf8(sample("rri-cancel-action-later-ibs"))
        .unwrap()
        .replace(
            "RF1|R^Rejected^HL70283||",
            "RF1|R^Rejected^HL70283|W^Two week wait|",
        )
        .replace("PAS-2013", "PAS-2013W");
    let handled = app
        .inbound()
        .handle(msg.as_bytes(), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        handled,
        Handled::Done {
            action: "cancel_action_later".into()
        }
    );
    let body = the_applied_body(&h, ("A022", "000000070002"), 1, "priority").await;
    let mut want = official("MinimalExampleIBS");
    let params = want["parameter"].as_array_mut().unwrap();
    params.insert(
        1,
        serde_json::json!({"name": "priority", "valueCoding": {
            "system": "https://fhir.nhs.uk/STU3/CodeSystem/eRS-Priority-1",
            "code": "TWO_WEEK_WAIT"
        }}),
    );
    assert_eq!(body, want);
    app.close().await;
    h.cleanup().await;
}
