//! Shared test helpers: unique names, broker and database set-up with clear errors when a
//! service is not running.

use secrecy::SecretString;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A name no other test uses, e.g. `test-3f2a…-pas`.
pub fn unique(prefix: &str) -> String {
    format!("test-{}-{prefix}", uuid::Uuid::new_v4().simple())
}

pub fn amqp_url() -> SecretString {
    SecretString::from(AMQP_URL)
}

/// Connects to the local broker or fails saying how to start it.
pub async fn amqp_channel() -> (lapin::Connection, lapin::Channel) {
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("rabbitmq must run on 127.0.0.1:5672 (start it with `rabbitmq-server -detached` or `docker compose up -d rabbitmq`)");
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// A fresh PostgreSQL database for one test; dropped by [`drop_pg_database`].
pub async fn pg_database() -> (String, String) {
    use sqlx::Connection as _;
    let name = format!("ers_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(PG_ADMIN_URL)
        .await
        .expect("postgresql must run on 127.0.0.1:5432 with trust auth for user postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    (
        name.clone(),
        format!("postgres://postgres@127.0.0.1:5432/{name}"),
    )
}

pub async fn drop_pg_database(name: &str) {
    use sqlx::Connection as _;
    if let Ok(mut admin) = sqlx::PgConnection::connect(PG_ADMIN_URL).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
}

/// Polls `done` every 10 ms until it holds, failing the test after `limit`. For waiting on
/// progress in another task, never for asserting timing.
pub async fn wait_until(limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
