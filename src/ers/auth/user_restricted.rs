//! User-restricted access: a CIS2-derived bearer token supplied by a file or an environment
//! variable (something outside the bridge renews it), re-read whenever it changes, plus the
//! role headers `NHSD-eRS-Business-Function`, `NHSD-End-User-Organisation-ODS` and, only for
//! SERVICE_PROVIDER_CLINICIAN_ADMIN, `NHSD-eRS-On-Behalf-Of-User-ID`.
//!
//! [`TokenSource`] is shared with the legacy mode, which reads its smartcard SSO token the
//! same way.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{BusinessFunction, Env};
use crate::ers::error::ErsError;

/// Where a secret token comes from.
pub enum TokenSource {
    /// A file, re-read when its modification time or length changes.
    File {
        path: PathBuf,
        cache: Mutex<Option<(FileStamp, SecretString)>>,
    },
    /// An environment variable, read on every use.
    Env {
        name: String,
        env: Arc<dyn Env + Send + Sync>,
    },
}

/// What identifies one version of the token file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File { path, .. } => f
                .debug_struct("File")
                .field("path", path)
                .finish_non_exhaustive(),
            TokenSource::Env { name, .. } => f
                .debug_struct("Env")
                .field("name", name)
                .finish_non_exhaustive(),
        }
    }
}

impl TokenSource {
    /// From the `*_file` / `*_env` keys (validation guarantees exactly one is set).
    pub fn from_config(
        file: Option<&Path>,
        env_name: Option<&str>,
        env: Arc<dyn Env + Send + Sync>,
    ) -> Result<Self, ErsError> {
        match (file, env_name) {
            (Some(p), _) => Ok(TokenSource::File {
                path: p.to_path_buf(),
                cache: Mutex::new(None),
            }),
            (None, Some(n)) => Ok(TokenSource::Env {
                name: n.to_string(),
                env,
            }),
            (None, None) => Err(ErsError::Config(
                "no token source: set the token file or the token environment variable".into(),
            )),
        }
    }

    /// The current token; errors name the file or variable, never the value.
    pub fn read(&self) -> Result<SecretString, ErsError> {
        let err = |reason: String| ErsError::Auth {
            reason,
            retryable: false,
        };
        match self {
            TokenSource::Env { name, env } => match env.var(name) {
                Some(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim().to_string())),
                _ => Err(err(format!(
                    "environment variable {name} is not set or empty"
                ))),
            },
            TokenSource::File { path, cache } => {
                let meta = std::fs::metadata(path)
                    .map_err(|e| err(format!("cannot read token file {}: {e}", path.display())))?;
                let stamp = FileStamp {
                    modified: meta.modified().ok(),
                    len: meta.len(),
                };
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((s, t)) = cache.as_ref() {
                    if *s == stamp {
                        return Ok(t.clone());
                    }
                }
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err(format!("cannot read token file {}: {e}", path.display())))?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(err(format!("token file {} is empty", path.display())));
                }
                let secret = SecretString::from(token.to_string());
                *cache = Some((stamp, secret.clone()));
                Ok(secret)
            }
        }
    }

    /// Forgets a cached file token so the next read goes to the file.
    pub fn invalidate(&self) {
        if let TokenSource::File { cache, .. } = self {
            *cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

/// The user-restricted authenticator.
#[derive(Debug)]
pub struct UserRestricted {
    source: TokenSource,
    business_function: BusinessFunction,
    ods_code: String,
    on_behalf_of: Option<String>,
}

impl UserRestricted {
    /// Builds it; the token is read on first use.
    pub fn new(
        source: TokenSource,
        business_function: BusinessFunction,
        ods_code: String,
        on_behalf_of: Option<String>,
    ) -> Self {
        Self {
            source,
            business_function,
            ods_code,
            on_behalf_of,
        }
    }

    /// Adds the bearer token and the role headers.
    pub fn apply(&self, headers: &mut HeaderMap) -> Result<(), ErsError> {
        let token = self.source.read()?;
        if token.expose_secret().contains(char::is_whitespace) {
            return Err(ErsError::Auth {
                reason: "the bearer token contains whitespace".into(),
                retryable: false,
            });
        }
        super::bearer(headers, &token)?;
        super::plain(
            headers,
            super::BUSINESS_FUNCTION,
            self.business_function.as_str(),
        )?;
        super::plain(headers, super::ODS, &self.ods_code)?;
        if self.business_function == BusinessFunction::ServiceProviderClinicianAdmin {
            let obo = self.on_behalf_of.as_deref().ok_or_else(|| {
                ErsError::Config(
                    "SERVICE_PROVIDER_CLINICIAN_ADMIN needs on_behalf_of_user_id".into(),
                )
            })?;
            super::plain(headers, super::ON_BEHALF_OF, obo)?;
        }
        Ok(())
    }

    /// Forgets the cached token (after a 401).
    pub fn invalidate(&self) {
        self.source.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    #[test]
    fn file_token_is_reread_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first-token\n").unwrap();
        let src = TokenSource::from_config(Some(&path), None, Arc::new(MapEnv::default())).unwrap();
        assert_eq!(src.read().unwrap().expose_secret(), "first-token");
        std::fs::write(&path, "second-token-longer\n").unwrap();
        assert_eq!(src.read().unwrap().expose_secret(), "second-token-longer");
    }

    #[test]
    fn env_token_and_role_headers() {
        let env = Arc::new(MapEnv::from_pairs([("TOK", "abc")]));
        let src = TokenSource::from_config(None, Some("TOK"), env).unwrap();
        let u = UserRestricted::new(
            src,
            BusinessFunction::ServiceProviderClinicianAdmin,
            "R69".into(),
            Some("021600556514".into()),
        );
        let mut h = HeaderMap::new();
        u.apply(&mut h).unwrap();
        assert_eq!(h["authorization"], "Bearer abc");
        assert!(h["authorization"].is_sensitive());
        assert_eq!(
            h[super::super::BUSINESS_FUNCTION],
            "SERVICE_PROVIDER_CLINICIAN_ADMIN"
        );
        assert_eq!(h[super::super::ODS], "R69");
        assert_eq!(h[super::super::ON_BEHALF_OF], "021600556514");
    }

    #[test]
    fn obo_header_only_for_spca() {
        let env = Arc::new(MapEnv::from_pairs([("TOK", "abc")]));
        let src = TokenSource::from_config(None, Some("TOK"), env).unwrap();
        let u = UserRestricted::new(
            src,
            BusinessFunction::ServiceProviderClinician,
            "R69".into(),
            Some("021600556514".into()),
        );
        let mut h = HeaderMap::new();
        u.apply(&mut h).unwrap();
        assert!(!h.contains_key(super::super::ON_BEHALF_OF));
    }
}
