//! ers-bridge: connects the NHS e-Referral Service (e-RS) FHIR API to a hospital Patient
//! Administration System (PAS) that speaks HL7v2 over RabbitMQ.
//!
//! # Layout
//!
//! - [`config`]: the TOML file, environment overrides and offline validation.
//! - [`telemetry`]: `tracing` setup (pretty or JSON logs).
//! - [`fhir`]: FHIR STU3 serde types for the e-RS resources and the typed request bodies.
//! - [`ers`]: the e-RS API client (the only code that knows e-RS URLs, headers and auth).
//! - [`simulator`]: the stateful e-RS stand-in behind `ers-bridge simulate` (docs/simulator.md).
//! - [`ids`]: the identifiers every boundary shares (`Ubrn`, `Version`, `ControlId`,
//!   `NhsNumber`), parsed once at the edge.
//! - [`hl7`]: HL7v2 model, writer, guarded reader, ACK/RRI readers, structure checks.
//! - [`mapping`]: the mapping engine (TOML mappings over FHIR STU3 JSON → HL7v2) and
//!   the inbound decision table.
//! - [`cli`]: the `ers-bridge` command line; `main.rs` only calls [`cli::main`].
//! - [`amqp`]: RabbitMQ topology and confirmed publishing (the only lapin user).
//! - [`mllp`]: MLLP framing and the listener for PAS messages over TCP.
//! - [`transport`]: the seam between the pipelines and the wire to the PAS ([`transport::PasLink`],
//!   [`hl7::Hl7Out`] in, a [`transport::Delivery`] out; the inbound listeners).
//! - [`store`]: the durable store (SQLite or PostgreSQL) and the delivery semantics.
//! - [`app`]: [`app::App`], which builds and owns what both directions share
//!   ([`app::Shared`]: clients, store, claims, shutdown, events) and runs them.
//! - [`pipeline`]: the directions; [`pipeline::outbound`] is the main job (poll, fetch, map,
//!   publish, record).
//! - [`events`]: one struct per internal event, each writing its log line and its metrics.
//! - [`cluster`]: this process among several bridges on one store (leases, heartbeat, the
//!   shared e-RS rate limit; docs/ha.md).
//! - [`backoff`]: the one jittered exponential backoff schedule every retry loop uses.
//!
//! `ARCHITECTURE.md` at the repository root has the code map and the invariants.

pub mod amqp;
pub mod app;
pub mod backoff;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod ers;
pub mod events;
pub mod fhir;
pub mod hl7;
pub mod ids;
pub mod mapping;
pub mod mllp;
pub mod monitor;
pub mod pas_sim;
pub mod pipeline;
pub mod runtime;
pub mod simulator;
pub mod store;
pub mod telemetry;
pub mod transport;
