//! Integration tests of the outbound pipeline's parts against the real services on this
//! machine: RabbitMQ (127.0.0.1:5672) and PostgreSQL (127.0.0.1:5432), each test with its
//! own queues, exchanges and database.

mod amqp;
mod helpers;
#[path = "../common/ids.rs"]
mod ids;
#[path = "../common/immutable.rs"]
mod immutable;
mod inbound_store;
mod migrations;
mod monitor_store;
#[path = "../common/private_postgres.rs"]
mod private_postgres;
mod store;
