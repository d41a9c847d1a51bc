//! Environment overrides: `ERS_BRIDGE__ERS__BASE_URL=...` replaces `[ers] base_url`.
//!
//! The environment is read through the small [`Env`] trait so tests pass a map and never
//! call `set_var`. A value is parsed as a TOML scalar or array when it can be (so
//! `ERS_BRIDGE__ERS__RATE_LIMIT_PER_SEC=5` is an integer), otherwise taken as a string.

use std::collections::BTreeMap;

/// Prefix of every override variable; path segments are separated by `__`.
pub const ENV_PREFIX: &str = "ERS_BRIDGE__";

/// Where environment variables come from.
pub trait Env {
    /// All variables whose name starts with [`ENV_PREFIX`], in a stable order.
    fn overrides(&self) -> Vec<(String, String)>;
    /// One variable by name (used for secrets named in the config, e.g. `token_env`).
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn overrides(&self) -> Vec<(String, String)> {
        let mut vars: Vec<_> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        vars
    }

    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed set of variables, for tests and embedding.
#[derive(Debug, Default, Clone)]
pub struct MapEnv(pub BTreeMap<String, String>);

impl MapEnv {
    /// Builds a map environment from pairs.
    pub fn from_pairs<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl Env for MapEnv {
    fn overrides(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Applies every override to `table`; returns `(dotted key, variable name)` for each one so
/// errors can say where a bad value came from. Errors are `(key, reason)`.
pub(super) fn apply_overrides(
    table: &mut toml::Table,
    env: &dyn Env,
) -> Result<Vec<(String, String)>, (String, String)> {
    let mut applied = Vec::new();
    for (name, value) in env.overrides() {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err((name.clone(), "malformed override variable name".into()));
        }
        let key = path.join(".");
        let mut cur = &mut *table;
        for seg in &path[..path.len() - 1] {
            let entry = cur
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cur = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err((
                        key.clone(),
                        format!("{name} overrides a value that is not a table at `{seg}`"),
                    ))
                }
            };
        }
        cur.insert(path[path.len() - 1].clone(), parse_value(&value));
        applied.push((key, name));
    }
    Ok(applied)
}

fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}
