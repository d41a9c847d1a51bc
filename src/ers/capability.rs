//! The e-RS operations the client implements and which auth mode may call which
//! (ERS-API.md §4): the client refuses a forbidden operation with
//! [`super::ErsError::NotAllowed`] before sending anything.

use std::fmt;

/// How the client authenticates (`[ers.auth] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMode {
    AppRestricted,
    UserRestricted,
    LegacySession,
    /// No authentication: the simulator only.
    None,
}

impl AuthMode {
    /// The mode's name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::AppRestricted => "app-restricted",
            AuthMode::UserRestricted => "user-restricted",
            AuthMode::LegacySession => "legacy-session",
            AuthMode::None => "none",
        }
    }
}

/// An e-RS API operation, named by its catalogue id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Create professional session (legacy).
    A001,
    /// Select role for the session (legacy).
    A002,
    /// Delete professional session (legacy).
    A003,
    /// Retrieve reference data (CodeSystem).
    A004,
    /// Retrieve referral request.
    A005,
    /// Retrieve attachment (STU3, deprecated).
    A006,
    /// Retrieve clinical information (CRI PDF).
    A007,
    /// Retrieve referral worklist.
    A008,
    /// Accept referral.
    A013,
    /// Reject referral.
    A014,
    /// Cancel appointment, action later.
    A022,
    /// Retrieve A&G requests worklist.
    A023,
    /// Retrieve A&G request.
    A024,
    /// Retrieve A&G conversation.
    A025,
    /// Send A&G response.
    A026,
    /// Convert A&G request to referral.
    A027,
    /// Record triage (review) outcome.
    A028,
    /// Available actions for user.
    A029,
    /// Retrieve attachment (R4, redirect to the object store).
    A042,
}

impl Operation {
    /// Every operation, in catalogue order.
    pub const ALL: [Operation; 19] = [
        Operation::A001,
        Operation::A002,
        Operation::A003,
        Operation::A004,
        Operation::A005,
        Operation::A006,
        Operation::A007,
        Operation::A008,
        Operation::A013,
        Operation::A014,
        Operation::A022,
        Operation::A023,
        Operation::A024,
        Operation::A025,
        Operation::A026,
        Operation::A027,
        Operation::A028,
        Operation::A029,
        Operation::A042,
    ];

    /// The catalogue id, e.g. `A013`.
    pub fn id(self) -> &'static str {
        match self {
            Operation::A001 => "A001",
            Operation::A002 => "A002",
            Operation::A003 => "A003",
            Operation::A004 => "A004",
            Operation::A005 => "A005",
            Operation::A006 => "A006",
            Operation::A007 => "A007",
            Operation::A008 => "A008",
            Operation::A013 => "A013",
            Operation::A014 => "A014",
            Operation::A022 => "A022",
            Operation::A023 => "A023",
            Operation::A024 => "A024",
            Operation::A025 => "A025",
            Operation::A026 => "A026",
            Operation::A027 => "A027",
            Operation::A028 => "A028",
            Operation::A029 => "A029",
            Operation::A042 => "A042",
        }
    }

    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::A001 => "create professional session",
            Operation::A002 => "select session role",
            Operation::A003 => "delete professional session",
            Operation::A004 => "retrieve reference data",
            Operation::A005 => "retrieve referral",
            Operation::A006 => "retrieve attachment (stu3)",
            Operation::A007 => "retrieve clinical information",
            Operation::A008 => "retrieve worklist",
            Operation::A013 => "accept referral",
            Operation::A014 => "reject referral",
            Operation::A022 => "cancel appointment action later",
            Operation::A023 => "retrieve a&g worklist",
            Operation::A024 => "retrieve a&g request",
            Operation::A025 => "retrieve a&g conversation",
            Operation::A026 => "send a&g response",
            Operation::A027 => "convert a&g to referral",
            Operation::A028 => "record review outcome",
            Operation::A029 => "available actions",
            Operation::A042 => "retrieve attachment",
        }
    }

    /// True when the operation changes e-RS state.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Operation::A001
                | Operation::A002
                | Operation::A003
                | Operation::A013
                | Operation::A014
                | Operation::A022
                | Operation::A026
                | Operation::A027
                | Operation::A028
        )
    }

    /// True when the operation sends `If-Match: W/"n"`.
    pub fn uses_if_match(self) -> bool {
        matches!(
            self,
            Operation::A013 | Operation::A014 | Operation::A022 | Operation::A026 | Operation::A028
        )
    }

    /// True when the client may repeat the call after an unknown outcome (5xx, timeout):
    /// reads, and the session select/delete. No write is repeated: even one guarded by
    /// `If-Match` cannot apply twice, but its repeat after a lost success is refused (409,
    /// or 422 when e-RS checks the state first), which would report an applied write as a
    /// failure. The caller that wrote records the unknown outcome and asks e-RS before
    /// writing again (the inbound pipeline does; the operator CLI shows the error).
    pub fn is_safe_to_repeat(self) -> bool {
        !self.is_write() || matches!(self, Operation::A002 | Operation::A003)
    }

    /// Whether `mode` may call this operation (ERS-API.md §4, §2.5).
    pub fn allowed_in(self, mode: AuthMode) -> bool {
        use Operation::*;
        match mode {
            AuthMode::AppRestricted => matches!(
                self,
                A004 | A005 | A006 | A007 | A008 | A013 | A024 | A025 | A028 | A029 | A042
            ),
            AuthMode::UserRestricted | AuthMode::None => !matches!(self, A001 | A002 | A003),
            // The legacy API has no R4 endpoints.
            AuthMode::LegacySession => !matches!(self, A042),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.id(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_restricted_writes_only_accept_and_review_outcome() {
        let writes: Vec<_> = Operation::ALL
            .into_iter()
            .filter(|o| o.is_write() && o.allowed_in(AuthMode::AppRestricted))
            .collect();
        assert_eq!(writes, vec![Operation::A013, Operation::A028]);
        assert!(!Operation::A023.allowed_in(AuthMode::AppRestricted));
    }

    #[test]
    fn sessions_only_in_legacy_mode_and_r4_never_there() {
        for m in [
            AuthMode::AppRestricted,
            AuthMode::UserRestricted,
            AuthMode::None,
        ] {
            assert!(!Operation::A001.allowed_in(m));
            assert!(Operation::A042.allowed_in(m) || m == AuthMode::LegacySession);
        }
        assert!(Operation::A001.allowed_in(AuthMode::LegacySession));
        assert!(!Operation::A042.allowed_in(AuthMode::LegacySession));
    }

    #[test]
    fn convert_is_not_repeated_blindly() {
        assert!(!Operation::A027.is_safe_to_repeat());
        assert!(!Operation::A001.is_safe_to_repeat());
        assert!(
            !Operation::A013.is_safe_to_repeat(),
            "a write's lost success is not hidden"
        );
        assert!(Operation::A008.is_safe_to_repeat());
        assert!(Operation::A002.is_safe_to_repeat());
    }
}
