//! The identifiers every boundary shares, parsed once at the edge so code further in never
//! re-checks them: [`Ubrn`] (12 digits, leading zeros kept: never a number), [`Version`]
//! (a referral's `meta.versionId` / `ETag`), [`ControlId`] (MSH-10 / MSA-2) and
//! [`NhsNumber`] (10 digits with a modulus 11 check digit, hidden from `Debug`).
//!
//! `ers/` takes them in its paths and `If-Match`, `store/` binds them, `pipeline/` and
//! `mapping/` pass them along; only the parsers here decide what a valid one is.
//!
//! The outbound control id is deterministic for (UBRN, version, message type), so a
//! re-publish after a crash carries the same MSH-10 and the PAS can de-duplicate
//! (DESIGN.md §4). Its form is `<UBRN><event><version, 5 digits>`, e.g.
//! `000000070000I1200005`: always exactly 20 characters, the limit of MSH-10 (ST) in v2.4
//! and v2.5.1. A version above 99,999 (e-RS versions count the writes to one referral) is
//! refused rather than truncated, and the referral is parked with that reason. Ids of the
//! earlier form `E<UBRN>-<event>-<version>` are still read back, for ACKs of messages
//! published before the change.

use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("nhs number must be 10 digits")]
    NhsNumberFormat,
    #[error("nhs number fails the modulus 11 check")]
    NhsNumberCheckDigit,
    #[error("ubrn must be 12 digits, got {0:?}")]
    UbrnFormat(String),
    #[error("referral version must be a non-negative integer, got {0:?}")]
    VersionFormat(String),
    #[error("control id must be 1 to 199 printable ascii characters without hl7 delimiters")]
    ControlIdFormat,
    #[error("referral version {0} does not fit the 5 digits of an outbound control id")]
    ControlIdVersion(u32),
    #[error("event {0:?} must be 3 letters or digits to form an outbound control id")]
    ControlIdEvent(String),
}

impl IdError {
    /// Bad identifiers never become good by retrying.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// A 10-digit NHS number whose check digit is valid. Debug output hides the digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Parses ten digits (spaces are not accepted: PID-3 carries them without).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
            return Err(IdError::NhsNumberFormat);
        }
        let sum: u32 = b[..9]
            .iter()
            .enumerate()
            .map(|(i, c)| u32::from(c - b'0') * (10 - i as u32))
            .sum();
        let check = match 11 - (sum % 11) {
            11 => 0,
            10 => return Err(IdError::NhsNumberCheckDigit),
            n => n,
        };
        if u32::from(b[9] - b'0') != check {
            return Err(IdError::NhsNumberCheckDigit);
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(***)")
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Unique Booking Reference Number: exactly 12 digits, kept as text. Checking it also
/// keeps it from changing an e-RS request path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Ubrn(String);

impl Ubrn {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_string()))
        } else {
            Err(IdError::UbrnFormat(s.chars().take(20).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ubrn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Ubrn {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl AsRef<str> for Ubrn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A referral version: e-RS `meta.versionId` (a string of digits in JSON), the `ETag`
/// `W/"n"` and the `If-Match` of the next write. Versions of one UBRN only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(u32);

impl Version {
    pub const fn new(v: u32) -> Self {
        Self(v)
    }

    /// Parses the digits of `meta.versionId` or an `ETag` value.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        s.parse()
            .map(Self)
            .map_err(|_| IdError::VersionFormat(s.chars().take(20).collect()))
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    /// The store's column type.
    pub fn as_i64(self) -> i64 {
        i64::from(self.0)
    }

    /// Reads the store's column back; out-of-range values are refused.
    pub fn from_i64(v: i64) -> Result<Self, IdError> {
        u32::try_from(v)
            .map(Self)
            .map_err(|_| IdError::VersionFormat(v.to_string()))
    }
}

impl From<u32> for Version {
    fn from(v: u32) -> Self {
        Self(v)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Version {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

/// MSH-10 / MSA-2: a message control id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ControlId(String);

impl ControlId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 199
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"|^~\\&".contains(&b));
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(IdError::ControlIdFormat)
        }
    }

    /// Largest referral version an outbound control id can carry (5 digits).
    pub const MAX_OUTBOUND_VERSION: u32 = 99_999;

    /// The deterministic outbound id for (UBRN, referral version, event such as `I12`):
    /// 12 + 3 + 5 = 20 characters, MSH-10's limit.
    pub fn outbound(ubrn: &Ubrn, version: Version, event: &str) -> Result<Self, IdError> {
        if event.len() != 3 || !event.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(IdError::ControlIdEvent(event.to_string()));
        }
        let v = version.get();
        if v > Self::MAX_OUTBOUND_VERSION {
            return Err(IdError::ControlIdVersion(v));
        }
        Self::parse(&format!("{ubrn}{event}{v:05}"))
    }

    /// Reads back the UBRN, event and version of an id made by [`ControlId::outbound`], or
    /// of the earlier form `E<UBRN>-<event>-<version>` (used to find the referral an ACK
    /// without RF1 is about).
    pub fn outbound_parts(&self) -> Option<(Ubrn, &str, Version)> {
        let s = self.0.as_str();
        if let Some(rest) = s.strip_prefix('E') {
            let mut parts = rest.splitn(3, '-');
            let ubrn = Ubrn::parse(parts.next()?).ok()?;
            let event = parts.next()?;
            let version = Version::parse(parts.next()?).ok()?;
            return Some((ubrn, event, version));
        }
        if s.len() != 20 || !s.is_ascii() {
            return None;
        }
        let ubrn = Ubrn::parse(&s[..12]).ok()?;
        let event = &s[12..15];
        let digits = &s[15..];
        if !event.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let version = Version::parse(digits).ok()?;
        Some((ubrn, event, version))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::str::FromStr for ControlId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl fmt::Display for ControlId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_number_check_digit() {
        assert!(NhsNumber::parse("9434765919").is_ok());
        assert!(NhsNumber::parse("9912003888").is_ok());
        assert_eq!(
            NhsNumber::parse("9434765918"),
            Err(IdError::NhsNumberCheckDigit)
        );
        assert_eq!(NhsNumber::parse("943476591"), Err(IdError::NhsNumberFormat));
        assert_eq!(
            NhsNumber::parse("943 476 5919"),
            Err(IdError::NhsNumberFormat)
        );
        assert_eq!(
            format!("{:?}", NhsNumber::parse("9434765919").unwrap()),
            "NhsNumber(***)"
        );
    }

    #[test]
    fn ubrn_keeps_leading_zeros() {
        let u = Ubrn::parse("000000070000").unwrap();
        assert_eq!(u.to_string(), "000000070000");
        assert!(Ubrn::parse("70000").is_err());
        assert!(Ubrn::parse("00000007000a").is_err());
        assert!(Ubrn::parse("../../Binary").is_err(), "no path traversal");
    }

    #[test]
    fn version_parses_digits_and_round_trips_the_store_column() {
        assert_eq!(Version::parse("5").unwrap(), Version::new(5));
        assert!(Version::parse("-1").is_err());
        assert!(Version::parse("5a").is_err());
        assert!(Version::parse("").is_err());
        let v = Version::new(u32::MAX);
        assert_eq!(Version::from_i64(v.as_i64()).unwrap(), v);
        assert!(Version::from_i64(-1).is_err());
        assert!(Version::from_i64(i64::from(u32::MAX) + 1).is_err());
    }

    #[test]
    fn control_id_round_trips_its_parts() {
        let u = Ubrn::parse("000000070000").unwrap();
        let id = ControlId::outbound(&u, Version::new(5), "I12").unwrap();
        assert_eq!(id.as_str(), "000000070000I1200005");
        let (ubrn, event, version) = id.outbound_parts().unwrap();
        assert_eq!((ubrn, event, version), (u.clone(), "I12", Version::new(5)));
        assert!(ControlId::parse("a|b").is_err());
        assert!(ControlId::parse("").is_err());
        // The earlier form is still read back (ACKs of messages published before).
        let legacy = ControlId::parse("E000000070000-I13-12").unwrap();
        assert_eq!(
            legacy.outbound_parts().unwrap(),
            (u, "I13", Version::new(12))
        );
        assert!(ControlId::parse("PAS-LOCAL-1")
            .unwrap()
            .outbound_parts()
            .is_none());
    }

    #[test]
    fn control_id_is_20_characters_at_every_version_it_accepts() {
        let u = Ubrn::parse("999999999999").unwrap();
        for v in [
            0,
            1,
            9,
            10,
            99,
            100,
            9_999,
            10_000,
            ControlId::MAX_OUTBOUND_VERSION,
        ] {
            let id = ControlId::outbound(&u, Version::new(v), "A31").unwrap();
            assert_eq!(id.as_str().len(), 20, "{id}");
            assert_eq!(id.outbound_parts().unwrap().2, Version::new(v));
        }
        let over = ControlId::MAX_OUTBOUND_VERSION + 1;
        assert_eq!(
            ControlId::outbound(&u, Version::new(over), "I12"),
            Err(IdError::ControlIdVersion(over))
        );
        assert!(matches!(
            ControlId::outbound(&u, Version::new(1), "I1"),
            Err(IdError::ControlIdEvent(_))
        ));
    }
}
