//! The official example request bodies (`../shared/ers-api/examples/`), produced by the
//! inbound pipeline from RRIs in `samples/pas/` against the simulator over HTTP and the
//! real RabbitMQ, and compared as the official sandbox compares them (deep equality of
//! the JSON): A014 for a directly and an indirectly bookable service, and A028's return
//! to the referrer and accept-book-later (with the PAS's RF1-2 priority). A022's two are
//! in `cancel_action_later.rs`.

use chrono::Utc;
use ers_bridge::hl7::AckCode;
use ers_bridge::pipeline::inbound::Handled;

use crate::inbound::{reply, seeded, write_calls};

/// A PAS message from `samples/pas/`.
pub(crate) fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/samples/pas/{name}.hl7",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// An official example request: `operation` is its folder under
/// `../shared/ers-api/examples/stu3/`.
pub(crate) fn official(operation: &str, name: &str) -> serde_json::Value {
    let path = format!(
        "{}/../shared/ers-api/examples/stu3/{operation}/requests/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The body of the one applied `op` on `ubrn`, checking it took `calls` calls in all (a
/// refused first call and its corrected one are two).
pub(crate) async fn the_applied_body(
    h: &crate::helpers::Harness,
    (op, ubrn): (&str, &str),
    calls: usize,
    name: &str,
) -> serde_json::Value {
    let made: Vec<_> = write_calls(h)
        .await
        .into_iter()
        .filter(|c| c["operation"] == op && c["ubrn"] == ubrn)
        .collect();
    assert_eq!(made.len(), calls, "{name}: {made:#?}");
    let applied: Vec<_> = made.iter().filter(|c| c["applied"] == true).collect();
    assert_eq!(applied.len(), 1, "{name}: {made:#?}");
    applied[0]["body"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a014_and_a028_bodies_are_the_official_examples() {
    let (h, app) = seeded(false).await;
    // (sample, UBRN, operation, its example folder and name, calls made, action).
    // 70001 is booked into a directly bookable service: the rule's
    // appointmentCancelledInPAS is refused (FIELD_NOT_PERMITTED, nothing changed) and the
    // corrected call applied; 70002 into an indirectly bookable one.
    let cases = [
        (
            "rri-reject-dbs",
            "000000070001",
            "A014",
            ("rejectReferral", "BasicExampleDbs"),
            2,
            "reject",
        ),
        (
            "rri-reject-ibs",
            "000000070002",
            "A014",
            ("rejectReferral", "BasicExampleIbs"),
            1,
            "reject",
        ),
        (
            "rri-triage-return-no-action",
            "000000070013",
            "A028",
            ("recordTriageOutcome", "ReturnToReferrerWithAdvice"),
            1,
            "record_review_outcome",
        ),
        (
            "rri-triage-book-later-urgent",
            "000000070003",
            "A028",
            ("recordTriageOutcome", "AcceptReferBookLater"),
            1,
            "record_review_outcome",
        ),
    ];
    for (name, ubrn, op, (folder, example), calls, action) in cases {
        let handled = app
            .inbound()
            .handle(&sample(name), Utc::now())
            .await
            .unwrap();
        assert_eq!(
            handled,
            Handled::Done {
                action: action.into()
            },
            "{name}"
        );
        assert_eq!(reply(&h).await.ack_code, Some(AckCode::AA), "{name}");
        let body = the_applied_body(&h, (op, ubrn), calls, name).await;
        assert_eq!(body, official(folder, example), "{name}");
    }
    app.close().await;
    h.cleanup().await;
}
