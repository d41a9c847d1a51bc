//! `App::run_until_stopped`: the schedulers poll on their own, and a shutdown stops them,
//! lets in-flight work finish and closes everything.

use ers_bridge::app::Shutdown;
use ers_bridge::events::Event;

use crate::helpers::{wait_for_events, Harness, Opts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_until_stopped_then_shuts_down_cleanly() {
    let n = 10;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    let shutdown = Shutdown::new();
    let app = h.app(shutdown.clone()).await;
    let store = app.outbound().store().clone();
    let mut events = app.shared().events.subscribe();
    let running = tokio::spawn(app.run_until_stopped());
    wait_for_events(&mut events, n, |e| matches!(e, Event::Published(_))).await;
    shutdown.trigger();
    running.await.unwrap().expect("stops cleanly");
    // The store was closed by the shutdown.
    assert!(store.ping().await.is_err());
    assert_eq!(h.take_messages().await.len(), n);
    h.cleanup().await;
}
