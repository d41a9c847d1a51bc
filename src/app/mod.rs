//! The bridge as one application: [`App::build`] does every piece of set-up that can fail
//! (mapping compilation, e-RS client, store connection and migrations, the broker
//! publisher) before any work starts, and owns what both directions share ([`Shared`]);
//! [`App::run_until_stopped`] runs each direction's tasks and the retention job until the
//! shutdown signal, then [`App::close`] closes the shared parts once: the broker
//! connection, the e-RS session (A003 in legacy mode) and the store. [`App::drain`] runs
//! outbound passes until the worklists have nothing new (the demo, `run --until-drained`
//! and tests use it).
//!
//! [`Shared`], the per-UBRN [`Claims`] and the [`Shutdown`] signal live in
//! [`crate::runtime`], below what this module composes; they are re-exported here.
//!
//! A direction is a pipeline under [`crate::pipeline`] built from an `Arc<Shared>` and its
//! own configuration, which spawns its own long-running tasks
//! (`outbound::spawn_schedulers`, `inbound::spawn_loops`, the transport's
//! `amqp_in::spawn_consumer`); ARCHITECTURE.md "Adding a
//! direction" says how one plugs in.

pub use crate::runtime::{Claim, Claims, Cluster, Shared, Shutdown};

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::amqp::{ConsumerSettings, Publisher, PublisherSettings, Topology};
use crate::config::{AlertsConfig, Config, Env, ProcessEnv};
use crate::ers::{ErsClient, ErsError, RefDataCache};
use crate::events::Events;
use crate::mapping::DecisionTable;
use crate::mllp::MllpSender;
use crate::monitor::{self, ApiToken, Liveness, MonitorState};
use crate::pipeline::inbound::{Inbound, InboundSettings};
use crate::pipeline::outbound::{self, Mappings, PassReport, Pipeline, PipelineSettings};
use crate::pipeline::PipelineError;
use crate::store::{ParkedItem, Store, StoreError};
use crate::transport::PasLink;

/// Why the bridge could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("e-rs client: {0}")]
    Ers(#[from] ErsError),
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    /// The monitor's address is taken, or a token's variable is not set.
    #[error("monitor: {0}")]
    Monitor(String),
    /// A TLS certificate, key or CA file cannot be read or used.
    #[error("mllp {0}")]
    Tls(String),
    /// The MLLP listener's address cannot be bound (taken, or not this machine's).
    #[error("mllp listener on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl AppError {
    /// Whether starting again later may succeed (e.g. the database was down).
    pub fn is_retryable(&self) -> bool {
        match self {
            AppError::Store(e) => e.is_retryable(),
            AppError::Ers(e) => e.is_retryable(),
            AppError::Pipeline(e) => e.is_retryable(),
            AppError::Monitor(_) | AppError::Listen { .. } | AppError::Tls(_) => false,
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
    inbound: Arc<Inbound>,
    consumer: ConsumerSettings,
    /// Bytes of inbound bodies handled at once (`[amqp] inbound_bytes_in_flight_mib`).
    inbound_bytes: usize,
    inbound_enabled: bool,
    /// PAS messages over MLLP too, when `[inbound] mllp_listen` is set.
    mllp: Option<crate::mllp::listener::ListenerSettings>,
    retention: Duration,
    /// The monitor's socket once bound ([`App::bind_monitor`]); only `run` and the demo
    /// bind it, never the one-shot commands.
    monitor: std::sync::Mutex<Option<tokio::net::TcpListener>>,
    /// `[monitor] listen` when the monitor is enabled.
    monitor_listen: Option<std::net::SocketAddr>,
    /// Where it listens once bound.
    monitor_addr: std::sync::Mutex<Option<std::net::SocketAddr>>,
    monitor_state: MonitorState,
    alerts: AlertsConfig,
}

/// The largest PAS message read; larger ones are dead-lettered.
pub const MAX_INBOUND_BYTES: usize = 16 * 1024 * 1024;

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
        let ers = ErsClient::new(&config.ers, env.clone())?.with_events(events.clone());
        let store = Store::connect(&config.store.url).await?;
        let a = &config.amqp;
        let amqp_tls =
            crate::amqp::AmqpTls::from_config(a).map_err(|e| AppError::Tls(e.to_string()))?;
        let pas = match &config.mllp_to_pas {
            Some(settings) => PasLink::Mllp(Arc::new(
                MllpSender::new(settings.clone())
                    .map_err(|e| AppError::Tls(e.to_string()))?
                    .with_events(events.clone()),
            )),
            None => {
                let publisher = Arc::new(Publisher::with_events(
                    PublisherSettings {
                        urls: a.node_urls(),
                        exchange: a.exchange.clone(),
                        confirm_timeout: Duration::from_millis(a.publish_timeout_ms),
                        topology: a.declare_topology.then(|| Topology::from_config(a)),
                        tls: amqp_tls.clone(),
                    },
                    events.clone(),
                ));
                PasLink::amqp(publisher, a.tenant.clone(), a.dead_letter_exchange.clone())
            }
        };
        // The PAS side may be down at start: the pipelines wait for it on the first send.
        if let Err(e) = pas.ensure_connected().await {
            tracing::warn!(error = %e, "the way to the pas is not open yet, sending will retry");
        }
        let cluster = Arc::new(Cluster::new(
            store.clone(),
            config.cluster.clone(),
            config.ers.rate_limit_per_sec,
            events.clone(),
        ));
        ers.name_instance(cluster.holder());
        let shared = Arc::new(Shared {
            ers,
            store,
            pas,
            refdata: RefDataCache::new(),
            claims: Claims::for_cluster(&cluster),
            cluster,
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
        let table = DecisionTable::load(&config.mappings.dir.join(&config.mappings.inbound))
            .map_err(PipelineError::Mapping)?;
        let inbound = Arc::new(Inbound::new(
            shared.clone(),
            Arc::new(table),
            InboundSettings {
                max_message_bytes: MAX_INBOUND_BYTES,
                retry: config.inbound.retry,
                max_attempts: config.inbound.max_attempts,
            },
        ));
        let consumer = ConsumerSettings {
            urls: a.node_urls(),
            queue: a.inbound_queue.clone(),
            prefetch: a.prefetch,
            connect_timeout: Duration::from_millis(a.publish_timeout_ms),
            topology: a.declare_topology.then(|| Topology::from_config(a)),
            tls: amqp_tls,
        };
        let mut tokens = Vec::new();
        for t in &config.monitor.tokens {
            let secret = env
                .var(&t.token_env)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    AppError::Monitor(format!(
                        "api token {:?}: environment variable {} is not set",
                        t.name, t.token_env
                    ))
                })?;
            tokens.push(ApiToken {
                name: t.name.clone(),
                secret: secret.into(),
            });
        }
        // The queues whose depth the page and the gauges show (only with a broker).
        let queues: Arc<[(&'static str, String)]> = if shared.pas.broker().is_some() {
            vec![
                ("pas", a.pas_queue.clone()),
                ("pas-acks", a.pas_ack_queue.clone()),
                ("inbound", a.inbound_queue.clone()),
                ("dead-letter", a.dead_letter_queue.clone()),
            ]
            .into()
        } else {
            Arc::from(Vec::new())
        };
        let monitor_state = MonitorState {
            store: shared.store.clone(),
            events: shared.events.clone(),
            pas: shared.pas.clone(),
            tokens: tokens.into(),
            liveness: Arc::new(Liveness::default()),
            inbound_queue: a.inbound_queue.clone(),
            outbound: outbound.clone(),
            mappings_dir: config.mappings.dir.clone(),
            mapping_header: config.mappings.header.clone(),
            cluster: shared.cluster.clone(),
            queues,
            pas_unread_since: Default::default(),
        };
        Ok(Self {
            shared,
            outbound,
            inbound,
            consumer,
            inbound_bytes: (config.amqp.inbound_bytes_in_flight_mib as usize) << 20,
            inbound_enabled: config.inbound.enabled,
            mllp: config.inbound.mllp.clone(),
            retention: config.retention(),
            monitor: std::sync::Mutex::new(None),
            monitor_listen: config.monitor.enabled.then_some(config.monitor.listen),
            monitor_addr: std::sync::Mutex::new(None),
            monitor_state,
            alerts: config.alerts.clone(),
        })
    }

    /// Binds the monitor's address now (port 0 picks a free one) and returns it; `None`
    /// when `[monitor] enabled = false`. A taken port is an error here, before any work.
    pub async fn bind_monitor(&self) -> Result<Option<std::net::SocketAddr>, AppError> {
        let Some(listen) = self.monitor_listen else {
            return Ok(None);
        };
        if let Some(a) = self.monitor_addr() {
            return Ok(Some(a));
        }
        let l = monitor::bind(listen)
            .await
            .map_err(|e| AppError::Monitor(e.to_string()))?;
        let addr = l.local_addr().ok();
        *self.monitor_addr.lock().unwrap_or_else(|e| e.into_inner()) = addr;
        *self.monitor.lock().unwrap_or_else(|e| e.into_inner()) = Some(l);
        Ok(addr)
    }

    /// Where the monitor listens, once bound.
    pub fn monitor_addr(&self) -> Option<std::net::SocketAddr> {
        *self.monitor_addr.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves the monitor (health, metrics, API, dashboard) until shutdown, binding it
    /// first when [`App::bind_monitor`] was not called; `None` when it is disabled or
    /// already served.
    pub async fn serve_monitor(&self) -> Result<Option<tokio::task::JoinHandle<()>>, AppError> {
        let Some(addr) = self.bind_monitor().await? else {
            return Ok(None);
        };
        let Some(listener) = self
            .monitor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(None);
        };
        let router = monitor::router(self.monitor_state.clone());
        let shutdown = self.shared.shutdown.clone();
        tracing::info!(addr = %addr, "monitor listening (health, metrics, api, dashboard)");
        Ok(Some(tokio::spawn(async move {
            if let Err(e) =
                monitor::serve(listener, router, async move { shutdown.wait().await }).await
            {
                tracing::error!(error = %e, "monitor server stopped");
            }
        })))
    }

    /// The outbound pipeline, for single-step driving.
    pub fn outbound(&self) -> &Arc<Pipeline> {
        &self.outbound
    }

    /// The inbound pipeline, for single-step driving.
    pub fn inbound(&self) -> &Arc<Inbound> {
        &self.inbound
    }

    /// What the alerts watch: the store, the event hub and the link to the PAS.
    pub fn watched(&self) -> monitor::alerts::Watched {
        monitor::alerts::Watched {
            store: self.shared.store.clone(),
            events: self.shared.events.clone(),
            pas: self.shared.pas.clone(),
            cluster: self.shared.cluster.clone(),
            queues: self.monitor_state.queues.clone(),
            pas_unread_since: self.monitor_state.pas_unread_since.clone(),
        }
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
        // Registered (and, beside other instances, seen by them) before the first e-RS
        // call, so the app's rate limit is shared from the start (docs/ha.md).
        let cluster = self.shared.cluster.clone();
        cluster.join(&self.shared.ers).await?;
        // Renews this process's leases until the work under them has finished below.
        let leases_stop = Shutdown::new();
        let leases = tokio::spawn(
            cluster
                .clone()
                .run(self.shared.ers.clone(), leases_stop.clone()),
        );
        let server = self.serve_monitor().await?;
        self.outbound
            .retry_parked_if_mappings_changed(Utc::now())
            .await?;
        let mut tasks = outbound::spawn_schedulers(&self.outbound);
        tasks.spawn(retention_loop(self.shared.clone(), self.retention));
        if self.inbound_enabled {
            crate::pipeline::inbound::spawn_loops(&self.inbound, &mut tasks);
            // A bridge that reaches the PAS over MLLP uses no broker at all.
            if self.shared.pas.broker().is_some() {
                crate::transport::amqp_in::spawn_consumer(
                    &self.inbound,
                    self.consumer.clone(),
                    self.inbound_bytes,
                    &mut tasks,
                );
                tracing::info!(queue = %self.consumer.queue, "inbound pipeline running");
            }
            if let Some(settings) = self.mllp.clone() {
                let listener = crate::mllp::listener::bind(&settings)
                    .await
                    .map_err(|source| AppError::Listen {
                        addr: settings.listen,
                        source,
                    })?;
                let acceptor = settings
                    .tls
                    .as_ref()
                    .map(crate::mllp::tls::acceptor)
                    .transpose()
                    .map_err(|e| AppError::Tls(e.to_string()))?;
                let addr = listener.local_addr().map_or(settings.listen, |a| a);
                tracing::info!(%addr, tls = acceptor.is_some(), "mllp listener running");
                tasks.spawn(crate::mllp::listener::serve(
                    listener,
                    acceptor,
                    self.inbound.clone(),
                    settings,
                    self.shared.shutdown.clone(),
                ));
            }
        }
        tracing::info!(
            targets = self.outbound.targets().len(),
            "outbound pipeline running"
        );
        tasks.spawn(monitor::trends::run(
            self.shared.store.clone(),
            self.shared.events.clone(),
            self.shared.shutdown.clone(),
        ));
        tasks.spawn(monitor::alerts::for_bridge(
            Arc::new(self.watched()),
            self.shared.shutdown.clone(),
            self.alerts.clone(),
            self.outbound
                .targets()
                .iter()
                .map(|t| (t.service.clone(), t.list.code().to_string()))
                .collect(),
        ));
        // A task that ends before shutdown has died: `/health/live` says so.
        loop {
            tokio::select! {
                () = self.shared.shutdown.wait() => break,
                Some(r) = tasks.join_next() => {
                    // Both branches can be ready at once: a task that ended because the
                    // bridge is stopping has not died.
                    if self.shared.shutdown.is_triggered() {
                        if let Err(e) = r {
                            tracing::error!(error = %e, "pipeline task failed");
                        }
                        break;
                    }
                    let why = match r {
                        Ok(()) => "a pipeline task stopped".to_string(),
                        Err(e) => format!("a pipeline task failed: {e}"),
                    };
                    tracing::error!(error = %why, "pipeline task ended before shutdown");
                    self.monitor_state.liveness.task_died(&why);
                }
            }
        }
        tracing::info!("stopping: waiting for in-flight work");
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "pipeline task failed");
            }
        }
        if let Some(s) = server {
            let _ = s.await;
        }
        // Every lease given back: the other instances take over at once.
        leases_stop.trigger();
        let _ = leases.await;
        self.close().await;
        Ok(())
    }

    /// Closes the broker connection, the e-RS session and the store.
    pub async fn close(&self) {
        let s = &self.shared;
        s.pas.close().await;
        if let Err(e) = s.ers.shutdown().await {
            tracing::warn!(error = %e, "closing the e-rs session failed");
        }
        s.store.close().await;
    }
}

/// Clears message payloads older than `retention` every hour until shutdown, in batches
/// of 500 resting twice each batch's time between them, so the pipelines' own writes never
/// wait long for the store; then gives the freed space back (SQLite).
async fn retention_loop(shared: Arc<Shared>, retention: Duration) {
    let mut hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = hour.tick() => {}
            _ = shared.shutdown.wait() => break,
        }
        // Once per cluster: the instance holding the job's lease prunes.
        match shared.cluster.hold("job:retention").await {
            Ok(Some(_)) => {}
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "retention skipped: its lease could not be read");
                continue;
            }
        }
        let cutoff = Utc::now().timestamp_millis() - retention.as_millis() as i64;
        match prune(&shared, cutoff, 100, Duration::from_millis(20)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "retention pruned message payloads"),
            Err(e) => tracing::warn!(error = %e, "retention pruning failed"),
        }
    }
}

/// Prunes every payload older than `cutoff_ms` ([`Store::prune_gently`]: batches of
/// `batch`, resting at least `pause` and twice each batch's time between them, stopping
/// early on shutdown), then gives the freed space back ([`Store::reclaim_space`]). Returns
/// how many payloads were deleted.
pub async fn prune(
    shared: &Shared,
    cutoff_ms: i64,
    batch: u32,
    pause: Duration,
) -> Result<u64, StoreError> {
    let total = shared
        .store
        .prune_gently(cutoff_ms, batch, pause, || shared.shutdown.is_triggered())
        .await?;
    if total > 0 {
        shared
            .store
            .reclaim_gently(10_000, pause, || shared.shutdown.is_triggered())
            .await?;
    }
    Ok(total)
}
