//! Admin hooks for end-to-end tests: referrer-side changes and cancellations, request
//! statistics, and versioned replacement of referrals.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const A008: &str = "ReferralRequest/$ers.fetchworklist";

impl TestSim {
    /// The worklist item sub-extensions of `ubrn` on `list`, if it is on it.
    async fn worklist_item(&self, list: &str, ubrn: &str) -> Option<Value> {
        let (s, l) = self
            .post_json(A008, None, Some(&worklist_body(list, json!([]))))
            .await;
        assert_eq!(s, StatusCode::OK, "{l}");
        l["entry"]
            .as_array()?
            .iter()
            .find(|e| e["item"]["reference"] == format!("ReferralRequest/{ubrn}"))
            .map(|e| e["extension"][0]["extension"].clone())
    }
}

fn sub<'a>(item: &'a Value, name: &str) -> &'a Value {
    item.as_array()
        .unwrap()
        .iter()
        .find(|s| s["url"] == name)
        .unwrap_or_else(|| panic!("no {name} in {item}"))
}

fn priority_of(referral: &Value) -> String {
    referral["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"].as_str().unwrap().ends_with("ReferralPriority-1"))
        .unwrap()["valueCodeableConcept"]["coding"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn referrer_change_bumps_version_priority_and_context_status() {
    let t = spawn().await;
    let ubrn = "000000070001";
    let (s, b) = t
        .admin_post(
            &format!("referrals/{ubrn}/change"),
            Some(json!({"priority": "URGENT"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["version"], 6);
    assert_eq!(b["requestContextStatus"], "PRIORITY_CHANGED");

    let r = t
        .user(reqwest::Method::GET, &format!("ReferralRequest/{ubrn}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"], "W/\"6\"");
    let referral: Value = r.json().await.unwrap();
    assert_eq!(priority_of(&referral), "URGENT");

    let item = t
        .worklist_item("REFERRALS_FOR_REVIEW", ubrn)
        .await
        .expect("still on the review worklist");
    assert_eq!(
        sub(&item, "requestContextStatus")["valueCodeableConcept"]["coding"][0]["code"],
        "PRIORITY_CHANGED"
    );
    assert_eq!(sub(&item, "referralRequestVersion")["valueInteger"], 6);
    assert_eq!(
        sub(&item, "priority")["valueCodeableConcept"]["coding"][0]["code"],
        "URGENT"
    );

    let (s, b) = t
        .admin_post(
            &format!("referrals/{ubrn}/change"),
            Some(json!({"letter_changed": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["version"], 7);
    assert_eq!(b["requestContextStatus"], "PRIORITY_AND_LETTER_CHANGED");
    let item = t.worklist_item("REFERRALS_FOR_REVIEW", ubrn).await.unwrap();
    assert_eq!(
        sub(&item, "requestContextStatus")["valueCodeableConcept"]["coding"][0]["code"],
        "PRIORITY_AND_LETTER_CHANGED"
    );
    assert_eq!(sub(&item, "referralRequestVersion")["valueInteger"], 7);

    let (_, b) = t
        .admin_post(
            "referrals/000000070002/change",
            Some(json!({"letter_changed": true})),
        )
        .await;
    assert_eq!(b["requestContextStatus"], "LETTER_CHANGED");
    assert_eq!(b["priority"], "ROUTINE", "priority untouched");

    // A provider write with the version read before the change conflicts.
    let path = format!("ReferralRequest/{ubrn}/$ers.acceptReferral");
    let (s, _) = t.post_json(&path, Some(&if_match(5)), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = t.post_json(&path, Some(&if_match(7)), None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn referrer_change_rejects_bad_requests() {
    let t = spawn().await;
    for (path, body, want) in [
        (
            "referrals/000000070001/change",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "referrals/000000070001/change",
            Some(json!({"priority": "SOON"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "referrals/000000070001/change",
            Some(json!({"colour": "red"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "referrals/000000079999/change",
            Some(json!({"priority": "URGENT"})),
            StatusCode::NOT_FOUND,
        ),
        ("referrals/000000079999/cancel", None, StatusCode::NOT_FOUND),
    ] {
        let (s, b) = t.admin_post(path, body).await;
        assert_eq!(s, want, "{path}: {b}");
        assert!(b["error"].is_string(), "{b}");
    }
    assert_eq!(t.version("000000070001").await, 5, "nothing changed");
}

#[tokio::test]
async fn referrer_cancel_takes_the_referral_off_the_worklists() {
    let t = spawn().await;
    let ubrn = "000000070001";
    let (s, b) = t
        .admin_post(
            &format!("referrals/{ubrn}/cancel"),
            Some(json!({"reason": "patient moved away"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["version"], 6);
    assert_eq!(b["state"], "CANCELLED_REFERRAL");

    let r = t
        .user(reqwest::Method::GET, &format!("ReferralRequest/{ubrn}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "A005 still returns it");
    assert_eq!(r.headers()["etag"], "W/\"6\"");
    let referral: Value = r.json().await.unwrap();
    assert_eq!(referral["status"], "cancelled");
    assert_eq!(state_of(&referral).0, "CANCELLED_REFERRAL");
    assert!(referral.to_string().contains("patient moved away"));
    assert!(t
        .worklist_item("REFERRALS_FOR_REVIEW", ubrn)
        .await
        .is_none());

    // Deferred referral without a body leaves the slot-issues list.
    let (s, _) = t.admin_post("referrals/000000070003/cancel", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(t
        .worklist_item("APPOINTMENT_SLOT_ISSUES", "000000070003")
        .await
        .is_none());

    // Provider writes on a cancelled referral are refused by state.
    let (s, b) = t
        .post_json(
            &format!("ReferralRequest/{ubrn}/$ers.acceptReferral"),
            Some(&if_match(6)),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(ers_code(&b), "INVALID_REQUEST_STATE");

    let (s, _) = t
        .admin_post(&format!("referrals/{ubrn}/cancel"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = t
        .admin_post(
            &format!("referrals/{ubrn}/change"),
            Some(json!({"priority": "URGENT"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(t.version(ubrn).await, 6);
}

#[tokio::test]
async fn stats_count_calls_by_operation_and_status() {
    let t = spawn().await;
    let _token = t.app_token().await;
    t.get_json("ReferralRequest/000000070001").await;
    t.get_json("ReferralRequest/000000070002").await;
    let (s, _) = t.get_json("ReferralRequest/000000079999").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    t.get_json("CodeSystem/PRIORITY").await;
    t.post_json(
        A008,
        None,
        Some(&worklist_body("REFERRALS_FOR_REVIEW", json!([]))),
    )
    .await;
    t.admin_calls().await; // admin calls are not counted

    let s = t.stats().await;
    assert_eq!(s["total"], 6, "{s}");
    assert_eq!(s["by_operation"]["A005"], 3, "{s}");
    assert_eq!(s["by_operation"]["A004"], 1);
    assert_eq!(s["by_operation"]["A008"], 1);
    assert_eq!(s["by_operation"]["TOKEN"], 1);
    assert_eq!(s["by_status"]["200"], 5);
    assert_eq!(s["by_status"]["404"], 1);
    assert_eq!(s["by_operation_status"]["A005"]["404"], 1);
    assert_eq!(s["too_many_requests"], 0);
    assert_eq!(s["rate_limited"], 0);

    let r = t
        .http
        .delete(format!("{}/_admin/stats", t.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.stats().await["total"], 0);
}

#[tokio::test]
async fn stats_separate_provoked_rate_limits_from_injected_429s() {
    let mut cfg = config();
    cfg.rate_limit_per_sec = 2;
    let t = spawn_with(cfg).await;
    let futures: Vec<_> = (0..12)
        .map(|_| t.user(reqwest::Method::GET, "CodeSystem/PRIORITY").send())
        .collect();
    let limited = futures_util::future::join_all(futures)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().status() == StatusCode::TOO_MANY_REQUESTS)
        .count() as u64;
    assert!(limited > 0);
    let s = t.stats().await;
    assert_eq!(s["rate_limited"], limited, "{s}");
    assert_eq!(s["too_many_requests"], limited);
    assert_eq!(s["by_status"]["429"], limited);
    assert_eq!(s["rate_limit_clients"], 1, "one client: {s}");
}

#[tokio::test]
async fn admin_replaces_a_referral_only_with_a_higher_version() {
    let t = spawn().await;
    let mut referral: Value = serde_json::from_str(
        &std::fs::read_to_string(samples_dir().join("referrals/booked-dbs.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(referral["meta"]["versionId"], "5");
    let (s, b) = t.admin_post("referrals", Some(referral.clone())).await;
    assert_eq!(s, StatusCode::CONFLICT, "same version: {b}");
    assert!(b["error"].as_str().unwrap().contains("version 5"));

    referral["meta"]["versionId"] = json!("9");
    referral["description"] = json!("replaced by the test");
    let (s, b) = t.admin_post("referrals", Some(referral.clone())).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["replaced"], true);
    assert_eq!(t.version("000000070001").await, 9);
    let (_, read) = t.get_json("ReferralRequest/000000070001").await;
    assert_eq!(read["description"], "replaced by the test");

    referral["meta"]["versionId"] = json!("8");
    let (s, _) = t.admin_post("referrals", Some(referral.clone())).await;
    assert_eq!(s, StatusCode::CONFLICT, "lower version");

    referral["id"] = json!("000000071111");
    let (s, b) = t.admin_post("referrals", Some(referral)).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(b["replaced"], false);

    let mut advice = sample_advice();
    let (s, _) = t.admin_post("advice", Some(advice.clone())).await;
    assert_eq!(s, StatusCode::CONFLICT, "advice follows the same rule");
    advice["meta"]["versionId"] = json!("6");
    let (s, _) = t.admin_post("advice", Some(advice)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.advice_version("000000080000").await, 6);
}
