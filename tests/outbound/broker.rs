//! The broker side as the pipeline sees it: with no broker, publishing is retried with
//! backoff and nothing is recorded as published; once a broker is there, everything flows.
//! (Broker restarts mid-run are covered by the amqp tests.)

use chrono::Utc;
use ers_bridge::pipeline::{Event, Shutdown};

use crate::helpers::{Harness, Opts, AMQP_URL};

const NO_BROKER: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_nothing_is_marked_published_and_all_flows_once_it_is_up() {
    let n = 15;
    let h = Harness::start(Opts {
        generate: n,
        amqp_url: NO_BROKER,
        ..Opts::default()
    })
    .await;
    let shutdown = Shutdown::new();
    let down = h.app(shutdown.clone()).await;
    let mut events = down.pipeline().subscribe();
    let p = down.pipeline().clone();
    let pass = tokio::spawn(async move { p.poll_once(Utc::now()).await });
    // Wait until publishing has failed and been scheduled for a retry a few times.
    let mut retries = 0;
    while retries < 3 {
        if let Ok(Event::PublishRetry { error, .. }) = events.recv().await {
            assert!(error.contains("connection"), "{error}");
            retries += 1;
        }
    }
    shutdown.trigger();
    let report = pass.await.unwrap().expect("pass ends on shutdown");
    assert_eq!(report.published, 0, "{report:?}");
    let store = down.pipeline().store();
    assert!(store.published_counts().await.unwrap().is_empty());
    down.close().await;

    // The broker is back (here: the right address): every referral, once.
    let up = h.app_with(NO_BROKER, AMQP_URL, Shutdown::new()).await;
    let summary = up.drain(10).await.expect("drain");
    assert_eq!(summary.report.published, n);
    assert_eq!(h.take_messages().await.len(), n);
    up.close().await;
    h.cleanup().await;
}
