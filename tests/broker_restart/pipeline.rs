//! Scenario D: the whole outbound pipeline (simulator → e-RS client → mapping → store →
//! publisher) draining a backlog while the broker is stopped and started.

use std::time::Duration;

use super::{cleanup, drain, start_broker, stop_broker, topology, unique, AMQP_URL};

/// Messages on a queue right now (a passive declare on a fresh connection).
async fn depth(queue: &str) -> u32 {
    let Ok(conn) = lapin::Connection::connect(AMQP_URL, Default::default()).await else {
        return 0;
    };
    let ch = conn.create_channel().await.unwrap();
    let n = ch
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .map(|q| q.message_count())
        .unwrap_or(0);
    let _ = conn.close(200, "done".into()).await;
    n
}

/// Scenario D, end to end: the pipeline drains a simulator backlog (1000 generated
/// referrals, the bridge limited to 100 e-RS calls/s) into RabbitMQ, and the broker is
/// stopped once some messages are on the queue and started again. The drain finishes, and
/// every message the store records as published is on the queue (duplicates only with the
/// same message_id).
pub async fn pipeline_survives_restart() {
    use ers_bridge::app::{App, Shutdown};
    use ers_bridge::config::{self, MapEnv};
    use ers_bridge::simulator::{self, SimAuth, SimConfig};

    let sim = simulator::spawn(SimConfig {
        generate: 1000,
        auth: SimAuth {
            require_auth: false,
            ..SimAuth::default()
        },
        rate_limit_per_sec: 1000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("e2e");
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut text = format!(
        "[ers]\nbase_url = {}\nrate_limit_per_sec = 100\n[ers.retry]\nbase_delay_ms = 100\nmax_delay_ms = 1000\n\
         [ers.auth]\nmode = \"none\"\n\
         [amqp]\nurl = {}\ntenant = \"default\"\nexchange = {}\npas_queue = {}\ninbound_queue = {}\n\
         dead_letter_exchange = {}\ndead_letter_queue = {}\npublish_timeout_ms = 5000\n\
         [store]\nurl = {}\n[mappings]\ndir = {}\n\
         [monitor]\nlisten = \"127.0.0.1:0\"\n[pipeline]\nconcurrency = 8\npublish_retry_base_delay_ms = 50\npublish_retry_max_delay_ms = 1000\n",
        q(&sim.fhir_base()),
        q(AMQP_URL),
        q(&format!("{prefix}.to-pas")),
        q(&format!("{prefix}.pas")),
        q(&format!("{prefix}.from-pas")),
        q(&format!("{prefix}.dlx")),
        q(&format!("{prefix}.dlq")),
        q(&format!("sqlite://{}", dir.path().join("bridge.db").display())),
        q(concat!(env!("CARGO_MANIFEST_DIR"), "/mappings")),
    );
    for service in ["21012", "21013", "21014", "21015"] {
        text.push_str(&format!(
            "[[poll]]\nservice = \"{service}\"\nlists = [\"referrals-for-review\", \"appointment-slot-issues\"]\ninterval_secs = 60\n"
        ));
    }
    let cfg = config::load_str("<broker_restart>", &text, &MapEnv::default()).unwrap();
    let shutdown = Shutdown::new();
    let app = App::build(&cfg, shutdown.clone()).await.unwrap();
    let pas_queue = format!("{prefix}.pas");
    // The readiness probe follows the broker: ready, not ready while it is stopped (naming
    // the broker), ready again after.
    let monitor = app.serve_monitor().await.unwrap().expect("monitor enabled");
    let addr = app.monitor_addr();
    let ready = |addr: Option<std::net::SocketAddr>| async move {
        let r = reqwest::get(format!("http://{}/health/ready", addr.unwrap()))
            .await
            .unwrap();
        let code = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        (code, body)
    };

    let controller = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut at_stop = depth(&pas_queue).await;
        while at_stop < 50 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no messages published"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            at_stop = depth(&pas_queue).await;
        }
        assert_eq!(ready(addr).await.0, 200, "ready before the broker stops");
        stop_broker().await;
        let (code, body) = ready(addr).await;
        assert_eq!(code, 503, "{body}");
        assert_eq!(body["checks"]["broker"]["ok"], false, "{body}");
        assert_eq!(body["checks"]["store"]["ok"], true, "{body}");
        start_broker().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while ready(addr).await.0 != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "ready again after start_app"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        at_stop
    };
    let (summary, at_stop) = tokio::join!(app.drain(50), controller);
    let summary = summary.unwrap();
    shutdown.trigger();
    monitor.await.unwrap();
    app.close().await;

    let recorded: i64 = summary.published_by_type.iter().map(|(_, n)| n).sum();
    let seen = drain(&pas_queue).await;
    let total: usize = seen.values().sum();
    eprintln!(
        "pipeline across a broker restart: {recorded} messages recorded published, {} distinct and {total} in all on the queue, {at_stop} there at stop_app, {} parked",
        seen.len(),
        summary.parked.len()
    );
    assert!(
        (at_stop as i64) < recorded,
        "the broker stopped mid-run ({at_stop} of {recorded})"
    );
    assert_eq!(
        seen.len() as i64,
        recorded,
        "every recorded message on the queue, nothing else"
    );
    let mut t = topology();
    t.exchange = format!("{prefix}.to-pas");
    t.pas_queue = pas_queue;
    t.inbound_queue = format!("{prefix}.from-pas");
    t.dead_letter_exchange = format!("{prefix}.dlx");
    t.dead_letter_queue = format!("{prefix}.dlq");
    cleanup(&t).await;
}
