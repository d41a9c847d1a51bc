//! The main job's set-up and lifetime: [`App::build`] does every piece of set-up that can
//! fail (store connection and migrations, e-RS client, mapping compilation) before any work
//! starts; [`App::run_until_stopped`] runs the schedulers and the retention task until the
//! shutdown signal, then closes the broker connection, the e-RS session (A003 in legacy
//! mode) and the store. [`App::drain`] runs passes until the worklists have nothing new
//! (the demo and tests use it).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::fetch::FetchOptions;
use super::{
    schedule, Mappings, PassReport, Pipeline, PipelineError, PipelineSettings, PollTarget, Shutdown,
};
use crate::amqp::{Publisher, PublisherSettings, Topology};
use crate::config::{Config, Env, ProcessEnv};
use crate::ers::{ErsClient, ErsError};
use crate::store::{ParkedItem, Store, StoreError};

/// Why the main job could not start or stopped with an error.
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

/// The wired-up main job.
#[derive(Debug)]
pub struct App {
    pipeline: Arc<Pipeline>,
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
        let mappings = Arc::new(Mappings::load(&config.mappings)?);
        let ers = ErsClient::new(&config.ers, env)?;
        let store = Store::connect(&config.store.url).await?;
        let a = &config.amqp;
        let publisher = Arc::new(Publisher::new(PublisherSettings {
            url: a.url.clone(),
            exchange: a.exchange.clone(),
            confirm_timeout: Duration::from_millis(a.publish_timeout_ms),
            topology: a.declare_topology.then(|| Topology::from_config(a)),
        }));
        // The broker may be down at start: the pipeline waits for it on the first publish.
        if let Err(e) = publisher.ensure_connected().await {
            tracing::warn!(error = %e, "broker not reachable yet, publishing will retry");
        }
        let p = &config.pipeline;
        let settings = PipelineSettings {
            tenant: a.tenant.clone(),
            concurrency: p.concurrency.max(1),
            fetch: FetchOptions {
                clinical_info: p.fetch_clinical_info,
                related_attachments: p.fetch_related_attachments,
            },
            pending_max_wait: Duration::from_secs(p.pending_attachment_max_wait_secs),
            publish_base_delay: Duration::from_millis(p.publish_retry_base_delay_ms),
            publish_max_delay: Duration::from_millis(p.publish_retry_max_delay_ms),
            worklist_budget: config.ers.worklist_calls_per_service_per_day,
        };
        let targets = config
            .poll
            .iter()
            .flat_map(|c| {
                c.lists.iter().map(|l| PollTarget {
                    service: c.service.clone(),
                    list: *l,
                    interval: Duration::from_secs(c.interval_secs),
                    specialty: c.specialty.clone(),
                    clinician: c.clinician.clone(),
                })
            })
            .collect();
        let pipeline = Arc::new(Pipeline::new(
            ers, store, publisher, mappings, settings, targets, shutdown,
        ));
        Ok(Self {
            pipeline,
            retention: Duration::from_secs(u64::from(config.store.retention_days) * 86_400),
        })
    }

    /// The pipeline, for single-step driving.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Retries parked referrals if the mappings changed, then runs passes until one finds
    /// nothing new (at most `max_passes`), and summarises.
    pub async fn drain(&self, max_passes: usize) -> Result<DrainSummary, AppError> {
        self.pipeline
            .retry_parked_if_mappings_changed(Utc::now())
            .await?;
        let (report, passes) = self
            .pipeline
            .drain(max_passes, Duration::from_millis(500))
            .await?;
        let store = self.pipeline.store();
        Ok(DrainSummary {
            passes,
            report,
            published_by_type: store.published_counts().await?,
            parked: store.parked().await?,
        })
    }

    /// Runs the schedulers and daily retention until the shutdown signal, then closes
    /// everything. In-flight referrals finish or are abandoned unrecorded (redone next start).
    pub async fn run_until_stopped(self) -> Result<(), AppError> {
        let p = self.pipeline.clone();
        p.retry_parked_if_mappings_changed(Utc::now()).await?;
        let mut tasks = schedule::spawn_schedulers(&p);
        let retention = self.retention;
        let store = p.store().clone();
        let shutdown = p.shutdown().clone();
        tasks.spawn(async move {
            let mut day = tokio::time::interval(Duration::from_secs(86_400));
            loop {
                tokio::select! {
                    _ = day.tick() => {}
                    _ = shutdown.wait() => break,
                }
                let cutoff = Utc::now().timestamp_millis() - retention.as_millis() as i64;
                match store.prune_payloads(cutoff).await {
                    Ok(n) => tracing::info!(pruned = n, "retention pruned message payloads"),
                    Err(e) => tracing::warn!(error = %e, "retention pruning failed"),
                }
            }
        });
        tracing::info!(targets = p.targets().len(), "outbound pipeline running");
        p.shutdown().wait().await;
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
        self.pipeline.publisher.close().await;
        if let Err(e) = self.pipeline.ers.shutdown().await {
            tracing::warn!(error = %e, "closing the e-rs session failed");
        }
        self.pipeline.store().close().await;
    }
}
