//! The broker's limit for confirmed publishing on this machine: renders real REF^I12 messages
//! (the default mapping over `samples/fhir/referrals/*.json`, no attachments) and publishes
//! `--count` of them to a fresh topic exchange bound to a fresh quorum queue, persistent and
//! mandatory, with publisher confirms, keeping up to `--in-flight` unconfirmed at once.
//!
//! With `--from-store URL` the messages are instead those a bridge run recorded in its store
//! (`published_messages.hl7`, oldest first), so the limit is measured on exactly the messages
//! of that run, attachments included; `--count` then defaults to all of them.
//!
//! `--mode raw` uses lapin alone on one channel (the ceiling); `--mode publisher` sends the
//! same messages through the bridge's [`Publisher`] from `--in-flight` concurrent callers,
//! each awaiting its own confirm (what the pipeline gets). Prints one line of results and
//! deletes the exchange and queue.
//!
//! ```sh
//! cargo run --release --example raw_publish -- --count 10000 --in-flight 1000
//! ```

#[path = "support/topology.rs"]
mod topology;
use topology::BenchTopology;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ers_bridge::amqp::{OutboundMessage, Publisher, PublisherSettings, Topology};
use ers_bridge::mapping::{compile_file, ApplyInput, Attachments};
use futures_util::StreamExt;
use lapin::{
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable},
    BasicProperties, Confirmation,
};

struct Args {
    count: usize,
    in_flight: usize,
    url: String,
    mode: String,
    from_store: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        count: 10_000,
        in_flight: 1_000,
        url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
        mode: "raw".into(),
        from_store: None,
    };
    let mut count_given = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--count" => {
                a.count = value()?.parse()?;
                count_given = true;
            }
            "--from-store" => a.from_store = Some(value()?),
            "--in-flight" => a.in_flight = value()?.parse()?,
            "--url" => a.url = value()?,
            "--mode" => a.mode = value()?,
            other => bail!(
                "unknown argument {other} (--count N --in-flight N --url U --mode raw|publisher --from-store URL)"
            ),
        }
    }
    if a.in_flight == 0 {
        bail!("--in-flight must be at least 1");
    }
    if a.from_store.is_some() && !count_given {
        a.count = 0;
    }
    Ok(a)
}

/// The rendered sample referrals, as bodies with their MSH-10.
fn sample_messages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mapping = compile_file(format!("{root}/mappings/ref_i12.v24.toml").as_ref())?;
    let timestamp = chrono::DateTime::parse_from_rfc3339("2026-11-24T01:00:00+00:00")?;
    let none = Attachments::new();
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(format!("{root}/samples/fhir/referrals"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let referral: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let control_id = mapping.control_id_for(&referral)?;
        let input = ApplyInput {
            referral: &referral,
            control_id: &control_id,
            timestamp,
            attachments: &none,
            attachment_errors: &Default::default(),
        };
        match mapping.render(&input) {
            Ok((_, body)) => out.push((control_id.as_str().to_string(), body)),
            Err(e) => eprintln!("skipping {}: {e}", path.display()),
        }
    }
    if out.is_empty() {
        bail!("no sample referral rendered");
    }
    Ok(out)
}

/// The messages a bridge run confirmed, from its store, as bodies with their MSH-10.
async fn stored_messages(url: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let store = ers_bridge::store::Store::connect(&url.to_string().into()).await?;
    let out: Vec<_> = store
        .published_messages(i64::MAX)
        .await?
        .into_iter()
        .filter_map(|m| Some((m.control_id.into_string(), m.hl7?.into_bytes())))
        .collect();
    store.close().await;
    if out.is_empty() {
        bail!("the store at --from-store holds no message payloads");
    }
    Ok(out)
}

fn message(samples: &[(String, Vec<u8>)], n: usize) -> OutboundMessage {
    let (control_id, body) = &samples[n % samples.len()];
    OutboundMessage {
        routing_key: "default.REF.I12".into(),
        message_id: format!("{control_id}-{n}"),
        correlation_id: format!("{:012}", n),
        message_type: "REF^I12".into(),
        ers_version: "1".into(),
        body: body.clone(),
        exchange: None,
        headers: Vec::new(),
        original: None,
    }
}

fn properties(m: &OutboundMessage) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-ers-version".into(),
        AMQPValue::LongString(m.ers_version.clone().into()),
    );
    BasicProperties::default()
        .with_content_type(ers_bridge::amqp::HL7_CONTENT_TYPE.into())
        .with_delivery_mode(2)
        .with_message_id(m.message_id.as_str().into())
        .with_correlation_id(m.correlation_id.as_str().into())
        .with_type(m.message_type.as_str().into())
        .with_app_id(ers_bridge::amqp::APP_ID.into())
        .with_headers(headers)
}

/// lapin alone: publish on one confirm-mode channel, at most `in_flight` unconfirmed. The
/// publishes themselves are issued concurrently too: awaiting each `basic_publish` before
/// sending the next would serialise on lapin's write path.
async fn raw(
    ch: &lapin::Channel,
    exchange: &str,
    msgs: &[OutboundMessage],
    in_flight: usize,
) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(msgs)
        .map(|m| async move {
            let confirm = ch
                .basic_publish(
                    exchange.into(),
                    m.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &m.body,
                    properties(m),
                )
                .await?;
            check(confirm.await?)
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    results.into_iter().collect()
}

fn check(c: Confirmation) -> anyhow::Result<()> {
    match c {
        Confirmation::Ack(None) => Ok(()),
        other => bail!("not confirmed: {other:?}"),
    }
}

/// The bridge's publisher: `in_flight` concurrent callers, each awaiting its confirm.
async fn through_publisher(
    t: &Topology,
    url: &str,
    msgs: Vec<OutboundMessage>,
    in_flight: usize,
) -> anyhow::Result<()> {
    let p = Arc::new(Publisher::new(PublisherSettings {
        urls: vec![url.into()],
        exchange: t.exchange.clone(),
        confirm_timeout: Duration::from_secs(30),
        topology: None,
        tls: Default::default(),
    }));
    p.ensure_connected().await?;
    futures_util::stream::iter(msgs)
        .map(|m| {
            let p = p.clone();
            async move { p.publish(&m).await }
        })
        .buffer_unordered(in_flight)
        .for_each(|r| {
            r.expect("confirmed publish");
            async {}
        })
        .await;
    p.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut a = args()?;
    let samples = match &a.from_store {
        Some(url) => stored_messages(url).await?,
        None => sample_messages()?,
    };
    if a.count == 0 {
        a.count = samples.len();
    }
    let msgs: Vec<_> = (0..a.count).map(|n| message(&samples, n)).collect();
    let bytes: usize = msgs.iter().map(|m| m.body.len()).sum();

    let bench = BenchTopology::declare(&a.url, "bench").await?;
    let (ch, t) = (&bench.ch, &bench.t);

    let started = Instant::now();
    match a.mode.as_str() {
        "raw" => raw(ch, &t.exchange, &msgs, a.in_flight).await?,
        "publisher" => through_publisher(t, &a.url, msgs, a.in_flight).await?,
        other => bail!("unknown mode {other} (raw or publisher)"),
    }
    let elapsed = started.elapsed();

    let depth = ch
        .queue_declare(
            t.pas_queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?
        .message_count();
    bench.delete().await?;

    println!(
        "mode={} count={} in_flight={} avg_body_bytes={} elapsed_s={:.3} confirmed_msgs_per_s={:.0} queue_depth={}",
        a.mode,
        a.count,
        a.in_flight,
        bytes / a.count.max(1),
        elapsed.as_secs_f64(),
        a.count as f64 / elapsed.as_secs_f64(),
        depth
    );
    if depth as usize != a.count {
        bail!("queue holds {depth} messages, expected {}", a.count);
    }
    Ok(())
}
