//! `ers-bridge check --config FILE`: the connectivity probe. Unlike `validate` it uses the
//! network: it authenticates to e-RS in the configured mode (token, bearer file, or legacy
//! session) and reads reference data (A004 PRIORITY), then ends a legacy session (A003);
//! it logs in to the broker with the configured URL, so a wrong password or vhost is
//! reported as what it is before `run` treats it as an outage (or, with `[transport]
//! to_pas = "mllp"`, connects to the PAS's MLLP listener, sending nothing); and it opens
//! the store (one connection, a read, on SQLite a harmless write; no migration). Exit 0
//! when all three answer, 69 (`EX_UNAVAILABLE`) naming each that did not.

use std::{path::PathBuf, process::ExitCode};

/// Arguments of `check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The configuration file (or set ERS_BRIDGE_CONFIG).
    #[arg(long, short, env = "ERS_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Runs `check`: prints one line per step; exits 0 when all pass, 69 otherwise, 64 for a
/// configuration error.
pub fn run(args: &CheckArgs) -> ExitCode {
    // The configuration is read once, for both probes.
    let cfg = match super::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let env = std::sync::Arc::new(crate::config::ProcessEnv);
    let client = match crate::ers::ErsClient::new(&cfg.ers, env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::EX_USAGE);
        }
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {}", super::explain(e.as_ref()));
            return ExitCode::FAILURE;
        }
    };
    let ers = rt.block_on(check_ers(client));
    let pas = match &cfg.mllp_to_pas {
        None => match crate::amqp::AmqpTls::from_config(&cfg.amqp) {
            Ok(tls) => rt.block_on(async {
                let mut all = true;
                for url in cfg.amqp.node_urls() {
                    all &= check_broker(&url, &tls).await;
                }
                all
            }),
            Err(e) => {
                eprintln!("error: broker: {e}");
                false
            }
        },
        Some(mllp) => rt.block_on(check_mllp(mllp)),
    };
    let store = rt.block_on(check_store(&cfg.store.url));
    if ers && pas && store {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EX_UNAVAILABLE)
    }
}

/// Exit code when a dependency does not answer as configured (sysexits `EX_UNAVAILABLE`).
pub const EX_UNAVAILABLE: u8 = 69;

/// The store opens and answers ([`crate::store::Store::probe`]).
async fn check_store(url: &secrecy::SecretString) -> bool {
    use secrecy::ExposeSecret as _;
    let shown = super::redact_url(url.expose_secret());
    // A SQLite file that does not exist yet is made by `run`: its directory must take it.
    if let Some(file) = super::run::sqlite_file(url.expose_secret()) {
        let path = std::path::Path::new(file);
        if !path.exists() {
            let trial = path.with_extension("check-write");
            return match std::fs::write(&trial, b"") {
                Ok(()) => {
                    let _ = std::fs::remove_file(&trial);
                    println!("ok: store {shown} does not exist yet; `run` will create it there");
                    true
                }
                Err(e) => {
                    eprintln!(
                        "error: store {shown}: cannot create files beside it: {e} (check \
                         [store] url and the directory's permissions)"
                    );
                    false
                }
            };
        }
    }
    match crate::store::Store::probe(url, std::time::Duration::from_secs(10)).await {
        Ok(what) => {
            println!("ok: store {shown} ({what}) opens and answers");
            true
        }
        Err(e) => {
            eprintln!(
                "error: store {shown}: {} (check [store] url: the user, password, host and \
                 database, or the file's directory and permissions)",
                super::explain(&e)
            );
            false
        }
    }
}

/// The broker accepts the configured credentials and virtual host (a connection and a
/// channel, closed at once).
async fn check_broker(url: &secrecy::SecretString, tls: &crate::amqp::AmqpTls) -> bool {
    use secrecy::ExposeSecret as _;
    let shown = super::redact_url(url.expose_secret());
    let connect = crate::amqp::QueueClient::connect_with(url.expose_secret(), None, tls);
    match tokio::time::timeout(std::time::Duration::from_secs(10), connect).await {
        Ok(Ok(q)) => {
            q.close().await;
            println!("ok: broker {shown} accepted the credentials");
            true
        }
        Ok(Err(e)) => {
            // A broker that wants a client certificate may close a TLS 1.3 connection
            // without an alert the client sees first (a reset): not certain enough for
            // `run` to stop treating it as an outage, but the likely fix here.
            let reset = e.to_string().contains("reset by peer");
            let fix = e.refusal().unwrap_or(
                if reset && url.expose_secret().starts_with("amqps") && !tls.has_client_identity() {
                    "the broker closed the tls connection: if it requires client certificates, \
                     set [amqp] tls_client_cert_file and tls_client_key_file; otherwise check \
                     that the broker runs"
                } else {
                    "check the user, password and virtual host in [amqp] url, and that the \
                     broker runs"
                },
            );
            eprintln!("error: broker {shown}: {e} ({fix})");
            false
        }
        Err(_) => {
            eprintln!("error: broker {shown}: no answer within 10 s");
            false
        }
    }
}

/// e-RS authenticates us and serves reference data.
async fn check_ers(client: crate::ers::ErsClient) -> bool {
    {
        println!("e-rs auth mode: {}", client.mode().name());
        let result = client.reference_data("PRIORITY").await;
        let shutdown = client.shutdown().await;
        match result {
            Ok(cs) => {
                if let Some(n) = client.token_fetch_count() {
                    println!("ok: access token obtained ({n} fetched)");
                }
                println!(
                    "ok: authenticated and read reference data PRIORITY ({} concepts)",
                    cs.concept.len()
                );
                if let Err(e) = shutdown {
                    eprintln!("error: could not end the legacy session: {e}");
                    return false;
                }
                true
            }
            Err(e) => {
                super::ers::report(&anyhow::Error::new(e));
                false
            }
        }
    }
}

/// The PAS's MLLP listener accepts a connection (nothing is sent on it).
async fn check_mllp(settings: &crate::mllp::SenderSettings) -> bool {
    let sender = match crate::mllp::MllpSender::new(settings.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: mllp {e}");
            return false;
        }
    };
    match sender.ensure_connected().await {
        Ok(()) => {
            println!(
                "ok: the pas's mllp listener at {} accepts connections",
                settings.address
            );
            sender.close().await;
            true
        }
        Err(e) => {
            eprintln!("error: {e} (check [transport.mllp] address, and that the pas listens)");
            false
        }
    }
}
