//! Two processes' view of one PostgreSQL store, in one test process: two [`Cluster`]s with
//! their own holders. A referral's claim is one instance's at a time; when the holder
//! stops renewing, the other takes it with a higher term, and everything the first does
//! under its old term is refused: its local check, the fenced intent in the store. A
//! decision waiting for a claim another instance holds asks it to hurry, and the holder's
//! reads are promoted at its next renewal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ers_bridge::cluster::{Claims, Cluster, ClusterSettings};
use ers_bridge::events::Events;
use ers_bridge::ids::{ControlId, Ubrn, Version};
use ers_bridge::store::{Decision, Store, StoreError};
use secrecy::SecretString;

use crate::helpers::postgres::{drop_pg_database, pg_database};

fn cluster(store: &Store, id: &str, ttl_ms: u64) -> Arc<Cluster> {
    Arc::new(Cluster::new(
        store.clone(),
        ClusterSettings {
            instance_id: id.into(),
            lease_ttl: Duration::from_millis(ttl_ms),
            heartbeat: Duration::from_millis(100),
        },
        20,
        Events::new(),
    ))
}

/// Waits (bounded) for `f` to come true; the leases' clock is the database's, which a test
/// cannot pause.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh database and a store on it.
async fn store() -> (String, Store) {
    let (db, url) = pg_database().await;
    (db, Store::connect(&SecretString::from(url)).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_claim_goes_to_the_other_instance_and_the_first_is_fenced() {
    // Lease times of a few seconds: not beside the kill and chaos runs, which load the
    // whole machine (a starved test process once saw its lease lapse in CI).
    let _one = crate::SERIAL.lock().await;
    let (db, store) = store().await;
    // `a` never renews (no `run`): its lease lapses after 600 ms.
    let a = cluster(&store, "a", 600);
    let b = cluster(&store, "b", 10_000);
    let (claims_a, claims_b) = (Claims::for_cluster(&a), Claims::for_cluster(&b));
    let ubrn = Ubrn::parse("000000090001").unwrap();
    let held = claims_a.take(&ubrn).await.unwrap().expect("free");
    let fence_a = held.fence().cloned().expect("a store lease on postgresql");
    assert!(held.holds());
    assert!(
        claims_b.take(&ubrn).await.unwrap().is_none(),
        "a's, not b's"
    );

    // The PAS's message about it, begun by `a`.
    let cid = ControlId::parse("CLUSTERLEASE01").unwrap();
    store
        .inbound_begin(&cid, "RRI^I12", b"MSH|", 1)
        .await
        .unwrap();
    let decision = Decision {
        state: Some("PENDING".into()),
        hash: "h".into(),
    };

    // `a` stalls past its lease; `b` takes the referral over under a higher term.
    let deadline = Instant::now() + Duration::from_secs(20);
    let claim_b = loop {
        if let Some(c) = claims_b.take(&ubrn).await.unwrap() {
            break c;
        }
        assert!(Instant::now() < deadline, "b never took the lapsed claim");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let taken = claim_b.fence().cloned().expect("a store lease");
    assert!(
        taken.term > fence_a.term,
        "{} > {}",
        taken.term,
        fence_a.term
    );
    assert!(!held.holds(), "a's local deadline has passed");

    // Whatever `a` still tries under its old term is refused by the store.
    let err = store
        .inbound_intent(
            &cid,
            &ubrn,
            "accept",
            Version::new(1),
            &decision,
            true,
            Some(&fence_a),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert!(err.to_string().contains("is no longer held"), "{err}");
    // `b`'s own write under its term goes through.
    store
        .inbound_intent(
            &cid,
            &ubrn,
            "accept",
            Version::new(1),
            &decision,
            true,
            Some(&taken),
        )
        .await
        .expect("the holder's intent");
    // And `a` giving its old claim back frees nothing of `b`'s.
    drop(held);
    assert!(store.lease_holds(&taken).await.unwrap());
    drop(claim_b);
    store.close().await;
    drop_pg_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_waiting_on_another_instance_promotes_the_holders_reads() {
    // Lease times of a few seconds: not beside the kill and chaos runs, which load the
    // whole machine (a starved test process once saw its lease lapse in CI).
    let _one = crate::SERIAL.lock().await;
    let (db, store) = store().await;
    let a = cluster(&store, "a", 5_000);
    let b = cluster(&store, "b", 5_000);
    let ers = ers_bridge::ers::ErsClient::new(
        &ers_bridge::config::load_str(
            "<test>",
            "[ers]\nbase_url = \"http://127.0.0.1:1/FHIR\"\n[ers.auth]\nmode = \"none\"\n",
            &ers_bridge::config::MapEnv::default(),
        )
        .unwrap()
        .ers,
        Arc::new(ers_bridge::config::MapEnv::default()),
    )
    .unwrap();
    // `a` renews (and reads the hurry flag) every 100 ms.
    let stop = ers_bridge::app::Shutdown::new();
    let renewing = tokio::spawn(a.clone().run(ers, stop.clone()));
    let (claims_a, claims_b) = (Claims::for_cluster(&a), Claims::for_cluster(&b));
    let ubrn = Ubrn::parse("000000090002").unwrap();
    let held = claims_a.take(&ubrn).await.unwrap().unwrap();
    let promotion = held.promotion();
    assert!(!promotion.is_promoted());
    // `b`'s decision waits for the claim, and asks `a` to hurry.
    // (Checked while `b` still holds the claim: dropping it gives the lease back.)
    let waiter = {
        let (ubrn, store) = (ubrn.clone(), store.clone());
        tokio::spawn(async move {
            let c = claims_b.take_when_free(&ubrn).await.unwrap();
            let fence = c.fence().cloned().expect("a lease");
            let holds = store.lease_holds(&fence).await.unwrap();
            drop(c);
            holds
        })
    };
    eventually("a's reads promoted", || {
        let p = promotion.clone();
        async move { p.is_promoted() }
    })
    .await;
    assert!(!waiter.is_finished(), "still a's");
    // `a` finishes: `b` gets the claim (its bounded backoff, no wake-up across processes).
    drop(held);
    let holds = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("b gets the claim after a gave it back")
        .unwrap();
    assert!(holds, "b holds the lease it was given");
    stop.trigger();
    renewing.await.unwrap();
    store.close().await;
    drop_pg_database(&db).await;
}
