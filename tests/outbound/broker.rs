//! The broker side as the pipeline sees it: with no broker, publishing is retried with
//! backoff and nothing is recorded as published; once a broker is there, everything flows.
//! An unroutable (returned) message is retried too, never marked done.
//! (Broker restarts mid-run are covered by the amqp tests.)

use chrono::Utc;
use ers_bridge::app::Shutdown;
use ers_bridge::events::Event;

use crate::helpers::{wait_for_events, Harness, Opts, AMQP_URL};

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
    let mut events = down.shared().events.subscribe();
    let p = down.outbound().clone();
    let pass = tokio::spawn(async move { p.poll_once(Utc::now()).await });
    // Wait until publishing has failed and been scheduled for a retry a few times.
    wait_for_events(&mut events, 3, |e| match e {
        Event::PublishRetry(r) => {
            let error = &r.error;
            assert!(error.contains("connection"), "{error}");
            true
        }
        _ => false,
    })
    .await;
    shutdown.trigger();
    let report = pass.await.unwrap().expect("pass ends on shutdown");
    assert_eq!(report.published, 0, "{report:?}");
    let store = down.outbound().store();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_message_is_retried_until_a_queue_is_bound() {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};

    let n = 5;
    let h = Harness::start(Opts {
        generate: n,
        ..Opts::default()
    })
    .await;
    // The PAS team owns the topology: the exchange exists, no queue is bound yet.
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let exchange = format!("{}-x", h.prefix);
    ch.exchange_declare(
        exchange.as_str().into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    let app = h
        .app_with(
            "[amqp]\n",
            "[amqp]\ndeclare_topology = false\n",
            Shutdown::new(),
        )
        .await;
    let mut events = app.shared().events.subscribe();
    let p = app.outbound().clone();
    let pass = tokio::spawn(async move { p.poll_once(Utc::now()).await });
    wait_for_events(&mut events, 1, |e| match e {
        Event::PublishRetry(r) => {
            let error = &r.error;
            assert!(error.contains("unroutable"), "{error}");
            true
        }
        _ => false,
    })
    .await;
    assert!(app
        .outbound()
        .store()
        .published_counts()
        .await
        .unwrap()
        .is_empty());

    // The queue appears: the retries go through, each referral once.
    ch.queue_declare(
        h.pas_queue().as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        h.pas_queue().as_str().into(),
        exchange.as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let report = pass.await.unwrap().expect("pass");
    assert_eq!(report.published, n);
    assert_eq!(h.take_messages().await.len(), n);
    app.close().await;
    h.cleanup().await;
}
