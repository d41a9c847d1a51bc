//! Rate limiting and retries with tokio's paused clock: the server records the (virtual)
//! instant of each request, so the assertions are about what e-RS would see.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use ers_bridge::{config::MapEnv, ers::ErsError};
use tokio::time::Instant;

use crate::helpers::{client, config_toml, example_reply, ubrn, ver, RecordingServer};

const RETRY: &str = "rate_limit_per_sec = 10
request_timeout_ms = 30000
[ers.retry]
max_attempts = 40
base_delay_ms = 100
max_delay_ms = 2000
budget = 1000";

fn none_client(server: &RecordingServer) -> ers_bridge::ers::ErsClient {
    client(
        &config_toml(&server.base(), RETRY, "mode = \"none\""),
        MapEnv::default(),
    )
}

fn referral() -> Response {
    example_reply(
        "stu3/retrieveReferralRequest/responses/BookedDBS.json",
        Some(5),
    )
}

/// The most requests in any window `[t, t + 1s)`.
fn max_per_second(mut times: Vec<Instant>) -> usize {
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_calls_stay_within_ten_per_second() {
    let server = RecordingServer::spawn(|_, _| referral()).await;
    let c = none_client(&server);
    let start = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.referral(&ubrn("000000070001"), None).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.version, Some(ver(5)));
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 100);
    let max = max_per_second(seen.iter().map(|s| s.at).collect());
    assert!(max <= 10, "{max} requests in one second");
    // And the limiter does not throttle far below the limit either.
    assert!(Instant::now() - start < Duration::from_secs(11));
}

#[tokio::test(start_paused = true)]
async fn storm_of_429_honours_retry_after_and_the_limit() {
    // The first 15 requests are refused with Retry-After: 2.
    let server = RecordingServer::spawn(|_, n| {
        if n < 15 {
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "2")],
                "",
            )
                .into_response()
        } else {
            referral()
        }
    })
    .await;
    let c = none_client(&server);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.referral(&ubrn("000000070001"), None).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 35);
    assert!(max_per_second(seen.iter().map(|s| s.at).collect()) <= 10);
    // After each 429, nothing new arrives until its Retry-After has passed.
    for refused in &seen[..15] {
        for later in seen.iter().filter(|s| s.at > refused.at) {
            assert!(
                later.at - refused.at >= Duration::from_secs(2),
                "a request came {:?} after a 429 with Retry-After: 2",
                later.at - refused.at
            );
        }
    }
}

/// Answers request `n` with 503 `Retry-After: 5` when `refused(n)`, else a referral.
fn unavailable_when(
    refused: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> impl Fn(&crate::helpers::Seen, usize) -> Response + Send + Sync + 'static {
    move |_, n| {
        if refused(n) {
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "5")],
                "",
            )
                .into_response()
        } else {
            referral()
        }
    }
}

async fn twenty_reads(server: &RecordingServer) {
    let c = none_client(server);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.referral(&ubrn("000000070001"), None).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

/// A lone 503 with `Retry-After` (e-RS failing one call among successes) makes only that
/// call wait: the others go on at the rate limit meanwhile (issue 21: deferring every
/// call for each sporadic 503 made the fault mix five times slower).
#[tokio::test(start_paused = true)]
async fn a_lone_503_waits_alone() {
    let server = RecordingServer::spawn(unavailable_when(|n| n == 2)).await;
    twenty_reads(&server).await;
    let seen = server.seen();
    assert_eq!(seen.len(), 21);
    let refused = seen[2].at;
    let meanwhile = seen
        .iter()
        .filter(|s| s.at > refused && s.at - refused < Duration::from_secs(5))
        .count();
    assert_eq!(
        meanwhile, 17,
        "the other reads went on during the 503's Retry-After"
    );
    let retried = seen.last().unwrap().at - refused;
    assert!(
        retried >= Duration::from_secs(5),
        "its own retry waited: {retried:?}"
    );
}

/// Three 503s in a row: e-RS is unavailable, and their `Retry-After` holds every call.
#[tokio::test(start_paused = true)]
async fn a_streak_of_503s_holds_every_call() {
    let server = RecordingServer::spawn(unavailable_when(|n| n < 3)).await;
    twenty_reads(&server).await;
    let seen = server.seen();
    assert_eq!(seen.len(), 23);
    let third = seen[2].at;
    for later in seen.iter().filter(|s| s.at > third) {
        assert!(
            later.at - third >= Duration::from_secs(5),
            "a request came {:?} after the third 503 in a row",
            later.at - third
        );
    }
}

#[tokio::test(start_paused = true)]
async fn server_errors_retry_reads_but_not_unguarded_writes() {
    let server = RecordingServer::spawn(|s, n| {
        if s.path
            .ends_with("createFromCommunicationRequestActionLater")
            || n < 2
        {
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        } else {
            referral()
        }
    })
    .await;
    let c = none_client(&server);
    // A005: two 500s, then success.
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    assert_eq!(server.seen().len(), 3);
    // A027 has no If-Match: a 500 is not retried (the conversion may have happened).
    let input = ers_bridge::fhir::requests::ConvertAdviceToReferral {
        ubrn: ubrn("000000080000"),
        version: ver(3),
        guidance: "g".into(),
        new_priority: ers_bridge::fhir::requests::Priority::Routine,
        review_comments: "r".into(),
        guidance_attachments: vec![],
        review_attachments: vec![],
    };
    let err = c.convert_advice(&input).await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert!(err.is_retryable());
    assert_eq!(server.seen().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn timeouts_retry_reads_and_are_typed() {
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hang = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            held.push(sock);
        }
    });
    let hang = client(
        &config_toml(
            &format!("http://{addr}/referrals/FHIR"),
            "request_timeout_ms = 5000\n[ers.retry]\nmax_attempts = 3\nbase_delay_ms = 100",
            "mode = \"none\"",
        ),
        MapEnv::default(),
    );
    let started = Instant::now();
    let err = hang
        .referral(&ubrn("000000070001"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ErsError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    // Three attempts of 5 s each plus two short backoffs.
    let took = Instant::now() - started;
    assert!(
        took >= Duration::from_secs(15) && took < Duration::from_secs(20),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn conflict_and_locked_are_distinct_and_not_retried_blindly() {
    let server = RecordingServer::spawn(|s, _| {
        let status = if s.path.contains("000000070001") {
            409
        } else {
            423
        };
        crate::helpers::fhir(
            status,
            crate::helpers::example_json("stu3/STU3-OperationOutcome.json"),
            None,
        )
    })
    .await;
    let c = client(
        &config_toml(
            &server.base(),
            "[ers.retry]\nmax_attempts = 3",
            "mode = \"none\"",
        ),
        MapEnv::default(),
    );
    let e = c.accept(&ubrn("000000070001"), ver(5)).await.unwrap_err();
    assert!(matches!(e, ErsError::Conflict(_)), "{e}");
    assert_eq!(e.ers_code(), Some("UNEXPECTED_FIELD"));
    assert_eq!(server.seen().len(), 1, "409 is not retried");
    let e = c.accept(&ubrn("000000070002"), ver(5)).await.unwrap_err();
    assert!(matches!(e, ErsError::Locked(_)), "{e}");
    assert!(e.is_retryable());
    assert_eq!(
        server.seen().len(),
        2,
        "423 is left to the caller, who re-reads first"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_budget_stops_retries_during_an_outage() {
    let server =
        RecordingServer::spawn(|_, _| axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response())
            .await;
    let c = client(
        &config_toml(
            &server.base(),
            "[ers.retry]\nmax_attempts = 5\nbase_delay_ms = 10\nbudget = 3",
            "mode = \"none\"",
        ),
        MapEnv::default(),
    );
    for _ in 0..3 {
        let e = c.referral(&ubrn("000000070001"), None).await.unwrap_err();
        assert_eq!(e.status(), Some(503));
    }
    // 3 first attempts + 3 retries from the budget, not 3 x 5.
    assert_eq!(server.seen().len(), 6);
}
