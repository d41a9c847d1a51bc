//! Application-restricted access: OAuth2 client credentials with a signed-JWT client
//! assertion (RS512, `kid` header; claims `iss` = `sub` = API key, `aud` = the token URL
//! exactly, a fresh `jti`, `exp` under five minutes ahead). The access token is cached and
//! refreshed `refresh_margin` before it expires (timed on `tokio::time`, so tests can move the
//! clock), and fetched again at once after a 401.

use std::{
    fmt,
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::{sync::Mutex, time::Instant};
use tracing::{debug, warn};

use crate::ers::error::ErsError;

/// How far ahead the JWT `exp` is set; the platform refuses more than 5 minutes.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(240);

/// The signed-JWT authenticator and its token cache.
pub struct AppRestricted {
    token_url: String,
    api_key: SecretString,
    key: EncodingKey,
    kid: String,
    refresh_margin: Duration,
    cache: Mutex<Option<CachedToken>>,
    /// Tokens fetched so far; read by `ers-bridge check` and the refresh tests.
    fetches: AtomicU64,
}

struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
}

impl fmt::Debug for AppRestricted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRestricted")
            .field("token_url", &self.token_url)
            .field("kid", &self.kid)
            .field("refresh_margin", &self.refresh_margin)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    /// A string of seconds on the NHS platform; a number elsewhere.
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct TokenErrorReply {
    error: Option<String>,
    error_description: Option<String>,
}

impl AppRestricted {
    /// Reads the private key now so a wrong path or key fails at start-up.
    pub fn new(
        token_url: String,
        api_key: SecretString,
        private_key_file: &Path,
        kid: String,
        refresh_margin: Duration,
    ) -> Result<Self, ErsError> {
        let pem = std::fs::read(private_key_file).map_err(|e| {
            ErsError::Config(format!(
                "cannot read ers.auth.private_key_file {}: {e}",
                private_key_file.display()
            ))
        })?;
        let key = EncodingKey::from_rsa_pem(&pem).map_err(|e| {
            ErsError::Config(format!(
                "ers.auth.private_key_file {} is not an RSA private key in PEM: {e}",
                private_key_file.display()
            ))
        })?;
        let auth = Self {
            token_url,
            api_key,
            key,
            kid,
            refresh_margin,
            cache: Mutex::new(None),
            fetches: AtomicU64::new(0),
        };
        // Some PEMs (a public key, say) load but cannot sign: find out now, not at the
        // first call.
        auth.client_assertion().map_err(|_| {
            ErsError::Config(format!(
                "ers.auth.private_key_file {} is not an RSA private key that can sign RS512",
                private_key_file.display()
            ))
        })?;
        Ok(auth)
    }

    /// The token endpoint used.
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// How many access tokens have been fetched.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Adds `Authorization: Bearer` with a valid access token, fetching one when the cache
    /// is empty or due for refresh. Concurrent callers wait for a single fetch.
    pub async fn apply(
        &self,
        http: &reqwest::Client,
        headers: &mut HeaderMap,
    ) -> Result<(), ErsError> {
        let mut cache = self.cache.lock().await;
        let fresh = cache.as_ref().filter(|c| Instant::now() < c.refresh_at);
        let token = match fresh {
            Some(c) => c.token.clone(),
            None => {
                let c = self.fetch(http).await?;
                let t = c.token.clone();
                *cache = Some(c);
                t
            }
        };
        super::bearer(headers, &token)
    }

    /// Drops the cached token (after a 401).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    /// The signed client assertion.
    pub fn client_assertion(&self) -> Result<String, ErsError> {
        let mut header = Header::new(Algorithm::RS512);
        header.kid = Some(self.kid.clone());
        let exp = chrono::Utc::now() + ASSERTION_LIFETIME;
        let claims = Claims {
            iss: self.api_key.expose_secret(),
            sub: self.api_key.expose_secret(),
            aud: &self.token_url,
            jti: uuid::Uuid::new_v4().to_string(),
            exp: exp.timestamp(),
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| ErsError::Auth {
            reason: format!("cannot sign the client assertion: {e}"),
            retryable: false,
        })
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<CachedToken, ErsError> {
        let assertion = self.client_assertion()?;
        let form = [
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        let resp = http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| ErsError::Auth {
                reason: format!("token endpoint unreachable: {}", e.without_url()),
                retryable: true,
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| ErsError::Auth {
            reason: format!("token endpoint reply broken: {}", e.without_url()),
            retryable: true,
        })?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<TokenErrorReply>(&body)
                .ok()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.error.unwrap_or_default(),
                        e.error_description.unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "no error description".into());
            warn!(status = status.as_u16(), "e-rs token request refused");
            return Err(ErsError::Auth {
                reason: format!("token endpoint answered http {}: {detail}", status.as_u16()),
                retryable: status.is_server_error() || status.as_u16() == 429,
            });
        }
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| ErsError::Auth {
            reason: format!("token endpoint reply is not a token response: {e}"),
            retryable: false,
        })?;
        let expires_in = reply
            .expires_in
            .and_then(|v| match v {
                serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
                serde_json::Value::Number(n) => n.as_u64(),
                _ => None,
            })
            .unwrap_or(599);
        let lifetime = Duration::from_secs(expires_in);
        // Refresh `margin` early; with a lifetime shorter than the margin, at half-life.
        let refresh_in = lifetime
            .checked_sub(self.refresh_margin)
            .filter(|d| !d.is_zero())
            .unwrap_or(lifetime / 2);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        debug!(expires_in, "e-rs access token fetched");
        Ok(CachedToken {
            token: SecretString::from(reply.access_token),
            refresh_at: Instant::now() + refresh_in,
        })
    }
}
