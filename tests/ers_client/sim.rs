//! Against the e-RS simulator over HTTP (`ers_bridge::simulator::spawn`): every operation
//! in every auth mode that allows it, the refusal of those it does not (nothing reaches
//! e-RS), app-restricted token refresh before expiry, and a legacy session created,
//! role-selected, used and deleted.

use std::time::Duration;

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
    simulator::{self, RunningSimulator, SimAuth, SimConfig},
};

use crate::helpers::{client, config_toml, jwt_key, ubrn, ver};

/// Client side: fast enough for tests, still under the simulator's limit.
const CLIENT: &str = "rate_limit_per_sec = 50\n[ers.retry]\nmax_attempts = 2\nbase_delay_ms = 10";

async fn sim(require_auth: bool) -> RunningSimulator {
    let cfg = SimConfig {
        seed_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/fhir").into()),
        rate_limit_per_sec: 1000,
        auth: SimAuth {
            public_key_pem: Some(std::fs::read_to_string(jwt_key("public.pem")).unwrap()),
            require_auth,
            ..SimAuth::default()
        },
        ..SimConfig::default()
    };
    simulator::spawn(cfg).await.expect("the simulator starts")
}

/// A simulator admin endpoint's JSON (`/_admin/<path>`).
async fn admin_json(sim: &RunningSimulator, path: &str) -> serde_json::Value {
    reqwest::get(format!("{}/_admin/{path}", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The operations e-RS recorded as writes (from `/_admin/calls`).
async fn recorded_writes(sim: &RunningSimulator) -> Vec<String> {
    let calls = admin_json(sim, "calls").await;
    calls
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["operation"].as_str().map(str::to_string))
        .collect()
}

fn user_auth(role: &str, obo: Option<&str>) -> String {
    let mut s = format!(
        "mode = \"user-restricted\"\ntoken_env = \"ERS_TOKEN\"\nbusiness_function = \"{role}\"\nods_code = \"R69\"\n"
    );
    if let Some(o) = obo {
        s.push_str(&format!("on_behalf_of_user_id = \"{o}\"\n"));
    }
    s
}

fn user_env() -> MapEnv {
    MapEnv::from_pairs([("ERS_TOKEN", "sim-user-token"), ("SSO", "smartcard-sso")])
}

fn app_auth() -> String {
    format!(
        "mode = \"app-restricted\"\napi_key = \"sim-api-key\"\nprivate_key_file = \"{}\"\nkid = \"sim-kid\"\nrefresh_margin_secs = 60\n",
        jwt_key("private.pem")
    )
}

/// A current rejection reason, with the system exactly as A004 gives it.
async fn rejection_reason(c: &ErsClient) -> Coding {
    let cs = c
        .reference_data("APPOINTMENT-CANCELLATION-REASON")
        .await
        .unwrap();
    let r = cs.rejection_reasons(chrono::Utc::now())[0].code.clone();
    Coding::new(cs.url.clone().unwrap(), r)
}

/// Every provider operation against the seeded world; returns each result by operation.
async fn every_operation(c: &ErsClient) -> Vec<(Operation, Result<String, ErsError>)> {
    let mut out: Vec<(Operation, Result<String, ErsError>)> = Vec::new();
    let reason = match c.allows(Operation::A014) {
        true => rejection_reason(c).await,
        false => Coding::new(
            "_baseurl_/STU3/CodeSystem/APPOINTMENT-CANCELLATION-REASON",
            "OTHER",
        ),
    };
    let v = |r: Result<ers_bridge::ers::Versioned<_>, ErsError>| {
        r.map(
            |x: ers_bridge::ers::Versioned<ers_bridge::fhir::ReferralRequest>| {
                format!(
                    "version {}",
                    x.version.map_or("none".to_string(), |v| v.to_string())
                )
            },
        )
    };
    out.push((
        Operation::A004,
        c.reference_data("SPECIALTY")
            .await
            .map(|cs| format!("{} concepts", cs.concept.len())),
    ));
    out.push((
        Operation::A005,
        v(c.referral(&ubrn("000000070001"), Some(ver(5))).await),
    ));
    out.push((
        Operation::A006,
        c.attachment_stu3("719f6045-e791-4029-8e0f-1201c02b0a55")
            .await
            .map(|b| format!("{} bytes", b.bytes.len())),
    ));
    out.push((
        Operation::A042,
        c.attachment("719f6045-e791-4029-8e0f-1201c02b0a55")
            .await
            .map(|b| format!("{} bytes", b.bytes.len())),
    ));
    out.push((
        Operation::A007,
        c.clinical_info(&ubrn("000000070001"))
            .await
            .map(|b| format!("{:?}", b.content_type)),
    ));
    let mut rfr = FetchWorklist::new(ListSelector::ReferralsForReview);
    rfr.service = Some("21012".into());
    out.push((
        Operation::A008,
        c.worklist(&rfr)
            .await
            .map(|l| format!("{} items", l.worklist_items().len())),
    ));
    out.push((
        Operation::A029,
        c.available_actions(&ubrn("000000070003"), ver(5))
            .await
            .map(|b| b.task_codes().join(",")),
    ));
    out.push((
        Operation::A013,
        v(c.accept(&ubrn("000000070001"), ver(5)).await),
    ));
    out.push((
        Operation::A014,
        v(c.reject(
            &ubrn("000000070002"),
            ver(5),
            &RejectReferral {
                reason,
                comments: Some("not appropriate for this clinic".into()),
                appointment_cancelled_in_pas: Some(true),
            },
        )
        .await),
    ));
    out.push((
        Operation::A022,
        v(c.cancel_action_later(
            &ubrn("000000070011"),
            ver(5),
            &CancelAppointmentActionLater {
                comments: "please rebook".into(),
                priority: Some(Priority::Urgent),
                appointment_cancelled_in_pas: None,
                attachments: vec![],
            },
        )
        .await),
    ));
    out.push((
        Operation::A028,
        v(c.record_review_outcome(
            &ubrn("000000070013"),
            ver(5),
            &RecordReviewOutcome {
                outcome: ReviewOutcome::AcceptReferBookLater,
                comments: "book within two weeks".into(),
                priority: None,
                attachments: vec![],
            },
        )
        .await),
    ));
    out.push((
        Operation::A023,
        c.advice_worklist(None)
            .await
            .map(|l| format!("{} items", l.entry.len())),
    ));
    out.push((
        Operation::A024,
        c.advice_request(&ubrn("000000080000"), Some(ver(5)))
            .await
            .map(|r| {
                format!(
                    "version {}",
                    r.version.map_or("none".to_string(), |v| v.to_string())
                )
            }),
    ));
    out.push((
        Operation::A025,
        c.advice_conversation(&ubrn("000000080000"), ver(5))
            .await
            .map(|b| format!("{} messages", b.communications().len())),
    ));
    out.push((
        Operation::A026,
        c.send_advice_response(
            &ubrn("000000080001"),
            ver(5),
            &SendAdviceResponse {
                outcome: GuidanceOutcome::RequireFurtherInformation,
                recommendation: None,
                guidance: "please send the latest blood results".into(),
                updated_priority: Priority::Routine,
                attachments: vec![],
            },
        )
        .await
        .map(|p| format!("{} parameters", p.parameter.len())),
    ));
    out.push((
        Operation::A027,
        v(c.convert_advice(&ConvertAdviceToReferral {
            ubrn: ubrn("000000080000"),
            version: ver(5),
            guidance: "converted to a referral".into(),
            new_priority: Priority::Routine,
            review_comments: "book into the next clinic".into(),
            guidance_attachments: vec![],
            review_attachments: vec![],
        })
        .await),
    ));
    out
}

fn assert_all_ok(
    mode: &str,
    results: &[(Operation, Result<String, ErsError>)],
    refused: &[Operation],
) {
    for (op, r) in results {
        if refused.contains(op) {
            assert!(
                matches!(r, Err(ErsError::NotAllowed { operation, .. }) if operation == op),
                "{mode}: {op} should be refused, got {:?}",
                r.as_ref().map_err(ToString::to_string)
            );
        } else {
            assert!(r.is_ok(), "{mode}: {op}: {}", r.as_ref().err().unwrap());
        }
    }
}

#[tokio::test]
async fn user_restricted_every_operation() {
    let sim = sim(true).await;
    let c = client(
        &config_toml(
            &sim.fhir_base(),
            CLIENT,
            &user_auth("SERVICE_PROVIDER_CLINICIAN", None),
        ),
        user_env(),
    );
    let results = every_operation(&c).await;
    assert_all_ok("user-restricted", &results, &[]);
    // The write results carry the new versions; a stale If-Match is a typed conflict.
    let accept = &results
        .iter()
        .find(|(o, _)| *o == Operation::A013)
        .unwrap()
        .1;
    assert_eq!(accept.as_deref().unwrap(), "version 6");
    let e = c.accept(&ubrn("000000070001"), ver(5)).await.unwrap_err();
    assert!(matches!(e, ErsError::Conflict(_)), "{e}");
    let writes = recorded_writes(&sim).await;
    for op in ["A013", "A014", "A022", "A026", "A027", "A028"] {
        assert!(
            writes.iter().any(|w| w == op),
            "{op} not recorded: {writes:?}"
        );
    }
}

#[tokio::test]
async fn user_restricted_spca_on_behalf_of() {
    let sim = sim(true).await;
    let c = client(
        &config_toml(
            &sim.fhir_base(),
            CLIENT,
            &user_auth("SERVICE_PROVIDER_CLINICIAN_ADMIN", Some("021600556514")),
        ),
        user_env(),
    );
    let r = c.referral(&ubrn("000000070001"), None).await.unwrap();
    assert_eq!(r.version, Some(ver(5)));
}

#[tokio::test]
async fn app_restricted_allowed_operations_work_and_the_rest_are_refused_unsent() {
    let sim = sim(true).await;
    let c = client(
        &config_toml(&sim.fhir_base(), CLIENT, &app_auth()),
        MapEnv::default(),
    );
    let results = every_operation(&c).await;
    let refused = [
        Operation::A014,
        Operation::A022,
        Operation::A023,
        Operation::A026,
        Operation::A027,
    ];
    assert_all_ok("app-restricted", &results, &refused);
    assert_eq!(c.token_fetch_count(), Some(1));
    // A042's download went to the object store with nothing of e-RS's: no bearer token,
    // no NHSD headers, no correlation id (the simulator checks the headers it received).
    let stats = admin_json(&sim, "stats").await;
    assert!(
        stats["by_operation"]["OBJECT_STORE"].as_u64() >= Some(1),
        "{stats}"
    );
    assert_eq!(stats["object_store_with_credentials"], 0, "{stats}");
    // And the check can see one: a download carrying a bearer token is counted.
    reqwest::Client::new()
        .get(format!("{}/_objectstore/no-such-token", sim.base_url()))
        .bearer_auth("leaked")
        .send()
        .await
        .unwrap();
    let stats = admin_json(&sim, "stats").await;
    assert_eq!(stats["object_store_with_credentials"], 1, "{stats}");
    let writes = recorded_writes(&sim).await;
    for op in refused {
        assert!(
            !writes.iter().any(|w| w == op.id()),
            "{op} reached e-rs: {writes:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn app_restricted_token_is_refreshed_before_expiry() {
    let sim = sim(true).await;
    let c = client(
        &config_toml(&sim.fhir_base(), CLIENT, &app_auth()),
        MapEnv::default(),
    );
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    assert_eq!(c.token_fetch_count(), Some(1));
    // The simulator's tokens live 600 s; the client refreshes 60 s early.
    tokio::time::advance(Duration::from_secs(530)).await;
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    assert_eq!(c.token_fetch_count(), Some(1));
    tokio::time::advance(Duration::from_secs(15)).await;
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    assert_eq!(
        c.token_fetch_count(),
        Some(2),
        "refreshed at 545 s, before the 600 s expiry"
    );
    // Well past the first token's expiry the client still works, on the refreshed token.
    tokio::time::advance(Duration::from_secs(100)).await;
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    assert_eq!(c.token_fetch_count(), Some(2));
}

#[tokio::test]
async fn legacy_session_every_operation_then_deleted() {
    let sim = sim(true).await;
    let auth = "mode = \"legacy-session\"\nasid = \"200000000001\"\nsession_token_env = \"SSO\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN\"\nods_code = \"R69\"";
    let c = client(&config_toml(&sim.legacy_base(), CLIENT, auth), user_env());
    assert!(!c.has_session().await);
    let results = every_operation(&c).await;
    assert_all_ok("legacy-session", &results, &[Operation::A042]);
    assert!(c.has_session().await, "session created and role selected");
    c.shutdown().await.unwrap();
    assert!(!c.has_session().await, "session deleted");
    // A wrong ASID is refused by e-RS and reported as an authentication error.
    let bad = auth.replace("200000000001", "200000000999");
    let c = client(&config_toml(&sim.legacy_base(), CLIENT, &bad), user_env());
    let e = c.referral(&ubrn("000000070001"), None).await.unwrap_err();
    assert!(matches!(e.status(), Some(401 | 403)), "{e}");
}

#[tokio::test]
async fn no_auth_mode_against_an_open_simulator() {
    let sim = sim(false).await;
    let c = client(
        &config_toml(&sim.fhir_base(), CLIENT, "mode = \"none\""),
        MapEnv::default(),
    );
    let results = every_operation(&c).await;
    assert_all_ok("none", &results, &[]);
}

#[tokio::test(start_paused = true)]
async fn legacy_shutdown_waits_for_calls_in_flight() {
    let sim = sim(true).await;
    let auth = "mode = \"legacy-session\"\nasid = \"200000000001\"\nsession_token_env = \"SSO\"\nbusiness_function = \"SERVICE_PROVIDER_CLINICIAN\"\nods_code = \"R69\"";
    let c = client(&config_toml(&sim.legacy_base(), CLIENT, auth), user_env());
    c.referral(&ubrn("000000070001"), None).await.unwrap();
    // Every e-RS call now takes 2 s (virtual time).
    let faults = reqwest::Client::new()
        .post(format!("{}/_admin/faults", sim.base_url()))
        .json(&serde_json::json!({"latency_ms": 2000}))
        .send()
        .await
        .unwrap();
    assert!(faults.status().is_success());
    let slow = {
        let c = c.clone();
        tokio::spawn(async move { c.referral(&ubrn("000000070001"), None).await })
    };
    // Let the call get under way (virtual time; nothing really sleeps).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!slow.is_finished());
    let started = tokio::time::Instant::now();
    c.shutdown().await.unwrap();
    assert!(slow.is_finished(), "A003 ran while a call was in flight");
    assert!(started.elapsed() >= Duration::from_millis(1900));
    slow.await.unwrap().unwrap();
    assert!(!c.has_session().await);
}

/// The A014 rules the CLI and the inbound pipeline share, against the simulator's A004.
#[tokio::test]
async fn rejection_reasons_follow_a004() {
    use ers_bridge::ers::{rejection_input, RefDataCache, RejectionError};
    let sim = sim(true).await;
    let c = client(
        &config_toml(
            &sim.fhir_base(),
            CLIENT,
            &user_auth("SERVICE_PROVIDER_CLINICIAN", None),
        ),
        user_env(),
    );
    let cache = RefDataCache::new();
    let now = chrono::Utc::now();
    let ok = rejection_input(&c, &cache, "SERVICE_INAPPROPRIATE", None, Some(true), now)
        .await
        .unwrap();
    assert_eq!(ok.reason.code(), "SERVICE_INAPPROPRIATE");
    assert!(
        ok.reason
            .system
            .as_deref()
            .is_some_and(|s| s.ends_with("/STU3/CodeSystem/APPOINTMENT-CANCELLATION-REASON")),
        "{:?}",
        ok.reason.system
    );
    // OTHER says commentIsMandatory; an empty comment is no comment.
    for comments in [None, Some(String::new())] {
        let e = rejection_input(&c, &cache, "OTHER", comments, None, now)
            .await
            .unwrap_err();
        assert!(matches!(e, RejectionError::CommentRequired { .. }), "{e}");
        assert!(!e.is_retryable());
    }
    rejection_input(&c, &cache, "OTHER", Some("see letter".into()), None, now)
        .await
        .unwrap();
    // A PROVIDER (not PROVIDER_REJECT) reason, and one no longer effective, are refused
    // with the current list.
    let e = rejection_input(&c, &cache, "ADDITIONAL_REQ_NOT_AVAILABLE", None, None, now)
        .await
        .unwrap_err();
    match e {
        RejectionError::UnknownReason { current, .. } => {
            assert!(
                current.iter().any(|c| c == "SERVICE_INAPPROPRIATE"),
                "{current:?}"
            );
            assert!(!current.iter().any(|c| c == "ADDITIONAL_REQ_NOT_AVAILABLE"));
        }
        other => panic!("{other}"),
    }
    // A004 was read once for all of these.
    let a004 = recorded_calls(&sim, "A004").await;
    assert_eq!(a004, 1, "the cache serves the code system");

    // App-restricted mode cannot reject: refused before any A004 call.
    let app = client(
        &config_toml(&sim.fhir_base(), CLIENT, &app_auth()),
        MapEnv::default(),
    );
    let e = rejection_input(&app, &RefDataCache::new(), "OTHER", None, None, now)
        .await
        .unwrap_err();
    assert!(matches!(e, RejectionError::NotAllowed(_)), "{e}");
    assert_eq!(recorded_calls(&sim, "A004").await, 1);
}

/// How many calls of `op` the simulator counted (`/_admin/stats`).
async fn recorded_calls(sim: &RunningSimulator, op: &str) -> u64 {
    admin_json(sim, "stats").await["by_operation"][op]
        .as_u64()
        .unwrap_or(0)
}
