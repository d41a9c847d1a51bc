//! The publisher and topology against the real RabbitMQ, each test with its own names.

use std::time::Duration;

use ers_bridge::amqp::{
    AmqpError, Consumer, ConsumerSettings, GiveUpReason, OutboundMessage, Publisher,
    PublisherSettings, RetryPolicy, Topology,
};
use lapin::{
    options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions},
    types::AMQPValue,
};

use crate::helpers;

fn topology() -> Topology {
    Topology {
        tenant: "default".into(),
        exchange: helpers::unique("to-pas"),
        pas_queue: helpers::unique("pas"),
        pas_ack_queue: helpers::unique("acks"),
        inbound_queue: helpers::unique("from-pas"),
        dead_letter_exchange: helpers::unique("dlx"),
        dead_letter_queue: helpers::unique("dlq"),
        inbound_delivery_limit: 5,
        single_active_consumer: false,
        dead_letter_at_least_once: true,
    }
}

async fn cleanup(t: &Topology) {
    let (conn, ch) = helpers::amqp_channel().await;
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

fn message(n: usize) -> OutboundMessage {
    OutboundMessage {
        routing_key: "default.REF.I12".into(),
        message_id: format!("ERS00000007000{n}V5I12"),
        correlation_id: format!("00000007000{n}"),
        message_type: "REF^I12".into(),
        ers_version: "5".into(),
        body: format!("MSH|^~\\&|ERS|...|{n}\r").into_bytes(),
        exchange: None,
        headers: Vec::new(),
        original: None,
    }
}

fn publisher(t: &Topology, declare: bool) -> Publisher {
    Publisher::new(PublisherSettings {
        urls: vec![helpers::amqp_url()],
        exchange: t.exchange.clone(),
        confirm_timeout: Duration::from_secs(10),
        topology: declare.then(|| t.clone()),
        tls: Default::default(),
    })
}

#[tokio::test]
async fn confirmed_publish_reaches_the_pas_queue_with_design_properties() {
    let t = topology();
    let p = publisher(&t, true);
    p.publish(&message(1)).await.unwrap();
    p.publish(&message(2)).await.unwrap();

    let (conn, ch) = helpers::amqp_channel().await;
    let got = ch
        .basic_get(
            t.pas_queue.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("a message on the PAS queue");
    let props = &got.delivery.properties;
    assert_eq!(got.delivery.data, message(1).body);
    assert_eq!(got.delivery.routing_key.as_str(), "default.REF.I12");
    assert_eq!(
        props.content_type().as_ref().unwrap().as_str(),
        "x-application/hl7-v2+er7"
    );
    assert_eq!(*props.delivery_mode(), Some(2));
    assert_eq!(
        props.message_id().as_ref().unwrap().as_str(),
        "ERS000000070001V5I12"
    );
    assert_eq!(
        props.correlation_id().as_ref().unwrap().as_str(),
        "000000070001"
    );
    assert_eq!(props.kind().as_ref().unwrap().as_str(), "REF^I12");
    assert_eq!(props.app_id().as_ref().unwrap().as_str(), "ers-bridge");
    let headers = props.headers().as_ref().unwrap();
    assert_eq!(
        headers.inner().get("x-ers-version"),
        Some(&AMQPValue::LongString("5".into()))
    );
    // The broker may add its own `x-delivery-count` (quorum queues); we add nothing else.
    let ours: Vec<_> = headers
        .inner()
        .keys()
        .map(|k| k.as_str())
        .filter(|k| *k != "x-delivery-count")
        .collect();
    assert_eq!(
        ours,
        vec!["x-ers-version"],
        "no other headers (no patient data)"
    );
    let second = ch
        .basic_get(
            t.pas_queue.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the second message");
    assert_eq!(second.delivery.data, message(2).body);
    let _ = conn.close(200, "done".into()).await;
    p.close().await;
    cleanup(&t).await;
}

/// Our ACKs to the PAS go to their own queue (`<tenant>.ACK.#`), never into the PAS's
/// referral queue; a message to the dead-letter exchange carries its reason headers.
#[tokio::test]
async fn acks_route_to_their_own_queue_and_dead_letters_carry_their_reason() {
    let t = topology();
    let p = publisher(&t, true);
    let mut ack = message(1);
    ack.routing_key = "default.ACK.I12".into();
    ack.message_type = "ACK^I12".into();
    p.publish(&ack).await.unwrap();
    let mut dead = message(2);
    dead.exchange = Some(t.dead_letter_exchange.clone());
    dead.headers = vec![
        ("x-ers-error".into(), "not-hl7".into()),
        ("x-ers-error-detail".into(), "MSH-1 is missing".into()),
    ];
    p.publish(&dead).await.unwrap();

    let (conn, ch) = helpers::amqp_channel().await;
    let get = |q: String| {
        let ch = ch.clone();
        async move {
            ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
        }
    };
    assert!(
        get(t.pas_queue.clone()).await.is_none(),
        "no ACK among the referrals"
    );
    let got = get(t.pas_ack_queue.clone()).await.expect("the ACK");
    assert_eq!(got.delivery.data, ack.body);
    let dl = get(t.dead_letter_queue.clone())
        .await
        .expect("the dead letter");
    let headers = dl.delivery.properties.headers().as_ref().unwrap();
    assert_eq!(
        headers.inner().get("x-ers-error"),
        Some(&AMQPValue::LongString("not-hl7".into()))
    );
    assert_eq!(
        headers.inner().get("x-ers-error-detail"),
        Some(&AMQPValue::LongString("MSH-1 is missing".into()))
    );
    let _ = conn.close(200, "done".into()).await;
    p.close().await;
    cleanup(&t).await;
}

#[tokio::test]
async fn topology_declares_quorum_queues_and_is_idempotent() {
    let t = topology();
    let (conn, ch) = helpers::amqp_channel().await;
    t.declare(&ch).await.unwrap();
    t.declare(&ch).await.unwrap();
    // A passive declare of a quorum queue as classic fails, proving its type.
    let (_c2, ch2) = helpers::amqp_channel().await;
    let err = ch2
        .queue_declare(
            t.inbound_queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("PRECONDITION_FAILED"), "{err}");
    let _ = conn.close(200, "done".into()).await;
    cleanup(&t).await;
}

#[tokio::test]
async fn unroutable_message_is_an_error_not_a_success() {
    let t = topology();
    // Declare only the exchange, with no queue bound: the mandatory publish comes back.
    let (conn, ch) = helpers::amqp_channel().await;
    ch.exchange_declare(
        t.exchange.as_str().into(),
        lapin::ExchangeKind::Topic,
        lapin::options::ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    let p = publisher(&t, false);
    let err = p.publish(&message(3)).await.unwrap_err();
    assert!(
        matches!(
            err,
            AmqpError::Returned {
                reply_code: 312,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_retryable());
    let _ = conn.close(200, "done".into()).await;
    p.close().await;
    cleanup(&t).await;
}

#[tokio::test]
async fn broker_unreachable_is_a_retryable_connection_error() {
    let t = topology();
    let p = Publisher::new(PublisherSettings {
        urls: vec![secrecy::SecretString::from(
            "amqp://guest:guest@127.0.0.1:1/%2f",
        )],
        exchange: t.exchange.clone(),
        confirm_timeout: Duration::from_secs(1),
        topology: None,
        tls: Default::default(),
    });
    let err = p.publish(&message(4)).await.unwrap_err();
    assert!(matches!(err, AmqpError::Connection(_)), "{err}");
    assert!(err.is_retryable());
    assert!(!p.is_connected().await);
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        backoff: ers_bridge::backoff::Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
        give_up_after: None,
    }
}

fn unreachable_publisher(t: &Topology) -> Publisher {
    Publisher::new(PublisherSettings {
        urls: vec![secrecy::SecretString::from(
            "amqp://guest:guest@127.0.0.1:1/%2f",
        )],
        exchange: t.exchange.clone(),
        confirm_timeout: Duration::from_secs(1),
        topology: None,
        tls: Default::default(),
    })
}

#[tokio::test]
async fn publish_with_retry_gives_up_only_at_shutdown_or_deadline() {
    let t = topology();
    let p = unreachable_publisher(&t);
    let err = p
        .publish_with_retry(&message(5), &fast_retry(), std::future::ready(()))
        .await
        .unwrap_err();
    match &err {
        AmqpError::GaveUp {
            message_id,
            attempts: 1,
            reason: GiveUpReason::Shutdown,
            last,
        } => {
            assert_eq!(message_id, "ERS000000070005V5I12");
            assert!(matches!(**last, AmqpError::Connection(_)), "{last}");
        }
        other => panic!("expected a shutdown give-up, got {other}"),
    }
    assert!(err.is_retryable(), "the message is still owed");

    let policy = RetryPolicy {
        give_up_after: Some(Duration::ZERO),
        ..fast_retry()
    };
    let err = p
        .publish_with_retry(&message(5), &policy, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AmqpError::GaveUp {
                attempts: 1,
                reason: GiveUpReason::Deadline,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(p.stats().failed_attempts, 2);
    assert_eq!(p.stats().confirmed, 0);
}

/// A wrong password is named as a refusal with its fix, and a hundred messages waiting
/// cost the broker one login, not a hundred (issue 21: 166 logins in 30 s): until the
/// refused-login pause ends every caller gets the same answer. The metric the
/// `broker_refused` alert reads is set, and a wrong virtual host is named too.
#[tokio::test]
async fn a_refused_login_is_named_and_tried_once_per_pause() {
    let t = topology();
    let events = ers_bridge::events::Events::new();
    let p = Publisher::with_events(
        PublisherSettings {
            urls: vec![secrecy::SecretString::from(
                "amqp://guest:not-the-password@127.0.0.1:5672/%2f",
            )],
            exchange: t.exchange.clone(),
            confirm_timeout: Duration::from_secs(5),
            topology: None,
            tls: Default::default(),
        },
        events.clone(),
    );
    for n in 0..100 {
        let err = p.publish(&message(n % 10)).await.unwrap_err();
        let fix = err
            .refusal()
            .unwrap_or_else(|| panic!("not a refusal: {err}"));
        assert!(fix.contains("user and password"), "{fix}");
        assert!(err.is_retryable(), "run keeps trying, slowly");
    }
    assert_eq!(p.stats().connect_failures, 1, "one login for 100 messages");
    assert_eq!(events.metrics().broker_refused.get(), 1);

    let p = Publisher::new(PublisherSettings {
        urls: vec![secrecy::SecretString::from(
            "amqp://guest:guest@127.0.0.1:5672/no-such-vhost",
        )],
        exchange: t.exchange.clone(),
        confirm_timeout: Duration::from_secs(5),
        topology: None,
        tls: Default::default(),
    });
    let err = p.publish(&message(1)).await.unwrap_err();
    assert!(err.refusal().is_some_and(|f| f.contains("vhost")), "{err}");
    // An unreachable broker is an outage, not a refusal.
    let err = unreachable_publisher(&t)
        .publish(&message(2))
        .await
        .unwrap_err();
    assert!(err.refusal().is_none(), "{err}");
}

#[tokio::test]
async fn publish_with_retry_returns_a_permanent_error_at_once() {
    let t = topology();
    // The PAS queue already exists as a classic queue: declaring it as quorum is refused.
    let (conn, ch) = helpers::amqp_channel().await;
    ch.queue_declare(
        t.pas_queue.as_str().into(),
        lapin::options::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    let p = publisher(&t, true);
    let err = p
        .publish_with_retry(&message(6), &fast_retry(), std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, AmqpError::Topology { .. }), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(
        p.stats().failed_attempts,
        1,
        "no retry of a permanent error"
    );
    let _ = conn.close(200, "done".into()).await;
    cleanup(&t).await;
}

#[tokio::test]
async fn publish_with_retry_keeps_an_unroutable_message_until_a_queue_is_bound() {
    let t = topology();
    let (conn, ch) = helpers::amqp_channel().await;
    ch.exchange_declare(
        t.exchange.as_str().into(),
        lapin::ExchangeKind::Topic,
        lapin::options::ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    let p = publisher(&t, false);
    let bind_after_two_failures = async {
        helpers::wait_until(Duration::from_secs(20), || p.stats().failed_attempts >= 2).await;
        assert_eq!(p.stats().confirmed, 0, "nothing confirmed while unroutable");
        ch.queue_declare(
            t.pas_queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            t.pas_queue.as_str().into(),
            t.exchange.as_str().into(),
            "#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    };
    let (msg, policy) = (message(7), fast_retry());
    let (published, ()) = tokio::join!(
        p.publish_with_retry(&msg, &policy, std::future::pending()),
        bind_after_two_failures
    );
    let published = published.unwrap();
    assert!(published.attempts >= 3, "{published:?}");
    let got = ch
        .basic_get(
            t.pas_queue.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the message once bound");
    assert_eq!(got.delivery.data, message(7).body);
    let again = ch
        .basic_get(
            t.pas_queue.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap();
    assert!(again.is_none(), "returned attempts were not stored");
    let _ = conn.close(200, "done".into()).await;
    p.close().await;
    cleanup(&t).await;
}

/// Concurrent publishers that find no connection make one connect attempt between them: the
/// callers queued behind a failed attempt share its error instead of each trying in turn.
#[tokio::test]
async fn concurrent_publishers_share_one_reconnect_attempt() {
    // A "broker" that accepts TCP and never answers, counting connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    let t = topology();
    let p = Publisher::new(PublisherSettings {
        urls: vec![secrecy::SecretString::from(format!(
            "amqp://guest:guest@127.0.0.1:{port}/%2f"
        ))],
        exchange: t.exchange.clone(),
        confirm_timeout: Duration::from_millis(300),
        topology: None,
        tls: Default::default(),
    });
    let messages: Vec<_> = (0..10).map(message).collect();
    let results = futures_util::future::join_all(messages.iter().map(|m| p.publish(m))).await;
    for r in &results {
        assert!(
            matches!(r, Err(AmqpError::ConnectTimeout { timeout_ms: 300 })),
            "{r:?}"
        );
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    let stats = p.stats();
    assert_eq!(stats.connect_failures, 1);
    assert_eq!(stats.failed_attempts, 10);
    server.abort();
}

async fn send_to_queue(ch: &lapin::Channel, queue: &str, n: usize) {
    let m = message(n);
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            Default::default(),
            &m.body,
            lapin::BasicProperties::default()
                .with_message_id(m.message_id.as_str().into())
                .with_delivery_mode(2),
        )
        .await
        .unwrap();
    confirm.await.unwrap();
}

fn consumer(t: &Topology, declare: bool) -> Consumer {
    Consumer::new(ConsumerSettings {
        urls: vec![helpers::amqp_url()],
        queue: t.inbound_queue.clone(),
        prefetch: 2,
        connect_timeout: Duration::from_secs(10),
        topology: declare.then(|| t.clone()),
        tls: Default::default(),
    })
}

#[tokio::test]
async fn consumer_acks_manually_and_unacked_deliveries_come_back() {
    let t = topology();
    let mut c = consumer(&t, true);
    let first = c.next(&fast_retry(), std::future::ready(())).await.unwrap();
    assert!(first.is_none(), "shutdown before any delivery");
    let (conn, ch) = helpers::amqp_channel().await;
    t.declare(&ch).await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    for n in 1..=3 {
        send_to_queue(&ch, &t.inbound_queue, n).await;
    }
    let pending = std::future::pending;
    let d1 = c.next(&fast_retry(), pending()).await.unwrap().unwrap();
    assert_eq!(d1.message_id.as_deref(), Some("ERS000000070001V5I12"));
    assert_eq!(d1.body, message(1).body);
    assert!(!d1.redelivered);
    d1.ack().await.unwrap();
    let d2 = c.next(&fast_retry(), pending()).await.unwrap().unwrap();
    assert_eq!(d2.message_id.as_deref(), Some("ERS000000070002V5I12"));
    // Closing without acking d2 gives it back to the queue.
    c.close().await;
    assert!(matches!(d2.ack().await, Err(AmqpError::AckFailed { .. })));

    let mut c = consumer(&t, false);
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = c.next(&fast_retry(), pending()).await.unwrap().unwrap();
        got.push((d.message_id.clone().unwrap(), d.redelivered));
        d.ack().await.unwrap();
    }
    got.sort();
    // With a prefetch of 2 the broker had also sent message 3 ahead to the first consumer,
    // so it comes back as redelivered too.
    assert_eq!(
        got,
        vec![
            ("ERS000000070002V5I12".to_string(), true),
            ("ERS000000070003V5I12".to_string(), true)
        ]
    );
    c.close().await;
    let left = ch
        .basic_get(
            t.inbound_queue.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap();
    assert!(left.is_none(), "everything acked");
    let _ = conn.close(200, "done".into()).await;
    cleanup(&t).await;
}

#[tokio::test]
async fn consuming_a_missing_queue_is_a_permanent_error() {
    let t = topology();
    let mut c = consumer(&t, false);
    let err = c
        .next(&fast_retry(), std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AmqpError::Topology { name, .. } if *name == t.inbound_queue),
        "{err}"
    );
    assert!(!err.is_retryable());
}

/// The first node of the list refuses connections (nothing listens on port 1).
fn dead_then_live() -> Vec<secrecy::SecretString> {
    vec![
        secrecy::SecretString::from("amqp://guest:guest@127.0.0.1:1/%2f"),
        helpers::amqp_url(),
    ]
}

#[tokio::test]
async fn publisher_moves_past_a_dead_node_and_gets_its_confirm() {
    let t = topology();
    let p = Publisher::new(PublisherSettings {
        urls: dead_then_live(),
        exchange: t.exchange.clone(),
        confirm_timeout: Duration::from_secs(10),
        topology: Some(t.clone()),
        tls: Default::default(),
    });
    p.publish(&message(1)).await.unwrap();
    assert!(p.is_connected().await);
    // One round, the dead node skipped at once: one connect, no failed connect.
    let stats = p.stats();
    assert_eq!(
        (stats.connects, stats.connect_failures),
        (1, 0),
        "{stats:?}"
    );
    assert_eq!(stats.confirmed, 1);
    let (conn, ch) = helpers::amqp_channel().await;
    let got = ch
        .basic_get(
            t.pas_queue.as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the message on the PAS queue");
    assert_eq!(got.delivery.data, message(1).body);
    p.close().await;
    let _ = conn.close(200, "done".into()).await;
    cleanup(&t).await;
}

#[tokio::test]
async fn a_round_in_which_every_node_fails_is_one_failed_connect() {
    let t = topology();
    let p = Publisher::new(PublisherSettings {
        urls: vec![
            secrecy::SecretString::from("amqp://guest:guest@127.0.0.1:1/%2f"),
            secrecy::SecretString::from("amqp://guest:guest@127.0.0.1:2/%2f"),
        ],
        exchange: t.exchange.clone(),
        confirm_timeout: Duration::from_secs(1),
        topology: None,
        tls: Default::default(),
    });
    let err = p.publish(&message(1)).await.unwrap_err();
    assert!(matches!(err, AmqpError::Connection(_)), "{err}");
    assert!(err.is_retryable());
    let stats = p.stats();
    assert_eq!(
        (stats.connects, stats.connect_failures),
        (0, 1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn consumer_moves_past_a_dead_node() {
    let t = topology();
    let mut c = Consumer::new(ConsumerSettings {
        urls: dead_then_live(),
        queue: t.inbound_queue.clone(),
        prefetch: 2,
        connect_timeout: Duration::from_secs(10),
        topology: Some(t.clone()),
        tls: Default::default(),
    });
    let (conn, ch) = helpers::amqp_channel().await;
    t.declare(&ch).await.unwrap();
    send_to_queue(&ch, &t.inbound_queue, 1).await;
    let d = c
        .next(&fast_retry(), std::future::pending())
        .await
        .unwrap()
        .expect("a delivery");
    assert_eq!(d.message_id.as_deref(), Some("ERS000000070001V5I12"));
    d.ack().await.unwrap();
    assert_eq!(c.connects(), 1);
    c.close().await;
    let _ = conn.close(200, "done".into()).await;
    cleanup(&t).await;
}

/// Declares `first` twice (idempotent), then `second` (the same names, the other
/// single-active-consumer setting) on another channel: the broker refuses, naming the
/// argument, and the bridge reports a permanent topology error naming the inbound queue
/// (the queues declared before it are accepted: they do not carry the argument).
async fn redeclare_with_other_sac_is_refused(first: Topology) {
    let second = Topology {
        single_active_consumer: !first.single_active_consumer,
        ..first.clone()
    };
    let (conn, ch) = helpers::amqp_channel().await;
    first.declare(&ch).await.unwrap();
    first.declare(&ch).await.unwrap();
    let (_c2, ch2) = helpers::amqp_channel().await;
    let err = second.declare(&ch2).await.unwrap_err();
    assert!(
        matches!(&err, AmqpError::Topology { name, .. } if *name == first.inbound_queue),
        "{err}"
    );
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("PRECONDITION_FAILED"), "{text}");
    assert!(text.contains("x-single-active-consumer"), "{text}");
    let _ = conn.close(200, "done".into()).await;
    cleanup(&first).await;
}

#[tokio::test]
async fn single_active_consumer_is_declared_on_the_inbound_queue_only_when_set() {
    redeclare_with_other_sac_is_refused(Topology {
        single_active_consumer: true,
        dead_letter_at_least_once: true,
        ..topology()
    })
    .await;
}

#[tokio::test]
async fn switching_single_active_consumer_on_for_an_existing_queue_is_refused() {
    redeclare_with_other_sac_is_refused(topology()).await;
}

/// A poison message the bridge keeps giving back (a crash on it each time) is taken off the
/// inbound queue by the broker at the delivery limit and reaches the dead-letter queue,
/// with the broker's reason (`x-death`: `delivery_limit`); the queue is declared to
/// dead-letter at least once, so that hand-over is confirmed inside the broker.
#[tokio::test]
async fn a_message_past_the_delivery_limit_reaches_the_dead_letter_queue() {
    use futures_util::StreamExt as _;
    let t = topology();
    let (conn, ch) = helpers::amqp_channel().await;
    t.declare(&ch).await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    send_to_queue(&ch, &t.inbound_queue, 7).await;
    let mut dead = ch
        .basic_consume(
            t.dead_letter_queue.as_str().into(),
            "dlq-watch".into(),
            lapin::options::BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let mut c = consumer(&t, false);
    let policy = fast_retry();
    let mut given_back = 0;
    let dead_letter = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            tokio::select! {
                d = c.next(&policy, std::future::pending()) => {
                    let d = d.unwrap().expect("a delivery");
                    assert_eq!(d.message_id.as_deref(), Some("ERS000000070007V5I12"));
                    given_back += 1;
                    d.reject(true).await.unwrap();
                }
                m = dead.next() => break m.expect("the dead-letter consumer ended").unwrap(),
            }
        }
    })
    .await
    .expect("the message reached the dead-letter queue");
    assert!(
        given_back > t.inbound_delivery_limit as usize,
        "dead-lettered after {given_back} deliveries, the limit is {}",
        t.inbound_delivery_limit
    );
    assert_eq!(dead_letter.data, message(7).body);
    let headers = dead_letter.properties.headers().clone().unwrap_or_default();
    let reason = match headers.inner().get("x-first-death-reason") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).to_string(),
        other => panic!("no x-first-death-reason: {other:?}"),
    };
    assert_eq!(reason, "delivery_limit");
    assert!(headers.inner().contains_key("x-death"), "{headers:?}");
    c.close().await;
    let _ = conn.close(200, "done".into()).await;
    cleanup(&t).await;
}
