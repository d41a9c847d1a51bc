//! [`ErsError`]: every way an e-RS call can fail, classified retryable or permanent.
//!
//! API errors carry the HTTP status, the OperationOutcome issue type, the e-RS error code and
//! the diagnostics ([`ApiError`]). 409 (version conflict) and 423 (locked) have their own
//! variants because the caller reacts by re-reading the resource. No variant ever holds a
//! token, key or session id.

use std::{fmt, time::Duration};

use super::capability::{AuthMode, Operation};

/// An error response from e-RS (or the API platform in front of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub operation: Operation,
    pub status: u16,
    /// `issue[0].code`, the FHIR issue type (`business-rule`, `forbidden`, ...).
    pub issue_code: Option<String>,
    /// `issue[].details.coding[].code`, e.g. `INVALID_REQUEST_STATE`.
    pub ers_code: Option<String>,
    pub diagnostics: Option<String>,
    /// The e-RS transaction id (`X-Request-ID`) to quote to NHS support.
    pub request_id: Option<String>,
    /// The `X-Correlation-ID` this call sent.
    pub correlation_id: String,
    /// `Retry-After` of a 429 or 503.
    pub retry_after: Option<Duration>,
    /// What to change when the cause is the bridge's own setting (a 401 that a refresh of
    /// the credentials did not cure), shown after e-RS's text.
    pub fix: Option<&'static str>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed with http {}", self.operation, self.status)?;
        if let Some(c) = &self.ers_code {
            write!(f, " {c}")?;
        }
        if let Some(c) = &self.issue_code {
            write!(f, " ({c})")?;
        }
        if let Some(d) = &self.diagnostics {
            write!(f, ": {d}")?;
        }
        if let Some(fix) = self.fix {
            write!(f, " ({fix})")?;
        }
        write!(f, " [correlation id {}", self.correlation_id)?;
        if let Some(r) = &self.request_id {
            write!(f, ", request id {r}")?;
        }
        write!(f, "]")
    }
}

/// Errors of the e-RS client.
#[derive(Debug, thiserror::Error)]
pub enum ErsError {
    /// The configured auth mode may not call this operation; nothing was sent.
    #[error("{operation} is not allowed in {} mode", mode.name())]
    NotAllowed {
        operation: Operation,
        mode: AuthMode,
    },
    /// An argument is invalid (bad UBRN, over-long comment, ...); nothing was sent.
    #[error("invalid input for {operation}: {reason}")]
    InvalidInput {
        operation: Operation,
        reason: String,
    },
    /// 409: the `If-Match` version is not the latest; re-read and decide again.
    #[error("version conflict: {0}")]
    Conflict(Box<ApiError>),
    /// 423: e-RS holds a lock on the resource; re-read and retry later.
    #[error("resource locked: {0}")]
    Locked(Box<ApiError>),
    /// 429 after the retries allowed; `retry_after` is what e-RS last asked for.
    #[error("rate limited: {0}")]
    RateLimited(Box<ApiError>),
    /// Any other error status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// Authentication failed before the call (token endpoint, token file, session).
    #[error("authentication failed: {reason}")]
    Auth {
        reason: String,
        /// True when the failure is on the server side (5xx, connection), false when the
        /// credentials or configuration must change.
        retryable: bool,
    },
    /// The connection failed or broke.
    #[error("{operation}: connection failed: {reason}")]
    Transport {
        operation: Operation,
        reason: String,
    },
    /// No response within the request timeout.
    #[error("{operation}: timed out after {timeout:?}")]
    Timeout {
        operation: Operation,
        timeout: Duration,
    },
    /// The response is larger than the configured cap.
    #[error("{operation}: response larger than the {limit} byte limit")]
    TooLarge { operation: Operation, limit: u64 },
    /// The response is not what the API documents (not JSON, wrong resource type, no
    /// redirect location, ...).
    #[error("{operation}: unexpected response: {reason}")]
    Decode {
        operation: Operation,
        reason: String,
    },
    /// The client could not be built from the configuration.
    #[error("e-rs client configuration: {0}")]
    Config(String),
}

impl ErsError {
    /// True when the same call may succeed later without changing it: transport failures,
    /// timeouts, 423, 429, 5xx and authentication failures at the token endpoint that are
    /// not the client's fault. 409 is permanent as sent (the version must change).
    pub fn is_retryable(&self) -> bool {
        match self {
            ErsError::Transport { .. } | ErsError::Timeout { .. } => true,
            ErsError::Auth { retryable, .. } => *retryable,
            ErsError::Locked(_) | ErsError::RateLimited(_) => true,
            ErsError::Api(a) => matches!(a.status, 500..=599 | 408),
            ErsError::Conflict(_)
            | ErsError::NotAllowed { .. }
            | ErsError::InvalidInput { .. }
            | ErsError::TooLarge { .. }
            | ErsError::Decode { .. }
            | ErsError::Config(_) => false,
        }
    }

    /// The API error details, when e-RS answered with an error status.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            ErsError::Conflict(a)
            | ErsError::Locked(a)
            | ErsError::Api(a)
            | ErsError::RateLimited(a) => Some(a.as_ref()),
            _ => None,
        }
    }

    /// The HTTP status, when e-RS answered.
    pub fn status(&self) -> Option<u16> {
        self.api().map(|a| a.status)
    }

    /// The e-RS error code, when e-RS sent one.
    pub fn ers_code(&self) -> Option<&str> {
        self.api()?.ers_code.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> ApiError {
        ApiError {
            operation: Operation::A013,
            status,
            issue_code: Some("business-rule".into()),
            ers_code: Some("INVALID_REQUEST_STATE".into()),
            diagnostics: Some("not actionable".into()),
            request_id: Some("rid-1".into()),
            correlation_id: "cid-1".into(),
            fix: None,
            retry_after: None,
        }
    }

    #[test]
    fn classification() {
        assert!(!ErsError::Conflict(Box::new(api(409))).is_retryable());
        assert!(ErsError::Locked(Box::new(api(423))).is_retryable());
        assert!(ErsError::Api(Box::new(api(503))).is_retryable());
        assert!(!ErsError::Api(Box::new(api(422))).is_retryable());
        assert!(!ErsError::NotAllowed {
            operation: Operation::A014,
            mode: AuthMode::AppRestricted
        }
        .is_retryable());
    }

    #[test]
    fn display_names_code_diagnostics_and_ids() {
        let s = ErsError::Api(Box::new(api(422))).to_string();
        assert_eq!(
            s,
            "A013 (accept referral) failed with http 422 INVALID_REQUEST_STATE (business-rule): \
             not actionable [correlation id cid-1, request id rid-1]"
        );
    }
}
