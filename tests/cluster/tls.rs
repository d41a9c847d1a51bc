//! `amqps://` against a real TLS listener (issue 21): a private RabbitMQ node with a
//! certificate from a CA the test makes, requiring client certificates. The whole outbound
//! pipeline publishes over it with `[amqp] tls_ca_file` and a client certificate;
//! `ers-bridge check` says the broker accepted; a bridge that trusts only the system's roots,
//! or offers no client certificate, is refused at the handshake and told which setting to
//! fix (`check` exits 69), and nothing is sent in the clear.

use std::path::PathBuf;

use ers_bridge::amqp::{AmqpTls, QueueClient};
use ers_bridge::app::Shutdown;

use crate::broker::{PrivateBroker, TlsListener};
use crate::certs::{ca, signed};
use crate::helpers::{Harness, Opts};
use crate::SERIAL;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_publishes_over_amqps_with_the_trusts_ca_and_a_client_certificate() {
    let _one = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ca(d, "broker-ca");
    signed(
        d,
        "broker-ca",
        "broker",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    signed(d, "broker-ca", "bridge", "extendedKeyUsage=clientAuth\n");
    let p = |f: &str| -> PathBuf { d.join(f) };
    let broker = PrivateBroker::start(Some(TlsListener {
        cert: p("broker.pem"),
        key: p("broker.key"),
        ca: p("broker-ca.pem"),
        require_client_cert: true,
    }))
    .await;
    let url: &'static str = Box::leak(broker.tls_url().into_boxed_str());
    let h = Harness::start(Opts {
        seed: true,
        amqp_url: url,
        ..Opts::default()
    })
    .await;
    let q = |p: PathBuf| toml::Value::String(p.display().to_string()).to_string();
    let tls_keys = format!(
        "[amqp]\ntls_ca_file = {}\ntls_client_cert_file = {}\ntls_client_key_file = {}\n",
        q(p("broker-ca.pem")),
        q(p("bridge.pem")),
        q(p("bridge.key")),
    );

    // The pipeline over amqps: every seeded referral's REF^I12 on the PAS queue of the
    // TLS node, confirmed.
    let app = h.app_with("[amqp]\n", &tls_keys, Shutdown::new()).await;
    let summary = app.drain(10).await.expect("drain over amqps");
    app.close().await;
    let tls = AmqpTls::with_ca_pem(std::fs::read_to_string(p("broker-ca.pem")).unwrap())
        .with_client_identity(
            std::fs::read(p("bridge.pem")).unwrap(),
            std::fs::read(p("bridge.key")).unwrap(),
        );
    let reader = QueueClient::connect_with(url, None, &tls).await.unwrap();
    let mut refs = 0i64;
    while let Some(body) = reader.take(&h.pas_queue()).await.unwrap() {
        let msg = ers_bridge::hl7::read(&body).expect("an hl7 message");
        if msg.segment("MSH").is_some_and(|m| m.comp(9, 1) == "REF") {
            refs += 1;
        }
    }
    reader.close().await;
    assert!(refs > 0, "no REF^I12 arrived over amqps: {summary:?}");
    let published = summary
        .published_by_type
        .iter()
        .find(|(t, _)| t == "REF^I12")
        .map_or(0, |(_, n)| *n);
    assert_eq!(
        refs, published,
        "every REF^I12 published was confirmed on the tls node"
    );

    // `check` with the same settings: the broker accepted.
    let with_env = |cmd: &mut std::process::Command, ca: &str, client: bool| {
        cmd.env("ERS_BRIDGE__AMQP__TLS_CA_FILE", p(ca));
        if client {
            cmd.env("ERS_BRIDGE__AMQP__TLS_CLIENT_CERT_FILE", p("bridge.pem"))
                .env("ERS_BRIDGE__AMQP__TLS_CLIENT_KEY_FILE", p("bridge.key"));
        }
    };
    let mut good = crate::common::bridge();
    good.args(["check", "--config"]).arg(&h.config_path);
    with_env(&mut good, "broker-ca.pem", true);
    let out = good.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok: broker"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Another CA (the broker's certificate is not trusted): refused at the handshake,
    // named as a tls setting, exit 69.
    ca(d, "other-ca");
    let mut untrusted = crate::common::bridge();
    untrusted.args(["check", "--config"]).arg(&h.config_path);
    with_env(&mut untrusted, "other-ca.pem", true);
    let out = untrusted.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("tls_ca_file"), "{stderr}");

    // The right CA but no client certificate: the broker refuses the handshake.
    let mut anonymous = crate::common::bridge();
    anonymous.args(["check", "--config"]).arg(&h.config_path);
    with_env(&mut anonymous, "broker-ca.pem", false);
    let out = anonymous.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("tls_client_cert_file"), "{stderr}");

    // The system's roots alone do not trust a trust's own CA.
    let refused = QueueClient::connect_with(url, None, &AmqpTls::default())
        .await
        .expect_err("an untrusted broker certificate");
    assert!(
        refused
            .refusal()
            .is_some_and(|fix| fix.contains("tls_ca_file")),
        "{refused}"
    );
    drop(broker);
    h.cleanup().await;
}
