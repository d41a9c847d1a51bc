//! Integration tests of the HL7v2 layer and the mapping engine: golden samples (outbound
//! HL7 and inbound decisions), structural validity of the published messages, robustness
//! on third-party and malformed HL7, the facts each sample must carry at its field,
//! property tests, and the `render` / `test-mappings`
//! commands.

mod cli;
#[path = "../common/mod.rs"]
mod common;
mod fact_props;
mod facts;
mod goldens;
mod pas_interface;
mod props;
mod robustness;
mod structure;

use std::path::PathBuf;

/// A path relative to the crate root.
pub fn root(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/")).join(rel)
}
