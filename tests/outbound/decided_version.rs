//! A PAS decision is written on the referral version the PAS saw: `If-Match` carries the
//! version of the REF published to the PAS, and a referral that changed in e-RS since is
//! not written (an AE and a needs-action record), never written over with the version
//! just read.

use chrono::Utc;
use ers_bridge::hl7::AckCode;
use ers_bridge::pipeline::inbound::Handled;

use crate::inbound::{ops, reply, rri, seeded, write_calls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_referral_is_written_with_the_version_the_pas_saw() {
    let (h, app) = seeded(false).await;
    app.drain(10).await.expect("drain");
    let published = h.take_messages().await;
    assert!(!published.is_empty());
    let seen = h.referral("000000070001").await["meta"]["versionId"]
        .as_str()
        .unwrap()
        .to_string();

    let msg = rri("PASVER0001", "A^Accepted^HL70283", "000000070001", "", "ok");
    let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
    assert_eq!(
        handled,
        Handled::Done {
            action: "accept".into()
        }
    );
    let calls = write_calls(&h).await;
    let a013: Vec<_> = calls.iter().filter(|c| c["operation"] == "A013").collect();
    assert_eq!(a013.len(), 1);
    assert_eq!(a013[0]["if_match"], format!("W/\"{seen}\""));
    app.close().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_changed_since_the_pas_saw_it_is_not_written() {
    let (h, app) = seeded(false).await;
    app.drain(10).await.expect("drain");
    h.take_messages().await;

    // The referrer changes the referral while the clinician decides.
    h.admin(
        "referrals/000000070001/change",
        serde_json::json!({"priority": "URGENT"}),
    )
    .await;

    let msg = rri("PASVER0002", "A^Accepted^HL70283", "000000070001", "", "ok");
    let handled = app.inbound().handle(&msg, Utc::now()).await.unwrap();
    assert!(
        matches!(handled, Handled::NeedsAction { .. }),
        "{handled:?}"
    );
    assert_eq!(ops(&h, "A013").await, 0);
    let ack = reply(&h).await;
    assert_eq!(ack.ack_code, Some(AckCode::AE));
    app.close().await;
    h.cleanup().await;
}
