//! The inbound store on SQLite and PostgreSQL: MSH-10 de-duplication (with the body's
//! hash), intent before the call (with the decision behind it) and result after, attempts,
//! store-scheduled retries claimed with a lease, the reply's bytes kept for a resend, the
//! MSA-2 look-up of a published message, and retention of inbound payloads.

use ers_bridge::store::{
    Attempt, Begin, Decision, Ending, InboundStatus, PublishedMessage, Store, VersionRecord,
};
use secrecy::SecretString;

use crate::helpers;
use crate::ids::{cid, u, ver};

async fn scenario(store: &Store) {
    let pas = cid("PAS00017");
    assert_eq!(
        store
            .inbound_begin_hashed(&pas, "RRI^I12", "MSH|...", Some("hash-1"), 1_000)
            .await
            .unwrap(),
        Begin::New
    );
    // A redelivery (or a resend with the same MSH-10) finds the first, with the hash of
    // the first body to compare with.
    let Begin::Seen(seen) = store
        .inbound_begin_hashed(&pas, "RRI^I12", "MSH|...other", Some("hash-2"), 2_000)
        .await
        .unwrap()
    else {
        panic!("a second begin is a duplicate");
    };
    assert_eq!(seen.status, InboundStatus::Received);
    assert_eq!(seen.received_at_ms, 1_000);
    assert_eq!(seen.hl7.as_deref(), Some("MSH|..."));
    assert_eq!(seen.body_hash.as_deref(), Some("hash-1"));
    assert_eq!((seen.decided_state, seen.decision_hash), (None, None));

    // Intent before the call, with the decision behind it; attempt and result after.
    let decision = Decision {
        state: Some("AWAITING_TRIAGE".into()),
        hash: "decision-1".into(),
    };
    store
        .inbound_intent(
            &pas,
            &u("000000070001"),
            "accept",
            ver(5),
            &decision,
            true,
            None,
        )
        .await
        .unwrap();
    let r = store.inbound(&pas).await.unwrap().unwrap();
    assert_eq!(r.status, InboundStatus::Intent);
    assert_eq!((r.attempts, r.version_sent), (1, Some(ver(5))));
    assert_eq!(r.decided_state.as_deref(), Some("AWAITING_TRIAGE"));
    assert_eq!(r.decision_hash.as_deref(), Some("decision-1"));
    let attempt = Attempt {
        operation: "A013".into(),
        version: Some(ver(5)),
        http_status: Some(503),
        ers_code: None,
        correlation_id: Some("corr-1".into()),
        request_id: None,
        at_ms: 1_100,
    };
    store.inbound_attempt(&pas, &attempt).await.unwrap();

    // A transient failure waits in the store; a claim takes it with a lease, once.
    store
        .inbound_schedule_retry(&pas, 5_000, "e-RS 503")
        .await
        .unwrap();
    assert!(store
        .inbound_claim_due(4_999, 60_000, 10)
        .await
        .unwrap()
        .is_empty());
    let claimed = store.inbound_claim_due(5_000, 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].control_id, pas);
    assert!(
        store
            .inbound_claim_due(5_001, 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased: not claimed twice"
    );
    assert_eq!(
        store
            .inbound_claim_due(65_000, 60_000, 10)
            .await
            .unwrap()
            .len(),
        1,
        "the lease ran out"
    );

    store
        .inbound_intent(
            &pas,
            &u("000000070001"),
            "accept",
            ver(5),
            &decision,
            true,
            None,
        )
        .await
        .unwrap();
    // A retry that stops after its intent (the process killed during the e-RS call) is
    // claimed again once its lease ran out: its PAS message was acked when the retry was
    // scheduled, so the store is the only way it gets finished (found by the chaos run).
    assert_eq!(
        store.inbound(&pas).await.unwrap().unwrap().status,
        InboundStatus::Intent
    );
    assert!(
        store
            .inbound_claim_due(66_000, 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "still within the retry's lease"
    );
    let orphan = store.inbound_claim_due(125_000, 60_000, 10).await.unwrap();
    assert_eq!(orphan.len(), 1, "an interrupted retry is taken up again");
    assert_eq!(orphan[0].status, InboundStatus::Intent);
    store
        .inbound_attempt(
            &pas,
            &Attempt {
                http_status: Some(200),
                at_ms: 66_000,
                ..attempt
            },
        )
        .await
        .unwrap();
    // The first reply's exact bytes (8859/1 text included) are kept with the ending, for
    // a resend.
    let first = b"MSH|^~\\&|ERS_BRIDGE\rMSA|AA|PAS00017|caf\xe9\r".to_vec();
    let ubrn = u("000000070001");
    let end = Ending::Done {
        ubrn: &ubrn,
        action: "accept",
        detail: "accepted (A013)",
    };
    store
        .inbound_end(&pas, &end, Some(("AA", &first)), 2_000)
        .await
        .unwrap();
    let r = store.inbound(&pas).await.unwrap().unwrap();
    assert_eq!(r.status, InboundStatus::Done);
    assert!(r.status.is_final());
    assert_eq!(r.ubrn, Some(u("000000070001")));
    assert_eq!(r.action.as_deref(), Some("accept"));
    assert_eq!(r.reply_code.as_deref(), Some("AA"));
    assert_eq!(r.attempts, 2);
    assert_eq!(r.next_attempt_ms, None);
    let attempts = store.inbound_attempts(&pas).await.unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.http_status).collect::<Vec<_>>(),
        [Some(503), Some(200)]
    );
    assert_eq!(
        store.inbound_for(&u("000000070001")).await.unwrap().len(),
        1
    );

    // A later reply (a needs-action retry) replaces the first.
    assert_eq!(store.inbound_reply(&pas).await.unwrap(), Some(first));
    let second = b"MSH|^~\\&|ERS_BRIDGE\rMSA|AE|PAS00017\r".to_vec();
    store
        .inbound_store_reply(&pas, &second, 3_500)
        .await
        .unwrap();
    assert_eq!(store.inbound_reply(&pas).await.unwrap(), Some(second));

    // MSA-2 names a message we published.
    let published = PublishedMessage {
        control_id: cid("000000070001I1200005"),
        ubrn: u("000000070001"),
        version: ver(5),
        message_type: "REF^I12".into(),
        routing_key: "default.REF.I12".into(),
        hl7: Some("MSH|...".into()),
        confirmed_at_ms: 500,
    };
    store
        .record_versions_published(&[VersionRecord {
            ubrn: u("000000070001"),
            version: ver(5),
            messages: vec![published.clone()],
            now_ms: 500,
            facts: None,
            fence: None,
        }])
        .await
        .unwrap();
    assert_eq!(
        store
            .published_by_control_id(&cid("000000070001I1200005"))
            .await
            .unwrap(),
        Some(published)
    );
    assert_eq!(
        store.published_by_control_id(&cid("NOPE")).await.unwrap(),
        None
    );

    // Retention clears finished inbound payloads, never one still being worked on.
    let open = cid("PAS00018");
    store
        .inbound_begin(&open, "RRI^I12", "MSH|...", 1_000)
        .await
        .unwrap();
    store.prune_payloads(10_000).await.unwrap();
    assert_eq!(store.inbound(&pas).await.unwrap().unwrap().hl7, None);
    assert_eq!(
        store.inbound_reply(&pas).await.unwrap(),
        None,
        "reply pruned"
    );
    assert!(store.inbound(&open).await.unwrap().unwrap().hl7.is_some());
}

#[tokio::test]
async fn sqlite_inbound_store() {
    let store = Store::connect(&SecretString::from("sqlite::memory:"))
        .await
        .unwrap();
    scenario(&store).await;
}

#[tokio::test]
async fn postgres_inbound_store() {
    let (name, url) = helpers::pg_database().await;
    let store = Store::connect(&SecretString::from(url)).await.unwrap();
    scenario(&store).await;
    store.close().await;
    helpers::drop_pg_database(&name).await;
}
