//! The store methods the pipeline added (migration 2), on SQLite and on PostgreSQL.

use ers_bridge::store::{PublishedMessage, Store};
use secrecy::SecretString;

use crate::helpers::{drop_pg_database, pg_database};

async fn exercise(store: &Store) {
    // Worklist members are replaced as a whole, per service and list.
    assert!(store
        .worklist_members("21012", "RFR")
        .await
        .unwrap()
        .is_empty());
    let a = ["000000000001".to_string(), "000000000002".to_string()];
    store
        .set_worklist_members("21012", "RFR", &a)
        .await
        .unwrap();
    store
        .set_worklist_members("21012", "ASI", &a[..1])
        .await
        .unwrap();
    assert_eq!(store.worklist_members("21012", "RFR").await.unwrap(), a);
    store
        .set_worklist_members("21012", "RFR", &a[1..])
        .await
        .unwrap();
    assert_eq!(
        store.worklist_members("21012", "RFR").await.unwrap(),
        &a[1..]
    );
    assert_eq!(
        store.worklist_members("21012", "ASI").await.unwrap(),
        &a[..1]
    );

    // Named values.
    assert_eq!(store.state_value("mappings_hash").await.unwrap(), None);
    store.set_state_value("mappings_hash", "a").await.unwrap();
    store.set_state_value("mappings_hash", "b").await.unwrap();
    assert_eq!(
        store.state_value("mappings_hash").await.unwrap().as_deref(),
        Some("b")
    );

    // Deferrals keep their first time until cleared.
    assert_eq!(store.defer("000000000003", 5, 100).await.unwrap(), 100);
    assert_eq!(store.defer("000000000003", 5, 900).await.unwrap(), 100);
    store.clear_deferred("000000000003").await.unwrap();
    assert_eq!(store.defer("000000000003", 5, 900).await.unwrap(), 900);

    // The latest confirmed version of a UBRN.
    assert_eq!(
        store
            .latest_published_version("000000000001")
            .await
            .unwrap(),
        None
    );
    for v in [5, 7] {
        store
            .record_published(&PublishedMessage {
                control_id: format!("000000000001-{v}-I12"),
                ubrn: "000000000001".into(),
                version: v,
                message_type: "REF^I12".into(),
                routing_key: "default.REF.I12".into(),
                hl7: Some("MSH|...".into()),
                confirmed_at_ms: 1,
            })
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .latest_published_version("000000000001")
            .await
            .unwrap(),
        Some(7)
    );
}

#[tokio::test]
async fn pipeline_store_methods_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = Store::connect(&SecretString::from(url)).await.unwrap();
    exercise(&store).await;
    store.close().await;
}

#[tokio::test]
async fn pipeline_store_methods_on_postgresql() {
    let (name, url) = pg_database().await;
    let store = Store::connect(&SecretString::from(url)).await.unwrap();
    exercise(&store).await;
    store.close().await;
    drop_pg_database(&name).await;
}
