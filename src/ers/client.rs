//! [`ErsClient`] and its request pipeline: capability check, rate limit, auth headers,
//! `X-Correlation-ID`, `If-Match`, size caps, and the retry loop (`Retry-After` on 429/503,
//! jittered backoff otherwise, 5xx and timeouts retried only where repeating is safe).
//! The typed operations built on [`ErsClient::execute`] are in [`super::ops`].

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, IF_MATCH, RETRY_AFTER,
};
use secrecy::ExposeSecret;
use tracing::{debug, warn};
use uuid::Uuid;

use super::call::{api_error, read_capped, transport_error};
pub(crate) use super::call::{Body, Call, Reply, FHIR_JSON};
use super::{
    auth::{self, Auth},
    capability::{AuthMode, Operation},
    error::ErsError,
    ratelimit::RateLimiter,
    retry::{parse_retry_after, RetryBudget, RetryPolicy},
};
use crate::config::{Env, ErsConfig};
use crate::events::{ErsAuthRefused, ErsCallFinished, Events};

/// Header sent on every call and echoed by e-RS.
pub const CORRELATION_ID: &str = "x-correlation-id";
/// Response header: the e-RS transaction id.
pub const REQUEST_ID: &str = "x-request-id";

/// Error bodies are read up to this size; anything longer is cut.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// The e-RS API client. Cheap to clone; clones share the connection pool, the rate limiter,
/// the retry budget and the credentials.
#[derive(Clone)]
pub struct ErsClient {
    pub(crate) inner: Arc<Inner>,
    /// Sent as `X-Correlation-ID` instead of a fresh UUID per call, when set.
    correlation_id: Option<Uuid>,
    /// Reads made for a PAS decision: they pass the queue of outbound reads at the rate
    /// limiter as writes do ([`ErsClient::for_decision`]).
    decision: bool,
    /// Where every call attempt is counted ([`ErsCallFinished`]).
    events: Events,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    /// For A042 redirect targets: a separate client, so no e-RS header or credential can
    /// reach the object store.
    pub(crate) object_store: reqwest::Client,
    /// `base_url` without a trailing slash.
    pub(crate) base: String,
    pub(crate) auth: Auth,
    pub(crate) limiter: RateLimiter,
    pub(crate) retry: RetryPolicy,
    pub(crate) budget: RetryBudget,
    pub(crate) request_timeout: Duration,
    pub(crate) max_json_bytes: u64,
    pub(crate) max_attachment_bytes: u64,
    /// `User-Agent` naming this bridge instance ([`ErsClient::name_instance`]).
    pub(crate) user_agent: std::sync::OnceLock<String>,
    /// 503s answered in a row (any call; a success ends the streak): from
    /// [`UNAVAILABLE_STREAK`] on, a 503's `Retry-After` holds every call, not only its own.
    pub(crate) unavailable_streak: std::sync::atomic::AtomicU32,
}

/// 503s in a row after which e-RS counts as unavailable for everyone: its `Retry-After`
/// then defers every call of the process. A lone 503 among successes (a 1% fault rate)
/// makes only its own call wait: deferring everyone for each stopped the whole bridge for
/// most of a run (issue 21: five times slower under the fault mix).
pub const UNAVAILABLE_STREAK: u32 = 3;

impl fmt::Debug for ErsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErsClient")
            .field("base", &self.inner.base)
            .field("auth", &self.inner.auth)
            .field("limiter", &self.inner.limiter)
            .field("retry", &self.inner.retry)
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}

impl ErsClient {
    /// Builds the client from `[ers]`. Reads key files now (so a bad path fails at
    /// start-up); tokens are read or fetched on first use.
    pub fn new(cfg: &ErsConfig, env: Arc<dyn Env + Send + Sync>) -> Result<Self, ErsError> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| ErsError::Config(format!("ers.base_url is not a url: {e}")))?;
        let token_url_default = format!("{}/oauth2/token", origin(&url));
        let auth = Auth::from_config(&cfg.auth, env, token_url_default)?;
        let connect = Duration::from_millis(cfg.connect_timeout_ms);
        let request_timeout = Duration::from_millis(cfg.request_timeout_ms);
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect)
            .timeout(request_timeout)
            .user_agent(concat!("ers-bridge/", env!("CARGO_PKG_VERSION")));
        if let crate::config::AuthConfig::LegacySession {
            client_cert_file: Some(cert),
            client_key_file: Some(key),
            ..
        } = &cfg.auth
        {
            let mut pem = std::fs::read(cert).map_err(|e| {
                ErsError::Config(format!(
                    "cannot read ers.auth.client_cert_file {}: {e}",
                    cert.display()
                ))
            })?;
            pem.push(b'\n');
            pem.extend(std::fs::read(key).map_err(|e| {
                ErsError::Config(format!(
                    "cannot read ers.auth.client_key_file {}: {e}",
                    key.display()
                ))
            })?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                ErsError::Config(format!(
                    "ers.auth client certificate or key is not valid pem: {e}"
                ))
            })?;
            builder = builder.identity(id);
        }
        let http = builder
            .build()
            .map_err(|e| ErsError::Config(format!("cannot build the http client: {e}")))?;
        let object_store = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .connect_timeout(connect)
            .timeout(request_timeout)
            .build()
            .map_err(|e| ErsError::Config(format!("cannot build the http client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                object_store,
                base,
                auth,
                limiter: RateLimiter::with_allowance(
                    cfg.rate_limit_per_sec,
                    Duration::from_millis(cfg.rate_allowance_ms),
                ),
                retry: RetryPolicy::from(&cfg.retry),
                budget: RetryBudget::new(cfg.retry.budget, 0.1),
                request_timeout,
                max_json_bytes: cfg.max_worklist_bytes,
                max_attachment_bytes: cfg.max_attachment_bytes,
                user_agent: std::sync::OnceLock::new(),
                unavailable_streak: std::sync::atomic::AtomicU32::new(0),
            }),
            correlation_id: None,
            decision: false,
            events: Events::new(),
        })
    }

    /// This client counting its calls into the bridge's shared event hub.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// A handle that sends `id` as `X-Correlation-ID` on every call (e.g. to trace one PAS
    /// message through several e-RS calls).
    pub fn with_correlation_id(&self, id: Uuid) -> Self {
        Self {
            correlation_id: Some(id),
            ..self.clone()
        }
    }

    /// The same client for the calls of a PAS decision: its reads (A005, A029) take the
    /// rate limiter's next slot as writes do, ahead of the outbound backlog's reads, so a
    /// decision is not queued behind a thousand worklist fetches.
    pub fn for_decision(&self) -> Self {
        Self {
            decision: true,
            ..self.clone()
        }
    }

    /// Names the bridge instance in every call's `User-Agent` (`ers-bridge/<version>
    /// (<holder>)`), so e-RS's and the simulator's logs tell instances apart. First call
    /// wins.
    pub fn name_instance(&self, holder: &str) {
        let _ = self.inner.user_agent.set(format!(
            "ers-bridge/{} ({holder})",
            env!("CARGO_PKG_VERSION")
        ));
    }

    /// The rate limiter every call of this process passes (its share of the app's limit
    /// is set through it when several instances share the store).
    pub fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    /// The auth mode.
    pub fn mode(&self) -> AuthMode {
        self.inner.auth.mode()
    }

    /// Whether the auth mode allows `op`.
    pub fn allows(&self, op: Operation) -> bool {
        op.allowed_in(self.mode())
    }

    /// Access tokens fetched so far (app-restricted mode only).
    pub fn token_fetch_count(&self) -> Option<u64> {
        match &self.inner.auth {
            Auth::App(a) => Some(a.fetch_count()),
            _ => None,
        }
    }

    /// `STU3/<rest>` on the API platform, `STU3/v1/<rest>` on the legacy API.
    pub(crate) fn stu3(&self, rest: &str) -> String {
        match self.mode() {
            AuthMode::LegacySession => format!("STU3/v1/{rest}"),
            _ => format!("STU3/{rest}"),
        }
    }

    /// Runs one call through the pipeline. Boxed (and declared `Send`) because creating a
    /// legacy session runs A001/A002 through this same pipeline.
    pub(crate) fn execute(
        &self,
        call: Call,
    ) -> Pin<Box<dyn Future<Output = Result<Reply, ErsError>> + Send + '_>> {
        Box::pin(self.execute_inner(call))
    }

    async fn execute_inner(&self, call: Call) -> Result<Reply, ErsError> {
        let op = call.op;
        if !op.allowed_in(self.mode()) {
            return Err(ErsError::NotAllowed {
                operation: op,
                mode: self.mode(),
            });
        }
        let inner = &self.inner;
        let cid = self.correlation_id.unwrap_or_else(Uuid::new_v4).to_string();
        let _in_flight = match &inner.auth {
            Auth::Legacy(l)
                if !matches!(op, Operation::A001 | Operation::A002 | Operation::A003) =>
            {
                Some(l.in_flight().await)
            }
            _ => None,
        };
        let url = format!("{}/{}", inner.base, call.path);
        let mut attempt: u32 = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            // One limiter for both directions, writes (PAS decisions) first.
            if call.op.is_write() || self.decision {
                inner.limiter.acquire_write().await;
            } else if let Some(p) = super::ratelimit::current_promotion() {
                inner.limiter.acquire_promotable(&p).await;
            } else {
                inner.limiter.acquire().await;
            }
            let headers = match self.headers(&call, &cid).await {
                Ok(h) => h,
                Err(e) => {
                    // Refused credentials before the call (the token endpoint, the token
                    // file, the session) fail e-RS's auth as a 401 from it would.
                    if matches!(
                        e,
                        ErsError::Auth {
                            retryable: false,
                            ..
                        }
                    ) {
                        self.events.emit(ErsAuthRefused { operation: op.id() });
                    }
                    return Err(e);
                }
            };
            let mut req = inner
                .http
                .request(call.method.clone(), &url)
                .headers(headers);
            if let Some(agent) = inner.user_agent.get() {
                req = req.header(reqwest::header::USER_AGENT, agent.as_str());
            }
            if !call.query.is_empty() {
                req = req.query(&call.query);
            }
            match &call.body {
                Some(Body::Fhir(bytes)) => {
                    req = req.header(CONTENT_TYPE, FHIR_JSON).body(bytes.clone());
                }
                Some(Body::Json(v)) => {
                    req = req
                        .header(CONTENT_TYPE, "application/json")
                        .body(v.to_string());
                }
                None => {}
            }
            let started = tokio::time::Instant::now();
            let outcome = match req.send().await {
                Ok(resp) => self.handle(resp, &call, &cid).await,
                Err(e) => Err(transport_error(op, &e, inner.request_timeout)),
            };
            let elapsed = started.elapsed();
            let elapsed_ms = elapsed.as_millis() as u64;
            self.events.emit(ErsCallFinished {
                operation: op.id(),
                status: match &outcome {
                    Ok(reply) => Some(reply.status),
                    Err(ErsError::RateLimited(_)) => Some(429),
                    Err(e) => e.status(),
                },
                latency: elapsed,
            });
            let err = match outcome {
                Ok(reply) => {
                    // Every call at debug, writes too: the store keeps each decision's
                    // call with its If-Match and correlation id (the timeline), the metrics
                    // count them, and `run` says each minute's counts at info.
                    tracing::debug!(
                        operation = op.id(),
                        correlation_id = %cid,
                        request_id = reply.request_id.as_deref().unwrap_or(""),
                        status = reply.status,
                        attempt,
                        elapsed_ms,
                        write = op.is_write(),
                        "e-rs call"
                    );
                    if attempt == 1 {
                        inner.budget.earn();
                    }
                    return Ok(reply);
                }
                Err(e) => e,
            };
            let session_op = matches!(op, Operation::A001 | Operation::A002 | Operation::A003);
            if err.status() == Some(401)
                && !reauthenticated
                && !session_op
                && inner.auth.invalidate().await
            {
                reauthenticated = true;
                warn!(operation = op.id(), correlation_id = %cid, "e-rs answered 401, refreshing credentials");
                continue;
            }
            let err = match err {
                // Refreshed and refused again (or no credentials to refresh): the setting.
                ErsError::Api(mut a) if a.status == 401 && !session_op => {
                    a.fix = Some(inner.auth.refused_fix());
                    ErsError::Api(a)
                }
                other => other,
            };
            let Some(delay) = self.retry_delay(&err, op, attempt) else {
                // e-RS refusing this one call (a 4xx other than the credentials' and the
                // rate limit's, a version conflict, a lock) is the caller's to report, once,
                // as what it means (a needs-action, a parked referral, a refused list): at
                // WARN here too it doubled every such line (issue 21: 40,000 lines for
                // 20,000 decisions about unknown referrals).
                let callers = matches!(err.status(), Some(400..=499))
                    && !matches!(err.status(), Some(401 | 403 | 429));
                if callers {
                    tracing::debug!(operation = op.id(), correlation_id = %cid, attempt, error = %err, "e-rs call refused");
                } else {
                    warn!(operation = op.id(), correlation_id = %cid, attempt, error = %err, "e-rs call failed");
                }
                return Err(err);
            };
            // Per attempt at debug: an outage is logged once by the events (events/outage.rs).
            tracing::debug!(
                operation = op.id(),
                correlation_id = %cid,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %err,
                "e-rs call failed, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// How long to wait before retrying, or `None` to give up.
    fn retry_delay(&self, err: &ErsError, op: Operation, attempt: u32) -> Option<Duration> {
        let inner = &self.inner;
        if attempt >= inner.retry.max_attempts {
            return None;
        }
        let delay = match err {
            // The request was not processed: safe for every operation.
            ErsError::RateLimited(a) => a
                .retry_after
                .unwrap_or_else(|| inner.retry.backoff.delay_random(attempt)),
            ErsError::Api(a) if a.status == 503 => a
                .retry_after
                .unwrap_or_else(|| inner.retry.backoff.delay_random(attempt)),
            ErsError::Auth {
                retryable: true, ..
            } => inner.retry.backoff.delay_random(attempt),
            // The outcome is unknown: only where a repeat cannot apply twice.
            ErsError::Transport { .. } | ErsError::Timeout { .. } if op.is_safe_to_repeat() => {
                inner.retry.backoff.delay_random(attempt)
            }
            ErsError::Api(a) if matches!(a.status, 500 | 502 | 504) && op.is_safe_to_repeat() => {
                inner.retry.backoff.delay_random(attempt)
            }
            _ => return None,
        };
        if delay > inner.retry.max_retry_after || !inner.budget.try_spend() {
            return None;
        }
        Some(delay)
    }

    async fn headers(&self, call: &Call, cid: &str) -> Result<HeaderMap, ErsError> {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static(CORRELATION_ID),
            HeaderValue::from_str(cid).expect("a uuid is a valid header value"),
        );
        h.insert(ACCEPT, HeaderValue::from_static(call.accept));
        if let Some(v) = call.if_match {
            h.insert(
                IF_MATCH,
                HeaderValue::from_str(&format!("W/\"{v}\"")).expect("a number is a valid header"),
            );
        }
        match &self.inner.auth {
            Auth::None => {}
            Auth::App(a) => a.apply(&self.inner.http, &mut h).await?,
            Auth::User(u) => u.apply(&mut h)?,
            Auth::Legacy(l) => {
                auth::plain(&mut h, auth::XAPI_ASID, l.asid())?;
                let key = match (&call.session_key, call.op) {
                    (_, Operation::A001) => None,
                    (Some(k), _) => Some(k.clone()),
                    (None, _) => Some(self.session_key().await?),
                };
                if let Some(k) = key {
                    let mut v =
                        HeaderValue::from_str(k.expose_secret()).map_err(|_| ErsError::Auth {
                            reason: "the session key is not a valid header value".into(),
                            retryable: false,
                        })?;
                    v.set_sensitive(true);
                    h.insert(HeaderName::from_static(auth::SESSION_KEY), v);
                }
            }
        }
        Ok(h)
    }

    async fn handle(
        &self,
        resp: reqwest::Response,
        call: &Call,
        cid: &str,
    ) -> Result<Reply, ErsError> {
        let op = call.op;
        let status = resp.status();
        let request_id = resp
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        debug!(operation = op.id(), correlation_id = %cid, request_id = request_id.as_deref().unwrap_or(""), status = status.as_u16(), "e-rs response");
        let streak = &self.inner.unavailable_streak;
        let in_a_row = if status.as_u16() == 503 {
            streak.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
        } else {
            streak.store(0, std::sync::atomic::Ordering::Relaxed);
            0
        };
        if status.is_success() || Some(status) == call.accept_status {
            let headers = resp.headers().clone();
            let body = read_capped(resp, call.max_bytes, op, self.inner.request_timeout).await?;
            return Ok(Reply {
                status: status.as_u16(),
                headers,
                body,
                request_id,
                correlation_id: cid.to_string(),
            });
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let body = read_capped(resp, MAX_ERROR_BODY, op, self.inner.request_timeout)
            .await
            .unwrap_or_default();
        let mut api = api_error(op, status.as_u16(), &body, request_id, cid);
        api.retry_after = retry_after;
        // Everybody waits, not only this task: after a 429 (the app's limit is everyone's),
        // and after a 503 that is one of several in a row (e-RS is down, not one call
        // unlucky). A lone 503 waits for its own retry ([`Self::retry_delay`]).
        let everyone = match status.as_u16() {
            429 => true,
            503 => in_a_row >= UNAVAILABLE_STREAK,
            _ => false,
        };
        if let (Some(d), true) = (retry_after, everyone) {
            self.inner
                .limiter
                .defer_until(tokio::time::Instant::now() + d);
        }
        Err(match status.as_u16() {
            409 => ErsError::Conflict(Box::new(api)),
            423 => ErsError::Locked(Box::new(api)),
            429 => ErsError::RateLimited(Box::new(api)),
            _ => ErsError::Api(Box::new(api)),
        })
    }

    /// Fetches an absolute URL (an A042 object-store redirect target) with the plain client:
    /// no e-RS headers, no credentials, no rate limit; the size cap still applies.
    pub(crate) async fn fetch_object(
        &self,
        op: Operation,
        url: &str,
    ) -> Result<(HeaderMap, Bytes), ErsError> {
        let resp = self
            .inner
            .object_store
            .get(url)
            .send()
            .await
            .map_err(|e| transport_error(op, &e, self.inner.request_timeout))?;
        if !resp.status().is_success() {
            return Err(ErsError::Decode {
                operation: op,
                reason: format!("object store answered http {}", resp.status().as_u16()),
            });
        }
        let headers = resp.headers().clone();
        let body = read_capped(
            resp,
            self.inner.max_attachment_bytes,
            op,
            self.inner.request_timeout,
        )
        .await?;
        Ok((headers, body))
    }
}

/// `scheme://host[:port]` of a url.
fn origin(url: &reqwest::Url) -> String {
    let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(p) = url.port() {
        s.push_str(&format!(":{p}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_keeps_port() {
        let u = reqwest::Url::parse("http://127.0.0.1:8080/referrals/FHIR").unwrap();
        assert_eq!(origin(&u), "http://127.0.0.1:8080");
        let u = reqwest::Url::parse("https://api.service.nhs.uk/referrals/FHIR").unwrap();
        assert_eq!(origin(&u), "https://api.service.nhs.uk");
    }
}
