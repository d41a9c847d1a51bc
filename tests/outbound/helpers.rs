//! The test harness: a simulator, a unique broker topology, a store and an [`App`] wired to
//! them, plus readers for the PAS queue and the simulator's statistics.

use std::collections::HashMap;
use std::sync::Arc;

use ers_bridge::app::{App, Shutdown};
use ers_bridge::config::{self, Config, MapEnv};
use ers_bridge::hl7::{self, Message};
use ers_bridge::simulator::{self, RunningSimulator, SimAuth, SimConfig};
use lapin::options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Every service the generated referrals belong to.
pub const SERVICES: [&str; 4] = ["21012", "21013", "21014", "21015"];

/// Which store a harness uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// Options of [`Harness::start`].
pub struct Opts {
    pub generate: usize,
    pub seed: bool,
    pub store: StoreKind,
    /// The bridge's e-RS rate limit.
    pub client_rate: u32,
    /// The simulator's per-client limit (429 above it).
    pub sim_rate: u32,
    /// Authenticate app-restricted (JWT client credentials) with the daily A008 budget;
    /// otherwise `none`.
    pub app_restricted: bool,
    /// The broker the bridge publishes to (the tests still read the local one).
    pub amqp_url: &'static str,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            generate: 0,
            seed: false,
            store: StoreKind::Sqlite,
            client_rate: 500,
            sim_rate: 1000,
            app_restricted: false,
            amqp_url: AMQP_URL,
        }
    }
}

/// One test's world.
pub struct Harness {
    pub sim: RunningSimulator,
    pub prefix: String,
    pub config_text: String,
    pub config_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    pg_db: Option<String>,
    channel: lapin::Channel,
    _conn: lapin::Connection,
}

impl Harness {
    pub async fn start(opts: Opts) -> Self {
        let sim = simulator::spawn(SimConfig {
            seed_dir: opts
                .seed
                .then(|| concat!(env!("CARGO_MANIFEST_DIR"), "/samples/fhir").into()),
            generate: opts.generate,
            auth: SimAuth {
                require_auth: opts.app_restricted,
                public_key_pem: Some(include_str!("../fixtures/jwt/public.pem").to_string()),
                ..SimAuth::default()
            },
            rate_limit_per_sec: opts.sim_rate,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
        let dir = tempfile::tempdir().unwrap();
        let (store_url, pg_db) = match opts.store {
            StoreKind::Sqlite => (
                format!("sqlite://{}", dir.path().join("store.db").display()),
                None,
            ),
            StoreKind::Postgres => {
                let (name, url) = pg_database().await;
                (url, Some(name))
            }
        };
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let auth = if opts.app_restricted {
            format!(
                "mode = \"app-restricted\"\napi_key = \"sim-api-key\"\nkid = \"sim-kid\"\n\
                 private_key_file = {}\ntoken_url = {}\n",
                q(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/jwt/private.pem"
                )),
                q(&sim.token_url()),
            )
        } else {
            "mode = \"none\"\n".to_string()
        };
        // App-restricted mode allows two worklist calls per service per day: poll both
        // lists once a day.
        let interval = if opts.app_restricted { 86_400 } else { 60 };
        let mut text = format!(
            "[ers]\nbase_url = {}\nrate_limit_per_sec = {}\n\
             [ers.retry]\nbase_delay_ms = 10\nmax_delay_ms = 100\nmax_retry_after_secs = 5\nbudget = 10000\n\
             [ers.auth]\n{}\
             [amqp]\nurl = {}\ntenant = \"test\"\nexchange = {}\npas_queue = {}\npas_ack_queue = {}\ninbound_queue = {}\n\
             dead_letter_exchange = {}\ndead_letter_queue = {}\n\
             [store]\nurl = {}\n[mappings]\ndir = {}\n\
             [monitor]\nlisten = \"127.0.0.1:0\"\n[pipeline]\nconcurrency = 8\npublish_retry_base_delay_ms = 20\npublish_retry_max_delay_ms = 200\n",
            q(&sim.fhir_base()),
            opts.client_rate,
            auth,
            q(opts.amqp_url),
            q(&format!("{prefix}-x")),
            q(&format!("{prefix}-pas")),
            q(&format!("{prefix}-acks")),
            q(&format!("{prefix}-in")),
            q(&format!("{prefix}-dlx")),
            q(&format!("{prefix}-dlq")),
            q(&store_url),
            q(concat!(env!("CARGO_MANIFEST_DIR"), "/mappings")),
        );
        for s in SERVICES.iter().chain(["11016", "11010"].iter()) {
            text.push_str(&format!(
                "[[poll]]\nservice = \"{s}\"\nlists = [\"referrals-for-review\", \"appointment-slot-issues\"]\ninterval_secs = {interval}\n"
            ));
        }
        let config_path = dir.path().join("ers-bridge.toml");
        std::fs::write(&config_path, &text).unwrap();
        let conn = lapin::Connection::connect(AMQP_URL, Default::default())
            .await
            .expect("rabbitmq must run on 127.0.0.1:5672 (start it with `rabbitmq-server -detached` or `docker compose up -d rabbitmq`)");
        let channel = conn.create_channel().await.unwrap();
        Self {
            sim,
            prefix,

            config_text: text,
            config_path,
            _dir: dir,
            pg_db,
            channel,
            _conn: conn,
        }
    }

    pub fn config(&self) -> Config {
        config::load_str("<test>", &self.config_text, &MapEnv::default()).expect("test config")
    }

    /// A bridge on this harness's store (a new one each call, like a process restart).
    pub async fn app(&self, shutdown: Shutdown) -> App {
        App::build_with_env(&self.config(), Arc::new(MapEnv::default()), shutdown)
            .await
            .expect("app builds")
    }

    /// A bridge whose configuration text differs by replacing `from` with `to`.
    pub async fn app_with(&self, from: &str, to: &str, shutdown: Shutdown) -> App {
        let text = self.config_text.replace(from, to);
        let cfg = config::load_str("<test>", &text, &MapEnv::default()).expect("test config");
        App::build_with_env(&cfg, Arc::new(MapEnv::default()), shutdown)
            .await
            .expect("app builds")
    }

    pub fn pas_queue(&self) -> String {
        format!("{}-pas", self.prefix)
    }

    /// Takes every message now on the PAS queue (acking them).
    pub async fn take_messages(&self) -> Vec<Delivered> {
        let mut out = Vec::new();
        loop {
            let got = self
                .channel
                .basic_get(
                    self.pas_queue().as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .expect("basic_get");
            let Some(m) = got else { break };
            let p = &m.delivery.properties;
            let s = |v: &Option<lapin::types::ShortString>| {
                v.as_ref().map(|x| x.to_string()).unwrap_or_default()
            };
            let body = m.delivery.data.clone();
            out.push(Delivered {
                message_id: s(p.message_id()),
                correlation_id: s(p.correlation_id()),
                kind: s(p.kind()),
                routing_key: m.delivery.routing_key.to_string(),
                persistent: *p.delivery_mode() == Some(2),
                headers: p
                    .headers()
                    .as_ref()
                    .map(|t| {
                        t.inner()
                            .iter()
                            .filter_map(|(k, v)| match v {
                                lapin::types::AMQPValue::LongString(s) => Some((
                                    k.to_string(),
                                    String::from_utf8_lossy(s.as_bytes()).into_owned(),
                                )),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                body: String::from_utf8_lossy(&body).into_owned(),
                message: hl7::read(&body).expect("every message parses"),
            });
        }
        out
    }

    pub async fn admin(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let r = reqwest::Client::new()
            .post(format!("{}/_admin/{path}", self.sim.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "admin {path}: {}", r.status());
        r.json().await.unwrap_or_default()
    }

    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(format!("{}/_admin/stats", self.sim.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The simulator's referral JSON (A005 over HTTP).
    pub async fn referral(&self, ubrn: &str) -> serde_json::Value {
        reqwest::get(format!(
            "{}/STU3/ReferralRequest/{ubrn}",
            self.sim.fhir_base()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
    }

    /// Deletes the test's queues and exchanges and its PostgreSQL database.
    pub async fn cleanup(self) {
        for q in ["pas", "acks", "in", "dlq"] {
            let _ = self
                .channel
                .queue_delete(
                    format!("{}-{q}", self.prefix).as_str().into(),
                    QueueDeleteOptions::default(),
                )
                .await;
        }
        for x in ["x", "dlx"] {
            let _ = self
                .channel
                .exchange_delete(
                    format!("{}-{x}", self.prefix).as_str().into(),
                    ExchangeDeleteOptions::default(),
                )
                .await;
        }
        if let Some(db) = &self.pg_db {
            drop_pg_database(db).await;
        }
    }
}

/// One message taken from the PAS queue.
pub struct Delivered {
    pub message_id: String,
    pub correlation_id: String,
    pub kind: String,
    pub routing_key: String,
    pub persistent: bool,
    /// Text headers, e.g. `x-ers-version`, `x-ers-replay-of`.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub message: Message,
}

impl Delivered {
    /// A text header by name.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// RF1-6.1, the UBRN.
    pub fn ubrn(&self) -> String {
        self.message
            .segment("RF1")
            .expect("RF1")
            .comp(6, 1)
            .to_string()
    }

    /// PID-3.1, the NHS number.
    pub fn nhs_number(&self) -> String {
        self.message
            .segment("PID")
            .expect("PID")
            .comp(3, 1)
            .to_string()
    }
}

/// Counts messages by AMQP `type`.
/// Waits for `n` events that `pick` accepts (it may also assert on them), failing after 60 s
/// or if the pipeline's event channel closes, instead of hanging.
pub async fn wait_for_events(
    events: &mut tokio::sync::broadcast::Receiver<ers_bridge::events::Event>,
    n: usize,
    mut pick: impl FnMut(&ers_bridge::events::Event) -> bool,
) {
    use tokio::sync::broadcast::error::RecvError;
    let wait = async {
        let mut seen = 0;
        while seen < n {
            match events.recv().await {
                Ok(e) => seen += usize::from(pick(&e)),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("event channel closed after {seen} of {n}"),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {n} events"));
}

pub fn by_type(ms: &[Delivered]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for d in ms {
        *m.entry(d.kind.clone()).or_default() += 1;
    }
    m
}

#[path = "../common/postgres.rs"]
pub mod postgres;
pub use postgres::{drop_pg_database, pg_database};
