//! The metric families the events update, registered once under their Prometheus names
//! (`ers_bridge_…`, counters ending `_total` when encoded, durations in `_seconds`).

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// An HTTP status as a metric label: `2xx` … `5xx`, or `error` when no response came
/// (connection failure, timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    Success,
    Redirect,
    ClientError,
    ServerError,
    NoResponse,
}

impl StatusClass {
    /// Every class, in the order of [`Metrics::ers_calls_by_class`].
    pub const ALL: [StatusClass; 5] = [
        Self::Success,
        Self::Redirect,
        Self::ClientError,
        Self::ServerError,
        Self::NoResponse,
    ];

    pub fn of(status: Option<u16>) -> Self {
        match status {
            Some(200..=299) => Self::Success,
            Some(300..=399) => Self::Redirect,
            Some(400..=499) => Self::ClientError,
            Some(500..=599) => Self::ServerError,
            _ => Self::NoResponse,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "2xx",
            Self::Redirect => "3xx",
            Self::ClientError => "4xx",
            Self::ServerError => "5xx",
            Self::NoResponse => "error",
        }
    }
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

pub use super::labels::*;

/// Code-table misses waiting for the store: (table, code) → (count, first ms, last ms).
pub type PendingMisses = std::collections::HashMap<(String, String), (i64, i64, i64)>;

fn latency_histogram() -> Histogram {
    // 5 ms … ~20 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// Every metric the bridge exports. Fields are public for the events (and tests) to read;
/// only `events/` writes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub messages_published: Family<MessageTypeLabels, Counter>,
    pub referrals_parked: Counter,
    pub publish_retries: Counter,
    pub ers_calls: Family<ErsCallLabels, Counter>,
    pub ers_call_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    pub ers_rate_limited: Counter,
    pub worklist_polls: Family<WorklistLabels, Counter>,
    pub lookup_misses: Family<TableLabels, Counter>,
    pub broker_connects: Counter,
    pub broker_connect_failures: Counter,
    pub messages_confirmed: Counter,
    pub confirm_duration: Histogram,
    pub version_publish_duration: Histogram,
    pub publish_attempts_failed: Counter,
    pub inbound_messages: Family<InboundLabels, Counter>,
    pub inbound_duration: Histogram,
    pub replies_sent: Family<ReplyLabels, Counter>,
    pub dead_lettered: Counter,
    /// 1 while e-RS answers 401/403 to the bridge's credentials, 0 after a success.
    pub ers_auth_failing: Gauge,
    /// 1 while the broker refuses the bridge's login or virtual host, 0 after a connect.
    pub broker_refused: Gauge,
    /// Set from the store by each alert evaluation ([`super::FactsRead`]).
    pub needs_action_open: Gauge,
    pub parked_open: Gauge,
    pub oldest_awaiting_decision: Gauge,
    pub alerts_open: Gauge,
    /// Unix time of the last worklist poll that succeeded (0: none yet).
    pub last_successful_poll: Gauge,
    /// Unix time of the last e-RS call answered 2xx (0: none yet).
    pub last_ers_success: Gauge,
    /// Messages ready on each of the bridge's queues, and their consumers, as the broker
    /// said at the last alert evaluation ([`super::QueueDepthsRead`]).
    pub queue_messages: Family<QueueLabels, Gauge>,
    pub queue_consumers: Family<QueueLabels, Gauge>,
    /// 1 while this process's probe finds a built-in alert's condition true, else 0.
    pub alert_condition: Family<ConditionLabels, Gauge>,
    /// App-restricted worklist calls left today, by service.
    pub worklist_budget_left: Family<ServiceLabels, Gauge>,
    pub alerts_opened: Counter,
    /// Alert webhook POSTs by result (a failed one is retried a few times).
    pub alert_webhook_posts: Family<WebhookLabels, Counter>,
    /// Evaluations of the alert conditions (a stalled count means the loop stopped).
    pub alert_evaluations: Counter,
    /// 1, labelled with this process's instance id (`[cluster] instance_id`).
    pub instance_info: Family<InstanceLabels, Gauge>,
    /// Bridges with a live heartbeat on this store, this one included.
    pub cluster_instances: Gauge,
    /// This instance's share of the app's e-RS calls per second.
    pub ers_rate_share: Gauge,
    /// Leases this process holds, by kind.
    pub leases_held: Family<LeaseKindLabels, Gauge>,
    pub leases_lost: Counter,
    /// Not metrics: e-RS calls per status class (in [`StatusClass::ALL`]'s order) over every
    /// operation, for the API's summary.
    pub ers_calls_by_class: [Counter; 5],
    /// Not metrics: the outage trackers the events throttle their logs with.
    pub broker_outage: super::Outage,
    pub ers_outage: super::Outage,
    /// PAS messages that could not be handled (store or broker down) and went back.
    pub inbound_outage: super::Outage,
    /// Not metrics: what the trend recorder (`monitor/trends.rs`) takes per minute into the
    /// store: messages published to the PAS, PAS messages handled, decisions that needed
    /// action.
    pub trend_to_pas: Counter,
    pub trend_from_pas: Counter,
    pub trend_needs_action: Counter,
    /// Not metrics: the (table, code) misses already logged by this process.
    pub lookup_misses_logged: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// Not metrics: misses not yet in the store, by (table, code): (count, first ms, last
    /// ms); the trend recorder moves them there every few seconds, off the pipeline's path.
    pub lookup_misses_pending: std::sync::Mutex<PendingMisses>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            messages_published: Family::default(),
            referrals_parked: Counter::default(),
            publish_retries: Counter::default(),
            ers_calls: Family::default(),
            ers_call_duration: Family::new_with_constructor(latency_histogram),
            ers_rate_limited: Counter::default(),
            worklist_polls: Family::default(),
            lookup_misses: Family::default(),
            broker_connects: Counter::default(),
            broker_connect_failures: Counter::default(),
            messages_confirmed: Counter::default(),
            confirm_duration: latency_histogram(),
            version_publish_duration: latency_histogram(),
            publish_attempts_failed: Counter::default(),
            inbound_messages: Family::default(),
            inbound_duration: latency_histogram(),
            replies_sent: Family::default(),
            dead_lettered: Counter::default(),
            ers_auth_failing: Gauge::default(),
            broker_refused: Gauge::default(),
            needs_action_open: Gauge::default(),
            parked_open: Gauge::default(),
            oldest_awaiting_decision: Gauge::default(),
            alerts_open: Gauge::default(),
            last_successful_poll: Gauge::default(),
            last_ers_success: Gauge::default(),
            queue_messages: Family::default(),
            queue_consumers: Family::default(),
            alert_condition: Family::default(),
            worklist_budget_left: Family::default(),
            alerts_opened: Counter::default(),
            alert_webhook_posts: Family::default(),
            alert_evaluations: Counter::default(),
            instance_info: Family::default(),
            cluster_instances: Gauge::default(),
            ers_rate_share: Gauge::default(),
            leases_held: Family::default(),
            leases_lost: Counter::default(),
            ers_calls_by_class: std::array::from_fn(|_| Counter::default()),
            broker_outage: super::Outage::new("broker"),
            ers_outage: super::Outage::new("e-rs"),
            inbound_outage: super::Outage::new("inbound handling"),
            trend_to_pas: Counter::default(),
            trend_from_pas: Counter::default(),
            trend_needs_action: Counter::default(),
            lookup_misses_logged: Default::default(),
            lookup_misses_pending: Default::default(),
        };
        let r = &mut m.registry;
        r.register(
            "ers_bridge_messages_published",
            "HL7 messages confirmed by the broker and recorded, by message type",
            m.messages_published.clone(),
        );
        r.register(
            "ers_bridge_referrals_parked",
            "Referral versions parked because they could not be read or mapped",
            m.referrals_parked.clone(),
        );
        r.register(
            "ers_bridge_publish_retries",
            "Publishes that got no confirm and are retried",
            m.publish_retries.clone(),
        );
        r.register(
            "ers_bridge_ers_calls",
            "e-RS API calls (each attempt), by operation and status class",
            m.ers_calls.clone(),
        );
        r.register(
            "ers_bridge_ers_call_duration_seconds",
            "e-RS API call latency (each attempt), by operation",
            m.ers_call_duration.clone(),
        );
        r.register(
            "ers_bridge_ers_rate_limited",
            "e-RS API calls answered 429",
            m.ers_rate_limited.clone(),
        );
        r.register(
            "ers_bridge_worklist_polls",
            "Worklist polls (A008) by service, list and result",
            m.worklist_polls.clone(),
        );
        r.register(
            "ers_bridge_mapping_lookup_misses",
            "Code-table look-ups that found no entry, by table",
            m.lookup_misses.clone(),
        );
        r.register(
            "ers_bridge_broker_connects",
            "Broker connections opened",
            m.broker_connects.clone(),
        );
        r.register(
            "ers_bridge_broker_connect_failures",
            "Broker connection attempts that failed",
            m.broker_connect_failures.clone(),
        );
        r.register(
            "ers_bridge_messages_confirmed",
            "Messages the broker confirmed (before they are recorded)",
            m.messages_confirmed.clone(),
        );
        r.register(
            "ers_bridge_publish_confirm_duration_seconds",
            "Time from publish to the broker's confirm",
            m.confirm_duration.clone(),
        );
        r.register(
            "ers_bridge_version_publish_duration_seconds",
            "Time from a referral version's first publish to its messages recorded in the store",
            m.version_publish_duration.clone(),
        );
        r.register(
            "ers_bridge_publish_attempts_failed",
            "Publish attempts that failed (connect, nack, return, timeout)",
            m.publish_attempts_failed.clone(),
        );
        r.register(
            "ers_bridge_inbound_messages",
            "PAS messages handled, by kind (rri, ack, unreadable) and outcome",
            m.inbound_messages.clone(),
        );
        r.register(
            "ers_bridge_inbound_handle_duration_seconds",
            "Time from a PAS message's receipt to its outcome recorded",
            m.inbound_duration.clone(),
        );
        r.register(
            "ers_bridge_replies_sent",
            "HL7 ACKs the bridge sent to the PAS, by MSA-1 code",
            m.replies_sent.clone(),
        );
        r.register(
            "ers_bridge_dead_lettered",
            "PAS messages sent to the dead-letter exchange",
            m.dead_lettered.clone(),
        );
        r.register(
            "ers_bridge_ers_auth_failing",
            "1 while e-RS refuses the bridge's credentials (401/403), else 0",
            m.ers_auth_failing.clone(),
        );
        r.register(
            "ers_bridge_broker_refused",
            "1 while the broker refuses the bridge's login or virtual host (a configuration \
             error, not an outage), else 0",
            m.broker_refused.clone(),
        );
        r.register(
            "ers_bridge_needs_action_open",
            "PAS decisions kept for a person (needs-action records not resolved)",
            m.needs_action_open.clone(),
        );
        r.register(
            "ers_bridge_parked_open",
            "Referral versions parked and not yet replayed",
            m.parked_open.clone(),
        );
        r.register_with_unit(
            "ers_bridge_oldest_awaiting_decision",
            "Age of the oldest referral published with no PAS decision yet",
            prometheus_client::registry::Unit::Seconds,
            m.oldest_awaiting_decision.clone(),
        );
        r.register(
            "ers_bridge_alerts_open",
            "Alerts open now",
            m.alerts_open.clone(),
        );
        r.register(
            "ers_bridge_last_successful_poll_timestamp_seconds",
            "When a worklist poll last succeeded (Unix time; 0: not yet)",
            m.last_successful_poll.clone(),
        );
        r.register(
            "ers_bridge_ers_last_success_timestamp_seconds",
            "When an e-RS call was last answered 2xx (Unix time; 0: not yet)",
            m.last_ers_success.clone(),
        );
        r.register(
            "ers_bridge_queue_messages",
            "Messages ready on each of the bridge's queues, by role and queue, as the broker \
             said at the last alert evaluation",
            m.queue_messages.clone(),
        );
        r.register(
            "ers_bridge_queue_consumers",
            "Consumers of each of the bridge's queues, by role and queue",
            m.queue_consumers.clone(),
        );
        r.register(
            "ers_bridge_alert_condition",
            "1 while this process finds a built-in alert's condition true, by condition \
             (every instance probes; the alert itself is opened by one)",
            m.alert_condition.clone(),
        );
        r.register(
            "ers_bridge_worklist_budget_left",
            "App-restricted worklist (A008) calls left today, by service",
            m.worklist_budget_left.clone(),
        );
        r.register(
            "ers_bridge_alerts_opened",
            "Alerts opened (each opening once, however long the condition lasts)",
            m.alerts_opened.clone(),
        );
        r.register(
            "ers_bridge_alert_webhook_posts",
            "Alert webhook POSTs, by result (delivered or failed; a failed POST is retried)",
            m.alert_webhook_posts.clone(),
        );
        r.register(
            "ers_bridge_alert_evaluations",
            "Evaluations of the alert conditions",
            m.alert_evaluations.clone(),
        );
        r.register(
            "ers_bridge_instance_info",
            "1, labelled with this bridge's instance id",
            m.instance_info.clone(),
        );
        r.register(
            "ers_bridge_cluster_instances",
            "Bridges with a live heartbeat on this store, this one included",
            m.cluster_instances.clone(),
        );
        r.register(
            "ers_bridge_ers_rate_share_per_second",
            "This instance's share of the app's e-RS calls per second",
            m.ers_rate_share.clone(),
        );
        r.register(
            "ers_bridge_leases_held",
            "Leases this bridge holds, by kind (claim, poller, job)",
            m.leases_held.clone(),
        );
        r.register(
            "ers_bridge_leases_lost",
            "Leases found expired while held (the work under them stopped)",
            m.leases_lost.clone(),
        );
        m
    }

    /// The OpenMetrics text exposition of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The Prometheus text format (version 0.0.4) of every family, for scrapers and tools
    /// that do not speak OpenMetrics (`promtool check metrics` before 2.43, older agents).
    /// prometheus-client writes only OpenMetrics; this is its output with what 0.0.4 does
    /// not have taken out (`# EOF`, `# UNIT`, `_created` samples) and each counter's HELP
    /// and TYPE named as its samples are (`…_total`), the one place the formats differ for
    /// the counters, gauges and histograms used here.
    pub fn encode_prometheus_text(&self) -> String {
        to_prometheus_text(&self.encode())
    }
}

/// See [`Metrics::encode_prometheus_text`].
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) && !name.ends_with("_total") {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                if name.ends_with("_created") {
                    continue;
                }
                out.push_str(line);
            }
        }
        out.push('\n');
    }
    out
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 0.0.4 text parses with every counter typed as one (an OpenMetrics exposition
    /// read as 0.0.4 leaves `…_total` samples untyped), and carries nothing 0.0.4 lacks.
    #[test]
    fn the_prometheus_text_types_every_counter_and_has_no_openmetrics_lines() {
        let m = Metrics::new();
        m.ers_calls_by_class[2].inc();
        let om = m.encode();
        assert!(om.ends_with("# EOF\n"));
        let text = m.encode_prometheus_text();
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT "),
            "{text}"
        );
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            if let Some(name) = line.strip_suffix(" counter") {
                assert!(name.ends_with("_total"), "{line}");
            }
        }
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("parses");
        let totals: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric.ends_with("_total"))
            .collect();
        assert!(!totals.is_empty());
        for s in totals {
            assert!(
                matches!(s.value, prometheus_parse::Value::Counter(_)),
                "{} is {:?}",
                s.metric,
                s.value
            );
        }
        // The same samples in both.
        let samples = |t: &str| {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(samples(&om), samples(&text));
    }
}
