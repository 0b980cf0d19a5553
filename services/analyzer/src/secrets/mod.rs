//! Secrets from AWS SSM Parameter Store.
//!
//! With `ANALYZER_SSM_PATH=/analyzer/prod`, every parameter directly under
//! the path (SecureString decrypted) is read before anything else starts and
//! acts as the environment variable of its last name segment:
//! `/analyzer/prod/JWT_SECRET` is `JWT_SECRET`. Parameter Store wins over the
//! process environment, so a rotation there is never masked. The values are
//! re-read periodically; a rotated JWT key is taken into use at once (the
//! old one stays valid for an overlap), other changes at the next start.
//!
//! Values never appear in logs or errors: only parameter names and AWS
//! error codes do.

use std::collections::HashMap;

use crate::config::Env;

/// Why the parameters could not be read. Never carries a value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretsError {
    /// No parameter exists under the path.
    #[error("ANALYZER_SSM_PATH: no parameters under `{0}`")]
    Empty(String),
    /// AWS refused the credentials or the permission.
    #[error("ANALYZER_SSM_PATH: access to `{path}` denied ({code})")]
    Denied {
        /// The path.
        path: String,
        /// The AWS error code.
        code: String,
    },
    /// A parameter's name cannot be an environment variable name.
    #[error(
        "ANALYZER_SSM_PATH: parameter `{0}` is not a valid variable name (expected A-Z, 0-9 and _)"
    )]
    BadName(String),
    /// Parameter Store could not be reached or failed.
    #[error("ANALYZER_SSM_PATH: Parameter Store unavailable ({0})")]
    Unavailable(String),
}

#[cfg(feature = "ssm")]
mod ssm;
#[cfg(feature = "ssm")]
pub use ssm::{HttpStatus, ParameterStore};

/// Without the `ssm` feature: a path that cannot be read, so that
/// `ANALYZER_SSM_PATH` is refused at start rather than ignored.
#[cfg(not(feature = "ssm"))]
#[derive(Debug, Clone)]
pub struct ParameterStore {
    path: String,
}

#[cfg(not(feature = "ssm"))]
impl ParameterStore {
    /// The path, with no client.
    pub async fn new(path: &str) -> Self {
        Self {
            path: path.trim_end_matches('/').to_owned(),
        }
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Always an error: this build has no Parameter Store client.
    pub async fn load(&self) -> Result<HashMap<String, String>, SecretsError> {
        Err(SecretsError::Unavailable(
            "this build has no Parameter Store client (cargo feature `ssm`)".into(),
        ))
    }
}

/// Parameter Store values over the process environment.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    /// The parameters, by variable name.
    pub parameters: HashMap<String, String>,
}

impl Env for Overlay {
    fn var(&self, name: &str) -> Option<String> {
        self.parameters
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .or_else(|| crate::config::ProcessEnv.var(name))
    }
}

/// The names whose values differ between two loads (values not compared
/// in logs, only names reported).
pub fn changed_names(old: &HashMap<String, String>, new: &HashMap<String, String>) -> Vec<String> {
    let mut names: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_reported_by_name() {
        let old = HashMap::from([
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "2".to_owned()),
        ]);
        let new = HashMap::from([
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "3".to_owned()),
            ("C".to_owned(), "x".to_owned()),
        ]);
        assert_eq!(changed_names(&old, &new), vec!["B", "C"]);
    }

    #[test]
    fn parameters_win_over_the_environment() {
        let overlay = Overlay {
            parameters: HashMap::from([("PATH".to_owned(), "from-ssm".to_owned())]),
        };
        assert_eq!(overlay.var("PATH").as_deref(), Some("from-ssm"));
    }
}
