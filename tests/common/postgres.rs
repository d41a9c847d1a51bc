//! A fresh PostgreSQL database per test, shared by the `pipeline` and `outbound` test
//! binaries (each includes this file with `#[path = "../common/postgres.rs"]`).

#![allow(dead_code)]

/// The server every test database is created on (trust auth, as on CI machines).
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Creates a database no other test uses; returns its name and URL.
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

/// Drops a database made by [`pg_database`], disconnecting its sessions.
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
