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

use aws_sdk_ssm::error::ProvideErrorMetadata as _;

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

/// A Parameter Store path and the client that reads it.
#[derive(Clone)]
pub struct ParameterStore {
    client: aws_sdk_ssm::Client,
    path: String,
}

impl std::fmt::Debug for ParameterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParameterStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ParameterStore {
    /// A client for `path`, configured the standard AWS way (region,
    /// credentials from the task role or environment, `AWS_ENDPOINT_URL`).
    pub async fn new(path: &str) -> Self {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self {
            client: aws_sdk_ssm::Client::new(&shared),
            path: path.trim_end_matches('/').to_owned(),
        }
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Denied (bad credentials or permission) or unavailable, with the AWS
    /// error code or HTTP status, never a body.
    fn classify<E, R>(&self, e: &aws_sdk_ssm::error::SdkError<E, R>) -> SecretsError
    where
        E: aws_sdk_ssm::error::ProvideErrorMetadata,
        R: HttpStatus,
    {
        let status = e.raw_response().map(HttpStatus::status_code);
        let code = e
            .code()
            .map(str::to_owned)
            .or_else(|| status.map(|s| format!("HTTP {s}")));
        let denied = matches!(status, Some(401 | 403))
            || matches!(
                e.code(),
                Some(
                    "AccessDeniedException"
                        | "UnrecognizedClientException"
                        | "InvalidClientTokenId"
                        | "ExpiredTokenException"
                        | "InvalidSignatureException"
                        | "SignatureDoesNotMatch"
                )
            );
        match (denied, code) {
            (true, code) => SecretsError::Denied {
                path: self.path.clone(),
                code: code.unwrap_or_else(|| "access denied".into()),
            },
            (false, Some(code)) => SecretsError::Unavailable(code),
            (false, None) => SecretsError::Unavailable(e.to_string()),
        }
    }

    /// Every parameter directly under the path, by variable name.
    pub async fn load(&self) -> Result<HashMap<String, String>, SecretsError> {
        let mut values = HashMap::new();
        let mut next_token = None;
        loop {
            let page = self
                .client
                .get_parameters_by_path()
                .path(&self.path)
                .recursive(false)
                .with_decryption(true)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|e| self.classify(&e))?;
            for parameter in page.parameters() {
                let (Some(name), Some(value)) = (parameter.name(), parameter.value()) else {
                    continue;
                };
                let var = name.rsplit('/').next().unwrap_or(name);
                if var.is_empty()
                    || !var
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(SecretsError::BadName(name.to_owned()));
                }
                values.insert(var.to_owned(), value.to_owned());
            }
            next_token = page.next_token().map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        if values.is_empty() {
            return Err(SecretsError::Empty(self.path.clone()));
        }
        Ok(values)
    }
}

/// The HTTP status of a raw AWS response.
pub trait HttpStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_ssm::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
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
