//! The Parameter Store client (the `ssm` feature).

use std::collections::HashMap;

use aws_sdk_ssm::error::ProvideErrorMetadata as _;

use super::SecretsError;

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
