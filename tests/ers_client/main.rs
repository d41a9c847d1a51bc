//! Tests of the e-RS client (`ers_bridge::ers`, `ers_bridge::fhir`) as one binary:
//!
//! - `contract`: the bodies built from typed inputs equal the official example requests,
//!   and every official example response parses.
//! - `wire`: paths, headers, redirects and size caps, captured on a local recording server.
//! - `auth_modes`: the JWT and token cache, role headers, the legacy session flow.
//! - `limits`: rate limit, retry and `Retry-After` with tokio's paused clock.
//! - `cli`: the operator CLI against a server.
//! - `secrets`: secrets never reach `Debug` output or logs.
//! - `sim`: every operation in every auth mode against the simulator over HTTP.

mod auth_modes;
mod cli;
#[path = "../common/mod.rs"]
mod common;
mod contract;
mod helpers;
mod limits;
mod secrets;
mod sim;
mod wire;
