//! MLLP over TLS, both sides at once: the bridge's listener with a certificate and a
//! client CA, and the bridge's own sender as the PAS's client with a client certificate.
//! The certificates are made for the test with the `openssl` command
//! (`tests/common/certs.rs`): a CA, a server certificate for 127.0.0.1, a client
//! certificate. A client with the right certificate
//! gets its ACK; one without a client certificate, or one trusting another CA, is refused
//! at the handshake, and nothing reaches e-RS.

use std::path::PathBuf;
use std::time::Duration;

use ers_bridge::hl7::ControlId;
use ers_bridge::mllp::tls::{ClientTls, ServerTls};
use ers_bridge::mllp::{Acked, MllpSender, SenderSettings};

use crate::certs::{ca, signed};
use crate::inbound::{ops, rri, seeded};
use crate::mllp::listen_with;

fn sender(addr: std::net::SocketAddr, tls: ClientTls) -> MllpSender {
    MllpSender::new(SenderSettings {
        address: addr.to_string(),
        connect_timeout: Duration::from_secs(5),
        ack_timeout: Duration::from_secs(10),
        max_frame: 1 << 20,
        tls: Some(tls),
        retry_refused: false,
    })
    .expect("client tls set-up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_over_tls_with_client_certificates_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ca(d, "test-ca");
    ca(d, "other-ca");
    signed(
        d,
        "test-ca",
        "bridge-listener",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    signed(d, "test-ca", "pas-client", "extendedKeyUsage=clientAuth\n");
    let p = |f: &str| -> PathBuf { d.join(f) };

    let (h, app) = seeded(false).await;
    let tls = ServerTls {
        cert_file: p("bridge-listener.pem"),
        key_file: p("bridge-listener.key"),
        client_ca_file: Some(p("test-ca.pem")),
    };
    let (addr, shutdown, server) = listen_with(&app, Some(tls)).await;

    // The right CA and a client certificate: the RRI is answered, AA, once.
    let good = sender(
        addr,
        ClientTls {
            ca_file: Some(p("test-ca.pem")),
            client_cert: Some((p("pas-client.pem"), p("pas-client.key"))),
            server_name: None,
        },
    );
    let msg = rri("TLSACC0001", "A^Accepted^HL70283", "000000070001", "", "ok");
    let id = ControlId::parse("TLSACC0001").unwrap();
    assert_eq!(good.send(&msg, &id).await.unwrap(), Acked::Accepted);
    assert!(good.destination().starts_with("mllps://"));
    assert_eq!(ops(&h, "A013").await, 1);

    // No client certificate: refused at the handshake (or the first read after it).
    let anonymous = sender(
        addr,
        ClientTls {
            ca_file: Some(p("test-ca.pem")),
            client_cert: None,
            server_name: None,
        },
    );
    let other = rri("TLSACC0002", "A^Accepted^HL70283", "000000070003", "", "ok");
    let other_id = ControlId::parse("TLSACC0002").unwrap();
    assert!(anonymous.send(&other, &other_id).await.is_err());

    // A client that trusts another CA will not talk to the listener.
    let wrong_ca = sender(
        addr,
        ClientTls {
            ca_file: Some(p("other-ca.pem")),
            client_cert: Some((p("pas-client.pem"), p("pas-client.key"))),
            server_name: None,
        },
    );
    let e = wrong_ca.send(&other, &other_id).await.unwrap_err();
    assert!(e.to_string().contains("connecting"), "{e}");
    assert_eq!(ops(&h, "A013").await, 1, "nothing else reached e-RS");

    shutdown.trigger();
    server.await.unwrap();
    app.close().await;
    h.cleanup().await;
}

#[test]
fn a_missing_certificate_file_is_named() {
    let Err(e) = ers_bridge::mllp::tls::acceptor(&ServerTls {
        cert_file: "/nonexistent/cert.pem".into(),
        key_file: "/nonexistent/key.pem".into(),
        client_ca_file: None,
    }) else {
        panic!("a missing file must fail the set-up");
    };
    assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
}

/// e-RS over https verifies the server's certificate, and nothing turns that off: a server
/// whose certificate a CA of the test's own signed (one the system does not trust) is
/// refused at the handshake, and no request reaches it (issue 21).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ers_over_https_refuses_a_certificate_nobody_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ca(d, "untrusted-ca");
    signed(
        d,
        "untrusted-ca",
        "fake-ers",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    let acceptor = ers_bridge::mllp::tls::acceptor(&ServerTls {
        cert_file: d.join("fake-ers.pem"),
        key_file: d.join("fake-ers.key"),
        client_ca_file: None,
    })
    .expect("server tls set-up");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = handshakes.clone();
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if acceptor.accept(tcp).await.is_ok() {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let cfg = ers_bridge::config::load_str(
        "<test>",
        &format!(
            "[ers]\nbase_url = \"https://127.0.0.1:{}/referrals/FHIR\"\n\
             [ers.retry]\nmax_attempts = 1\n[ers.auth]\nmode = \"none\"\n",
            addr.port()
        ),
        &ers_bridge::config::MapEnv::default(),
    )
    .unwrap();
    let client = ers_bridge::ers::ErsClient::new(
        &cfg.ers,
        std::sync::Arc::new(ers_bridge::config::MapEnv::default()),
    )
    .unwrap();
    let err = client.reference_data("PRIORITY").await.unwrap_err();
    let text = format!("{err:?}").to_lowercase();
    assert!(text.contains("certificate"), "{text}");
    assert_eq!(
        handshakes.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a handshake completed with an untrusted certificate"
    );
    server.abort();
}
