//! TLS for `amqps://` brokers: which certificates verify the broker (the system's roots,
//! plus a trust's own CA from `[amqp] tls_ca_file`) and the client certificate offered to
//! a broker that asks for one (`tls_client_cert_file` and `tls_client_key_file`). Every
//! connection the bridge opens (publisher, consumer, queue client) goes through
//! [`AmqpTls::connect`], so one setting covers them all. The broker's certificate is always
//! verified, its host name included: there is no switch to turn that off.

use std::path::Path;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connect, Connection, ConnectionProperties};

/// How `amqps://` connections are verified and which client certificate they offer. The
/// default trusts the system's roots and offers none; an `amqp://` url ignores it.
#[derive(Clone, Default)]
pub struct AmqpTls {
    /// PEM CA certificates trusted beside the system's roots.
    ca_pem: Option<String>,
    /// PEM certificate chain and PKCS#8 key.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for AmqpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("AmqpTls")
            .field("own_ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

/// A TLS file that could not be read, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("reading {what} {path}: {source}")]
pub struct TlsFileError {
    pub what: &'static str,
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

impl AmqpTls {
    /// Trusts the CA certificates in `pem` beside the system's roots.
    pub fn with_ca_pem(pem: impl Into<String>) -> Self {
        Self {
            ca_pem: Some(pem.into()),
            identity: None,
        }
    }

    /// Offers the client certificate chain `cert_pem` with its PKCS#8 key `key_pem`.
    pub fn with_client_identity(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.identity = Some((cert_pem, key_pem));
        self
    }

    /// The `[amqp] tls_*` settings, their files read (a file that cannot be read is named
    /// in the error).
    pub fn from_config(a: &crate::config::AmqpConfig) -> Result<Self, TlsFileError> {
        Self::from_files(
            a.tls_ca_file.as_deref(),
            a.tls_client_cert_file.as_deref(),
            a.tls_client_key_file.as_deref(),
        )
    }

    /// Reads the configured files (each optional; a client certificate needs its key).
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Self, TlsFileError> {
        let read = |what: &'static str, p: &Path| {
            std::fs::read(p).map_err(|source| TlsFileError {
                what,
                path: p.display().to_string(),
                source,
            })
        };
        let mut tls = Self::default();
        if let Some(p) = ca {
            let pem = read("the amqp tls ca file", p)?;
            tls.ca_pem = Some(String::from_utf8_lossy(&pem).into_owned());
        }
        if let (Some(c), Some(k)) = (cert, key) {
            tls.identity = Some((
                read("the amqp tls client certificate", c)?,
                read("the amqp tls client key", k)?,
            ));
        }
        Ok(tls)
    }

    /// Whether a client certificate is configured.
    pub fn has_client_identity(&self) -> bool {
        self.identity.is_some()
    }

    /// Opens a connection to `url` (`amqp://` or `amqps://`).
    pub(crate) async fn connect(
        &self,
        url: &str,
        props: ConnectionProperties,
    ) -> Result<Connection, lapin::Error> {
        let config = OwnedTLSConfig {
            identity: self
                .identity
                .as_ref()
                .map(|(pem, key)| OwnedIdentity::PKCS8 {
                    pem: pem.clone(),
                    key: key.clone(),
                }),
            cert_chain: self.ca_pem.clone(),
        };
        url.connect_with_config(props, config, lapin::runtime::default_runtime()?)
            .await
    }
}

/// Whether `e` is a TLS handshake the bridge refused (an untrusted or mismatched broker
/// certificate) or the broker refused (no or a wrong client certificate): a setting to
/// fix, not an outage.
pub(crate) fn tls_refusal(e: &lapin::Error) -> Option<&'static str> {
    let lapin::ErrorKind::IOError(io) = e.kind() else {
        return None;
    };
    let text = io.to_string();
    if text.contains("invalid peer certificate") {
        Some(
            "the broker's tls certificate is not trusted or does not name its host: check \
             [amqp] tls_ca_file and the host in [amqp] url",
        )
    } else if text.contains("received fatal alert") {
        Some(
            "the broker refused the tls handshake: check [amqp] tls_client_cert_file and \
             tls_client_key_file",
        )
    } else {
        None
    }
}
