//! A whole bridge for the benchmark examples, in one process: the e-RS simulator with
//! generated referrals on its worklists, and the bridge's `run` (worklist pollers, outbound
//! and inbound pipelines, monitor) on its own uniquely named queues and exchanges, removed
//! again by [`Bench::finish`].

use std::sync::Arc;
use std::time::Duration;

use ers_bridge::app::{App, Shared, Shutdown};
use ers_bridge::config::{self, MapEnv};
use ers_bridge::simulator::{self, RunningSimulator, SimAuth, SimConfig};

const SERVICES: [&str; 7] = [
    "21012", "21013", "21014", "21015", "11016", "11010", "11014",
];

/// What to run.
pub struct Setup<'a> {
    /// Referrals the simulator generates onto its worklists.
    pub backlog: usize,
    /// The bridge's e-RS calls per second.
    pub rate: u32,
    pub amqp: &'a str,
    /// `sqlite://…` or `postgres://…`.
    pub store_url: &'a str,
}

/// A running simulator and bridge.
pub struct Bench {
    /// The simulator (its call log), for the examples that read it.
    #[allow(dead_code)]
    pub sim: RunningSimulator,
    /// The names' common prefix: `{prefix}-in` is the inbound queue.
    pub prefix: String,
    pub shared: Arc<Shared>,
    shutdown: Shutdown,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
    amqp: String,
}

impl Bench {
    pub async fn start(s: Setup<'_>) -> anyhow::Result<Self> {
        let sim = simulator::spawn(SimConfig {
            generate: s.backlog,
            auth: SimAuth {
                require_auth: false,
                ..SimAuth::default()
            },
            rate_limit_per_sec: 10_000,
            ..SimConfig::default()
        })
        .await?;
        let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut text = format!(
            "[ers]\nbase_url = {}\nrate_limit_per_sec = {}\n[ers.auth]\nmode = \"none\"\n\
             [amqp]\nurl = {}\ntenant = \"bench\"\nexchange = {}\npas_queue = {}\npas_ack_queue = {}\n\
             inbound_queue = {}\ndead_letter_exchange = {}\ndead_letter_queue = {}\n\
             [store]\nurl = {}\n[mappings]\ndir = {}\n[monitor]\nlisten = \"127.0.0.1:0\"\n[pipeline]\nconcurrency = 16\n",
            q(&sim.fhir_base()),
            s.rate,
            q(s.amqp),
            q(&format!("{prefix}-x")),
            q(&format!("{prefix}-pas")),
            q(&format!("{prefix}-acks")),
            q(&format!("{prefix}-in")),
            q(&format!("{prefix}-dlx")),
            q(&format!("{prefix}-dlq")),
            q(s.store_url),
            q(concat!(env!("CARGO_MANIFEST_DIR"), "/mappings")),
        );
        for svc in SERVICES {
            text.push_str(&format!(
                "[[poll]]\nservice = \"{svc}\"\nlists = [\"referrals-for-review\", \"appointment-slot-issues\"]\ninterval_secs = 3600\n"
            ));
        }
        let cfg = config::load_str("<bench>", &text, &MapEnv::default())?;
        let shutdown = Shutdown::new();
        let app = App::build_with_env(&cfg, Arc::new(MapEnv::default()), shutdown.clone()).await?;
        let shared = app.shared().clone();
        let running = tokio::spawn(async move { Ok(app.run_until_stopped().await?) });
        Ok(Self {
            sim,
            prefix,
            shared,
            shutdown,
            running,
            amqp: s.amqp.to_string(),
        })
    }

    /// Stops the bridge (without waiting for its backlog) and deletes the queues and
    /// exchanges it declared.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.running).await;
        let conn = lapin::Connection::connect(&self.amqp, Default::default()).await?;
        let ch = conn.create_channel().await?;
        for s in ["pas", "acks", "in", "dlq"] {
            let name = format!("{}-{s}", self.prefix);
            let _ = ch
                .queue_delete(name.as_str().into(), Default::default())
                .await;
        }
        for s in ["x", "dlx"] {
            let name = format!("{}-{s}", self.prefix);
            let _ = ch
                .exchange_delete(name.as_str().into(), Default::default())
                .await;
        }
        Ok(())
    }
}

/// The value at quantile `p` of an ascending slice (nearest rank).
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}
