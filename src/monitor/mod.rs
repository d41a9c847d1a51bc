//! The bridge's HTTP side for the people who run it (docs/monitoring.md): open health
//! endpoints (`/health/live`, `/health/ready`) and Prometheus metrics (`/metrics`), the JSON
//! API behind a bearer token (`/api/…`: timelines, search, the lists, re-drive), and the
//! dashboard page (`/`), compiled in and working offline. [`alerts`] is the edge-triggered
//! alert engine the same process runs.
//!
//! Everything here reads the store and the event hub; nothing here knows e-RS or HL7
//! beyond what the store records.

pub mod actions;
pub mod alerts;
mod api;
mod browser;
mod dashboard;
mod health;
mod mapping;
pub mod trends;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use secrecy::SecretString;

use crate::events::Events;
use crate::store::Store;
use crate::transport::PasLink;

pub use health::Liveness;

/// A bearer token for the API: its name is recorded with what it was used for.
#[derive(Clone)]
pub struct ApiToken {
    pub name: String,
    pub secret: SecretString,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct MonitorState {
    /// What the monitor reads and counts: the store and the event hub; the link to the PAS
    /// for readiness and a re-drive. Nothing else of the bridge's shared parts (no e-RS
    /// client, claims or caches).
    pub store: Store,
    pub events: Events,
    pub pas: PasLink,
    pub tokens: Arc<[ApiToken]>,
    pub liveness: Arc<Liveness>,
    /// Where a re-driven dead letter is sent back to (the inbound queue).
    pub inbound_queue: String,
    /// The operations handle: replays, and the referral read the mapping page renders.
    pub outbound: Arc<crate::pipeline::outbound::Pipeline>,
    /// The mapping files, for the mapping page.
    pub mappings_dir: std::path::PathBuf,
    /// MSH-3..6 from `[mappings]`, so the page renders what the PAS receives.
    pub mapping_header: crate::mapping::Header,
    /// This process among the bridges on the store: its id and leases (readiness, the
    /// cluster view).
    pub cluster: Arc<crate::cluster::Cluster>,
    /// The bridge's queues on the broker, by role, for their depths (empty without one).
    pub queues: Arc<[(&'static str, String)]>,
    /// Shared with the alert evaluation: since when the PAS queue has gone unread.
    pub pas_unread_since: Arc<std::sync::Mutex<Option<i64>>>,
}

/// The whole HTTP surface.
pub fn router(state: MonitorState) -> Router {
    let api = Router::new()
        .route("/api/summary", get(api::summary))
        .route("/api/referrals/{ubrn}/timeline", get(api::timeline))
        .route("/api/messages", get(api::search))
        .route(
            "/api/messages/{direction}/{control_id}",
            get(browser::message),
        )
        .route("/api/parked", get(api::parked))
        .route("/api/needs-action", get(api::needs_action))
        .route(
            "/api/needs-action/{id}/resolve",
            post(api::resolve_needs_action),
        )
        .route(
            "/api/needs-action/{id}/retry",
            post(api::retry_needs_action),
        )
        .route("/api/dead-letters", get(api::dead_letters))
        .route("/api/dead-letters/{id}", get(browser::dead_letter))
        .route("/api/code-misses", get(api::code_misses))
        .route("/api/trends", get(trends::trends))
        .route("/api/dead-letters/{id}/redrive", post(api::redrive))
        .route("/api/alerts", get(api::alerts))
        .route("/api/cluster", get(api::cluster))
        .route("/api/referrals/{ubrn}/replay", post(api::replay_one))
        .route("/api/replay", post(api::replay_filtered))
        .route("/api/mappings", get(mapping::list))
        .route("/api/render", post(mapping::render))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::require_token,
        ));
    Router::new()
        .route("/", get(dashboard::page))
        .route("/assets/uplot.js", get(dashboard::uplot_js))
        .route("/assets/uplot.css", get(dashboard::uplot_css))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .merge(api)
        .with_state(state)
}

/// Serves `router` on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
}

/// Binds the monitor's address (port 0 picks a free one); the error names the address.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, std::io::Error> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} for the monitor: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    /// Every metric the provisioned Grafana dashboard queries is one the bridge exports.
    #[test]
    fn the_grafana_dashboard_queries_only_exported_metrics() {
        let dashboard: serde_json::Value = serde_json::from_str(include_str!(
            "../../deploy/grafana/dashboards/ers-bridge.json"
        ))
        .expect("the dashboard is JSON");
        // Families without children are not encoded: give each one.
        use crate::events::*;
        let events = Events::new();
        let ubrn = crate::ids::Ubrn::parse("000000070001").unwrap();
        let cid = crate::ids::ControlId::parse("X1").unwrap();
        events.emit(Published {
            ubrn: ubrn.clone(),
            version: crate::ids::Version::new(1),
            control_id: cid.clone(),
            message_type: "REF^I12".into(),
        });
        events.emit(ErsCallFinished {
            operation: "A005",
            status: Some(200),
            latency: std::time::Duration::from_millis(5),
        });
        events.emit(WorklistPolled {
            service: "1".into(),
            list: "REFERRALS_FOR_REVIEW",
            result: PollResult::Ok,
            items: 0,
            to_check: 0,
            error: None,
        });
        events.emit(WorklistBudget {
            service: "1".into(),
            left: 1,
        });
        events.emit(InboundHandled {
            control_id: None,
            ubrn: None,
            kind: "rri",
            outcome: "done",
            took: std::time::Duration::from_millis(1),
        });
        events.emit(ReplySent {
            control_id: cid,
            code: "AA",
        });
        events.emit(LookupMissed {
            table: "specialty".into(),
            code: "SPEC_X".into(),
        });
        events.emit(QueueDepthsRead {
            depths: vec![crate::transport::QueueDepth {
                role: "pas",
                queue: "pas.referrals".into(),
                messages: Some(3),
                consumers: Some(0),
                error: None,
            }],
        });
        events.emit(ConditionsProbed {
            states: vec![("broker_disconnected", true)],
        });
        let exported = events.encode();
        let types: Vec<&str> = exported
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let mut checked = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                // Ready for several bridges: every selector takes the instance variable.
                assert_eq!(
                    expr.matches("ers_bridge_").count(),
                    expr.matches("{instance=~\"$instance\"").count(),
                    "{expr}"
                );
                for (i, _) in expr.match_indices("ers_bridge_") {
                    let name: String = expr[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let base = name
                        .strip_suffix("_total")
                        .or_else(|| name.strip_suffix("_bucket"))
                        .unwrap_or(&name);
                    assert!(
                        types.contains(&base),
                        "{name} in {:?}; exported: {types:?}",
                        panel["title"]
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 15, "{checked}");
        let var = &dashboard["templating"]["list"][0];
        assert_eq!(var["name"], "instance");
        assert_eq!(var["includeAll"], true);
    }
}
