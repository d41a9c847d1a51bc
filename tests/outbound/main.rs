//! End-to-end tests of the outbound pipeline (`ers-bridge run`'s main job): the e-RS
//! simulator over HTTP on port 0, the real RabbitMQ on 127.0.0.1:5672 with `test-<uuid>`
//! exchanges and queues per test, and a fresh SQLite file (or PostgreSQL database) per test.
//! The tests drive the pipeline with `poll_once`/`drain` instead of timers.

mod broker;
mod budget;
mod cancel_action_later;
#[path = "../common/certs.rs"]
mod certs;
mod charsets;
mod cli;
#[path = "../common/mod.rs"]
mod common;
mod content;
mod decided_version;
mod decisions;
mod faults;
mod filters;
mod flow;
mod fuzz;
mod helpers;
#[path = "../common/ids.rs"]
mod ids;
mod inbound;
mod load;
mod mllp;
mod mllp_kill;
mod mllp_out;
mod mllp_tls;
mod model;
mod monitor;
mod official_bodies;
mod operator_view;
mod parked;
mod pas_sim;
mod restart;
mod run;
mod store_ext;
