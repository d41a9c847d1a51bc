//! The configuration's serde structs (strict: unknown keys are errors, defaults for the
//! rest); the rules that span several keys are in `validate.rs`. Units are in key names
//! (`interval_secs`, `request_timeout_ms`).

use std::{net::SocketAddr, path::PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Top level of `ers-bridge.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// How to reach e-RS and authenticate.
    pub ers: ErsConfig,
    /// The RabbitMQ side.
    #[serde(default, deserialize_with = "AmqpConfig::deserialize_checked")]
    pub amqp: AmqpConfig,
    /// The durable store (audit trail, versions seen, budgets).
    #[serde(default)]
    pub store: StoreConfig,
    /// The health, metrics and dashboard server.
    #[serde(default)]
    pub monitor: MonitorConfig,
    /// Where the mapping files live.
    #[serde(default)]
    pub mappings: MappingsConfig,
    /// One entry per e-RS service whose worklists are polled.
    #[serde(default)]
    pub poll: Vec<PollConfig>,
    /// How the outbound pipeline fetches, maps and publishes (docs/pipeline.md).
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The inbound pipeline: PAS decisions into e-RS (docs/inbound.md).
    #[serde(default)]
    pub inbound: InboundConfig,
    /// Alert conditions and where alerts are sent (docs/monitoring.md).
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// How the bridge's messages reach the PAS (docs/mllp.md).
    #[serde(default)]
    pub transport: TransportConfig,
    /// This bridge among several on one store (docs/ha.md).
    #[serde(default)]
    pub cluster: super::cluster::ClusterConfig,
}

/// `[transport]`: the way to the PAS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// `amqp` (the default: the outbound exchange of `[amqp]`) or `mllp`
    /// (`[transport.mllp] address`).
    pub to_pas: String,
    pub mllp: MllpSenderConfig,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            to_pas: "amqp".into(),
            mllp: MllpSenderConfig::default(),
        }
    }
}

/// `[transport.mllp]`: the PAS's MLLP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MllpSenderConfig {
    /// `host:port`.
    pub address: String,
    pub connect_timeout_ms: u64,
    /// How long the PAS has to acknowledge one message before it is sent again.
    pub ack_timeout_ms: u64,
    /// TLS to the PAS's listener.
    pub tls: bool,
    /// PEM: the CA that signed the PAS's certificate (default: the system's roots).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM: the bridge's certificate and key, when the PAS asks for one.
    pub tls_client_cert_file: Option<PathBuf>,
    pub tls_client_key_file: Option<PathBuf>,
    /// The name the PAS's certificate must carry (default: the host of `address`).
    pub tls_server_name: Option<String>,
    /// What an AE/AR from the PAS does to a referral version: `park` it with the PAS's
    /// reason (the default; a replay sends it again) or `retry` it with backoff.
    pub on_refusal: String,
}

impl Default for MllpSenderConfig {
    fn default() -> Self {
        Self {
            address: String::new(),
            connect_timeout_ms: 10_000,
            ack_timeout_ms: 30_000,
            tls: false,
            tls_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
            tls_server_name: None,
            on_refusal: "park".into(),
        }
    }
}

/// `[alerts]`: the thresholds of the edge-triggered alerts and the optional webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// POSTed a JSON body when an alert opens and when it resolves (with retries).
    pub webhook_url: Option<String>,
    /// How often the conditions are checked.
    pub evaluate_secs: u64,
    /// No successful worklist poll for this long.
    pub no_poll_minutes: u64,
    /// A needs-action record older than this.
    pub needs_action_hours: u64,
    /// A referral published with no PAS decision for this long.
    pub no_decision_hours: u64,
    /// Messages waiting on the PAS queue with no consumer for this long.
    pub pas_queue_unread_minutes: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            evaluate_secs: 30,
            no_poll_minutes: 15,
            needs_action_hours: 4,
            no_decision_hours: 48,
            pas_queue_unread_minutes: 15,
        }
    }
}

/// `[inbound]`: the PAS → e-RS direction.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundConfig {
    /// Consume `[amqp] inbound_queue` in `ers-bridge run`.
    pub enabled: bool,
    /// Tries of an e-RS call that keeps failing transiently before the decision becomes a
    /// needs-action record.
    pub max_attempts: u32,
    /// First wait before such a retry; doubles up to `retry_max_delay_ms`.
    pub retry_base_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    /// Also take PAS messages over MLLP on this address (`host:port`), beside the queue;
    /// each is answered on its connection (docs/mllp.md). Off when absent.
    pub mllp_listen: Option<String>,
    /// MLLP connections served at once; more wait to be accepted.
    pub mllp_max_connections: usize,
    /// An MLLP connection with nothing received for this long is closed.
    pub mllp_idle_timeout_secs: u64,
    /// The longest an MLLP sender waits for its answer: past it, a recorded message gets a
    /// commit accept (CA) and its application ACK follows through the link.
    pub mllp_reply_within_ms: u64,
    /// PEM certificate and key: the listener speaks TLS.
    pub mllp_tls_cert_file: Option<PathBuf>,
    pub mllp_tls_key_file: Option<PathBuf>,
    /// PEM: PAS clients must present a certificate signed by this CA.
    pub mllp_tls_client_ca_file: Option<PathBuf>,
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 10,
            retry_base_delay_ms: 2_000,
            retry_max_delay_ms: 300_000,
            mllp_listen: None,
            mllp_max_connections: 16,
            mllp_idle_timeout_secs: 300,
            mllp_reply_within_ms: 10_000,
            mllp_tls_cert_file: None,
            mllp_tls_key_file: None,
            mllp_tls_client_ca_file: None,
        }
    }
}

/// `[pipeline]`: the outbound main job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Referral tasks at the same time across every list and scheduler (all share the e-RS
    /// rate limit).
    pub concurrency: usize,
    /// Fetch the clinical referral information PDF (A007) for each referral version and hand
    /// it to the mapping as the attachment `clinical-info`.
    pub fetch_clinical_info: bool,
    /// Fetch the A007 PDF only when the message would carry no letter at all (none
    /// attached, or none available in e-RS): the clerk gets the clinical summary instead.
    pub clinical_info_when_no_letter: bool,
    /// Fetch the AVAILABLE attachments of related referrals (`supportingInfo`) too.
    pub fetch_related_attachments: bool,
    /// A referral whose attachment stays PENDING this long is published without it (the
    /// mapping then sends it by reference); until then the referral waits for the next poll.
    pub pending_attachment_max_wait_secs: u64,
    /// First delay between publish attempts while the broker is unavailable; doubles up to
    /// `publish_retry_max_delay_ms`. Publishing is retried until it succeeds or shutdown.
    pub publish_retry_base_delay_ms: u64,
    pub publish_retry_max_delay_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            fetch_clinical_info: false,
            clinical_info_when_no_letter: true,
            fetch_related_attachments: false,
            pending_attachment_max_wait_secs: 3_600,
            publish_retry_base_delay_ms: 200,
            publish_retry_max_delay_ms: 30_000,
        }
    }
}

/// `[ers]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErsConfig {
    /// e.g. `https://api.service.nhs.uk/referrals/FHIR`, or the simulator's
    /// `http://127.0.0.1:PORT/referrals/FHIR`; legacy mode: `https://…/ers-api`.
    pub base_url: String,
    /// Client-side limit shared by every call (the production limit is 10/s).
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_sec: u32,
    /// How much calls may bunch on their way to e-RS (a busy host, the network): permits
    /// are spread over a second plus this, so bunched calls still arrive within the limit.
    /// Costs its share of a second of throughput (100 ms: 9%); docs/ers-client.md.
    #[serde(default = "default_rate_allowance_ms")]
    pub rate_allowance_ms: u64,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Worklist responses above this size are refused (the API platform fails above 10 MB).
    #[serde(default = "default_max_worklist_bytes")]
    pub max_worklist_bytes: u64,
    /// Attachments are streamed and refused above this size.
    #[serde(default = "default_max_attachment_bytes")]
    pub max_attachment_bytes: u64,
    /// App-restricted A008 budget per service per UTC day (the platform allows 2).
    #[serde(default = "default_worklist_budget")]
    pub worklist_calls_per_service_per_day: u32,
    /// Backoff and retry limits for failed calls.
    #[serde(default)]
    pub retry: RetryConfig,
    pub auth: AuthConfig,
}

/// `[ers.retry]`: when failed e-RS calls are retried (see `docs/ers-client.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff delay; later ones double up to `max_delay_ms`, with jitter.
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// A `Retry-After` longer than this fails the call instead of waiting.
    pub max_retry_after_secs: u64,
    /// Retries the whole process may spend before successes earn more (one per ten).
    pub budget: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay_ms: 1_000,
            max_delay_ms: 30_000,
            max_retry_after_secs: 300,
            budget: 100,
        }
    }
}

/// `[ers.auth]`, selected by `mode`.
#[derive(Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AuthConfig {
    /// OAuth2 client credentials with an RS512 signed JWT client assertion.
    AppRestricted {
        /// Defaults to `<scheme>://<host>/oauth2/token` of `base_url`.
        token_url: Option<String>,
        /// The application's API key (JWT `iss` and `sub`).
        api_key: SecretString,
        /// PEM RSA private key whose public half is registered under `kid`.
        private_key_file: PathBuf,
        kid: String,
        /// Refresh the access token this long before it expires.
        #[serde(default = "default_refresh_margin_secs")]
        refresh_margin_secs: u64,
    },
    /// A CIS2-derived bearer token supplied by file or environment variable.
    UserRestricted {
        token_file: Option<PathBuf>,
        token_env: Option<String>,
        business_function: BusinessFunction,
        ods_code: String,
        /// SDS user id of the clinician an SPCA acts for; only with
        /// `SERVICE_PROVIDER_CLINICIAN_ADMIN`, and required then.
        on_behalf_of_user_id: Option<String>,
    },
    /// The deprecated HSCN professional-session API (A001/A002/A003).
    LegacySession {
        asid: String,
        session_token_file: Option<PathBuf>,
        session_token_env: Option<String>,
        business_function: BusinessFunction,
        ods_code: String,
        client_cert_file: Option<PathBuf>,
        client_key_file: Option<PathBuf>,
    },
    /// No authentication: only for the simulator.
    None,
}

impl AuthConfig {
    /// The mode's name as written in the file.
    pub fn mode_name(&self) -> &'static str {
        match self {
            AuthConfig::AppRestricted { .. } => "app-restricted",
            AuthConfig::UserRestricted { .. } => "user-restricted",
            AuthConfig::LegacySession { .. } => "legacy-session",
            AuthConfig::None => "none",
        }
    }
}

/// e-RS business functions a provider-side bridge may act in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BusinessFunction {
    ServiceProviderClinician,
    ServiceProviderClinicianAdmin,
    ServiceProviderAdmin,
}

impl BusinessFunction {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            BusinessFunction::ServiceProviderClinician => "SERVICE_PROVIDER_CLINICIAN",
            BusinessFunction::ServiceProviderClinicianAdmin => "SERVICE_PROVIDER_CLINICIAN_ADMIN",
            BusinessFunction::ServiceProviderAdmin => "SERVICE_PROVIDER_ADMIN",
        }
    }
}

/// `[amqp]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// May carry a password, so it is a secret. One node; `urls` lists a cluster's nodes.
    pub url: SecretString,
    /// The nodes of one RabbitMQ cluster (a secret each, like `url`): the publisher and the
    /// consumer connect to one, starting after the last that failed. Empty: `url` alone.
    /// Setting both this and a non-default `url` is an error; use [`Self::node_urls`].
    pub urls: Vec<SecretString>,
    pub declare_topology: bool,
    /// First part of every routing key: `<tenant>.<MSH-9.1>.<MSH-9.2>`.
    pub tenant: String,
    pub exchange: String,
    pub pas_queue: String,
    /// Where the bridge's ACKs to the PAS's messages go (bound `<tenant>.ACK.#`).
    pub pas_ack_queue: String,
    pub inbound_queue: String,
    /// Declare `inbound_queue` with `x-single-active-consumer` (when `declare_topology`):
    /// one bridge of several consumes at a time, for a PAS feed that needs strict arrival
    /// order (docs/amqp.md). Off by default: bridges compete for the queue, and per-referral
    /// order is kept by the store's per-UBRN lease.
    pub single_active_consumer: bool,
    /// Declare `inbound_queue` to dead-letter at least once (`x-dead-letter-strategy =
    /// at-least-once`, `x-overflow = reject-publish`), so a poison message is never lost on
    /// its way to the dead-letter queue. On by default; off only to keep using a queue
    /// declared before (the broker refuses to redeclare it with other arguments).
    pub dead_letter_at_least_once: bool,
    /// Deliveries of one inbound message before the broker dead-letters it
    /// (`x-delivery-limit`): the backstop for a message that crashes the bridge each time.
    /// Each crash or kill of the bridge counts against every message it had in flight, so
    /// a low limit dead-letters good decisions during a crash loop (the chaos run did at 5).
    pub inbound_delivery_limit: u32,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    pub prefetch: u16,
    /// MiB of inbound message bodies handled at once (a message larger than this is
    /// handled alone): with `prefetch`, what bounds the inbound side's memory when the PAS
    /// sends large messages (issue 21). Deliveries the broker sent ahead still count
    /// against `prefetch` only.
    pub inbound_bytes_in_flight_mib: u32,
    pub publish_timeout_ms: u64,
    /// PEM CA certificates that verify an `amqps://` broker, beside the system's roots (a
    /// trust's own CA).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate chain for a broker that asks for one (with its key).
    pub tls_client_cert_file: Option<PathBuf>,
    /// PEM (PKCS#8) key of `tls_client_cert_file`.
    pub tls_client_key_file: Option<PathBuf>,
}

/// `[amqp] url` when the file and the environment leave it out.
const DEFAULT_AMQP_URL: &str = "amqp://127.0.0.1:5672/%2f";

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from(DEFAULT_AMQP_URL),
            urls: Vec::new(),
            declare_topology: true,
            tenant: "default".into(),
            exchange: "ers.to-pas".into(),
            pas_queue: "pas.referrals".into(),
            pas_ack_queue: "pas.acks".into(),
            inbound_queue: "ers.from-pas".into(),
            single_active_consumer: false,
            dead_letter_at_least_once: true,
            inbound_delivery_limit: 20,
            dead_letter_exchange: "ers.dead-letter".into(),
            dead_letter_queue: "ers.dead-letter".into(),
            prefetch: 16,
            inbound_bytes_in_flight_mib: 32,
            publish_timeout_ms: 10_000,
            tls_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
        }
    }
}

impl AmqpConfig {
    /// The broker nodes to connect to, in the configured order: `urls` when it is not
    /// empty, else `[url]`. Never empty.
    pub fn node_urls(&self) -> Vec<SecretString> {
        if self.urls.is_empty() {
            vec![self.url.clone()]
        } else {
            self.urls.clone()
        }
    }

    /// The rules between `url` and `urls`: not both (a `url` equal to the default counts as
    /// unset), and no empty entry in `urls`. The error is the reason.
    pub fn check_nodes(&self) -> Result<(), String> {
        if self.urls.is_empty() {
            return Ok(());
        }
        if self.url.expose_secret() != DEFAULT_AMQP_URL {
            return Err(
                "`url` and `urls` are both set: list every node of the cluster in \
                        `urls` and remove `url`"
                    .into(),
            );
        }
        if let Some(i) = self
            .urls
            .iter()
            .position(|u| u.expose_secret().trim().is_empty())
        {
            return Err(format!("`urls` entry {i} is empty"));
        }
        Ok(())
    }

    /// Deserializes `[amqp]` and applies [`Self::check_nodes`], so the rule holds for every
    /// loaded configuration (the error names the key `amqp`).
    fn deserialize_checked<'de, D>(deserializer: D) -> Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        let cfg = Self::deserialize(deserializer)?;
        cfg.check_nodes().map_err(serde::de::Error::custom)?;
        Ok(cfg)
    }
}

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://FILE` or `postgres://…` (may carry a password).
    pub url: SecretString,
    /// Message payloads older than this are pruned; metadata stays.
    pub retention_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://ers-bridge.db"),
            retention_days: 90,
        }
    }
}

/// `[monitor]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Serve health, metrics, the API and the dashboard in `ers-bridge run`.
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Bearer tokens for `/api/…` and the dashboard: each a name (recorded with every
    /// replay and re-drive) and the environment variable holding the secret.
    pub tokens: Vec<ApiTokenConfig>,
}

/// `[[monitor.tokens]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    pub name: String,
    pub token_env: String,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            tokens: Vec::new(),
        }
    }
}

/// `[mappings]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingsConfig {
    /// Folder with the mapping files and code tables, relative to the working directory.
    pub dir: PathBuf,
    /// The mapping for a new referral (REF^I12), relative to `dir`.
    pub new_referral: String,
    /// The mapping for a changed referral (REF^I13), relative to `dir`.
    pub changed_referral: String,
    /// The mapping for a cancelled referral (REF^I14), relative to `dir`.
    pub cancelled_referral: String,
    /// The mapping sent before a new referral when the PAS needs the patient first
    /// (e.g. `adt_a28.v251.toml`); empty = none.
    pub patient: String,
    /// The inbound decision table, relative to `dir`.
    pub inbound: String,
    /// MSH-3, read by the mapping files as `%sending_application`.
    pub sending_application: String,
    /// MSH-4, the trust's ODS code (`%sending_facility`).
    pub sending_facility: String,
    /// MSH-5 (`%receiving_application`).
    pub receiving_application: String,
    /// MSH-6 (`%receiving_facility`).
    pub receiving_facility: String,
}

impl Default for MappingsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("mappings"),
            new_referral: "ref_i12.v251.toml".into(),
            changed_referral: "ref_i13.v251.toml".into(),
            cancelled_referral: "ref_i14.v251.toml".into(),
            patient: String::new(),
            inbound: "inbound.toml".into(),
            sending_application: crate::mapping::Header::default().sending_application,
            sending_facility: crate::mapping::Header::default().sending_facility,
            receiving_application: crate::mapping::Header::default().receiving_application,
            receiving_facility: crate::mapping::Header::default().receiving_facility,
        }
    }
}

/// `[[poll]]`: one e-RS service and the worklists polled for it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// e-RS service id (digits).
    pub service: String,
    pub lists: Vec<WorklistKind>,
    pub interval_secs: u64,
    /// Optional A008 filters.
    pub specialty: Option<String>,
    pub clinician: Option<String>,
}

/// The provider worklists a bridge polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorklistKind {
    ReferralsForReview,
    AppointmentSlotIssues,
}

impl WorklistKind {
    /// The `eRS-ReferralListSelector-1` code.
    pub fn code(self) -> &'static str {
        match self {
            WorklistKind::ReferralsForReview => "REFERRALS_FOR_REVIEW",
            WorklistKind::AppointmentSlotIssues => "APPOINTMENT_SLOT_ISSUES",
        }
    }
}

fn default_rate_limit() -> u32 {
    10
}
fn default_rate_allowance_ms() -> u64 {
    crate::ers::ratelimit::DEFAULT_ARRIVAL_ALLOWANCE.as_millis() as u64
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_max_worklist_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_max_attachment_bytes() -> u64 {
    50 * 1024 * 1024
}
fn default_worklist_budget() -> u32 {
    2
}
fn default_refresh_margin_secs() -> u64 {
    60
}
