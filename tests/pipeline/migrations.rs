//! Schema migrations over data an older release wrote: migration 6 moves the payloads out
//! of the metadata rows into their own table, and nothing stored is lost on the way.

use ers_bridge::store::Store;
use secrecy::SecretString;

use crate::helpers;
use crate::ids::cid;

/// Writes rows as schema 5 held them (payloads inline), then migrates and reads them back.
async fn payloads_survive_migration_6(url: &str) {
    let url = SecretString::from(url.to_string());
    let old = Store::connect_at_schema(&url, 5).await.unwrap();
    for sql in [
        "INSERT INTO published_messages (control_id, ubrn, version, message_type, routing_key, \
         hl7, confirmed_at_ms) VALUES ('000000012345V3M0001', '000000012345', 3, 'REF^I12', \
         'pas.ref', 'MSH|^~\\&|OUT', 1000)",
        "INSERT INTO published_messages (control_id, ubrn, version, message_type, routing_key, \
         hl7, confirmed_at_ms) VALUES ('000000012345V2M0001', '000000012345', 2, 'REF^I12', \
         'pas.ref', NULL, 500)",
        "INSERT INTO inbound_messages (control_id, received_at_ms, message_type, status, \
         attempts, hl7) VALUES ('PASMIG0001', 2000, 'RRI^I12', 'done', 1, 'MSH|^~\\&|IN')",
        "INSERT INTO dead_letters (id, at_ms, reason, detail, body_b64) VALUES ('dl-mig', 3000, \
         'unreadable', 'no MSH', 'Ym9keQ==')",
    ] {
        sqlx::query(sql).execute(old.pool()).await.unwrap();
    }
    old.close().await;

    let store = Store::connect(&url).await.unwrap();
    let out = store
        .published_by_control_id(&cid("000000012345V3M0001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.hl7.as_deref(), Some("MSH|^~\\&|OUT"));
    let pruned_before = store
        .published_by_control_id(&cid("000000012345V2M0001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        pruned_before.hl7, None,
        "a payload pruned before stays pruned"
    );
    let inbound = store.inbound(&cid("PASMIG0001")).await.unwrap().unwrap();
    assert_eq!(inbound.hl7.as_deref(), Some("MSH|^~\\&|IN"));
    let dead = store.dead_letter("dl-mig").await.unwrap().unwrap();
    assert_eq!(dead.body_b64.as_deref(), Some("Ym9keQ=="));
    // And retention deletes the moved payloads like new ones.
    assert_eq!(store.prune_payloads(10_000).await.unwrap(), 3);
    assert_eq!(
        store
            .inbound(&cid("PASMIG0001"))
            .await
            .unwrap()
            .unwrap()
            .hl7,
        None
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_payloads_survive_migration_6() {
    let dir = tempfile::tempdir().unwrap();
    payloads_survive_migration_6(&format!("sqlite://{}", dir.path().join("m.db").display())).await;
}

#[tokio::test]
async fn postgres_payloads_survive_migration_6() {
    let (name, url) = helpers::pg_database().await;
    payloads_survive_migration_6(&url).await;
    helpers::drop_pg_database(&name).await;
}

/// Bridges starting together on a new PostgreSQL database: each migrates under the
/// advisory lock, so none runs a migration the other already ran (without it the loser of
/// the race fails on "already exists" or a duplicate schema version). Several databases,
/// four bridges each, to give the race its chances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridges_starting_together_migrate_once() {
    for _ in 0..3 {
        let (name, url) = helpers::pg_database().await;
        let url = SecretString::from(url);
        let (a, b, c, d) = tokio::join!(
            Store::connect(&url),
            Store::connect(&url),
            Store::connect(&url),
            Store::connect(&url)
        );
        for (i, s) in [a, b, c, d].into_iter().enumerate() {
            let s = s.unwrap_or_else(|e| panic!("bridge {i}: {e}"));
            s.close().await;
        }
        helpers::drop_pg_database(&name).await;
    }
}

/// The same on SQLite: a `run` and an operator's `ers-bridge status` (or a check) opening
/// one new store file together. Each migration takes SQLite's write lock before it looks
/// whether it is still to do (a chaos test opening the store beside a starting bridge
/// once failed on "duplicate column name").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_opening_one_sqlite_file_together_migrate_once() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = SecretString::from(format!("sqlite://{}", dir.path().join("b.db").display()));
        let (a, b, c) = tokio::join!(
            Store::connect(&url),
            Store::connect(&url),
            Store::connect(&url)
        );
        for (i, s) in [a, b, c].into_iter().enumerate() {
            let s = s.unwrap_or_else(|e| panic!("opener {i}: {e}"));
            s.set_state_value("probe", &i.to_string()).await.unwrap();
            s.close().await;
        }
    }
}

/// Two bridges on one store see the same outage at once: the alert opens once (the
/// database's unique index on open alerts decides, not a read before the write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_two_bridges_raise_at_once_opens_once() {
    let (name, url) = helpers::pg_database().await;
    let url = SecretString::from(url);
    let a = Store::connect(&url).await.unwrap();
    let b = Store::connect(&url).await.unwrap();
    for round in 0..10 {
        let now = 1_000 + round * 10;
        let (x, y) = tokio::join!(
            a.open_alert("broker_disconnected", "down", now),
            b.open_alert("broker_disconnected", "down", now)
        );
        let opened = [x.unwrap(), y.unwrap()];
        assert_eq!(
            opened.iter().filter(|o| **o).count(),
            1,
            "round {round}: {opened:?}"
        );
        assert_eq!(a.open_alerts().await.unwrap().len(), 1);
        assert!(b
            .resolve_alert("broker_disconnected", now + 1)
            .await
            .unwrap());
    }
    a.close().await;
    b.close().await;
    helpers::drop_pg_database(&name).await;
}
