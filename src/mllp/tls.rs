//! TLS for MLLP, both ways (rustls with the aws-lc-rs provider the bridge already uses for
//! e-RS and the broker): the bridge as a client of the PAS's listener (trusting the
//! configured CA file, else the system's roots; a client certificate optional), and the
//! bridge's own listener (its certificate and key; client certificates required when a
//! client CA file is configured). Files are PEM; a file that cannot be read or parsed is
//! named with the reason, at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::{
    self, crypto::CryptoProvider, server::WebPkiClientVerifier, ClientConfig, RootCertStore,
    ServerConfig,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A byte stream MLLP runs over: plain TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The bridge as a TLS client of the PAS (`[transport.mllp] tls_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA that signed the PAS's certificate; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The bridge's certificate and key, when the PAS asks for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name the PAS's certificate must carry; `None`: the host of the address.
    pub server_name: Option<String>,
}

/// The bridge's listener with TLS (`[inbound] mllp_tls_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Clients must present a certificate signed by this CA.
    pub client_ca_file: Option<PathBuf>,
}

/// Why a TLS set-up failed (a permanent error: a person fixes the files or the names).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("tls: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::File {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        what: "private key",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(what, path)? {
        roots.add(c).map_err(|e| TlsError::File {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The connector and the name to check, for `address` (`host:port`).
pub fn connector(
    tls: &ClientTls,
    address: &str,
) -> Result<(TlsConnector, ServerName<'static>), TlsError> {
    let roots = match &tls.ca_file {
        Some(path) => roots("ca file", path)?,
        None => {
            let mut roots = RootCertStore::empty();
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            roots
        }
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &tls.client_cert {
        Some((cert, key_file)) => builder
            .with_client_auth_cert(certs("client certificate", cert)?, key(key_file)?)
            .map_err(|e| TlsError::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    let host = match &tls.server_name {
        Some(n) => n.clone(),
        None => address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    };
    let name = ServerName::try_from(host.clone())
        .map_err(|_| TlsError::Config(format!("{host:?} is not a server name")))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

/// The listener's acceptor.
pub fn acceptor(tls: &ServerTls) -> Result<TlsAcceptor, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &tls.client_ca_file {
        Some(path) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots("client ca file", path)?),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs("certificate", &tls.cert_file)?, key(&tls.key_file)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
