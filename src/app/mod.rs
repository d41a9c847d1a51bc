//! The bridge as one application: [`App::build`] does every piece of set-up that can fail
//! (mapping compilation, e-RS client, store connection and migrations, the broker
//! publisher) before any work starts, and owns what both directions share ([`Shared`]);
//! [`App::run_until_stopped`] runs each direction's tasks and the retention job until the
//! shutdown signal, then [`App::close`] closes the shared parts once: the broker
//! connection, the e-RS session (A003 in legacy mode) and the store. [`App::drain`] runs
//! outbound passes until the worklists have nothing new (the demo, `run --until-drained`
//! and tests use it).
//!
//! - [`shared`]: [`Shared`] and the per-UBRN [`Claims`].
//! - [`shutdown`]: the [`Shutdown`] signal cloned into every task.
//!
//! A direction is a pipeline under [`crate::pipeline`] built from an `Arc<Shared>` and its
//! own configuration; ARCHITECTURE.md "Adding a direction" says how one plugs in.

pub mod shared;
pub mod shutdown;

pub use shared::{Claim, Claims, Shared};
pub use shutdown::Shutdown;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::amqp::{Publisher, PublisherSettings, Topology};
use crate::config::{Config, Env, ProcessEnv};
use crate::ers::{ErsClient, ErsError, RefDataCache};
use crate::events::Events;
use crate::pipeline::outbound::{self, Mappings, PassReport, Pipeline, PipelineSettings};
use crate::pipeline::PipelineError;
use crate::store::{ParkedItem, Store, StoreError};

/// Why the bridge could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("e-rs client: {0}")]
    Ers(#[from] ErsError),
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
}

impl AppError {
    /// Whether starting again later may succeed (e.g. the database was down).
    pub fn is_retryable(&self) -> bool {
        match self {
            AppError::Store(e) => e.is_retryable(),
            AppError::Ers(e) => e.is_retryable(),
            AppError::Pipeline(e) => e.is_retryable(),
        }
    }
}

/// What [`App::drain`] did, plus the store's totals.
#[derive(Debug, Clone)]
pub struct DrainSummary {
    pub passes: usize,
    pub report: PassReport,
    /// Confirmed messages by type, from the store (all runs on this store).
    pub published_by_type: Vec<(String, i64)>,
    pub parked: Vec<ParkedItem>,
}

/// The wired-up bridge.
#[derive(Debug)]
pub struct App {
    shared: Arc<Shared>,
    outbound: Arc<Pipeline>,
    retention: Duration,
}

impl App {
    /// Builds everything from the configuration with the process environment.
    pub async fn build(config: &Config, shutdown: Shutdown) -> Result<Self, AppError> {
        Self::build_with_env(config, Arc::new(ProcessEnv), shutdown).await
    }

    /// Like [`App::build`] with an explicit environment (for secrets read by the client).
    pub async fn build_with_env(
        config: &Config,
        env: Arc<dyn Env + Send + Sync>,
        shutdown: Shutdown,
    ) -> Result<Self, AppError> {
        let events = Events::new();
        let mappings = Arc::new(Mappings::load(&config.mappings)?);
        let ers = ErsClient::new(&config.ers, env)?.with_events(events.clone());
        let store = Store::connect(&config.store.url).await?;
        let a = &config.amqp;
        let publisher = Arc::new(Publisher::with_events(
            PublisherSettings {
                url: a.url.clone(),
                exchange: a.exchange.clone(),
                confirm_timeout: Duration::from_millis(a.publish_timeout_ms),
                topology: a.declare_topology.then(|| Topology::from_config(a)),
            },
            events.clone(),
        ));
        // The broker may be down at start: the pipelines wait for it on the first publish.
        if let Err(e) = publisher.ensure_connected().await {
            tracing::warn!(error = %e, "broker not reachable yet, publishing will retry");
        }
        let shared = Arc::new(Shared {
            ers,
            store,
            publisher,
            refdata: RefDataCache::new(),
            claims: Claims::default(),
            shutdown,
            events,
        });
        let settings = PipelineSettings {
            tenant: a.tenant.clone(),
            tuning: config.pipeline,
            worklist_budget: config.ers.worklist_calls_per_service_per_day,
        };
        let outbound = Arc::new(Pipeline::new(
            shared.clone(),
            mappings,
            settings,
            config.poll_targets(),
        ));
        Ok(Self {
            shared,
            outbound,
            retention: config.retention(),
        })
    }

    /// The outbound pipeline, for single-step driving.
    pub fn outbound(&self) -> &Arc<Pipeline> {
        &self.outbound
    }

    /// What the directions share (store, clients, events).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Retries parked referrals if the mappings changed, then runs outbound passes until
    /// one finds nothing new (at most `max_passes`), and summarises.
    pub async fn drain(&self, max_passes: usize) -> Result<DrainSummary, AppError> {
        self.outbound
            .retry_parked_if_mappings_changed(Utc::now())
            .await?;
        let (report, passes) = self
            .outbound
            .drain(max_passes, Duration::from_millis(500))
            .await?;
        let store = &self.shared.store;
        Ok(DrainSummary {
            passes,
            report,
            published_by_type: store.published_counts().await?,
            parked: store.parked().await?,
        })
    }

    /// Runs the outbound schedulers and daily retention until the shutdown signal, then
    /// closes everything. In-flight referrals finish or are abandoned unrecorded (redone on
    /// the next start).
    pub async fn run_until_stopped(self) -> Result<(), AppError> {
        self.outbound
            .retry_parked_if_mappings_changed(Utc::now())
            .await?;
        let mut tasks = outbound::spawn_schedulers(&self.outbound);
        tasks.spawn(retention_loop(self.shared.clone(), self.retention));
        tracing::info!(
            targets = self.outbound.targets().len(),
            "outbound pipeline running"
        );
        self.shared.shutdown.wait().await;
        tracing::info!("stopping: waiting for in-flight work");
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "pipeline task failed");
            }
        }
        self.close().await;
        Ok(())
    }

    /// Closes the broker connection, the e-RS session and the store.
    pub async fn close(&self) {
        let s = &self.shared;
        s.publisher.close().await;
        if let Err(e) = s.ers.shutdown().await {
            tracing::warn!(error = %e, "closing the e-rs session failed");
        }
        s.store.close().await;
    }
}

/// Clears message payloads older than `retention`, once a day, until shutdown.
async fn retention_loop(shared: Arc<Shared>, retention: Duration) {
    let mut day = tokio::time::interval(Duration::from_secs(86_400));
    loop {
        tokio::select! {
            _ = day.tick() => {}
            _ = shared.shutdown.wait() => break,
        }
        let cutoff = Utc::now().timestamp_millis() - retention.as_millis() as i64;
        match shared.store.prune_payloads(cutoff).await {
            Ok(n) => tracing::info!(pruned = n, "retention pruned message payloads"),
            Err(e) => tracing::warn!(error = %e, "retention pruning failed"),
        }
    }
}
