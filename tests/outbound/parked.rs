//! Parking: a referral with a bad NHS number is parked with that reason while the others
//! flow; after the data is fixed, a replay (or a mapping change) publishes it.

use chrono::Utc;
use ers_bridge::app::Shutdown;
use ers_bridge::pipeline::outbound::Outcome;

use crate::helpers::{Harness, Opts};

const BAD_UBRN: &str = "000000099999";

fn referral_with_nhs(nhs: &str, version: &str) -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/fhir/referrals/booked-dbs.json"
    );
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    r["id"] = BAD_UBRN.into();
    r["meta"]["versionId"] = version.into();
    r["subject"]["identifier"]["value"] = nhs.into();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_nhs_number_is_parked_and_the_others_flow() {
    let n = 10;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    // 9912003889: the synthetic 9912003888 with a wrong check digit.
    h.admin("referrals", referral_with_nhs("9912003889", "5"))
        .await;
    let app = h.app(Shutdown::new()).await;
    let summary = app.drain(10).await.expect("drain");
    assert_eq!(summary.report.published, n);
    assert_eq!(summary.parked.len(), 1, "{:?}", summary.parked);
    let parked = &summary.parked[0];
    assert_eq!(parked.ubrn.as_str(), BAD_UBRN);
    assert!(
        parked.reason.to_lowercase().contains("nhs"),
        "reason names the nhs number: {}",
        parked.reason
    );
    assert_eq!(h.take_messages().await.len(), n);

    // Parked stays parked on later passes (no re-fetch loop).
    let again = app.drain(3).await.expect("drain again");
    assert_eq!(again.report.parked, 0);

    // The referrer fixes the NHS number (new version): replay publishes it.
    h.admin("referrals", referral_with_nhs("9912003888", "6"))
        .await;
    let out = app
        .outbound()
        .replay(&ers_bridge::ids::Ubrn::parse(BAD_UBRN).unwrap(), Utc::now())
        .await
        .expect("replay");
    assert!(
        matches!(out, Outcome::Published(ref ids) if ids.len() == 1),
        "{out:?}"
    );
    assert!(app.outbound().store().parked().await.unwrap().is_empty());
    let msgs = h.take_messages().await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].ubrn(), BAD_UBRN);
    assert_eq!(
        msgs[0].kind, "REF^I12",
        "never published before, so a new referral"
    );
    app.close().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_referrals_are_retried_when_the_mappings_change() {
    let h = Harness::start(Opts::default()).await;
    h.admin("referrals", referral_with_nhs("9912003889", "5"))
        .await;
    let app = h.app(Shutdown::new()).await;
    let summary = app.drain(5).await.expect("drain");
    assert_eq!(summary.parked.len(), 1);
    h.admin("referrals", referral_with_nhs("9912003888", "6"))
        .await;
    let store = app.outbound().store();
    // Same mappings: nothing is retried.
    assert_eq!(
        app.outbound()
            .retry_parked_if_mappings_changed(Utc::now())
            .await
            .unwrap(),
        0
    );
    // As if the mapping files had been edited since the hash was recorded.
    store.set_state_value("mappings_hash", "0").await.unwrap();
    assert_eq!(
        app.outbound()
            .retry_parked_if_mappings_changed(Utc::now())
            .await
            .unwrap(),
        1
    );
    assert!(store.parked().await.unwrap().is_empty());
    assert_eq!(h.take_messages().await.len(), 1);
    app.close().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_referral_cancelled_before_any_message_sends_nothing_and_is_unparked() {
    let h = Harness::start(Opts::default()).await;
    h.admin("referrals", referral_with_nhs("9912003889", "5"))
        .await;
    let app = h.app(Shutdown::new()).await;
    assert_eq!(app.drain(5).await.expect("drain").parked.len(), 1);
    h.admin(
        &format!("referrals/{BAD_UBRN}/cancel"),
        serde_json::json!({}),
    )
    .await;
    let summary = app.drain(5).await.expect("drain");
    assert_eq!(summary.report.published, 0, "{:?}", summary.report);
    assert!(summary.parked.is_empty(), "{:?}", summary.parked);
    assert!(
        h.take_messages().await.is_empty(),
        "no REF^I14 for a referral the PAS never had"
    );
    app.close().await;
    h.cleanup().await;
}
