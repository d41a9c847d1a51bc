//! Shared test helpers: unique names, broker and database set-up with clear errors when a
//! service is not running.

use secrecy::SecretString;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

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

#[path = "../common/postgres.rs"]
mod postgres;
pub use postgres::{drop_pg_database, pg_database};
