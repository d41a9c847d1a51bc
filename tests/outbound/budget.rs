//! App-restricted mode: worklist calls stay within the daily per-service budget, counted in
//! the store so that a restart does not reset it.

use chrono::Utc;
use ers_bridge::app::Shutdown;

use crate::helpers::{Harness, Opts, SERVICES};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worklist_calls_keep_within_the_daily_budget_across_restarts() {
    let n = 12;
    let h = Harness::start(Opts {
        generate: n,
        app_restricted: true,
        ..Opts::default()
    })
    .await;
    let app = h.app(Shutdown::new()).await;
    let first = app.outbound().poll_once(Utc::now()).await.expect("pass");
    assert_eq!(first.budget_exhausted, 0);
    assert_eq!(first.published, n, "{first:?}");
    // Both of today's calls used (two lists): the gauge says none left.
    let metrics = app.shared().events.encode();
    for s in SERVICES {
        let line = format!("ers_bridge_worklist_budget_left{{service=\"{s}\"}} 0");
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    let second = app.outbound().poll_once(Utc::now()).await.expect("pass");
    // Six services, two lists each: every call of the second pass is refused locally.
    assert_eq!(second.budget_exhausted, 12, "{second:?}");
    app.close().await;

    let restarted = h.app(Shutdown::new()).await;
    let third = restarted
        .outbound()
        .poll_once(Utc::now())
        .await
        .expect("pass");
    assert_eq!(third.budget_exhausted, 12, "{third:?}");
    let day = Utc::now().format("%Y-%m-%d").to_string();
    for s in SERVICES {
        assert_eq!(
            restarted
                .outbound()
                .store()
                .worklist_calls(s, &day)
                .await
                .unwrap(),
            2
        );
    }
    let stats = h.stats().await;
    assert_eq!(stats["by_operation"]["A008"], 12, "{stats}");
    assert_eq!(stats["worklist_budget_exceeded"], 0, "{stats}");
    assert_eq!(h.take_messages().await.len(), n);
    restarted.close().await;
    h.cleanup().await;
}
