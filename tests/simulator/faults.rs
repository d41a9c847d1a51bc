//! Injected faults and the per-client rate limit.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn injected_503_carries_retry_after_and_500_and_429() {
    let t = spawn().await;
    t.set_faults(json!({"error_503_rate": 1.0, "retry_after_secs": 7}))
        .await;
    let r = t
        .user(reqwest::Method::GET, "ReferralRequest/000000070001")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "7");
    let b: Value = r.json().await.unwrap();
    assert_eq!(ers_code(&b), "SYSTEM_UNAVAILABLE");
    t.set_faults(json!({"error_500_rate": 1.0})).await;
    let (s, _) = t.get_json("ReferralRequest/000000070001").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    t.set_faults(json!({"error_429_rate": 1.0})).await;
    let (s, _) = t.get_json("ReferralRequest/000000070001").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let r = t
        .http
        .delete(format!("{}/_admin/faults", t.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (s, _) = t.get_json("ReferralRequest/000000070001").await;
    assert_eq!(s, StatusCode::OK);
    let r = t
        .http
        .post(format!("{}/_admin/faults", t.sim.base_url()))
        .json(&json!({"error_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "unknown fault names are refused"
    );
}

#[tokio::test]
async fn writes_are_logged_even_when_faulted() {
    let t = spawn().await;
    t.set_faults(json!({"error_503_rate": 1.0})).await;
    let r = t
        .post(
            "ReferralRequest/000000070001/$ers.acceptReferral",
            Some("W/\"5\""),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let calls = t.admin_calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["operation"], "A013");
    let r = t
        .http
        .delete(format!("{}/_admin/calls", t.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(t.admin_calls().await.is_empty());
}

#[tokio::test]
async fn latency_is_added() {
    let t = spawn().await;
    t.set_faults(json!({"latency_ms": 150})).await;
    let start = Instant::now();
    let (s, _) = t.get_json("ReferralRequest/000000070001").await;
    assert_eq!(s, StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn hung_requests_hang_until_the_client_gives_up() {
    let t = spawn().await;
    t.set_faults(json!({"hang_rate": 1.0})).await;
    let err = t
        .user(reqwest::Method::GET, "ReferralRequest/000000070001")
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // Admin hooks are not subject to faults.
    let r = t
        .http
        .get(format!("{}/_admin/calls", t.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn attachments_can_be_kept_pending() {
    let t = spawn().await;
    t.set_faults(json!({"attachments_pending_secs": 60})).await;
    let (s, b) = t
        .get_json("Binary/719f6045-e791-4029-8e0f-1201c02b0a55")
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(ers_code(&b), "PENDING");
}

#[tokio::test]
async fn more_than_ten_requests_per_second_get_429() {
    let mut cfg = config();
    cfg.rate_limit_per_sec = 10;
    let t = spawn_with(cfg).await;
    let futures: Vec<_> = (0..30)
        .map(|_| t.user(reqwest::Method::GET, "CodeSystem/PRIORITY").send())
        .collect();
    let results = futures_util::future::join_all(futures).await;
    let statuses: Vec<StatusCode> = results.into_iter().map(|r| r.unwrap().status()).collect();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(limited >= 10, "{statuses:?}");
    assert!(ok >= 10, "{statuses:?}");
    let counts: Vec<Value> = t
        .http
        .get(format!("{}/_admin/requests", t.sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let total: u64 = counts.iter().map(|c| c["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 30);
    // Another client has its own window.
    let r = t
        .http
        .get(t.stu3("CodeSystem/PRIORITY"))
        .bearer_auth("another-token")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "not rate limited, just unknown"
    );
}
