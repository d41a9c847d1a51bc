//! A private RabbitMQ node for one test: its own node name, ports, data directory and
//! (optionally) a TLS listener, started from the machine's RabbitMQ installation, so a test
//! can stop, kill and restart a broker without touching the shared one on 5672. Included by
//! the test binaries that need it with `#[path = "../common/broker.rs"]`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to accept AMQP connections after it is started.
const START_LIMIT: Duration = Duration::from_secs(120);

/// The installation's server script (run directly, so the node is our child process).
const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// The certificate and key of a TLS listener, and the CA whose clients it accepts.
pub struct TlsListener {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// Refuse a client without a certificate the CA signed.
    pub require_client_cert: bool,
}

/// A running (or stopped) private node; killed when dropped.
pub struct PrivateBroker {
    pub port: u16,
    pub tls_port: Option<u16>,
    dist_port: u16,
    name: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivateBroker {
    /// Starts a node (plain AMQP, and TLS when `tls` is given) and waits until it accepts
    /// AMQP connections; `guest` may log in from anywhere.
    pub async fn start(tls: Option<TlsListener>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let tls_port = tls.as_ref().map(|_| free_port());
        let mut conf = format!("listeners.tcp.default = {port}\nloopback_users = none\n");
        if let (Some(t), Some(p)) = (&tls, tls_port) {
            let path = |p: &Path| p.display().to_string();
            conf.push_str(&format!(
                "listeners.ssl.default = {p}\nssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\nssl_options.keyfile = {}\n\
                 ssl_options.verify = {}\nssl_options.fail_if_no_peer_cert = {}\n",
                path(&t.ca),
                path(&t.cert),
                path(&t.key),
                if t.require_client_cert {
                    "verify_peer"
                } else {
                    "verify_none"
                },
                t.require_client_cert,
            ));
        }
        std::fs::write(dir.path().join("rabbitmq.conf"), conf).unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        let mut b = Self {
            port,
            tls_port,
            dist_port: free_port(),
            name: format!("ersb-test-{}-{}@localhost", std::process::id(), port),
            dir,
            child: None,
        };
        b.spawn();
        b.wait_ready().await;
        b
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `amqps://guest:guest@localhost:TLS_PORT/%2f` (the certificate names `localhost`).
    pub fn tls_url(&self) -> String {
        format!(
            "amqps://guest:guest@localhost:{}/%2f",
            self.tls_port.expect("started with a tls listener")
        )
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("server.out"))
            .unwrap();
        let child = Command::new(SERVER)
            .env("HOME", d)
            // Exec the VM (the child is the node, so SIGKILL crashes it); its shell reads
            // a pipe the Child holds open, never a closed stdin.
            .env("RABBITMQ_ALLOW_INPUT", "true")
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {SERVER}: {e}"));
        self.child = Some(child);
    }

    /// Waits until the node accepts an AMQP login.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            // Bounded: a node still booting can take the TCP connection and never finish
            // the AMQP handshake (a CI run hung here for 15 minutes).
            let url = self.url();
            let connect = lapin::Connection::connect(&url, Default::default());
            if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(5), connect).await {
                let _ = tokio::time::timeout(Duration::from_secs(5), c.close(200, "ready".into()))
                    .await;
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "the private broker exited ({status}): {}",
                    std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the private broker did not accept connections within {START_LIMIT:?}: {}",
                std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the node: SIGTERM (a clean shutdown) or SIGKILL (a crash), and waits for it.
    pub fn stop(&mut self, crash: bool) {
        if let Some(mut child) = self.child.take() {
            if crash {
                let _ = child.kill();
            } else {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Starts the stopped node again on the same data, and waits until it is ready.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the node first");
        self.spawn();
        self.wait_ready().await;
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
