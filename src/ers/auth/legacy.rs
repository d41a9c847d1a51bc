//! The legacy (HSCN) professional session: A001 creates a session from the smartcard SSO
//! token (read from a file or environment variable), A002 selects the configured business
//! function at the configured organisation, and every later call sends `XAPI_ASID` and the
//! session key as `HTTP_X_SESSION_KEY`. [`crate::ers::ErsClient::shutdown`] runs A003 once
//! the calls in flight have finished. A 401 drops the session and the next call makes a new
//! one.

use std::fmt;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Mutex, RwLock, RwLockReadGuard};
use tracing::info;

use super::user_restricted::TokenSource;
use crate::config::BusinessFunction;
use crate::ers::{
    capability::Operation,
    client::{Body, Call, ErsClient},
    error::ErsError,
};
use crate::fhir::session::{Permission, SessionView, SESSION_TYPE_INFO};

/// Session state of the legacy mode.
pub struct LegacySession {
    asid: String,
    sso_token: TokenSource,
    business_function: BusinessFunction,
    ods_code: String,
    /// The current session key; `None` before A001/A002 and after a 401 or A003.
    session: Mutex<Option<SecretString>>,
    /// Calls hold a read guard; A003 takes the write lock, so it waits for them.
    in_flight: RwLock<()>,
}

impl fmt::Debug for LegacySession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacySession")
            .field("asid", &self.asid)
            .field("sso_token", &self.sso_token)
            .field("business_function", &self.business_function)
            .field("ods_code", &self.ods_code)
            .finish_non_exhaustive()
    }
}

impl LegacySession {
    /// Builds it; nothing is sent until the first call.
    pub fn new(
        asid: String,
        sso_token: TokenSource,
        business_function: BusinessFunction,
        ods_code: String,
    ) -> Self {
        Self {
            asid,
            sso_token,
            business_function,
            ods_code,
            session: Mutex::new(None),
            in_flight: RwLock::new(()),
        }
    }

    /// The ASID sent as `XAPI_ASID`.
    pub fn asid(&self) -> &str {
        &self.asid
    }

    pub(crate) async fn in_flight(&self) -> RwLockReadGuard<'_, ()> {
        self.in_flight.read().await
    }

    /// Drops the session after a 401 (expired or deleted on the server).
    pub async fn invalidate(&self) {
        *self.session.lock().await = None;
    }
}

impl ErsClient {
    fn legacy(&self) -> Option<&LegacySession> {
        match &self.inner.auth {
            super::Auth::Legacy(l) => Some(l),
            _ => None,
        }
    }

    /// The current session key, creating and role-selecting a session when there is none.
    pub(crate) async fn session_key(&self) -> Result<SecretString, ErsError> {
        let l = self
            .legacy()
            .ok_or_else(|| ErsError::Config("not in legacy-session mode".into()))?;
        let mut session = l.session.lock().await;
        if let Some(k) = session.as_ref() {
            return Ok(k.clone());
        }
        let key = self.create_session(l).await?;
        *session = Some(key.clone());
        Ok(key)
    }

    /// A001 then A002.
    async fn create_session(&self, l: &LegacySession) -> Result<SecretString, ErsError> {
        let sso = l.sso_token.read()?;
        let mut a001 = Call::new(
            Operation::A001,
            Method::POST,
            "v1/ProfessionalSession".into(),
            self.inner.max_json_bytes,
        );
        a001.accept = "application/json";
        a001.body = Some(Body::Json(serde_json::json!({
            "typeInfo": SESSION_TYPE_INFO,
            "token": sso.expose_secret(),
        })));
        let reply = self.execute(a001).await?;
        let mut session: serde_json::Value =
            serde_json::from_slice(&reply.body).map_err(|e| ErsError::Decode {
                operation: Operation::A001,
                reason: format!("not a professional session: {e}"),
            })?;
        let view: SessionView =
            serde_json::from_value(session.clone()).map_err(|e| ErsError::Decode {
                operation: Operation::A001,
                reason: format!("not a professional session: {e}"),
            })?;
        let key = SecretString::from(view.id);
        let wanted = Permission {
            business_function: l.business_function.as_str().to_string(),
            org_identifier: l.ods_code.clone(),
            org_name: None,
        };
        let held: Vec<Permission> = view.user.map(|u| u.permissions).unwrap_or_default();
        let chosen = held.iter().find(|p| {
            p.business_function == wanted.business_function
                && p.org_identifier == wanted.org_identifier
        });
        if chosen.is_none() && !held.is_empty() {
            let roles: Vec<_> = held
                .iter()
                .map(|p| format!("{}@{}", p.business_function, p.org_identifier))
                .collect();
            return Err(ErsError::Auth {
                reason: format!(
                    "the smartcard user does not hold {}@{}; roles held: {}",
                    wanted.business_function,
                    wanted.org_identifier,
                    roles.join(", ")
                ),
                retryable: false,
            });
        }
        session["permission"] = serde_json::json!({
            "businessFunction": wanted.business_function,
            "orgIdentifier": wanted.org_identifier,
        });
        let mut a002 = Call::new(
            Operation::A002,
            Method::PUT,
            format!("v1/ProfessionalSession/{}", key.expose_secret()),
            self.inner.max_json_bytes,
        );
        a002.accept = "application/json";
        a002.body = Some(Body::Json(session));
        a002.session_key = Some(key.clone());
        self.execute(a002).await?;
        info!(business_function = l.business_function.as_str(), ods = %l.ods_code, "e-rs legacy session created");
        Ok(key)
    }

    /// Ends the client's use of e-RS: in legacy-session mode, waits for the calls in flight
    /// and deletes the session (A003). A no-op in the other modes.
    pub async fn shutdown(&self) -> Result<(), ErsError> {
        let Some(l) = self.legacy() else {
            return Ok(());
        };
        let _exclusive = l.in_flight.write().await;
        let Some(key) = l.session.lock().await.take() else {
            return Ok(());
        };
        let mut a003 = Call::new(
            Operation::A003,
            Method::DELETE,
            format!("v1/ProfessionalSession/{}", key.expose_secret()),
            self.inner.max_json_bytes,
        );
        a003.accept = "application/json";
        a003.session_key = Some(key);
        self.execute(a003).await?;
        info!("e-rs legacy session deleted");
        Ok(())
    }

    /// True while a legacy session exists (for `check` and tests).
    pub async fn has_session(&self) -> bool {
        match self.legacy() {
            Some(l) => l.session.lock().await.is_some(),
            None => false,
        }
    }
}
