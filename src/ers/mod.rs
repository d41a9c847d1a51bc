//! The e-RS API client: the only code that knows e-RS URLs, headers and authentication.
//!
//! [`ErsClient::new`] builds a client from `[ers]` in the configuration. Every operation the
//! bridge uses is a typed async method in [`ops`] (A004-A008, A013, A014, A022-A029, A042;
//! A001-A003 run implicitly in legacy-session mode). Each call goes through one pipeline
//! ([`client`]): it is refused with [`ErsError::NotAllowed`] if the auth mode may not call
//! it ([`capability`]), waits for the process-wide [`ratelimit::RateLimiter`], carries an
//! `X-Correlation-ID` (logged with the returned `X-Request-ID`) and `If-Match` on writes,
//! and is retried per [`retry`] (429/503 honour `Retry-After`; 5xx and timeouts only where
//! a repeat cannot apply twice). Responses are size-capped. Errors are [`ErsError`],
//! classified retryable or permanent, with 409 and 423 as their own variants.
//!
//! Invariant: secrets (private key, API key, tokens, session keys) never appear in `Debug`,
//! logs or error messages; credential headers are marked sensitive.
//!
//! `docs/ers-client.md` is the newcomer's guide (auth set-up, capability matrix, CLI).

pub mod auth;
pub mod call;
pub mod capability;
pub mod client;
pub mod error;
pub mod ops;
pub mod ratelimit;
pub mod refdata;
pub mod rejection;
pub mod retry;

pub use call::Reply;
pub use capability::{AuthMode, Operation};
pub use client::ErsClient;
pub use error::{ApiError, ErsError};
pub use ops::{binary_id_of, clinical_info_path, request_body_bytes, Binary, Versioned};
pub use ratelimit::{with_promotion, Promotion};
pub use refdata::RefDataCache;
pub use rejection::{rejection_input, RejectionError};
