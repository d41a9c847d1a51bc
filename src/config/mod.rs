//! Configuration: one TOML file plus `ERS_BRIDGE__SECTION__KEY` environment overrides.
//!
//! Loading is two steps, as quickwit does it: [`load`] parses the file into the raw serde
//! structs of [`raw`] (unknown keys are errors, every error names the file, the key and,
//! where it can, the line), then `RawConfig::validate` turns them into the typed
//! [`Config`] (`validated.rs`) and checks the rules that span several keys (for example the app-restricted
//! worklist budget). Neither step touches the network: `ers-bridge validate` is offline.
//! Secrets are held as [`secrecy::SecretString`] and never printed.

mod cluster;
mod env;
mod error;
mod locate;
mod raw;
mod validate;
mod validated;

pub use cluster::ClusterConfig;
pub use env::{Env, MapEnv, ProcessEnv, ENV_PREFIX};
pub use error::ConfigError;
pub use raw::{
    AlertsConfig, AmqpConfig, ApiTokenConfig, AuthConfig, BusinessFunction, ErsConfig,
    MonitorConfig, RetryConfig, StoreConfig, WorklistKind,
};
pub use validate::Invalid;
pub use validated::{Config, InboundTuning, MappingFiles, PipelineTuning, Poll, PollTarget};

use std::path::Path;

/// Reads, overrides and validates the configuration file at `path`.
pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    load_str(&path.display().to_string(), &text, env)
}

/// Like [`load`], for text already in memory; `file` names it in errors.
pub fn load_str(file: &str, text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| line_of(text, s.start));
        ConfigError::Syntax {
            file: file.to_string(),
            line,
            reason: e.message().trim().to_string(),
        }
    })?;
    let overridden =
        env::apply_overrides(&mut table, env).map_err(|(key, reason)| ConfigError::Invalid {
            file: file.to_string(),
            key,
            line: None,
            reason,
        })?;
    let raw: raw::RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            let from_env = overridden.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
            let reason = e.inner().message().trim().to_string();
            let (key, reason) = match from_env {
                Some(var) => (key, format!("{reason} (set by environment variable {var})")),
                None => (key, reason),
            };
            ConfigError::Invalid {
                file: file.to_string(),
                line: locate::line_of_key(text, &key),
                key,
                reason,
            }
        })?;
    raw.validate()
        .map_err(|Invalid { key, reason }| ConfigError::Invalid {
            file: file.to_string(),
            line: locate::line_of_key(text, &key),
            key,
            reason,
        })
}

/// The keys naming files the bridge reads at start (keys, certificates, CAs).
const FILE_KEYS: [&str; 12] = [
    "amqp.tls_ca_file",
    "amqp.tls_client_cert_file",
    "amqp.tls_client_key_file",
    "ers.auth.private_key_file",
    "ers.auth.client_cert_file",
    "ers.auth.client_key_file",
    "transport.mllp.tls_ca_file",
    "transport.mllp.tls_client_cert_file",
    "transport.mllp.tls_client_key_file",
    "inbound.mllp_tls_cert_file",
    "inbound.mllp_tls_key_file",
    "inbound.mllp_tls_client_ca_file",
];

/// Checks that every file the configuration at `path` names for keys and certificates can
/// be opened (`ers-bridge validate`; [`load`] does not, so tools that never use them need
/// not have them). Token files are not checked: they may be written after the bridge
/// starts. The error names the file, the line and the key.
pub fn check_files(path: &Path, env: &dyn Env) -> Result<(), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return Ok(()); // `load` reports the syntax.
    };
    let _ = env::apply_overrides(&mut table, env);
    for key in FILE_KEYS {
        let mut parts = key.split('.');
        let first = parts.next().and_then(|p| table.get(p));
        let Some(toml::Value::String(named)) = parts.fold(first, |v, p| v?.get(p)) else {
            continue;
        };
        if let Err(e) = std::fs::File::open(named) {
            return Err(ConfigError::Invalid {
                file,
                line: locate::line_of_key(&text, key),
                key: key.to_string(),
                reason: format!("cannot read {named}: {e}"),
            });
        }
    }
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests;
