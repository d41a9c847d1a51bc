//! A time on the command line, as a person types it: an RFC 3339 instant
//! (`2026-12-01T00:00:00Z`) or a duration before now (`90s`, `15m`, `1h`, `2d`, `1h 30m`,
//! read by `humantime`). `--since 1h` is what an operator means at 3 a.m.

use chrono::{DateTime, Utc};

/// An instant given either way; the duration form is taken back from the time it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When(pub DateTime<Utc>);

impl std::str::FromStr for When {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(When(t.with_timezone(&Utc)));
        }
        let d = humantime::parse_duration(s).map_err(|e| {
            format!(
                "{s:?} is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a duration \
                 before now (15m, 1h, 2d): {e}"
            )
        })?;
        let d = chrono::Duration::from_std(d).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(When(Utc::now() - d))
    }
}

impl When {
    pub fn timestamp_millis(&self) -> i64 {
        self.0.timestamp_millis()
    }
}

#[cfg(test)]
mod tests {
    use super::When;

    #[test]
    fn an_instant_or_a_duration_before_now() {
        let t: When = "2026-12-01T00:00:00Z".parse().unwrap();
        assert_eq!(t.0.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        let before = chrono::Utc::now();
        let t: When = "1h 30m".parse().unwrap();
        let ago = before - t.0;
        assert!(
            (5_399..=5_401).contains(&ago.num_seconds()),
            "{}",
            ago.num_seconds()
        );
        let err = "yesterday".parse::<When>().unwrap_err();
        assert!(err.contains("RFC 3339") && err.contains("15m"), "{err}");
    }
}
