//! Where values come from (the environment, a map in tests, a TOML file
//! beneath them) and how one is parsed, with errors that name the variable.

use std::collections::HashMap;
use std::path::Path;

/// Where configuration values come from. Tests pass a map instead of
/// touching the process environment.
pub trait Env {
    /// The raw value of `name`, if set (an empty value counts as unset).
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.is_empty())
    }
}

/// An environment layered over another: the first one that has a value wins.
pub(super) struct Layered<'a> {
    pub(super) top: &'a dyn Env,
    pub(super) bottom: HashMap<String, String>,
}

impl Env for Layered<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.top.var(name).or_else(|| self.bottom.var(name))
    }
}

/// A configuration error: which variable, and what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The value was present but not valid.
    #[error("{name}: {message}")]
    Invalid {
        /// The variable name.
        name: String,
        /// What was expected.
        message: String,
    },
    /// The TOML file could not be read or parsed.
    #[error("ANALYZER_CONFIG ({path}): {message}")]
    File {
        /// The file path.
        path: String,
        /// What went wrong.
        message: String,
    },
}

pub(super) fn invalid(name: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        message: message.into(),
    }
}

pub(super) fn positive(value: u64, name: &str) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(name, "expected a value greater than zero"));
    }
    Ok(())
}

pub(super) fn parse_or<T>(env: &dyn Env, name: &str, default: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
{
    Ok(parse_opt(env, name)?.unwrap_or(default))
}

/// The variable parsed, or `None` when it is unset.
pub(super) fn parse_opt<T>(env: &dyn Env, name: &str) -> Result<Option<T>, ConfigError>
where
    T: std::str::FromStr,
{
    env.var(name)
        .map(|raw| {
            raw.trim().parse().map_err(|_| {
                invalid(
                    name,
                    format!("could not parse `{raw}` as {}", short_type_name::<T>()),
                )
            })
        })
        .transpose()
}

pub(super) fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    match full {
        "u32" | "u64" | "usize" => "a non-negative integer",
        "f64" => "a number",
        _ if full.ends_with("SocketAddr") => "an address like 0.0.0.0:8000",
        _ => full.rsplit("::").next().unwrap_or(full),
    }
}

pub(super) fn read_toml_file(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let file_error = |message: String| ConfigError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    let mut flat = HashMap::new();
    flatten("", &table, &mut flat).map_err(file_error)?;
    Ok(flat)
}

pub(super) fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut HashMap<String, String>,
) -> Result<(), String> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.to_ascii_uppercase()
        } else {
            format!("{prefix}_{}", key.to_ascii_uppercase())
        };
        let text = match value {
            toml::Value::Table(inner) => {
                flatten(&name, inner, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "`{name}`: expected a list of strings, got {other:?}"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            toml::Value::Datetime(d) => d.to_string(),
        };
        out.insert(name, text);
    }
    Ok(())
}
