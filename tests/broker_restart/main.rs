//! The publisher against a broker that goes away: `rabbitmqctl stop_app` before the publisher
//! starts, and in the middle of a stream of publishes, then `start_app`.
//!
//! Scenario C does the same to a manual-ack consumer, and scenario D to the whole outbound
//! pipeline draining a simulator backlog.
//!
//! These tests stop the shared RabbitMQ on this machine, so they live in their own test binary
//! and run as ONE test, scenario after scenario. A guard runs `rabbitmqctl start_app` when the
//! test ends (also on panic), and the test starts with `start_app` in case an earlier run was
//! killed with the broker stopped. Each scenario uses its own exchange and queues (quorum
//! queues survive `stop_app`) and deletes them at the end.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ers_bridge::amqp::{
    AmqpError, Consumer, ConsumerSettings, OutboundMessage, Publisher, PublisherSettings,
    RetryPolicy, Topology,
};
use futures_util::StreamExt;
use lapin::options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};

mod pipeline;

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How long the broker may take to come back after `start_app`.
const BROKER_START_LIMIT: Duration = Duration::from_secs(120);

fn rabbitmqctl(action: &str) {
    let out = Command::new("rabbitmqctl")
        .arg(action)
        .output()
        .unwrap_or_else(|e| panic!("running `rabbitmqctl {action}` failed: {e}"));
    assert!(
        out.status.success(),
        "`rabbitmqctl {action}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the broker application and waits until it accepts AMQP connections.
async fn start_broker() {
    tokio::task::spawn_blocking(|| rabbitmqctl("start_app"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + BROKER_START_LIMIT;
    loop {
        // Bounded: a broker still starting can take the TCP connection and never finish
        // the AMQP handshake.
        let connect = lapin::Connection::connect(AMQP_URL, Default::default());
        if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), connect).await {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), conn.close(200, "ready".into())).await;
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker did not accept connections within {BROKER_START_LIMIT:?} of start_app"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stop_broker() {
    tokio::task::spawn_blocking(|| rabbitmqctl("stop_app"))
        .await
        .unwrap();
}

/// Leaves the broker running whatever happens to the test.
struct BrokerGuard;

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
    }
}

/// Polls `done` every 20 ms until it holds, failing the test after `limit`. This waits for
/// progress in other tasks; it asserts nothing about timing.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn unique(prefix: &str) -> String {
    format!("test-{}-{prefix}", uuid::Uuid::new_v4().simple())
}

fn topology() -> Topology {
    Topology {
        tenant: "default".into(),
        exchange: unique("to-pas"),
        pas_queue: unique("pas"),
        pas_ack_queue: unique("acks"),
        inbound_queue: unique("from-pas"),
        dead_letter_exchange: unique("dlx"),
        dead_letter_queue: unique("dlq"),
        inbound_delivery_limit: 5,
        single_active_consumer: false,
        dead_letter_at_least_once: true,
    }
}

fn publisher(t: &Topology) -> Arc<Publisher> {
    Arc::new(Publisher::new(PublisherSettings {
        urls: vec![AMQP_URL.into()],
        exchange: t.exchange.clone(),
        confirm_timeout: Duration::from_secs(5),
        topology: Some(t.clone()),
        tls: Default::default(),
    }))
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        backoff: ers_bridge::backoff::Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
        },
        give_up_after: None,
    }
}

fn message(n: usize) -> OutboundMessage {
    let ubrn = format!("{:012}", 900_000_000_000usize + n);
    OutboundMessage {
        routing_key: "default.REF.I12".into(),
        message_id: format!("ERS{ubrn}V1I12"),
        correlation_id: ubrn.clone(),
        message_type: "REF^I12".into(),
        ers_version: "1".into(),
        body: format!("MSH|^~\\&|ERS|{n}\rPID|1||{ubrn}\r")
            .repeat(40)
            .into_bytes(),
        exchange: None,
        headers: Vec::new(),
        original: None,
    }
}

/// Drains the PAS queue and counts each message id.
async fn drain(queue: &str) -> BTreeMap<String, usize> {
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut seen = BTreeMap::new();
    while let Some(got) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let id = got
            .delivery
            .properties
            .message_id()
            .as_ref()
            .expect("every message has a message_id")
            .to_string();
        *seen.entry(id).or_insert(0) += 1;
    }
    let _ = conn.close(200, "done".into()).await;
    seen
}

async fn cleanup(t: &Topology) {
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    for q in [
        &t.pas_queue,
        &t.pas_ack_queue,
        &t.inbound_queue,
        &t.dead_letter_queue,
    ] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for e in [&t.exchange, &t.dead_letter_exchange] {
        let _ = ch
            .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
}

/// Scenario A: the broker is down when the publisher starts. Publishes wait (retrying, none
/// reported as sent); after `start_app` every message is confirmed and on the queue exactly
/// once.
async fn broker_down_at_start() {
    const N: usize = 20;
    let t = topology();
    stop_broker().await;
    let p = publisher(&t);
    let done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..N)
        .map(|n| {
            let (p, done) = (p.clone(), done.clone());
            tokio::spawn(async move {
                let r = p
                    .publish_with_retry(&message(n), &policy(), std::future::pending())
                    .await;
                done.fetch_add(1, Ordering::SeqCst);
                r
            })
        })
        .collect();
    // Every publisher has failed at least twice against the stopped broker.
    wait_until("publishers retrying", Duration::from_secs(30), || {
        p.stats().failed_attempts >= 2 * N as u64
    })
    .await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "nothing finished while down"
    );
    assert_eq!(p.stats().confirmed, 0);
    assert_eq!(p.stats().connects, 0);
    assert!(!p.is_connected().await);

    start_broker().await;
    for task in tasks {
        let published = tokio::time::timeout(BROKER_START_LIMIT, task)
            .await
            .expect("publish confirmed after the broker came back")
            .unwrap()
            .unwrap();
        assert!(published.attempts >= 3, "{published:?}");
    }
    let stats = p.stats();
    assert_eq!(stats.confirmed, N as u64);
    assert!(stats.connects >= 1, "{stats:?}");
    assert!(p.is_connected().await);
    p.close().await;

    let seen = drain(&t.pas_queue).await;
    let expected: BTreeMap<_, _> = (0..N).map(|n| (message(n).message_id, 1)).collect();
    assert_eq!(seen, expected, "every message exactly once");
    cleanup(&t).await;
}

/// Scenario B: a continuous stream of publishes, 32 in flight; the broker stops after 100
/// confirms and is started again. The stream goes on until 100 more are confirmed after the
/// restart. Every message ever reported as published is on the queue afterwards (so nothing
/// was reported without a durable confirm), and every message of the stream is reported;
/// a message may be on the queue twice (its confirm was lost with the connection), with the
/// same message_id.
async fn broker_restarted_mid_stream() {
    const MAX: usize = 200_000;
    let t = topology();
    let p = publisher(&t);
    p.ensure_connected().await.unwrap();
    let stop_producing = AtomicBool::new(false);
    let produced = AtomicUsize::new(0);
    let confirmed = AtomicUsize::new(0);
    let reported = Mutex::new(Vec::new());

    let stream =
        futures_util::stream::iter((0..MAX).take_while(|_| !stop_producing.load(Ordering::SeqCst)))
            .map(|n| {
                produced.fetch_add(1, Ordering::SeqCst);
                let p = p.clone();
                async move {
                    let msg = message(n);
                    let r = p
                        .publish_with_retry(&msg, &policy(), std::future::pending())
                        .await;
                    (msg.message_id, r)
                }
            })
            .buffer_unordered(32)
            .for_each(|(id, r)| {
                r.unwrap_or_else(|e| panic!("publish of {id} failed: {e}"));
                reported.lock().unwrap().push(id);
                confirmed.fetch_add(1, Ordering::SeqCst);
                async {}
            });

    let controller = async {
        wait_until("100 confirms", Duration::from_secs(60), || {
            confirmed.load(Ordering::SeqCst) >= 100
        })
        .await;
        stop_broker().await;
        let failed_before = p.stats().failed_attempts;
        wait_until("publishes failing", Duration::from_secs(30), || {
            p.stats().failed_attempts > failed_before
        })
        .await;
        start_broker().await;
        let after_restart = confirmed.load(Ordering::SeqCst);
        wait_until("100 confirms after restart", BROKER_START_LIMIT, || {
            confirmed.load(Ordering::SeqCst) >= after_restart + 100
        })
        .await;
        stop_producing.store(true, Ordering::SeqCst);
    };
    tokio::join!(stream, controller);

    let produced = produced.load(Ordering::SeqCst);
    let reported = reported.into_inner().unwrap();
    assert_eq!(reported.len(), produced, "every message reported published");
    let stats = p.stats();
    assert!(stats.connects >= 2, "reconnected: {stats:?}");
    assert!(stats.failed_attempts > 0, "{stats:?}");
    p.close().await;

    let seen = drain(&t.pas_queue).await;
    for id in &reported {
        assert!(
            seen.contains_key(id),
            "{id} reported published but not on the queue"
        );
    }
    let expected: std::collections::BTreeSet<_> =
        (0..produced).map(|n| message(n).message_id).collect();
    let on_queue: std::collections::BTreeSet<_> = seen.keys().cloned().collect();
    assert_eq!(
        on_queue, expected,
        "only the stream's messages, all of them"
    );
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    eprintln!(
        "broker restart mid-stream: {produced} messages, {duplicates} duplicates, {} failed attempts, {} connects",
        stats.failed_attempts, stats.connects
    );
    cleanup(&t).await;
}

/// `rabbitmqctl list_consumers` for one queue: (ack_required, prefetch_count) per consumer.
fn consumers_of(queue: &str) -> Vec<(String, String)> {
    let out = Command::new("rabbitmqctl")
        .args([
            "list_consumers",
            "-q",
            "--no-table-headers",
            "queue_name",
            "ack_required",
            "prefetch_count",
        ])
        .output()
        .expect("rabbitmqctl list_consumers");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let cols: Vec<_> = l.split('\t').collect();
            (cols.len() == 3 && cols[0] == queue)
                .then(|| (cols[1].to_string(), cols[2].to_string()))
        })
        .collect()
}

/// Scenario C: a consumer with prefetch 3 holds an unacked delivery when the broker stops.
/// Its ack then fails, and after `start_app` the consumer reconnects by itself, with manual
/// acks and the prefetch applied again, and every message (the unacked one redelivered)
/// arrives and is acked.
async fn consumer_survives_restart() {
    const N: usize = 5;
    let t = topology();
    let publisher = publisher(&t);
    publisher.ensure_connected().await.unwrap();
    // Straight to the inbound queue through the default exchange.
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    for n in 0..N {
        let m = message(n);
        ch.basic_publish(
            "".into(),
            t.inbound_queue.as_str().into(),
            Default::default(),
            &m.body,
            lapin::BasicProperties::default()
                .with_message_id(m.message_id.as_str().into())
                .with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let _ = conn.close(200, "done".into()).await;
    publisher.close().await;

    let mut c = Consumer::new(ConsumerSettings {
        urls: vec![AMQP_URL.into()],
        queue: t.inbound_queue.clone(),
        prefetch: 3,
        connect_timeout: Duration::from_secs(5),
        topology: Some(t.clone()),
        tls: Default::default(),
    });
    let pending = std::future::pending;
    let held = c.next(&policy(), pending()).await.unwrap().unwrap();
    assert_eq!(
        consumers_of(&t.inbound_queue),
        vec![("true".to_string(), "3".to_string())]
    );

    stop_broker().await;
    assert!(matches!(held.ack().await, Err(AmqpError::AckFailed { .. })));
    let retry = policy();
    let (first, ()) = tokio::join!(c.next(&retry, pending()), start_broker());
    let mut seen = BTreeMap::new();
    let mut delivery = first.unwrap().unwrap();
    loop {
        match delivery.ack().await {
            Ok(()) => {
                *seen
                    .entry(delivery.message_id.clone().unwrap())
                    .or_insert(0) += 1
            }
            // The channel died between delivery and ack: it comes again.
            Err(AmqpError::AckFailed { .. }) => {}
            Err(e) => panic!("ack failed: {e}"),
        }
        if seen.len() == N {
            break;
        }
        delivery = tokio::time::timeout(BROKER_START_LIMIT, c.next(&policy(), pending()))
            .await
            .expect("the rest of the messages")
            .unwrap()
            .unwrap();
    }
    assert_eq!(c.connects(), 2, "{c:?}");
    assert_eq!(
        consumers_of(&t.inbound_queue),
        vec![("true".to_string(), "3".to_string())],
        "prefetch and manual acks re-applied"
    );
    c.close().await;
    let expected: BTreeMap<_, _> = (0..N).map(|n| (message(n).message_id, 1)).collect();
    assert_eq!(seen, expected);
    cleanup(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_survives_broker_stop_and_start() {
    let _guard = BrokerGuard;
    start_broker().await;
    broker_down_at_start().await;
    broker_restarted_mid_stream().await;
    consumer_survives_restart().await;
    pipeline::pipeline_survives_restart().await;
}
