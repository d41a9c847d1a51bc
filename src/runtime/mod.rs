//! What the directions share at run time, below them: the [`Shared`] parts (e-RS client,
//! store, publisher, A004 cache, event hub, this process's [`Cluster`]), the per-UBRN
//! [`Claims`] and the [`Shutdown`]
//! signal. `app/` builds them and composes the directions; the pipelines, the monitor and
//! the PAS simulator depend on this module, never on `app/` (a composition root is not a
//! dependency of what it composes; `tests/architecture.rs` keeps it so).

pub mod shared;
pub mod shutdown;

pub use crate::cluster::{Claim, Claims, Cluster};
pub use shared::Shared;
pub use shutdown::Shutdown;
