//! The store against SQLite (a temporary file) and PostgreSQL (a fresh database): the same
//! scenarios run on both.

use ers_bridge::store::{PublishedMessage, Seen, Store, VersionRecord};
use secrecy::SecretString;

use crate::helpers;

use crate::ids::{cid, u, ver};

fn message(control_id: &str, ubrn: &str, version: u32, at: i64) -> PublishedMessage {
    PublishedMessage {
        control_id: cid(control_id),
        ubrn: u(ubrn),
        version: ver(version),
        message_type: "REF^I12".into(),
        routing_key: "default.REF.I12".into(),
        hl7: Some("MSH|^~\\&|...".into()),
        confirmed_at_ms: at,
    }
}

async fn scenario(store: &Store) {
    // Versions seen.
    assert!(!store.is_seen(&u("000000070000"), ver(5)).await.unwrap());
    assert_eq!(store.latest_seen(&u("000000070000")).await.unwrap(), None);
    store
        .mark_seen(&u("000000070000"), ver(5), Seen::Published, 1)
        .await
        .unwrap();
    store
        .mark_seen(&u("000000070000"), ver(6), Seen::Published, 2)
        .await
        .unwrap();
    store
        .mark_seen(&u("000000070000"), ver(6), Seen::Parked, 3)
        .await
        .unwrap();
    assert!(store.is_seen(&u("000000070000"), ver(5)).await.unwrap());
    assert!(!store.is_seen(&u("000000070000"), ver(7)).await.unwrap());
    assert_eq!(
        store.latest_seen(&u("000000070000")).await.unwrap(),
        Some(ver(6))
    );

    // Published messages: idempotent on control id, listed per referral.
    let m1 = message("000000070000I1200005", "000000070000", 5, 1_000);
    record(store, &m1).await;
    record(store, &m1).await;
    let mut m2 = message("000000070000I1300006", "000000070000", 6, 2_000);
    m2.message_type = "REF^I13".into();
    record(store, &m2).await;
    assert!(store
        .is_published(&cid("000000070000I1200005"))
        .await
        .unwrap());
    assert!(!store.is_published(&cid("nope")).await.unwrap());
    assert_eq!(
        store.messages_for(&u("000000070000")).await.unwrap(),
        vec![m1.clone(), m2.clone()]
    );
    assert_eq!(
        store.published_counts().await.unwrap(),
        vec![("REF^I12".to_string(), 1), ("REF^I13".to_string(), 1)]
    );

    // Retention prunes payloads, keeps metadata.
    assert_eq!(store.prune_payloads(1_500).await.unwrap(), 1);
    assert_eq!(store.prune_payloads(1_500).await.unwrap(), 0);
    let after = store.messages_for(&u("000000070000")).await.unwrap();
    assert_eq!(after[0].hl7, None);
    assert_eq!(after[0].control_id, m1.control_id);
    assert_eq!(after[1].hl7, m2.hl7);

    // Parking.
    store
        .park(
            &u("000000070012"),
            ver(5),
            "missing required PID-3: no NHS number",
            10,
        )
        .await
        .unwrap();
    store
        .park(
            &u("000000070012"),
            ver(5),
            "nhs number 9912003887 fails the modulus 11 check",
            11,
        )
        .await
        .unwrap();
    let parked = store.parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert!(
        store.is_seen(&u("000000070012"), ver(5)).await.unwrap(),
        "a parked version is seen in the same transaction"
    );
    assert!(parked[0].reason.contains("modulus 11"));
    assert_eq!(store.unpark(&u("000000070012")).await.unwrap(), 1);
    assert!(store.parked().await.unwrap().is_empty());

    // Worklist budget: two calls a day per service, counted durably.
    assert!(store
        .take_worklist_call("21012", "2026-11-24", 2)
        .await
        .unwrap());
    assert!(store
        .take_worklist_call("21012", "2026-11-24", 2)
        .await
        .unwrap());
    assert!(!store
        .take_worklist_call("21012", "2026-11-24", 2)
        .await
        .unwrap());
    assert_eq!(
        store.worklist_calls("21012", "2026-11-24").await.unwrap(),
        2
    );
    assert!(store
        .take_worklist_call("21012", "2026-11-25", 2)
        .await
        .unwrap());
    assert!(store
        .take_worklist_call("99999", "2026-11-24", 2)
        .await
        .unwrap());
    store.ping().await.unwrap();
}

#[tokio::test]
async fn sqlite_store_keeps_state_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = SecretString::from(format!(
        "sqlite://{}",
        dir.path().join("bridge.db").display()
    ));
    let store = Store::connect(&url).await.unwrap();
    scenario(&store).await;
    store.close().await;

    // Reopening runs no migration twice and keeps budget and versions.
    let store = Store::connect(&url).await.unwrap();
    assert!(store.is_seen(&u("000000070000"), ver(6)).await.unwrap());
    assert!(!store
        .take_worklist_call("21012", "2026-11-24", 2)
        .await
        .unwrap());
    store.close().await;
}

#[tokio::test]
async fn sqlite_in_memory_store_works() {
    let store = Store::connect(&SecretString::from("sqlite::memory:"))
        .await
        .unwrap();
    scenario(&store).await;
}

#[tokio::test]
async fn postgres_store_runs_the_same_scenario() {
    let (name, url) = helpers::pg_database().await;
    let store = Store::connect(&SecretString::from(url.clone()))
        .await
        .unwrap();
    scenario(&store).await;
    store.close().await;
    let store = Store::connect(&SecretString::from(url)).await.unwrap();
    assert_eq!(
        store.worklist_calls("21012", "2026-11-24").await.unwrap(),
        2
    );
    store.close().await;
    helpers::drop_pg_database(&name).await;
}

#[tokio::test]
async fn concurrent_budget_takers_never_exceed_the_limit() {
    let (name, url) = helpers::pg_database().await;
    let store = Store::connect(&SecretString::from(url)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.take_worklist_call("21012", "2026-11-24", 2)
                .await
                .unwrap()
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += usize::from(t.await.unwrap());
    }
    assert_eq!(granted, 2);
    store.close().await;
    helpers::drop_pg_database(&name).await;
}

#[tokio::test]
async fn unreachable_database_is_a_retryable_error() {
    let err = Store::connect_with_timeout(
        &SecretString::from("postgres://postgres@127.0.0.1:1/nope"),
        std::time::Duration::from_millis(500),
    )
    .await
    .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("cannot connect to the store"),
        "{err}"
    );
    // The cause, not the pool's "pool timed out" (issue 21).
    let text = err.to_string().to_lowercase();
    assert!(text.contains("refused"), "{err}");
    assert!(!text.contains("timed out"), "{err}");
}

/// A database that does not exist is named as such (PostgreSQL's own message), not as a
/// timeout.
#[tokio::test]
async fn a_missing_database_is_named() {
    let err = Store::connect_with_timeout(
        &SecretString::from("postgres://postgres@127.0.0.1:5432/ers_bridge_no_such_db"),
        std::time::Duration::from_millis(2000),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("ers_bridge_no_such_db"), "{err}");
}

/// A login the database refuses (here a role that does not exist: this machine's PostgreSQL
/// trusts every local login, so a wrong password cannot be shown) is named with the fix:
/// the user and password in `[store] url`. Not retried as an outage.
#[tokio::test]
async fn a_refused_login_names_the_setting_to_fix() {
    let err = Store::connect_with_timeout(
        &SecretString::from("postgres://ers_bridge_no_such_role@127.0.0.1:5432/postgres"),
        std::time::Duration::from_millis(2000),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ers_bridge_no_such_role"), "{text}");
    assert!(
        text.contains("refuses the login: check the user and password in [store] url"),
        "{text}"
    );
}

/// A wrong store password, against a server of the test's own that checks passwords (the
/// shared one trusts every local login): refused at once with the setting to fix and without
/// the password; with the right one the store opens; and when the password changes under a
/// running store, its next new connection is refused with the same fix (what the
/// `store_not_writable` alert then carries), and it works again once the password is back.
#[tokio::test]
async fn a_wrong_store_password_names_the_fix() {
    use sqlx::Connection as _;
    let server = crate::private_postgres::PrivatePostgres::start().await;
    let err = Store::connect_with_timeout(
        &SecretString::from(server.url("not-the-password")),
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("refuses the login: check the user and password in [store] url"),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "no password: {text}");

    let store = Store::connect(&SecretString::from(server.url(&server.password)))
        .await
        .unwrap();
    store.set_state_value("alerts.probe", "1").await.unwrap();

    // The password changes, and the store's open connections end.
    let mut admin = sqlx::PgConnection::connect(&server.url(&server.password))
        .await
        .unwrap();
    let set_password = |pw: String| {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER ROLE postgres PASSWORD '{pw}'"
        )))
    };
    set_password("changed-by-the-dba".into())
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")
        .execute(&mut admin)
        .await
        .unwrap();
    // The first use may meet a connection the server just closed; a new one is refused.
    let mut refused = None;
    for n in 2..10 {
        if let Err(e) = store.set_state_value("alerts.probe", &n.to_string()).await {
            let text = e.to_string();
            if text.contains("refuses the login") {
                refused = Some(text);
                break;
            }
        }
    }
    let text = refused.expect("the changed password is named as the cause");
    assert!(text.contains("[store] url"), "{text}");
    assert!(!text.contains(&server.password), "no password: {text}");

    set_password(server.password.clone())
        .execute(&mut admin)
        .await
        .unwrap();
    store.set_state_value("alerts.probe", "10").await.unwrap();
    store.close().await;
}

/// A PostgreSQL user that may read the bridge's tables but not write them (a role given
/// SELECT only): a write is refused with the database's message and the fix, not retried
/// as an outage.
#[tokio::test]
async fn a_user_without_write_rights_names_the_fix() {
    use sqlx::Connection as _;
    let (name, url) = helpers::pg_database().await;
    let store = Store::connect(&SecretString::from(url)).await.unwrap();
    store.close().await;
    let role = format!("ers_ro_{}", &name["ers_test_".len()..]);
    let server = "postgres://postgres@127.0.0.1:5432";
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} LOGIN")))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut owner = sqlx::PgConnection::connect(&format!("{server}/{name}"))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"
    )))
    .execute(&mut owner)
    .await
    .unwrap();
    owner.close().await.unwrap();
    let reader = Store::connect(&SecretString::from(format!(
        "postgres://{role}@127.0.0.1:5432/{name}"
    )))
    .await;
    let text = match reader {
        Ok(r) => {
            let e = r.set_state_value("probe", "1").await.unwrap_err();
            assert!(!e.is_retryable(), "{e}");
            r.close().await;
            e.to_string()
        }
        Err(e) => e.to_string(),
    };
    helpers::drop_pg_database(&name).await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&mut admin)
        .await;
    assert!(text.contains("permission denied"), "{text}");
    assert!(
        text.contains("the database user may not write here"),
        "{text}"
    );
}

/// A SQLite store file that became read-only (made immutable, which even root cannot
/// write) is reported as such with the fix, to a store already open and at a new start.
#[tokio::test]
async fn a_read_only_store_file_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.db");
    let url = SecretString::from(format!("sqlite://{}", path.display()));
    let store = Store::connect(&url).await.unwrap();
    store.set_state_value("probe", "1").await.unwrap();
    let guard = crate::immutable::Immutable::on(&path);

    let open = store.set_state_value("probe", "2").await.unwrap_err();
    let text = open.to_string();
    assert!(!open.is_retryable(), "{text}");
    assert!(
        text.contains("check the store's disk space, and that its file was not made read-only")
            || text.contains("the store file is read-only"),
        "{text}"
    );
    let text = match Store::connect(&url).await {
        Ok(s) => s
            .set_state_value("probe", "3")
            .await
            .unwrap_err()
            .to_string(),
        Err(e) => e.to_string(),
    };
    assert!(text.contains("the store file is read-only"), "{text}");
    drop(guard);
    store.set_state_value("probe", "4").await.unwrap();
    store.close().await;
}

/// Records one confirmed message the way the pipeline does (its version with it).
async fn record(store: &Store, m: &PublishedMessage) {
    store
        .record_versions_published(&[VersionRecord {
            ubrn: m.ubrn.clone(),
            version: m.version,
            messages: vec![m.clone()],
            now_ms: m.confirmed_at_ms,
            facts: None,
            fence: None,
        }])
        .await
        .unwrap();
}
