//! Integration tests of the e-RS simulator over real HTTP (reqwest against
//! `simulator::spawn` on 127.0.0.1 port 0), one binary with a module per area.

mod advice;
mod auth;
mod cli;
mod contract;
mod faults;
mod helpers;
mod hooks;
mod referrals;
mod robustness;
mod worklists;
