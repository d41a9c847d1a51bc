//! The store methods the pipeline added (migration 2) and its batched writes, on SQLite and
//! on PostgreSQL.

use ers_bridge::ids::{Ubrn, Version};
use ers_bridge::store::{PublishedMessage, Seen, Store, VersionRecord, VersionState};
use secrecy::SecretString;

use crate::helpers::{drop_pg_database, pg_database};

use crate::ids::{cid, u, ver};

async fn exercise(store: &Store) {
    // Worklist members are replaced as a whole, per service and list.
    assert!(store
        .worklist_members("21012", "RFR")
        .await
        .unwrap()
        .is_empty());
    let a = [u("000000000001"), u("000000000002")];
    store
        .set_worklist_members("21012", "RFR", &a, 1, None)
        .await
        .unwrap();
    store
        .set_worklist_members("21012", "ASI", &a[..1], 1, None)
        .await
        .unwrap();
    assert_eq!(store.worklist_members("21012", "RFR").await.unwrap(), a);
    store
        .set_worklist_members("21012", "RFR", &a[1..], 1, None)
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
    assert_eq!(
        store.defer(&u("000000000003"), ver(5), 100).await.unwrap(),
        100
    );
    assert_eq!(
        store.defer(&u("000000000003"), ver(5), 900).await.unwrap(),
        100
    );
    store
        .record_versions_published(&[VersionRecord {
            ubrn: u("000000000003"),
            version: ver(5),
            messages: vec![],
            now_ms: 900,
            facts: None,
            fence: None,
        }])
        .await
        .unwrap();
    assert_eq!(
        store.defer(&u("000000000003"), ver(5), 900).await.unwrap(),
        900,
        "waits cleared"
    );

    // The latest confirmed version of a UBRN.
    assert_eq!(
        store
            .version_state(&u("000000000001"), ver(1))
            .await
            .unwrap()
            .latest_published,
        None
    );
    for v in [5, 7] {
        let message = PublishedMessage {
            control_id: cid(&format!("E000000000001-I12-{v}")),
            ubrn: u("000000000001"),
            version: ver(v),
            message_type: "REF^I12".into(),
            routing_key: "default.REF.I12".into(),
            hl7: Some("MSH|...".into()),
            confirmed_at_ms: 1,
        };
        store
            .record_versions_published(&[VersionRecord {
                ubrn: u("000000000001"),
                version: ver(v),
                messages: vec![message],
                now_ms: 1,
                facts: None,
                fence: None,
            }])
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .version_state(&u("000000000001"), ver(1))
            .await
            .unwrap()
            .latest_published,
        Some(ver(7))
    );
}

/// The batched calls a worklist pass makes: more rows than one statement binds.
async fn batched(store: &Store) {
    let ubrns: Vec<Ubrn> = (0..2_500)
        .map(|i| u(&format!("{:012}", 500_000 + i)))
        .collect();
    store
        .set_worklist_members("21013", "RFR", &ubrns, 1, None)
        .await
        .unwrap();
    assert_eq!(store.worklist_members("21013", "RFR").await.unwrap(), ubrns);

    // Every third UBRN seen at version 1; asking for version 1 and 2 of each finds exactly
    // those at version 1, across the statement chunks.
    for uu in ubrns.iter().step_by(3) {
        store
            .mark_seen(uu, ver(1), Seen::Published, 1)
            .await
            .unwrap();
    }
    let asked: Vec<(&Ubrn, Version)> = ubrns
        .iter()
        .flat_map(|uu| [(uu, ver(1)), (uu, ver(2))])
        .collect();
    let seen = store.seen_versions(&asked).await.unwrap();
    assert_eq!(seen.len(), ubrns.len().div_ceil(3));
    assert!(seen.contains(&(ubrns[0].clone(), ver(1))));
    assert!(!seen.contains(&(ubrns[0].clone(), ver(2))));
    assert!(!seen.contains(&(ubrns[1].clone(), ver(1))));
    assert!(store.seen_versions(&[]).await.unwrap().is_empty());

    // One version's outcome in one transaction: messages, seen, parked and waits cleared.
    let ubrn = u("000000600001");
    store
        .park(&ubrn, ver(3), "bad nhs number", 10)
        .await
        .unwrap();
    store.defer(&ubrn, ver(3), 10).await.unwrap();
    let msgs: Vec<PublishedMessage> = ["REF^I12", "ADT^A28"]
        .iter()
        .enumerate()
        .map(|(i, t)| PublishedMessage {
            control_id: cid(&format!("E{ubrn}-{i}-4")),
            ubrn: ubrn.clone(),
            version: ver(4),
            message_type: (*t).into(),
            routing_key: "default.REF.I12".into(),
            hl7: Some(format!("MSH|{i}")),
            confirmed_at_ms: 20 + i as i64,
        })
        .collect();
    let before = store.version_state(&ubrn, ver(4)).await.unwrap();
    assert!(!before.seen);
    assert_eq!(before.latest_published, None);
    let other = VersionRecord {
        ubrn: u("000000600002"),
        version: ver(1),
        messages: vec![],
        now_ms: 30,
        facts: None,
        fence: None,
    };
    store
        .record_versions_published(&[
            VersionRecord {
                ubrn: ubrn.clone(),
                version: ver(4),
                messages: msgs.clone(),
                now_ms: 30,
                facts: None,
                fence: None,
            },
            other,
        ])
        .await
        .unwrap();
    assert!(store.is_seen(&ubrn, ver(4)).await.unwrap());
    assert!(store.is_seen(&u("000000600002"), ver(1)).await.unwrap());
    let after = store.version_state(&ubrn, ver(4)).await.unwrap();
    assert!(after.seen);
    assert_eq!(after.latest_published, Some(ver(4)));
    assert_eq!(
        store.version_state(&ubrn, ver(5)).await.unwrap(),
        VersionState {
            seen: false,
            latest_published: Some(ver(4))
        }
    );
    assert!(store.parked().await.unwrap().is_empty());
    assert_eq!(
        store.defer(&ubrn, ver(4), 99).await.unwrap(),
        99,
        "waits cleared"
    );
    assert_eq!(store.messages_for(&ubrn).await.unwrap(), msgs);
    assert_eq!(
        store
            .version_state(&ubrn, ver(4))
            .await
            .unwrap()
            .latest_published,
        Some(ver(4))
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
