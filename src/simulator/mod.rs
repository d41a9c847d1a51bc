//! `ers-bridge simulate`: a stateful stand-in for the NHS e-Referral Service (provider side
//! of the STU3 API), served over HTTP for tests, demos and integration teams with no e-RS
//! test environment. `docs/simulator.md` is the user guide.
//!
//! # HTTP surface
//!
//! - `POST /oauth2/token`: client credentials with an RS512 signed-JWT assertion ([`auth`]).
//! - `{base}/referrals/FHIR/STU3/...` and `{base}/referrals/FHIR/R4/Binary/{id}`: the API
//!   platform paths; `{base}/ers-api/STU3/v1/...` and `{base}/ers-api/v1/ProfessionalSession`:
//!   the legacy paths with professional sessions ([`routes`]).
//! - `GET /_objectstore/{token}`: short-lived download links handed out by A042.
//! - `/_admin/...`: test hooks (seed data, call log, faults, statistics, referrer-side
//!   changes and cancellations), no auth ([`admin`], [`stats`], [`referrer`]).
//! - `GET /`: a page listing the seeded UBRNs and the admin endpoints.
//!
//! # Layout
//!
//! [`state`] holds the world behind one tokio mutex; [`auth`] the token endpoint, access
//! modes and legacy sessions; [`routes`] the e-RS operations; [`validate`] the Parameters
//! bodies; [`faults`] injected faults and the rate limit; [`outcome`] OperationOutcome
//! replies; [`pdf`] and [`generate`] synthetic documents and referrals; [`stats`] the
//! request counters; [`referrer`] the referrer-side events.

pub mod admin;
pub mod auth;
pub mod faults;
pub mod generate;
pub mod outcome;
pub mod pdf;
pub mod referrer;
pub mod resources;
pub mod routes;
pub mod seed;
pub mod sessions;
pub mod state;
pub mod stats;
pub mod validate;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use axum::{
    routing::{any, delete, get, post, put},
    Router,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// The real API platform's limit on worklist responses: 10 MB.
pub const DEFAULT_MAX_WORKLIST_BYTES: usize = 10 * 1024 * 1024;

/// Configuration of one simulator instance.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Folder with `referrals/*.json` and `advice/*.json` to seed from (e.g. `samples/fhir`).
    pub seed_dir: Option<PathBuf>,
    /// Number of extra synthetic referrals to generate.
    pub generate: usize,
    /// Authentication settings.
    pub auth: SimAuth,
    /// Requests per second allowed per client before 429.
    pub rate_limit_per_sec: u32,
    /// App-restricted A008 calls allowed per service per (simulated) day.
    pub worklist_calls_per_service_per_day: u32,
    /// Largest worklist (A008/A023) response body in bytes; bigger ones fail with 502 as
    /// the real API platform does (default 10 MB, its limit).
    pub max_worklist_bytes: usize,
}

/// Authentication settings of the simulator.
#[derive(Clone)]
pub struct SimAuth {
    /// Expected JWT `iss`/`sub` (the application's API key) for app-restricted tokens.
    pub api_key: String,
    /// RS512 public key (PEM) verifying client assertions; `None` makes the token endpoint
    /// always answer 401.
    pub public_key_pem: Option<String>,
    /// Expected JWT header `kid`.
    pub kid: String,
    /// Lifetime of issued access tokens in seconds.
    pub token_ttl_secs: u64,
    /// Bearer tokens accepted as user-restricted (CIS2) tokens.
    pub user_tokens: Vec<String>,
    /// Expected legacy `XAPI_ASID`.
    pub asid: String,
    /// When false, requests without credentials are treated as user-restricted with
    /// optional role headers (default `SERVICE_PROVIDER_CLINICIAN` at `R69`).
    pub require_auth: bool,
}

impl std::fmt::Debug for SimAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimAuth")
            .field("api_key", &self.api_key)
            .field(
                "public_key_pem",
                &self.public_key_pem.as_ref().map(|_| "<pem>"),
            )
            .field("kid", &self.kid)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field(
                "user_tokens",
                &format!("<{} token(s)>", self.user_tokens.len()),
            )
            .field("asid", &self.asid)
            .field("require_auth", &self.require_auth)
            .finish()
    }
}

impl Default for SimAuth {
    fn default() -> Self {
        Self {
            api_key: "sim-api-key".into(),
            public_key_pem: None,
            kid: "sim-kid".into(),
            token_ttl_secs: 600,
            user_tokens: vec!["sim-user-token".into()],
            asid: "200000000001".into(),
            require_auth: true,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed_dir: None,
            generate: 0,
            auth: SimAuth::default(),
            rate_limit_per_sec: 10,
            worklist_calls_per_service_per_day: 2,
            max_worklist_bytes: DEFAULT_MAX_WORKLIST_BYTES,
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The IO error.
        source: std::io::Error,
    },
    /// A seed file could not be read.
    #[error("cannot read seed file {path}: {source}")]
    SeedRead {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A seed file is not valid JSON or not the expected resource.
    #[error("invalid seed file {path}: {reason}")]
    SeedInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The JWT public key is not a valid RSA PEM.
    #[error("invalid jwt public key: {0}")]
    PublicKey(String),
}

impl SimError {
    /// Whether retrying could help (only a bind failure might, once the port is free).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SimError::Bind { .. })
    }
}

/// Shared state of a running simulator.
pub struct Sim {
    /// The configuration it was started with.
    pub cfg: SimConfig,
    /// `http://ADDR` as bound, used for `aud` checks and redirect URLs.
    pub base_url: String,
    /// The referral and A&G world.
    pub world: tokio::sync::Mutex<state::World>,
    /// Tokens, sessions and replay protection.
    pub auth: std::sync::Mutex<auth::AuthState>,
    /// Injected faults and rate-limit windows.
    pub traffic: std::sync::Mutex<faults::Traffic>,
    /// Request counters for `/_admin/stats`.
    pub stats: std::sync::Mutex<stats::Stats>,
    /// Clock origin for windows and days (tokio time, so paused-clock tests can advance it).
    pub started: tokio::time::Instant,
    /// The verification key built from `cfg.auth.public_key_pem`.
    pub decoding_key: Option<jsonwebtoken::DecodingKey>,
}

/// A simulator serving on a background task; stops when dropped.
pub struct RunningSimulator {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningSimulator {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR/referrals/FHIR` (append `/STU3/...` or `/R4/...`).
    pub fn fhir_base(&self) -> String {
        format!("{}/referrals/FHIR", self.base_url())
    }

    /// `http://ADDR/ers-api` (append `/STU3/v1/...` or `/v1/ProfessionalSession`).
    pub fn legacy_base(&self) -> String {
        format!("{}/ers-api", self.base_url())
    }

    /// `http://ADDR/oauth2/token`, also the exact JWT `aud` expected.
    pub fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.base_url())
    }

    /// Waits until the server stops (it never stops on its own; used by the CLI).
    pub async fn wait(mut self) {
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _keep = self.shutdown.take();
        let _ = task.await;
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// Seeds the world, binds `cfg.listen` and serves on a background task.
pub async fn spawn(cfg: SimConfig) -> Result<RunningSimulator, SimError> {
    let decoding_key = match &cfg.auth.public_key_pem {
        Some(pem) => Some(
            jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|e| SimError::PublicKey(e.to_string()))?,
        ),
        None => None,
    };
    let mut world = state::World::default();
    if let Some(dir) = &cfg.seed_dir {
        seed::load_dir(&mut world, dir)?;
    }
    generate::add_synthetic(&mut world, cfg.generate, 42);

    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let sim = Arc::new(Sim {
        cfg,
        base_url: format!("http://{addr}"),
        world: tokio::sync::Mutex::new(world),
        auth: std::sync::Mutex::new(auth::AuthState::default()),
        traffic: std::sync::Mutex::new(faults::Traffic::default()),
        stats: std::sync::Mutex::new(stats::Stats::default()),
        started: tokio::time::Instant::now(),
        decoding_key,
    });
    let app = router(sim);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "simulator server stopped");
        }
    });
    tracing::info!(addr = %addr, "e-rs simulator listening");
    Ok(RunningSimulator {
        addr,
        shutdown: Some(tx),
        task,
    })
}

/// The simulator's routes.
fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/", get(admin::index))
        .route("/_admin", get(admin::index))
        .route("/_admin/referrals", post(admin::add_referral))
        .route("/_admin/advice", post(admin::add_advice))
        .route(
            "/_admin/calls",
            get(admin::calls).delete(admin::clear_calls),
        )
        .route(
            "/_admin/faults",
            post(admin::set_faults).delete(admin::reset_faults),
        )
        .route("/_admin/requests", get(admin::requests))
        .route("/_admin/polls", get(admin::polls))
        .route("/_admin/stats", get(stats::get).delete(stats::reset))
        .route("/_admin/referrals/{ubrn}/change", post(referrer::change))
        .route("/_admin/referrals/{ubrn}/cancel", post(referrer::cancel))
        .route("/oauth2/token", post(auth::token))
        .route("/_objectstore/{token}", get(routes::binary::object_store))
        .route(
            "/ers-api/v1/ProfessionalSession",
            post(sessions::create_session),
        )
        .route(
            "/ers-api/v1/ProfessionalSession/{id}",
            put(sessions::select_role).merge(delete(sessions::delete_session)),
        )
        .route("/referrals/FHIR/{*rest}", any(routes::platform))
        .route("/ers-api/STU3/v1/{*rest}", any(routes::legacy))
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            stats::count,
        ))
        .with_state(sim)
}
