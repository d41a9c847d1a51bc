//! Identifier shorthands for tests that build store records by hand; included with
//! `#[path = "../common/ids.rs"]`.

#![allow(dead_code)]

use ers_bridge::ids::{ControlId, Ubrn, Version};

pub fn u(s: &str) -> Ubrn {
    Ubrn::parse(s).unwrap()
}

pub fn ver(n: u32) -> Version {
    Version::new(n)
}

pub fn cid(s: &str) -> ControlId {
    ControlId::parse(s).unwrap()
}
