//! The store methods the pipeline added (migration 2) and its batched writes, on SQLite and
//! on PostgreSQL.

use ers_bridge::store::{PublishedMessage, Store, VersionRecord, VersionState};
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
    store
        .record_versions_published(&[VersionRecord {
            ubrn: "000000000003".into(),
            version: 5,
            messages: vec![],
            now_ms: 900,
        }])
        .await
        .unwrap();
    assert_eq!(
        store.defer("000000000003", 5, 900).await.unwrap(),
        900,
        "waits cleared"
    );

    // The latest confirmed version of a UBRN.
    assert_eq!(
        store
            .version_state("000000000001", 1)
            .await
            .unwrap()
            .latest_published,
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
            .version_state("000000000001", 1)
            .await
            .unwrap()
            .latest_published,
        Some(7)
    );
}

/// The batched calls a worklist pass makes: more rows than one statement binds.
async fn batched(store: &Store) {
    let ubrns: Vec<String> = (0..2_500).map(|i| format!("{:012}", 500_000 + i)).collect();
    store
        .set_worklist_members("21013", "RFR", &ubrns)
        .await
        .unwrap();
    assert_eq!(store.worklist_members("21013", "RFR").await.unwrap(), ubrns);

    // Every third UBRN seen at version 1; asking for version 1 and 2 of each finds exactly
    // those at version 1, across the statement chunks.
    for u in ubrns.iter().step_by(3) {
        store.mark_seen(u, 1, "published", 1).await.unwrap();
    }
    let asked: Vec<(&str, i64)> = ubrns
        .iter()
        .flat_map(|u| [(u.as_str(), 1), (u.as_str(), 2)])
        .collect();
    let seen = store.seen_versions(&asked).await.unwrap();
    assert_eq!(seen.len(), ubrns.len().div_ceil(3));
    assert!(seen.contains(&(ubrns[0].clone(), 1)));
    assert!(!seen.contains(&(ubrns[0].clone(), 2)));
    assert!(!seen.contains(&(ubrns[1].clone(), 1)));
    assert!(store.seen_versions(&[]).await.unwrap().is_empty());

    // One version's outcome in one transaction: messages, seen, parked and waits cleared.
    let ubrn = "000000600001";
    store.park(ubrn, 3, "bad nhs number", 10).await.unwrap();
    store.defer(ubrn, 3, 10).await.unwrap();
    let msgs: Vec<PublishedMessage> = ["REF^I12", "ADT^A28"]
        .iter()
        .enumerate()
        .map(|(i, t)| PublishedMessage {
            control_id: format!("E{ubrn}-{i}-4"),
            ubrn: ubrn.into(),
            version: 4,
            message_type: (*t).into(),
            routing_key: "default.REF.I12".into(),
            hl7: Some(format!("MSH|{i}")),
            confirmed_at_ms: 20 + i as i64,
        })
        .collect();
    let before = store.version_state(ubrn, 4).await.unwrap();
    assert!(!before.seen);
    assert_eq!(before.latest_published, None);
    let other = VersionRecord {
        ubrn: "000000600002".into(),
        version: 1,
        messages: vec![],
        now_ms: 30,
    };
    store
        .record_versions_published(&[
            VersionRecord {
                ubrn: ubrn.into(),
                version: 4,
                messages: msgs.clone(),
                now_ms: 30,
            },
            other,
        ])
        .await
        .unwrap();
    assert!(store.is_seen(ubrn, 4).await.unwrap());
    assert!(store.is_seen("000000600002", 1).await.unwrap());
    let after = store.version_state(ubrn, 4).await.unwrap();
    assert!(after.seen);
    assert_eq!(after.latest_published, Some(4));
    assert_eq!(
        store.version_state(ubrn, 5).await.unwrap(),
        VersionState {
            seen: false,
            latest_published: Some(4)
        }
    );
    assert!(store.parked().await.unwrap().is_empty());
    assert_eq!(store.defer(ubrn, 4, 99).await.unwrap(), 99, "waits cleared");
    assert_eq!(store.messages_for(ubrn).await.unwrap(), msgs);
    assert_eq!(
        store.version_state(ubrn, 4).await.unwrap().latest_published,
        Some(4)
    );
    // The whole list, oldest confirm first, limited.
    let all = store.published_messages(10).await.unwrap();
    assert_eq!(all.last(), msgs.last());
    assert_eq!(store.published_messages(1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn pipeline_store_methods_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = Store::connect(&SecretString::from(url)).await.unwrap();
    exercise(&store).await;
    batched(&store).await;
    store.close().await;
    // A file store runs in WAL mode (commits without waiting for fsync; see store/mod.rs).
    assert_eq!(journal_mode(&dir.path().join("s.db")), "wal");
}

/// The journal mode recorded in a SQLite file's header (bytes 18 and 19 are 2 for WAL).
fn journal_mode(path: &std::path::Path) -> &'static str {
    let header = std::fs::read(path).unwrap();
    if header[18] == 2 && header[19] == 2 {
        "wal"
    } else {
        "rollback"
    }
}

#[tokio::test]
async fn pipeline_store_methods_on_postgresql() {
    let (name, url) = pg_database().await;
    let store = Store::connect(&SecretString::from(url)).await.unwrap();
    exercise(&store).await;
    batched(&store).await;
    store.close().await;
    drop_pg_database(&name).await;
}
