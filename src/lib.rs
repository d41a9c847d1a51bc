//! ers-bridge: connects the NHS e-Referral Service (e-RS) FHIR API to a hospital Patient
//! Administration System (PAS) that speaks HL7v2 over RabbitMQ.
//!
//! # Layout
//!
//! - [`config`]: the TOML file, environment overrides and offline validation.
//! - [`telemetry`]: `tracing` setup (pretty or JSON logs).
//! - [`cli`]: the `ers-bridge` command line; `main.rs` only calls [`cli::main`].
//! - [`amqp`]: RabbitMQ topology and confirmed publishing (the only lapin user).
//! - [`store`]: the durable store (SQLite or PostgreSQL) and the delivery semantics.
//!
//! `ARCHITECTURE.md` at the repository root has the code map and the invariants.

pub mod amqp;
pub mod cli;
pub mod config;
pub mod store;
pub mod telemetry;
