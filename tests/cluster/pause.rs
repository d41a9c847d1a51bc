//! A bridge whose process stalls past its leases (SIGSTOP, then SIGCONT: what a long GC,
//! a frozen VM or a network partition from the store looks like to the others) finds its
//! leases lost and does nothing more under them: the other instance took its worklists
//! and referrals over, and what the stalled one had in flight is refused before it reaches
//! the PAS or e-RS. Nothing is lost or done twice.

use std::time::{Duration, Instant};

use crate::world::{self, Cluster, Pas, Rng};
use crate::SERIAL;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_paused_past_its_leases_stops_and_nothing_it_sends_counts() {
    let _one = SERIAL.lock().await;
    let n = 120;
    let mut rng = Rng(0x5eed_cafe);
    let mut c = Cluster::start(n, 200, &["node-a", "node-b"]).await;
    let mut pas = Pas::new(&c.h).await;
    // Slow e-RS answers: each instance has referrals in flight at any moment.
    c.h.admin("faults", serde_json::json!({"latency_ms": 1500}))
        .await;
    // node-a works on something (a claim or a worklist) before it is stopped.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = ready(&c, 0).await;
        if ready["instance"]["claims"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node-a never held a claim: {ready}"
        );
        pas.round(&mut rng).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.signal(0, "STOP");
    // Twice the lease time: node-b takes over what node-a held.
    let stopped = Instant::now();
    while stopped.elapsed() < Duration::from_secs(9) {
        pas.round(&mut rng).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.h.admin("faults", serde_json::json!({})).await;
    c.signal(0, "CONT");

    let deadline = Instant::now() + Duration::from_secs(240);
    while !(pas.refs.len() >= n && pas.all_answered()) {
        assert!(
            Instant::now() < deadline,
            "not done: {} of {n} referrals, {} of {} decisions answered; logs in {}",
            pas.refs.len(),
            pas.answered(),
            pas.decided.len(),
            c.log_dir().display()
        );
        pas.round(&mut rng).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    pas.round(&mut rng).await;
    let log_a = c.log(0);
    c.stop_all();

    assert!(
        log_a.contains("lease lost"),
        "node-a does not say it lost its leases:\n{log_a}"
    );
    assert!(
        log_a.contains("is no longer held"),
        "node-a refused nothing it had in flight:\n{log_a}"
    );
    let (copies, accepted) = world::check_exactly_once(&pas, &c.h, n).await;
    eprintln!(
        "pause run: {n} referrals, {copies} copies under the same MSH-10, {accepted} decisions applied once"
    );
    c.cleanup().await;
}

async fn ready(c: &Cluster, i: usize) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{}/health/ready", c.nodes[i].monitor);
    match reqwest::get(url).await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}
