//! The four ways the client authenticates, chosen by `[ers.auth] mode`:
//!
//! - [`app_restricted`]: OAuth2 client credentials with an RS512 signed JWT; the access token
//!   is cached and refreshed before it expires. No role headers.
//! - [`user_restricted`]: a CIS2-derived bearer token from a file or environment variable,
//!   re-read when it changes, plus the role headers.
//! - [`legacy`]: the HSCN professional session (A001 create, A002 select role, A003 delete on
//!   shutdown) with `XAPI_ASID` and `HTTP_X_SESSION_KEY`.
//! - none: nothing is added (the simulator only).
//!
//! Secret material (private key, API key, tokens, session keys) is held in `secrecy` types or
//! types whose `Debug` prints nothing of it, and header values carrying it are marked
//! sensitive.

pub mod app_restricted;
pub mod legacy;
pub mod user_restricted;

use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};

use super::capability::AuthMode;
use super::error::ErsError;
use crate::config::{AuthConfig, Env};

pub use app_restricted::AppRestricted;
pub use legacy::LegacySession;
pub use user_restricted::UserRestricted;

/// Header: the e-RS role the user acts in.
pub const BUSINESS_FUNCTION: &str = "nhsd-ers-business-function";
/// Header: the ODS code of the user's organisation.
pub const ODS: &str = "nhsd-end-user-organisation-ods";
/// Header: the SDS user id an SPCA acts for.
pub const ON_BEHALF_OF: &str = "nhsd-ers-on-behalf-of-user-id";
/// Legacy header: the accredited system id.
pub const XAPI_ASID: &str = "xapi_asid";
/// Legacy header: the professional session key.
pub const SESSION_KEY: &str = "http_x_session_key";

/// The configured authenticator.
#[derive(Debug)]
pub enum Auth {
    None,
    App(AppRestricted),
    User(UserRestricted),
    Legacy(LegacySession),
}

impl Auth {
    /// Builds the authenticator; reads key files now so configuration errors surface at
    /// start-up. `token_url_default` is used when app-restricted mode names none.
    pub fn from_config(
        cfg: &AuthConfig,
        env: Arc<dyn Env + Send + Sync>,
        token_url_default: String,
    ) -> Result<Self, ErsError> {
        Ok(match cfg {
            AuthConfig::None => Auth::None,
            AuthConfig::AppRestricted {
                token_url,
                api_key,
                private_key_file,
                kid,
                refresh_margin_secs,
            } => Auth::App(AppRestricted::new(
                token_url.clone().unwrap_or(token_url_default),
                api_key.clone(),
                private_key_file,
                kid.clone(),
                std::time::Duration::from_secs(*refresh_margin_secs),
            )?),
            AuthConfig::UserRestricted {
                token_file,
                token_env,
                business_function,
                ods_code,
                on_behalf_of_user_id,
            } => Auth::User(UserRestricted::new(
                user_restricted::TokenSource::from_config(
                    token_file.as_deref(),
                    token_env.as_deref(),
                    env,
                )?,
                *business_function,
                ods_code.clone(),
                on_behalf_of_user_id.clone(),
            )),
            AuthConfig::LegacySession {
                asid,
                session_token_file,
                session_token_env,
                business_function,
                ods_code,
                ..
            } => Auth::Legacy(LegacySession::new(
                asid.clone(),
                user_restricted::TokenSource::from_config(
                    session_token_file.as_deref(),
                    session_token_env.as_deref(),
                    env,
                )?,
                *business_function,
                ods_code.clone(),
            )),
        })
    }

    /// The mode.
    pub fn mode(&self) -> AuthMode {
        match self {
            Auth::None => AuthMode::None,
            Auth::App(_) => AuthMode::AppRestricted,
            Auth::User(_) => AuthMode::UserRestricted,
            Auth::Legacy(_) => AuthMode::LegacySession,
        }
    }

    /// Forgets cached credentials after a 401 so the next attempt fetches or re-reads them.
    /// Returns false when there is nothing to refresh (mode none).
    /// What to change when e-RS still answers 401 after the credentials were refreshed.
    pub fn refused_fix(&self) -> &'static str {
        match self {
            Auth::None => "e-RS wants credentials: set [ers.auth] mode",
            Auth::App(_) => {
                "a token just issued was refused: check that the application of [ers.auth] \
                 api_key may use this API in this environment"
            }
            Auth::User(_) => {
                "the user's access token was refused, expired or revoked: put a current one \
                 in [ers.auth] token_file or token_env"
            }
            Auth::Legacy(_) => {
                "a new professional session was refused: check the smartcard session in \
                 [ers.auth] session_token_file and the role"
            }
        }
    }

    pub async fn invalidate(&self) -> bool {
        match self {
            Auth::None => false,
            Auth::App(a) => {
                a.invalidate().await;
                true
            }
            Auth::User(u) => {
                u.invalidate();
                true
            }
            Auth::Legacy(l) => {
                l.invalidate().await;
                true
            }
        }
    }
}

/// `Authorization: Bearer <token>`, marked sensitive.
pub(crate) fn bearer(headers: &mut HeaderMap, token: &SecretString) -> Result<(), ErsError> {
    let mut v =
        HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).map_err(|_| {
            ErsError::Auth {
                reason: "the access token contains characters not allowed in a header".into(),
                retryable: false,
            }
        })?;
    v.set_sensitive(true);
    headers.insert(AUTHORIZATION, v);
    Ok(())
}

/// Inserts a non-secret header whose value came from configuration.
pub(crate) fn plain(
    headers: &mut HeaderMap,
    name: &'static str,
    value: &str,
) -> Result<(), ErsError> {
    let v = HeaderValue::from_str(value)
        .map_err(|_| ErsError::Config(format!("value for header {name} is not valid")))?;
    headers.insert(HeaderName::from_static(name), v);
    Ok(())
}
